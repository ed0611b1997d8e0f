"""Real-time factor of `Pipeline.generate` on this machine, vocoder included, with its breakdown.

By default the embedded default model (`src/action2sound/default_model`: small preset, universal22k profile,
universal HiFi-GAN, its retrieval index) at its default settings (`GenerateOptions()`), loaded the way
`action2sound generate` loads it (`load_pipeline`). The video is `--video` (e.g. a real clip; see the README's
"Speed" for the one used there), else a 10 s synthetic test video written here. Each run is the full path:
read frames, video tower, audio condition, sampling with guidance, VAE decode, vocoder, assembly. Loading
is not counted; the first run warms up and is reported apart; the fastest timed run is reported with its
breakdown (the machine may be shared: the load average is printed beside it).

`--compare-steps 10 15` also generates with those sampler step counts (same seed) and prints each output's
multi-resolution STFT distance to the default-steps output, beside the distance between two seeds at the
default steps (what resampling alone changes).

    .venv/bin/python benchmarks/bench_generate.py --video clip.mp4
    .venv/bin/python benchmarks/bench_generate.py --preset small          # random weights of a preset
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from bench_vocoder import mr_stft_distance

import action2sound
from action2sound import media
from action2sound.config import preset as get_preset
from action2sound.options import PRECISIONS, VOCODERS, GenerateOptions
from action2sound.pipeline import Pipeline, load_pipeline, resolve_device
from action2sound.weights import build_component

DEFAULT_MODEL = Path(action2sound.__file__).parent / "default_model"


def random_pipeline(name: str, device: str, seed: int) -> Pipeline:
    """A Pipeline of random-weight networks for a preset (its own vocoder: universal HiFi-GAN or a random one)."""
    from action2sound.models.vocoder import load_universal_hifigan

    p = get_preset(name)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        av, vae, ldm = (build_component(c, p) for c in ("av", "vae", "ldm"))
        gen = load_universal_hifigan() if p.vocoder.source == "universal" else build_component("vocoder", p)
    return Pipeline(p, av, vae, ldm, gen, resolve_device(device))


def test_video(path: Path, seconds: float = 10.0, fps: float = 15.0) -> Path:
    """A synthetic video: a bright square moving over noise, 128 px."""
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 60, size=(int(seconds * fps), 128, 128, 3), dtype=np.uint8)
    for i, f in enumerate(frames):
        x = int(10 + 80 * abs(np.sin(i / fps * 2)))
        f[40:72, x:x + 32] = 230
    media.write_video(path, frames, fps)
    return path


def generate(pipe: Pipeline, video: Path, opts: GenerateOptions) -> tuple[float, dict, np.ndarray, float]:
    """(wall seconds, the pipeline's own timings, the audio, CPU seconds of this process) of one call."""
    t0, c0 = time.perf_counter(), time.process_time()
    (result,) = pipe.generate([video], opts)
    if isinstance(result, Exception):
        raise result
    return time.perf_counter() - t0, result.metadata["timings"], result.audio, time.process_time() - c0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="model directory (default: the embedded one)")
    ap.add_argument("--preset", help="instead of --model: random weights of this preset")
    ap.add_argument("--video", type=Path, help="input video (default: a 10 s synthetic test video)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--runs", type=int, default=3, help="timed runs after the warm-up (default 3)")
    ap.add_argument("--steps", type=int, help="sampler steps (default: the model's)")
    ap.add_argument("--ambient", help="ambient condition (default: the default, retrieved; `none` with --preset)")
    ap.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    ap.add_argument("--precision", choices=PRECISIONS, default="auto")
    ap.add_argument("--sync-guidance", type=float, help="sync guidance weight (default: the model's; 1 saves a pass)")
    ap.add_argument("--compare-steps", type=int, nargs="*", default=[], help="also run these step counts")
    ap.add_argument("--vocoder", default="auto", choices=VOCODERS, help="load_pipeline's vocoder (default auto)")
    ap.add_argument("--compare-vocoder", choices=VOCODERS,
                    help="also run with this vocoder: its time and the MR-STFT distance of its output to the first's")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    if args.preset:
        pipe = random_pipeline(args.preset, args.device, seed=0)
        what = f"{args.preset} preset, random weights"
    else:
        pipe = load_pipeline(args.model, device=args.device, vocoder=args.vocoder)
        what = f"model {args.model.name}"
    ambient = args.ambient or ("none" if args.preset else GenerateOptions().ambient)
    opts = GenerateOptions(ambient=ambient, steps=args.steps, precision=args.precision,
                           sync_guidance=args.sync_guidance)
    resolved = opts.resolved(pipe.preset)
    with tempfile.TemporaryDirectory() as tmp:
        video = args.video or test_video(Path(tmp) / "test_video.mp4")
        duration = media.video_duration(video)
        warm = generate(pipe, video, opts)[0]
        runs = [generate(pipe, video, opts) for _ in range(args.runs)]
        seconds, timings, audio, cpu = min(runs, key=lambda r: r[0])
        vocoder = type(pipe.vocoder).__name__ if pipe.vocoder is not None else "Griffin-Lim"
        print(f"{what}, {resolved.sampler} {resolved.steps} steps, guidance {resolved.video_guidance} (sync "
              f"{resolved.sync_guidance}), ambient "
              f"{ambient}, {args.precision}, vocoder {vocoder}, device {pipe.device}, "
              f"torch threads {torch.get_num_threads()}")
        print(f"video {video.name if args.video else 'synthetic test video'}: {duration:.2f} s -> "
              f"{seconds:.2f} s (fastest of {len(runs)}; all {', '.join(f'{r[0]:.2f}' for r in runs)}; warm-up "
              f"{warm:.2f} s), real-time factor {seconds / duration:.3f}; load average {os.getloadavg()[0]:.1f}")
        # On a shared machine the CPU seconds (all threads) say what the work costs, whoever else runs.
        print(f"  CPU time of that run {cpu:.2f} s (fewest of all runs: {min(r[3] for r in runs):.2f} s)")
        print("  " + ", ".join(f"{k} {v:.3f} s" for k, v in timings.items() if k != "total"))

        if args.compare_steps:
            other_seed = generate(pipe, video, dataclasses.replace(opts, seed=1))[2]
            n = min(audio.size, other_seed.size)
            print(f"  {resolved.steps} steps, seed 1 vs seed 0: MR-STFT {mr_stft_distance(other_seed[:n], audio[:n]):.4f}")
        if args.compare_vocoder:
            other = load_pipeline(args.model, device=args.device, vocoder=args.compare_vocoder)
            generate(other, video, opts)
            s, t, out, c = min((generate(other, video, opts) for _ in range(args.runs)), key=lambda r: r[0])
            n = min(audio.size, out.size)
            print(f"  vocoder {args.compare_vocoder}: {s:.2f} s (RTF {s / duration:.3f}, CPU {c:.2f} s; vocoder "
                  f"{t['vocode']:.3f} s), MR-STFT to the first output {mr_stft_distance(out[:n], audio[:n]):.4f}")
        for steps in args.compare_steps:
            s, t, out, _ = min((generate(pipe, video, dataclasses.replace(opts, steps=steps))
                                for _ in range(args.runs)), key=lambda r: r[0])
            n = min(audio.size, out.size)
            print(f"  {steps} steps: {s:.2f} s (RTF {s / duration:.3f}; sample {t['sample']:.3f} s), MR-STFT to "
                  f"the {resolved.steps}-step output {mr_stft_distance(out[:n], audio[:n]):.4f}")


if __name__ == "__main__":
    main()
