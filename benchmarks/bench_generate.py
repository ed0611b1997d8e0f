"""Seconds to generate 3 s of audio, vocoder included, with a preset's networks (random weights) on this machine.

The networks are built from the preset with random weights (their cost does not depend on the values); the
vocoder is the preset's: the shipped universal HiFi-GAN for `small`. The input is a 3 s video written here;
the audio condition is a 3 s recording (`--ambient file`, the default) or the learned null (`none`). Each run
is the full `Pipeline.generate` path: read frames, video tower, condition, sampling with guidance, VAE
decode, vocoder. Model loading is not counted; the first run warms up and is reported apart.

    .venv/bin/python benchmarks/bench_generate.py                 # small preset, its default steps
    .venv/bin/python benchmarks/bench_generate.py --preset tiny --runs 5
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from action2sound import media
from action2sound.config import preset as get_preset
from action2sound.pipeline import GenerateOptions, Pipeline, resolve_device
from action2sound.weights import build_component


def build_pipeline(name: str, device: str, seed: int) -> Pipeline:
    """A Pipeline of random-weight networks for a preset (its own vocoder: universal HiFi-GAN or a random one)."""
    p = get_preset(name)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        av, vae, ldm = (build_component(c, p) for c in ("av", "vae", "ldm"))
        if p.vocoder.source == "universal":
            from action2sound.models.vocoder import load_universal_hifigan

            vocoder = load_universal_hifigan()
        else:
            vocoder = build_component("vocoder", p)
    return Pipeline(p, av, vae, ldm, vocoder, resolve_device(device))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="small")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--runs", type=int, default=3, help="timed runs after the warm-up (default 3)")
    ap.add_argument("--steps", type=int, help="sampler steps (default: the preset's)")
    ap.add_argument("--ambient", choices=["file", "none"], default="file")
    ap.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    pipe = build_pipeline(args.preset, args.device, seed=0)
    p = pipe.preset
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        video = Path(tmp) / "clip.mp4"
        frames = rng.integers(0, 255, size=(45, 128, 128, 3), dtype=np.uint8)  # 3 s at 15 fps
        media.write_video(video, frames, 15.0)
        ambient = "none"
        if args.ambient == "file":
            ambient = str(Path(tmp) / "ambient.wav")
            media.write_audio(ambient, 0.05 * rng.standard_normal(3 * 22050).astype(np.float32), 22050)
        opts = GenerateOptions(ambient=ambient, steps=args.steps, precision=args.precision)
        resolved = opts.resolved(p)

        def once() -> tuple[float, dict]:
            t0 = time.perf_counter()
            (result,) = pipe.generate([video], opts)
            if isinstance(result, Exception):
                raise result
            return time.perf_counter() - t0, result.metadata["timings"]

        warm, _ = once()
        runs = [once() for _ in range(args.runs)]
    seconds = [s for s, _ in runs]
    parts = {k: statistics.median(t[k] for _, t in runs) for k in runs[0][1] if k != "total"}
    print(f"preset {p.name}, {resolved.sampler} {resolved.steps} steps, guidance {resolved.video_guidance} "
          f"(ambient {args.ambient}), {args.precision}, device {pipe.device}, torch threads {torch.get_num_threads()}, "
          f"vocoder {'universal HiFi-GAN' if p.vocoder.source == 'universal' else 'trained HiFi-GAN (random)'}")
    print(f"3 s of audio: median {statistics.median(seconds):.2f} s (min {min(seconds):.2f}, max {max(seconds):.2f}) "
          f"over {len(seconds)} runs; warm-up run {warm:.2f} s")
    print("  " + ", ".join(f"{k} {v:.3f} s" for k, v in parts.items()))


if __name__ == "__main__":
    main()
