"""Ways to run the universal HiFi-GAN faster, against the unchanged vocoder, on real recordings.

Each recording of a folder (e.g. Debian's sonic-pi-samples: `apt-get download sonic-pi-samples`, `dpkg-deb -x`,
then `usr/share/sonic-pi/samples`) at least 3 s long gives one 3 s crop from its start, resampled to the
universal22k profile's 22,050 Hz. Its ground-truth mel goes through the universal HiFi-GAN unchanged
(`load_universal_hifigan()`, fp32: the reference) and through each variant:

- `channels-last`: the same fp32 network on a [B, frames, n_mels]-laid input, so every Conv1d computes in
  oneDNN's channels-last layout without reorders;
- `bf16`: everything under bfloat16 autocast (what `--precision bf16` does to the vocoder);
- `bf16-early`: `HifiGanRunner` with only the first two upsampling stages' convolutions in bf16, the input
  convolution, the residual stream and the late high-rate stages in fp32;
- `runner`: `models.vocoder.HifiGanRunner` in fp32, what the pipeline runs on a CPU with `--precision fp32`:
  every Conv1d as the same Conv2d over channels-last [B, C, 1, T] (no reorders around oneDNN's convolutions);
- `runner-mixed`: the same with the middle upsampling stages' convolutions in bf16 and the residual stream in
  fp32, what the pipeline runs by default (`--precision auto`) where the CPU has AMX;
- `fast`: not HiFi-GAN but the light distilled vocoder (`models.fast_vocoder`, `--vocoder fast`; `--fast` for
  other weights than the shipped ones). Distil it without the recordings measured here (`distil-vocoder
  --exclude`);
- `griffinlim`: not a network either: Griffin-Lim on the mel (`--vocoder griffinlim`), for scale.

For each it prints the multi-resolution STFT distance to the reference output (spectral convergence +
log-magnitude L1, mean of FFT sizes 512 / 1024 / 2048, hop a quarter; the HiFi-GAN / Parallel WaveGAN
definition), with the reference's own distance to the recordings for scale; the aisfx FAD
(`evaluation.embedders.AisfxEmbedder`, `evaluation.fad`) of its outputs against the reference outputs, with the
FAD of the recordings against the reference outputs for scale; and the CPU seconds (all threads) and wall
seconds per 3 s clip, the minimum of `--repeats`, with the load average (the machine may be shared: CPU
seconds say what the work costs whoever else runs). `--profile` first prints where the reference's time goes.

    .venv/bin/python benchmarks/bench_vocoder.py /tmp/sonic/usr/share/sonic-pi/samples --clips 20 --profile
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
from action2sound.mel_bridge import griffinlim, normalised_from_log
from action2sound.models.fast_vocoder import SHIPPED, load_fast_vocoder
from action2sound.models.vocoder import HifiGanRunner, cpu_has_amx, load_universal_hifigan, vocode

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


def variant(name: str, gen, fast=None) -> torch.Tensor:
    """log mel [B, n_mels, frames] -> wave [B, T] (fp32) through the named way of running `gen` (or `fast`)."""
    # The runner variants; bf16-early is the runner with the first two stages in bf16 instead of the middle ones.
    runner = {"runner": lambda: HifiGanRunner(gen, mixed=False),
              "runner-mixed": lambda: HifiGanRunner(gen, mixed=True),
              "bf16-early": lambda: HifiGanRunner(gen, mixed=True, bf16_stages=(0, 1))}.get(name, lambda: None)()

    def call(log_mel: torch.Tensor) -> torch.Tensor:
        if name == "fast":
            return vocode(fast, log_mel)
        if name == "griffinlim":  # what `--vocoder griffinlim` does for a universal22k model (64 iterations)
            mels = normalised_from_log(log_mel.numpy(), UNIVERSAL22K_AUDIO)
            waves = [griffinlim(m, UNIVERSAL22K_AUDIO) for m in mels]
            return torch.from_numpy(np.stack(waves)[:, : log_mel.shape[-1] * UNIVERSAL22K_AUDIO.hop])
        if name == "unchanged":
            return vocode(gen, log_mel)
        if name == "channels-last":
            return gen(log_mel.transpose(1, 2).contiguous())
        if name == "bf16":
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return vocode(gen, log_mel).float()
        if runner is not None:
            return vocode(runner, log_mel)
        raise ValueError(name)
    return call


def run(call, mels: torch.Tensor, batch: int) -> np.ndarray:
    """Waves [N, frames * hop] of log mels [N, n_mels, frames], `batch` clips per call."""
    with torch.inference_mode():
        return torch.cat([call(mels[i:i + batch]).float() for i in range(0, len(mels), batch)]).numpy()


def seconds(call, mels: torch.Tensor, repeats: int) -> tuple[float, float]:
    """(CPU seconds, wall seconds), each the minimum over `repeats` calls on `mels` (after a warm-up call)."""
    run(call, mels, len(mels))
    cpu, wall = [], []
    for _ in range(repeats):
        c0, t0 = time.process_time(), time.perf_counter()
        run(call, mels, len(mels))
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - t0)
    return min(cpu), min(wall)


VARIANTS = ("channels-last", "runner", "runner-mixed", "bf16", "bf16-early", "fast", "griffinlim")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder", type=Path, help="a folder of recordings (flac / wav / ogg / mp3)")
    ap.add_argument("--clips", type=int, default=20, help="recordings to use (default 20)")
    ap.add_argument("--batch", type=int, default=4, help="clips per vocoder call (default 4)")
    ap.add_argument("--repeats", type=int, default=3,
                    help="timed calls on one clip; the minimum is reported (default 3; 0: no timing)")
    ap.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    ap.add_argument("--profile", action="store_true",
                    help="first print where the unchanged vocoder's time goes on one clip (torch profiler, by op "
                         "and shape: each resblock conv is one line per stage and kernel)")
    ap.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    ap.add_argument("--fast", type=Path, help="the fast variant's weights (default: the shipped ones)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    p = UNIVERSAL22K_AUDIO

    names, truth = read_clips(args.folder, args.clips)
    mels = torch.from_numpy(np.stack([mel_to_vocoder_input(crop_frames(wave_to_mel(w, p), p), p) for w in truth]))
    gen = load_universal_hifigan()
    print(f"{len(names)} recordings from {args.folder.name}/ (3 s crops at {p.sample_rate} Hz), torch threads "
          f"{torch.get_num_threads()}, oneDNN bf16: {torch.ops.mkldnn._is_mkldnn_bf16_supported()}, AMX: {cpu_has_amx()}")
    reference = variant("unchanged", gen)
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
    print(f"unchanged (fp32) vs the recordings: MR-STFT {to_truth:.4f}, aisfx FAD {fad(truth_emb, ref_emb):.4f}")

    for name in ("unchanged", *args.variants):
        call = variant(name, gen, load_fast_vocoder(args.fast or SHIPPED) if name == "fast" else None)
        out = ref_out if name == "unchanged" else run(call, mels, args.batch)
        dist = np.mean([mr_stft_distance(o, r) for o, r in zip(out, ref_out)])
        emb = ref_emb if name == "unchanged" else np.concatenate(embed_waves(embedder, list(out), p.sample_rate))
        err_db = 10 * np.log10(np.mean((out - ref_out) ** 2) / np.mean(ref_out ** 2) + 1e-30)
        line = (f"{name:14s} vs unchanged: MR-STFT {dist:.4f}, aisfx FAD {fad(ref_emb, emb):.4f}, wave error "
                f"{err_db:.1f} dB")
        if args.repeats:
            cpu, wall = seconds(call, mels[:1], args.repeats)
            line += (f" | per 3 s clip: {cpu:.2f} CPU s, {wall:.2f} s wall "
                     f"(load average {os.getloadavg()[0]:.1f})")
        print(line, flush=True)


if __name__ == "__main__":
    main()
