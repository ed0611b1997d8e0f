"""Paper-profile mels to sound without a paper vocoder: the universal HiFi-GAN bridge against Griffin-Lim.

On real recordings (any folder of audio files, e.g. Debian's sonic-pi-samples, CC0): each file's first 3 s at
16 kHz (zero-padded when shorter), its ground-truth paper mel, then every path back to a wave, measured
against the original: the multi-resolution STFT distance (mean over clips) and the aisfx Fréchet distance of
the set (FAD), and the time per 3 s on `--threads` cores. Also measured: where the small default model's VAE
puts cells that are at the floor in the ground truth (what "generated mels rarely sit at 0" means), and the
floor rule's threshold swept on ground-truth mels with that VAE's floor residue added.

    python benchmarks/bench_vocoders.py --sounds DIR --limit 50 --out vocoders.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from action2sound import media
from action2sound.config import PAPER_AUDIO, UNIVERSAL22K_AUDIO
from action2sound.evaluation.embedders import AisfxEmbedder, embed_waves
from action2sound.evaluation.fad import fad
from action2sound.evaluation.spectral import mr_stft_distance
from action2sound.mel import fit_wave, mel_to_vocoder_input, mel_to_wave_griffinlim, wave_to_mel
from action2sound.mel_bridge import FLOOR, bridge_waves, griffinlim
from action2sound.models.vocoder import load_universal_hifigan, vocode

EXTS = (".flac", ".wav", ".ogg", ".mp3")


def clips(folder: Path, limit: int) -> list[tuple[str, np.ndarray]]:
    """(name, first 3 s at 16 kHz) of `limit` files with at least 0.5 s of sound, evenly spread over the names."""
    out = []
    for path in sorted(p for p in folder.rglob("*") if p.suffix.lower() in EXTS):
        wave = media.read_audio_file(path, PAPER_AUDIO.sample_rate)
        if wave.size >= PAPER_AUDIO.sample_rate // 2 and np.abs(wave).max() >= 1e-3:
            out.append((path.name, fit_wave(wave, PAPER_AUDIO)))
    keep = np.unique(np.linspace(0, len(out) - 1, min(limit, len(out))).round().astype(int))
    return [out[i] for i in keep]


def vae_floor_residue(waves: list[np.ndarray]) -> np.ndarray:
    """Decoded values of the cells at the floor (v = 0) in the ground truth, through the default model's VAE."""
    from importlib.resources import files

    from action2sound.models.vae import decode_latent, encode_mel
    from action2sound.weights import load_model_dir

    md = load_model_dir(Path(str(files("action2sound") / "default_model")), components=("vae",))
    p = md.preset.audio
    vals = []
    for w in waves:
        w22 = media.resample(w, PAPER_AUDIO.sample_rate, p.sample_rate)
        mel = wave_to_mel(w22, p)
        with torch.no_grad():
            mean, _ = encode_mel(md.vae, torch.from_numpy(mel)[None])
            rec = decode_latent(md.vae, mean * md.preset.vae.scaling_factor, p.num_frames)[0].numpy()
        gt = mel[:, : p.num_frames]
        vals.append(rec[gt <= 0.0])
    return np.concatenate(vals)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sounds", required=True, help="a folder of audio files")
    ap.add_argument("--limit", type=int, default=50)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", help="write the results as JSON here")
    ap.add_argument("--paths", nargs="+", help="measure only these paths (default: all, and the floor study)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    data = clips(Path(args.sounds), args.limit)
    names, originals = [n for n, _ in data], [w for _, w in data]
    mels = [wave_to_mel(w, PAPER_AUDIO) for w in originals]
    universal = load_universal_hifigan()

    def bridge(floor):
        return lambda m: bridge_waves(lambda x: vocode(universal, x), m[None], floor=floor)[0]

    def own_mel(w):
        # The universal generator on the clip's own 22 kHz mel: the best this generator can do.
        w22 = media.resample(w, PAPER_AUDIO.sample_rate, UNIVERSAL22K_AUDIO.sample_rate)
        m = torch.from_numpy(mel_to_vocoder_input(wave_to_mel(w22, UNIVERSAL22K_AUDIO), UNIVERSAL22K_AUDIO))
        with torch.no_grad():
            out = vocode(universal, m[None, :, : UNIVERSAL22K_AUDIO.num_frames])[0].numpy()
        return fit_wave(media.resample(out, UNIVERSAL22K_AUDIO.sample_rate, PAPER_AUDIO.sample_rate), PAPER_AUDIO)

    paths = {
        "bridge": bridge(FLOOR),
        "bridge_no_floor_rule": bridge(None),
        "griffinlim_shipped": lambda m: mel_to_wave_griffinlim(m, PAPER_AUDIO),
        "griffinlim_floor_rule": lambda m: griffinlim(m, PAPER_AUDIO, floor=FLOOR),
    }
    results: dict = {"clips": names, "n": len(names), "threads": args.threads, "floor": FLOOR, "paths": {}}
    embedder = AisfxEmbedder()
    ref_emb = np.concatenate(embed_waves(embedder, originals, PAPER_AUDIO.sample_rate))
    outputs = {}
    todo = list(paths.items()) + [("universal_own_22k_mel (reference)", None)]
    for name, fn in [(n, f) for n, f in todo if not args.paths or n in args.paths]:
        t0, c0 = time.perf_counter(), time.process_time()
        waves = [own_mel(w) for w in originals] if fn is None else [fn(m) for m in mels]
        seconds = (time.perf_counter() - t0) / len(waves)
        cpu = (time.process_time() - c0) / len(waves)  # CPU seconds: the wall clock is shared with other jobs
        outputs[name] = waves
        emb = np.concatenate(embed_waves(embedder, waves, PAPER_AUDIO.sample_rate))
        d = [mr_stft_distance(o, w) for o, w in zip(originals, waves)]
        results["paths"][name] = {"mr_stft": float(np.mean(d)), "aisfx_fad": fad(ref_emb, emb),
                                  "seconds_per_3s": seconds, "cpu_seconds_per_3s": cpu,
                                  "mr_stft_per_clip": [round(x, 4) for x in d]}
        print(f"{name:40s} MR-STFT {np.mean(d):.3f}  FAD {results['paths'][name]['aisfx_fad']:.2f}  "
              f"{seconds:.3f} s wall, {cpu:.3f} s CPU / 3 s", flush=True)

    # Generated mels: where the default model's VAE puts ground-truth floor cells, then the rule swept on
    # ground-truth paper mels with that residue added where they sit at the floor.
    if args.paths:
        if args.out:
            Path(args.out).write_text(json.dumps(results, indent=1) + "\n")
        return
    residue = vae_floor_residue(originals)
    q = {f"p{k}": float(np.quantile(residue, k / 100)) for k in (50, 90, 95, 99)}
    results["vae_floor_residue"] = {"cells": int(residue.size), "exactly_zero": float(np.mean(residue <= 0.0)), **q}
    print("VAE floor residue:", results["vae_floor_residue"], flush=True)
    rng = np.random.default_rng(0)
    sweep = {}
    for thr in (None, 0.0, 0.02, 0.05, 0.08, 0.12):
        d = []
        for o, m in zip(originals, mels):
            noisy = np.where(m <= 0.0, rng.choice(residue, size=m.shape), m).astype(np.float32)
            d.append(mr_stft_distance(o, griffinlim(noisy, PAPER_AUDIO, floor=thr, n_iter=16)))
        sweep[str(thr)] = float(np.mean(d))
        print(f"floor {thr}: Griffin-Lim MR-STFT on residue-noised mels {sweep[str(thr)]:.3f}", flush=True)
    results["floor_sweep_griffinlim_noised"] = sweep
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
