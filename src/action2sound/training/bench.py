"""Speed and memory of the latent diffusion model on the current device (numbers to print, not a test).

Training: samples/s of full AdamW steps (condition dropout, gradient clipping) on random latents and
conditions of the preset's shapes, and the peak memory. Sampling: milliseconds per clip of `sample_steps`
DPM-Solver++ steps with classifier-free guidance (two UNet passes per step, batched), at each batch size.
On CUDA: bf16 autocast, SDPA attention (diffusers' AttnProcessor2_0, set by `models.ldm`), TF32 matmuls,
fused AdamW; with `compile`, the UNet is compiled for training (default mode), for batch-1 sampling with
CUDA graphs ("reduce-overhead": at batch 1 the step is launch-bound) and for larger batches in default mode.
The first runs of each phase pay for warm-up / compilation and are not timed. `progress` gets one line per
finished measurement, so a run cut short by a time limit still shows what it measured.
"""

from __future__ import annotations

import math
import resource
import sys
import time
from collections.abc import Callable
from typing import Any

import torch

from ..config import Preset
from ..config import preset as get_preset


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    # CPU: the process's peak resident set (kilobytes on Linux, bytes on macOS).
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if sys.platform == "darwin" else rss * 1024


def _compiled(module: torch.nn.Module, mode: str | None) -> torch.nn.Module:
    return torch.compile(module, mode=mode) if mode is not None else module


def bench_ldm(preset: str | Preset = "tiny", device: str | None = None, train_batch: int | None = None,
              train_steps: int = 10, warmup: int = 2, sample_batches: tuple[int, ...] = (1, 50),
              sample_steps: int = 25, compile: bool = False, seed: int = 0,
              progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Measure the preset's ldm -> {"device", "preset", "params_m", "train": {...}, "sample": {batch: {...}}}."""
    from ..models.ldm import LatentDiffusion
    from ..sampling import guided, sample

    say = progress or (lambda line: None)
    p = get_preset(preset) if isinstance(preset, str) else preset
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    cuda = dev.type == "cuda"
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    if compile:
        warmup = max(warmup, 3)  # the first calls compile, and may recompile once
    g = torch.Generator(device=dev).manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LatentDiffusion.from_preset(p).to(dev)
    unet = model.unet
    params_m = sum(x.numel() for x in model.parameters()) / 1e6
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if cuda else torch.autocast("cpu", enabled=False)
    latent, (frames, dim) = tuple(p.latent_shape), (p.video.num_frames, p.av.video_hidden)
    b = train_batch or min(p.train.ldm.batch_size, 90)
    name = torch.cuda.get_device_name(dev) if cuda else f"cpu ({torch.get_num_threads()} threads)"
    precision = "bf16-autocast" if cuda else "fp32"
    say(f"ldm {p.name}: {params_m:.1f} M parameters on {name}, {precision}{', compiled' if compile else ''}")

    # ---- training
    model.unet = _compiled(unet, "default" if compile else None)  # LatentDiffusion.forward calls it as before
    # Fused AdamW: one kernel for every parameter's update instead of a few per tensor (CUDA only).
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=cuda)
    x0 = torch.randn((b, *latent), generator=g, device=dev)
    cond = torch.randn((b, *latent), generator=g, device=dev)
    video = torch.randn((b, frames, dim), generator=g, device=dev)
    missing = torch.zeros(b, dtype=torch.bool, device=dev)
    model.train()
    if cuda:
        torch.cuda.reset_peak_memory_stats(dev)
    times = []
    for k in range(warmup + train_steps):
        _sync(dev)
        t0 = time.perf_counter()
        with amp:
            loss = model.loss(x0, video, cond, g, audio_missing=missing)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        _sync(dev)
        if k >= warmup:
            times.append(time.perf_counter() - t0)
    step_s = sum(times) / len(times)
    train = {"batch": b, "step_ms": 1e3 * step_s, "samples_per_s": b / step_s,
             "peak_memory_gb": _peak_bytes(dev) / 2**30, "loss": float(loss)}
    say(f"  train: batch {b}: {train['step_ms']:.1f} ms/step, {train['samples_per_s']:.1f} samples/s, "
        f"peak memory {train['peak_memory_gb']:.2f} GB")
    del opt
    model.zero_grad(set_to_none=True)

    # ---- sampling (DPM-Solver++ with classifier-free guidance on the video condition)
    model.eval()
    sampling = {}
    for sb in sample_batches:
        mode = ("reduce-overhead" if cuda and sb == 1 else "default") if compile else None
        model.unet = _compiled(unet, mode)
        v = torch.randn((sb, frames, dim), generator=g, device=dev)
        a = torch.randn((sb, *latent), generator=g, device=dev)
        with torch.no_grad(), amp:
            full, null_video, _ = model.guidance_contexts(v, a)
            denoiser = guided(model, full, null_video, None, w_video=p.diffusion.guidance_scale)
            if cuda:
                torch.cuda.reset_peak_memory_stats(dev)
            runs = []
            for _ in range((2 if compile else 1) + (3 if sb == 1 else 2)):
                _sync(dev)
                t0 = time.perf_counter()
                sample(denoiser, (sb, *latent), "dpm", sample_steps, generator=g, diffusion=p.diffusion, device=dev)
                _sync(dev)
                runs.append(time.perf_counter() - t0)
        best = min(runs[(2 if compile else 1):])  # the first runs pay for warm-up / compilation
        sampling[sb] = {"total_ms": 1e3 * best, "ms_per_clip": 1e3 * best / sb,
                        "peak_memory_gb": _peak_bytes(dev) / 2**30}
        say(f"  sample {sample_steps} steps + CFG, batch {sb}: {1e3 * best:.1f} ms, {1e3 * best / sb:.2f} ms per "
            f"clip, peak memory {sampling[sb]['peak_memory_gb']:.2f} GB")
    model.unet = unet
    return {"device": name, "preset": p.name, "params_m": params_m, "compile": compile, "precision": precision,
            "latent": list(latent), "context": list(p.context_shape), "train": train, "sample": sampling,
            "sample_steps": sample_steps}


def check_report(r: dict[str, Any]) -> list[str]:
    """The numbers of a report that are not positive and finite (empty when all are)."""
    numbers = {f"train.{k}": r["train"][k] for k in ("step_ms", "samples_per_s", "peak_memory_gb")}
    for b, s in r["sample"].items():
        numbers.update({f"sample.{b}.{k}": s[k] for k in ("total_ms", "ms_per_clip", "peak_memory_gb")})
    return [k for k, v in numbers.items() if not (math.isfinite(v) and v > 0)]


def format_report(r: dict[str, Any]) -> str:
    """A few human-readable lines of a bench_ldm report."""
    t = r["train"]
    lines = [
        f"ldm {r['preset']} ({r['params_m']:.2f} M parameters, latent {r['latent']}, context {r['context']}) on "
        f"{r['device']}, {r['precision']}{', compiled' if r['compile'] else ''}",
        f"  train: batch {t['batch']}: {t['step_ms']:.1f} ms/step, {t['samples_per_s']:.1f} samples/s, "
        f"peak memory {t['peak_memory_gb']:.2f} GB",
    ]
    for b, s in r["sample"].items():
        lines.append(f"  sample {r['sample_steps']} steps + CFG, batch {b}: {s['total_ms']:.1f} ms, "
                     f"{s['ms_per_clip']:.2f} ms per clip, peak memory {s['peak_memory_gb']:.2f} GB")
    return "\n".join(lines)
