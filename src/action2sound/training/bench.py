"""Speed and memory of the latent diffusion model on the current device (numbers to print, not a test).

Training: samples/s of full AdamW steps (condition dropout, gradient clipping) on random latents and
conditions of the preset's shapes, and the peak memory. Sampling: milliseconds per clip of `sample_steps`
DPM-Solver++ steps with classifier-free guidance (two UNet passes per step, batched), at each batch size.
On CUDA: bf16 autocast, SDPA attention (diffusers' AttnProcessor2_0, set by `models.ldm`), TF32 matmuls,
fused AdamW; with `compile`, the UNet is compiled for training (default mode), for batch-1 sampling with
CUDA graphs ("reduce-overhead": at batch 1 the step is launch-bound) and for larger batches in default mode.
The first runs of each phase pay for warm-up / compilation and are not timed. `progress` gets one line per
finished measurement, so a run cut short by a time limit still shows what it measured.

`bench_variants` measures named alternatives side by side in one process (VARIANTS: cuDNN autotuning,
channels-last, the whole training step or the whole 25-step sampling loop as one CUDA graph replay, compiled
UNets inside those graphs) and kernel profiles; `benchmarks/gpu.sh` runs them on the paper preset.
"""

from __future__ import annotations

import copy
import math
import resource
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
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


@dataclass
class _Setup:
    """What every measurement of one preset's ldm starts from: the model on the device and its shapes."""

    p: Preset
    dev: torch.device
    cuda: bool
    g: torch.Generator
    model: torch.nn.Module
    params_m: float
    latent: tuple[int, ...]
    frames: int
    dim: int
    b: int  # training batch
    name: str  # the device, in words


def _setup(preset: str | Preset, device: str | None, seed: int, train_batch: int | None) -> _Setup:
    """The preset's ldm on the device (TF32 on for CUDA), seeded without touching the global generator."""
    from ..models.ldm import LatentDiffusion

    p = get_preset(preset) if isinstance(preset, str) else preset
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    cuda = dev.type == "cuda"
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    g = torch.Generator(device=dev).manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LatentDiffusion.from_preset(p).to(dev)
    name = torch.cuda.get_device_name(dev) if cuda else f"cpu ({torch.get_num_threads()} threads)"
    return _Setup(p, dev, cuda, g, model, sum(x.numel() for x in model.parameters()) / 1e6,
                  tuple(p.latent_shape), p.video.num_frames, p.av.video_hidden,
                  train_batch or min(p.train.ldm.batch_size, 90), name)


def bench_ldm(preset: str | Preset = "tiny", device: str | None = None, train_batch: int | None = None,
              train_steps: int = 10, warmup: int = 2, sample_batches: tuple[int, ...] = (1, 50),
              sample_steps: int = 25, compile: bool = False, seed: int = 0,
              progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Measure the preset's ldm -> {"device", "preset", "params_m", "train": {...}, "sample": {batch: {...}}}."""
    from ..sampling import guided, sample

    say = progress or (lambda line: None)
    if compile:
        warmup = max(warmup, 3)  # the first calls compile, and may recompile once
    su = _setup(preset, device, seed, train_batch)
    p, dev, cuda, g, model, params_m, latent, frames, dim, b, name = (
        su.p, su.dev, su.cuda, su.g, su.model, su.params_m, su.latent, su.frames, su.dim, su.b, su.name)
    unet = model.unet
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if cuda else torch.autocast("cpu", enabled=False)
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
             "peak_memory_gb": _peak_bytes(dev) / 2**30, "loss": float(loss.detach())}
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


# ====================================================================================== variants side by side
# Each variant is one way to run the same training step or the same 25-step guided sampling, measured in one
# process on one model, one printed line as soon as it is measured; a variant that fails prints one line and
# the next one runs. Training variants use fp32 weights and bf16 autocast on CUDA; the sampling ones, on CUDA,
# a bf16 copy of the model (no autocast, whose weight-cast cache a CUDA graph cannot hold).


@dataclass(frozen=True)
class TrainVariant:
    """One way to run a training step: memory format, cuDNN autotuning, torch.compile mode, CUDA graph."""

    channels_last: bool = False  # UNet weights and the noisy latent in NHWC, the layout cuDNN's convolutions use
    cudnn_benchmark: bool = False  # cuDNN times its algorithms per shape once instead of guessing
    compile_mode: str | None = None  # torch.compile mode of the UNet; None: eager
    graph: bool = False  # the whole step (loss, backward, clipping, fused AdamW) as one CUDA graph replay


