"""The vocoder's speed-ups against the unchanged vocoder, on real recordings: distance, FAD and seconds.

Each recording of a folder (e.g. Debian's sonic-pi-samples: `apt-get download sonic-pi-samples`, `dpkg-deb -x`,
then `usr/share/sonic-pi/samples`) at least 3 s long gives one 3 s crop from its start, resampled to the
universal22k profile's 22,050 Hz. Its ground-truth mel goes through the universal HiFi-GAN twice: unchanged
(`load_universal_hifigan()`, fp32, the reference) and through `inference_vocoder(...)` at each precision. For
each variant the script prints

- the multi-resolution STFT distance to the reference output (spectral convergence + log-magnitude L1, mean
  of the FFT sizes 512 / 1024 / 2048, hop a quarter; the usual HiFi-GAN / Parallel WaveGAN definition), with
  the reference's own distance to the recording beside it for scale;
- the aisfx FAD (`evaluation.embedders.AisfxEmbedder`, `evaluation.fad`) of the variant's outputs against the
  reference outputs, with the FAD of the recordings against the reference outputs for scale;
- seconds per 3 s clip at batch 1 and per clip at batch `--batch` (minimum of `--repeats`), this process's
  torch threads, and the load average beside it (the machine is shared).

    .venv/bin/python benchmarks/bench_vocoder.py /tmp/sonic/usr/share/sonic-pi/samples --clips 24
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch

from action2sound import media
from action2sound.config import UNIVERSAL22K_AUDIO
from action2sound.evaluation.embedders import AisfxEmbedder, embed_waves
from action2sound.evaluation.fad import fad
from action2sound.mel import crop_frames, mel_to_vocoder_input, wave_to_mel
from action2sound.models.vocoder import inference_vocoder, load_universal_hifigan, vocode

AUDIO_SUFFIXES = (".flac", ".wav", ".ogg", ".mp3")
RESOLUTIONS = ((512, 128), (1024, 256), (2048, 512))  # (n_fft, hop), window = n_fft


def mr_stft_distance(x: np.ndarray, ref: np.ndarray) -> float:
    """Multi-resolution STFT distance: mean over resolutions of spectral convergence + mean |log |X| - log |R||."""
    a, b = torch.from_numpy(x).float(), torch.from_numpy(ref).float()
    total = 0.0
    for n_fft, hop in RESOLUTIONS:
        win = torch.hann_window(n_fft)
        mx = torch.stft(a, n_fft, hop, window=win, return_complex=True).abs().clamp_min(1e-7)
        mr = torch.stft(b, n_fft, hop, window=win, return_complex=True).abs().clamp_min(1e-7)
        sc = torch.linalg.norm(mr - mx) / torch.linalg.norm(mr).clamp_min(1e-7)
        total += float(sc + (mx.log() - mr.log()).abs().mean())
    return total / len(RESOLUTIONS)


def read_clips(folder: Path, count: int) -> tuple[list[str], np.ndarray]:
    """The first `count` recordings (by name) of at least 3 s -> (names, waves [N, num_samples] at 22,050 Hz)."""
    p = UNIVERSAL22K_AUDIO
    names, waves = [], []
    for path in sorted(f for f in folder.iterdir() if f.suffix.lower() in AUDIO_SUFFIXES):
        wave = media.read_audio_file(path, p.sample_rate)
        if wave.size < p.num_samples:
            continue
        names.append(path.name)
        waves.append(wave[: p.num_samples])
        if len(names) == count:
            break
    if len(names) < count:
        raise SystemExit(f"{folder}: only {len(names)} recordings of at least 3 s, asked for {count}; pass --clips")
    return names, np.stack(waves)


def run(generator: torch.nn.Module, mels: torch.Tensor, batch: int) -> np.ndarray:
    """Waves [N, frames * hop] of log mels [N, n_mels, frames], `batch` clips per call."""
    with torch.inference_mode():
        return torch.cat([vocode(generator, mels[i:i + batch]).float() for i in range(0, len(mels), batch)]).numpy()


def seconds(generator: torch.nn.Module, mels: torch.Tensor, repeats: int) -> float:
    """Minimum over `repeats` of the seconds one call on `mels` takes (after one warm-up call)."""
    run(generator, mels, len(mels))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run(generator, mels, len(mels))
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder", type=Path, help="a folder of recordings (flac / wav / ogg / mp3)")
    ap.add_argument("--clips", type=int, default=24, help="recordings to use (default 24)")
    ap.add_argument("--batch", type=int, default=4, help="clips per vocoder call in the batched timing (default 4)")
    ap.add_argument("--repeats", type=int, default=3, help="timed repeats; the minimum is reported (default 3; 0: no timing)")
    ap.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    ap.add_argument("--profile", action="store_true",
                    help="first print where the unchanged vocoder's time goes on one clip (torch profiler, by op "
                         "and shape: each resblock conv is one line per stage and kernel)")
    ap.add_argument("--variants", nargs="+", choices=["fp32", "bf16"], default=["fp32", "bf16"],
                    help="inference_vocoder precisions to compare (default both)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    p = UNIVERSAL22K_AUDIO

    names, truth = read_clips(args.folder, args.clips)
    mels = torch.from_numpy(np.stack([mel_to_vocoder_input(crop_frames(wave_to_mel(w, p), p), p) for w in truth]))
    reference = load_universal_hifigan()
    variants = {f"{v} channels-last": inference_vocoder(load_universal_hifigan(), v) for v in args.variants}
    print(f"{len(names)} recordings from {args.folder.name}/ (3 s crops at {p.sample_rate} Hz), torch threads "
          f"{torch.get_num_threads()}, bf16 native: {torch.ops.mkldnn._is_mkldnn_bf16_supported()}")

    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        run(reference, mels[:1], 1)
        with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
            run(reference, mels[:1], 1)
        print(prof.key_averages(group_by_input_shape=True).table(sort_by="self_cpu_time_total", row_limit=20))

    ref_out = run(reference, mels, args.batch)
    n = ref_out.shape[1]
    embedder = AisfxEmbedder()
    ref_emb = np.concatenate(embed_waves(embedder, list(ref_out), p.sample_rate))
    truth_emb = np.concatenate(embed_waves(embedder, list(truth[:, :n]), p.sample_rate))
    to_truth = np.mean([mr_stft_distance(o, t[:n]) for o, t in zip(ref_out, truth)])
    print(f"unchanged fp32 vocoder vs the recordings: MR-STFT {to_truth:.4f}, aisfx FAD {fad(truth_emb, ref_emb):.4f}")

    one, many = mels[:1], mels[: args.batch]
    for name, gen in {"unchanged fp32": reference, **variants}.items():
        out = ref_out if gen is reference else run(gen, mels, args.batch)
        dist = np.mean([mr_stft_distance(o, r) for o, r in zip(out, ref_out)])
        emb = ref_emb if gen is reference else np.concatenate(embed_waves(embedder, list(out), p.sample_rate))
        err_db = 10 * np.log10(np.mean((out - ref_out) ** 2) / np.mean(ref_out ** 2) + 1e-30)
        line = (f"{name:20s} vs unchanged: MR-STFT {dist:.4f}, aisfx FAD {fad(ref_emb, emb):.5f}, wave error "
                f"{err_db:.1f} dB")
        if args.repeats:
            t1 = seconds(gen, one, args.repeats)
            tb = seconds(gen, many, args.repeats) / len(many)
            line += (f" | {t1:.2f} s per 3 s clip at batch 1, {tb:.2f} s per clip at batch {len(many)} "
                     f"(load average {os.getloadavg()[0]:.1f})")
        print(line, flush=True)


if __name__ == "__main__":
    main()