@dataclass(frozen=True)
class SampleVariant:
    """One way to run guided sampling: the loop, a CUDA graph of the whole loop, memory format, compilation."""

    loop: str = "planned"  # "diffusers": sampling.sample; "planned": static_sampling.sample_planned
    graph: bool = False  # all steps (UNet, guidance, solver update) as one CUDA graph replay
    channels_last: bool = False
    compile: bool = False  # torch.compile(dynamic=False, default mode: no CUDA graphs of its own) of the UNet


TRAIN_VARIANTS: dict[str, TrainVariant] = {
    "train": TrainVariant(),  # bench_ldm's eager step, for comparison in the same process
    "train-cudnn": TrainVariant(cudnn_benchmark=True),
    "train-cl": TrainVariant(channels_last=True, cudnn_benchmark=True),
    "train-graph": TrainVariant(cudnn_benchmark=True, graph=True),
    "train-cl-graph": TrainVariant(channels_last=True, cudnn_benchmark=True, graph=True),
    "train-compiled": TrainVariant(cudnn_benchmark=True, compile_mode="default"),
    "train-compiled-graph": TrainVariant(cudnn_benchmark=True, compile_mode="default", graph=True),
    "train-compiled-ro": TrainVariant(cudnn_benchmark=True, compile_mode="reduce-overhead"),
    "train-compiled-ma": TrainVariant(cudnn_benchmark=True, compile_mode="max-autotune-no-cudagraphs"),
}
SAMPLE_VARIANTS: dict[str, SampleVariant] = {
    "sample-bf16": SampleVariant(loop="diffusers"),  # bench_ldm's loop, bf16 weights: the reference of the others
    "sample-planned": SampleVariant(),
    "sample-graph": SampleVariant(graph=True),
    "sample-graph-cl": SampleVariant(graph=True, channels_last=True),
    "sample-compiled-graph": SampleVariant(graph=True, compile=True),
}
# Kernel profiles of the eager step (bench_ldm's) and of one guided denoiser call at each sampling batch: GPU
# busy time against wall time says whether a phase is launch-bound, the top kernels say where the time goes.
PROFILES = ("profile-train", "profile-sample")
VARIANTS = (*TRAIN_VARIANTS, *SAMPLE_VARIANTS, *PROFILES)


def _profile(fn: Callable[[], Any], dev: torch.device, top: int) -> dict[str, Any]:
    """Wall ms of fn (unprofiled), then busy ms, kernel count and the top kernels (CPU: ops) of a profiled call."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    _sync(dev)
    t0 = time.perf_counter()
    fn()
    _sync(dev)
    wall = time.perf_counter() - t0
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev.type == "cuda" else [])
    with profile(activities=acts) as prof:
        fn()
        _sync(dev)
    per: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
    kernels = [e for e in prof.events() if e.device_type == DeviceType.CUDA]
    if kernels:
        for e in kernels:
            per[e.name][0] += e.time_range.elapsed_us()
            per[e.name][1] += 1
    else:  # CPU: the ops' own time
        for e in prof.key_averages():
            per[e.key] = [e.self_cpu_time_total, e.count]
    busy_us = sum(v[0] for v in per.values())
    rows = sorted(per.items(), key=lambda kv: -kv[1][0])[:top]
    return {"wall_ms": 1e3 * wall, "busy_ms": busy_us / 1e3, "kernels": int(sum(v[1] for v in per.values())),
            "unit": "kernels" if kernels else "cpu ops",
            "top": [{"name": k, "ms": v[0] / 1e3, "count": int(v[1])} for k, v in rows]}


def _say_profile(say: Callable[[str], None], label: str, prof: dict[str, Any]) -> None:
    what = "GPU busy" if prof["unit"] == "kernels" else "CPU op time"
    say(f"  {label}: {prof['wall_ms']:.1f} ms wall (unprofiled), {what} {prof['busy_ms']:.1f} ms in "
        f"{prof['kernels']} {prof['unit']}; top:")
    for row in prof["top"]:
        say(f"      {row['ms']:8.2f} ms {row['count']:5d}x  {row['name'][:110]}")


def _fail(say: Callable[[str], None], label: str, e: BaseException) -> dict[str, str]:
    msg = (str(e).strip().splitlines() or [""])[0][:300]
    say(f"  {label}: FAILED {type(e).__name__}: {msg}")
    return {"error": f"{type(e).__name__}: {msg}"}


def _cleanup(dev: torch.device) -> None:
    import gc

    gc.collect()
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
        torch.cuda.empty_cache()


def bench_variants(preset: str | Preset = "tiny", variants: tuple[str, ...] = ("train", "sample-graph"),
                   device: str | None = None, train_batch: int | None = None, train_steps: int = 10,
                   warmup: int = 3, sample_batches: tuple[int, ...] = (1, 50), sample_steps: int = 25,
                   seed: int = 0, top: int = 8, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Measure the named VARIANTS on one ldm -> {"device", "preset", ..., "train": {name: {...}},
    "sample": {name: {batch: {...}}}, "profile": {...}}; a failed variant's entry is {"error": "..."}.

    The variants run in the given order, grouped by phase (training with profile-train, sampling with
    profile-sample), the phase of the first named variant first. Sampling outputs are compared with
    sampling.sample's (diffusers' DPM-Solver++) on the same bf16 model and noise:
    `max_abs_diff` against `ref_max_abs`, the reference's largest entry.
    """
    from ..sampling import guided, sample
    from ..static_sampling import GraphedLoop, dpm_plan, sample_planned

    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown variants {unknown}; choose from {list(VARIANTS)}")
    say = progress or (lambda line: None)
    cudnn_before = torch.backends.cudnn.benchmark
    su = _setup(preset, device, seed, train_batch)
    p, dev, cuda, g, model, params_m, latent, frames, dim, b, name = (
        su.p, su.dev, su.cuda, su.g, su.model, su.params_m, su.latent, su.frames, su.dim, su.b, su.name)
    unet = model.unet
    say(f"ldm {p.name}: {params_m:.1f} M parameters on {name}, variants {' '.join(variants)}")
    report: dict[str, Any] = {"device": name, "preset": p.name, "params_m": params_m, "latent": list(latent),
                              "context": list(p.context_shape), "sample_steps": sample_steps, "train_batch": b,
                              "train": {}, "sample": {}, "profile": {}}
    compiled: dict[tuple[int, str | None, bool], torch.nn.Module] = {}  # one torch.compile per module and mode

    def compiled_unet(module: torch.nn.Module, mode: str | None, static: bool = False) -> torch.nn.Module:
        key = (id(module), mode, static)
        if key not in compiled:
            compiled[key] = torch.compile(module, mode=mode, dynamic=False if static else None)
        return compiled[key]

    def train_phase() -> None:
        """Training: fp32 weights, bf16 autocast on CUDA."""
        x0 = torch.randn((b, *latent), generator=g, device=dev)
        cond = torch.randn((b, *latent), generator=g, device=dev)
        video = torch.randn((b, frames, dim), generator=g, device=dev)
        missing = torch.zeros(b, dtype=torch.bool, device=dev)
        model.train()
        for vname in [v for v in variants if v in TRAIN_VARIANTS or v == "profile-train"]:
            v = TRAIN_VARIANTS.get(vname, TrainVariant())
            graph = v.graph and cuda
            try:
                torch.backends.cudnn.benchmark = v.cudnn_benchmark
                fmt = torch.channels_last if v.channels_last else torch.contiguous_format
                unet.to(memory_format=fmt)
                x0_v = x0.contiguous(memory_format=fmt)
                model.unet = compiled_unet(unet, v.compile_mode) if v.compile_mode else unet
                # A CUDA graph holds no autocast weight cache and replays the default generator's draws (a side
                # generator would repeat its numbers); a compiled UNet casts inside its own kernels anyway.
                amp = (torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=not (graph or v.compile_mode))
                       if cuda else torch.autocast("cpu", enabled=False))
                gen = None if graph else g
                opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=cuda, capturable=graph)

                def step() -> torch.Tensor:
                    with amp:
                        loss = model.loss(x0_v, video, cond, gen, audio_missing=missing)
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                    opt.step()
                    return loss

                def eager_step() -> torch.Tensor:
                    if v.compile_mode == "reduce-overhead":
                        # A new iteration: the compiled graphs may overwrite the previous step's outputs.
                        torch.compiler.cudagraph_mark_step_begin()
                    opt.zero_grad(set_to_none=True)
                    return step()

                if cuda:
                    torch.cuda.reset_peak_memory_stats(dev)
                if vname == "profile-train":
                    for _ in range(2):
                        eager_step()
                    prof = _profile(eager_step, dev, top)
                    report["profile"][vname] = {"batch": b, **prof}
                    _say_profile(say, f"{vname}: batch {b}", prof)
                    continue
                if graph:
                    side = torch.cuda.Stream(device=dev)
                    side.wait_stream(torch.cuda.current_stream(dev))
                    with torch.cuda.stream(side):
                        for _ in range(warmup):
                            eager_step()
                    torch.cuda.current_stream(dev).wait_stream(side)
                    opt.zero_grad(set_to_none=True)  # the captured backward allocates the grads in the graph's pool
                    cuda_graph = torch.cuda.CUDAGraph()
                    with torch.cuda.graph(cuda_graph):
                        static_loss = step()
                    run = cuda_graph.replay
                else:
                    for _ in range(warmup):
                        eager_step()
                    run = eager_step
                _sync(dev)
                t0 = time.perf_counter()
                for _ in range(train_steps):
                    out = run()
                _sync(dev)
                step_s = (time.perf_counter() - t0) / train_steps
                loss = float((static_loss if graph else out).detach())
                res = {"step_ms": 1e3 * step_s, "samples_per_s": b / step_s,
                       "peak_memory_gb": _peak_bytes(dev) / 2**30, "loss": loss}
                report["train"][vname] = res
                extra = " (no CUDA graph on cpu)" if v.graph and not cuda else ""
                say(f"  {vname}: batch {b}: {res['step_ms']:.1f} ms/step, {res['samples_per_s']:.1f} samples/s, "
                    f"peak memory {res['peak_memory_gb']:.2f} GB, loss {loss:.4f}{extra}")
            except Exception as e:  # noqa: BLE001 - one line, and the next variant runs
                report["train" if vname in TRAIN_VARIANTS else "profile"][vname] = _fail(say, vname, e)
            finally:
                opt = step = eager_step = run = cuda_graph = static_loss = out = None  # noqa: F841 - frees the graph
                model.unet = unet
                model.zero_grad(set_to_none=True)
                unet.to(memory_format=torch.contiguous_format)
                _cleanup(dev)
        compiled.clear()

    def sample_phase() -> None:
        """Sampling: DPM-Solver++ with classifier-free guidance on the video condition."""
        sample_names = [v for v in variants if v in SAMPLE_VARIANTS or v == "profile-sample"]
        wdtype = torch.bfloat16 if cuda else torch.float32
        plan = dpm_plan(p.diffusion, sample_steps)
        inputs = {}
        model.eval()
        with torch.no_grad():
            for sb in sample_batches:
                v_in = torch.randn((sb, frames, dim), generator=g, device=dev)
                a_in = torch.randn((sb, *latent), generator=g, device=dev)
                amp = torch.autocast("cuda", dtype=torch.bfloat16) if cuda else torch.autocast("cpu", enabled=False)
                with amp:
                    full, null_video, _ = model.guidance_contexts(v_in, a_in)
                noise = torch.randn((sb, *latent), generator=g, device=dev)
                inputs[sb] = (full.to(wdtype), null_video.to(wdtype), noise)
        # On CUDA a bf16 copy (no autocast, whose weight-cast cache a CUDA graph cannot hold); the training
        # phase keeps its fp32 weights, whichever runs first.
        smodel = copy.deepcopy(model).to(wdtype).eval() if wdtype != torch.float32 else model.eval()
        sunet = smodel.unet
        refs: dict[int, torch.Tensor] = {}

        def denoiser_for(sb: int, cl: bool):
            full, null_video, _ = inputs[sb]

            def model_fn(x: torch.Tensor, t: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
                x = x.to(wdtype)
                return smodel(x.contiguous(memory_format=torch.channels_last) if cl else x, t, ctx).float()

            return guided(model_fn, full, null_video, None, w_video=p.diffusion.guidance_scale)

        def diffusers_loop(sb: int, cl: bool = False):
            den = denoiser_for(sb, cl)
            return lambda n: sample(den, tuple(n.shape), "dpm", sample_steps, diffusion=p.diffusion, noise=n,
                                    device=dev)

        with torch.no_grad():
            for vname in sample_names:
                v = SAMPLE_VARIANTS.get(vname, SampleVariant(loop="diffusers"))
                for sb in sample_batches:
                    label = f"{vname}, batch {sb}"
                    try:
                        torch.backends.cudnn.benchmark = cuda
                        noise = inputs[sb][2]
                        if vname == "profile-sample":
                            den = denoiser_for(sb, False)
                            x_in = noise.float()
                            t_in = torch.full((sb,), plan.timesteps[0], device=dev, dtype=torch.long)
                            den(x_in, t_in)
                            prof = _profile(lambda: den(x_in, t_in), dev, top)
                            report["profile"].setdefault(vname, {})[sb] = prof
                            _say_profile(say, f"{vname}: one guided denoiser call, batch {sb}", prof)
                            continue
                        if sb not in refs:  # diffusers' loop, eager, NCHW: what the others must reproduce
                            refs[sb] = diffusers_loop(sb)(noise).clone()
                        sunet.to(memory_format=torch.channels_last if v.channels_last else torch.contiguous_format)
                        smodel.unet = compiled_unet(sunet, None, static=True) if v.compile else sunet
                        if v.loop == "diffusers":
                            fn = diffusers_loop(sb, v.channels_last)
                        else:
                            den = denoiser_for(sb, v.channels_last)
                            fn = (lambda d: lambda n: sample_planned(d, n, plan))(den)
                        if cuda:
                            torch.cuda.reset_peak_memory_stats(dev)
                        graph = v.graph and cuda
                        if graph:
                            runner = GraphedLoop(fn, noise, warmup=3 if v.compile else 2)
                        else:
                            runner = fn
                            for _ in range(3 if v.compile else 1):
                                runner(noise)
                        runs = []
                        for _ in range(5 if sb == 1 else 3):
                            _sync(dev)
                            t0 = time.perf_counter()
                            out = runner(noise)
                            _sync(dev)
                            runs.append(time.perf_counter() - t0)
                        best = min(runs)
                        ref = refs[sb]
                        res = {"total_ms": 1e3 * best, "ms_per_clip": 1e3 * best / sb,
                               "peak_memory_gb": _peak_bytes(dev) / 2**30,
                               "max_abs_diff": float((out.float() - ref).abs().max()),
                               "ref_max_abs": float(ref.abs().max())}
                        report["sample"].setdefault(vname, {})[sb] = res
                        extra = " (no CUDA graph on cpu)" if v.graph and not cuda else ""
                        say(f"  {label}: {res['total_ms']:.1f} ms, {res['ms_per_clip']:.2f} ms per clip, peak memory "
                            f"{res['peak_memory_gb']:.2f} GB, max |diff| to sample() {res['max_abs_diff']:.2e} "
                            f"(of {res['ref_max_abs']:.2f}){extra}")
                    except Exception as e:  # noqa: BLE001 - one line, and the next variant runs
                        where = "profile" if vname == "profile-sample" else "sample"
                        report[where].setdefault(vname, {})[sb] = _fail(say, label, e)
                    finally:
                        runner = fn = den = out = None  # noqa: F841 - frees the graph and its pool
                        smodel.unet = sunet
                        sunet.to(memory_format=torch.contiguous_format)
                        _cleanup(dev)
    # The phases in the order of their first variant: a CUDA graph that fails to capture may leave the device
    # unusable for what follows, so what matters most goes first.
    phases = {v: (train_phase if v in TRAIN_VARIANTS or v == "profile-train" else sample_phase) for v in variants}
    for phase in dict.fromkeys(phases.values()):
        phase()
    torch.backends.cudnn.benchmark = cudnn_before
    return report


def check_variants(r: dict[str, Any]) -> list[str]:
    """The failed variants and the numbers of a bench_variants report that are not positive and finite."""
    bad = []
    for vname, res in r["train"].items():
        if "error" in res:
            bad.append(f"train.{vname}")
            continue
        bad += [f"train.{vname}.{k}" for k in ("step_ms", "samples_per_s", "peak_memory_gb")
                if not (math.isfinite(res[k]) and res[k] > 0)]
    for vname, per in r["sample"].items():
        for sb, res in per.items():
            if "error" in res:
                bad.append(f"sample.{vname}.{sb}")
                continue
            bad += [f"sample.{vname}.{sb}.{k}" for k in ("total_ms", "ms_per_clip", "peak_memory_gb")
                    if not (math.isfinite(res[k]) and res[k] > 0)]
            if not math.isfinite(res["max_abs_diff"]):
                bad.append(f"sample.{vname}.{sb}.max_abs_diff")
    for vname, res in r["profile"].items():
        for key, prof in ([(None, res)] if "wall_ms" in res or "error" in res else res.items()):
            if "error" in prof:
                bad.append(f"profile.{vname}" + (f".{key}" if key is not None else ""))
    return bad


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
