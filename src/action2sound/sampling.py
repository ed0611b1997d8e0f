"""Samplers are functions of a denoiser; classifier-free guidance is a small closure around a model.

A *denoiser* maps (x_t [B, ...], t [B]) to the network's prediction (epsilon or v, as the schedule's
`prediction_type` says). The update rules are diffusers' schedulers' `step` functions; this file only wires
them to a denoiser, so a sampler never sees a network, a context or a guidance weight.

Guidance (Ho & Salimans 2022, "Classifier-Free Diffusion Guidance", arXiv 2207.12598, eq. 6, written with
the LDM / Stable Diffusion weight w = 1 + w_Ho):

    out = out(x, t | null) + w * (out(x, t | cond) - out(x, t | null))      w = 1: no guidance

For two conditions (video v, audio a) each guided against its own learned null, keeping the other one:

    out = out(v, a) + (w_v - 1) * (out(v, a) - out(null_v, a)) + (w_a - 1) * (out(v, a) - out(v, null_a))

a sum of one guidance direction per condition, as composable diffusion sums them (Liu et al. 2022,
"Compositional Visual Generation with Composable Diffusion Models", arXiv 2206.01714); w_a = 1 gives plain
guidance on video alone with the audio condition kept, the paper's setting. The weights of each combination
sum to one, so it is the same whether the network predicts epsilon or v (they differ by a term linear in x_t).
"""

from __future__ import annotations

import warnings
from typing import Callable

import torch
from diffusers import DDPMScheduler, DPMSolverMultistepScheduler

from .config import DiffusionConfig

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
ModelFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]  # (x, t, context) -> prediction

SCHEDULERS = ("dpm", "ddim")


def schedule_kwargs(diffusion: DiffusionConfig) -> dict:
    """The noise schedule and objective as diffusers scheduler arguments."""
    return dict(
        num_train_timesteps=diffusion.num_train_timesteps, beta_start=diffusion.beta_start,
        beta_end=diffusion.beta_end, beta_schedule=diffusion.beta_schedule,
        prediction_type=diffusion.prediction_type,
    )


def alphas_cumprod(diffusion: DiffusionConfig) -> torch.Tensor:
    """abar_t for t = 0 .. T-1 [T] float32 (x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps)."""
    return DDPMScheduler(**schedule_kwargs(diffusion)).alphas_cumprod.float()


def make_scheduler(diffusion: DiffusionConfig, kind: str = "dpm") -> DPMSolverMultistepScheduler:
    """A fresh diffusers scheduler: "dpm" = DPM-Solver++(2M), "ddim" = DDIM; both start at t = T-1 and end at x_0."""
    if kind not in SCHEDULERS:
        raise ValueError(f"unknown sampler {kind!r}; choose one of {SCHEDULERS}")
    # DDIM (eta = 0) is exactly first-order DPM-Solver(++) (Lu et al. 2022, arXiv 2206.00927), so it runs on the
    # same scheduler with order 1. diffusers' DDIMScheduler would step to t - T // steps, which for step counts
    # not dividing T (e.g. 7) ends at t = 0 instead of x_0 and lands one noise level off the next step.
    # "trailing" spacing starts sampling at the last training step (Lin et al. 2024, arXiv 2305.08891).
    return DPMSolverMultistepScheduler(
        **schedule_kwargs(diffusion), algorithm_type="dpmsolver++", solver_order=2 if kind == "dpm" else 1,
        timestep_spacing="trailing", lower_order_final=True, final_sigmas_type="zero",
    )


@torch.no_grad()
def sample(
    denoiser: Denoiser, shape: tuple[int, ...], scheduler: str = "dpm", steps: int = 25,
    generator: torch.Generator | None = None, diffusion: DiffusionConfig | None = None,
    noise: torch.Tensor | None = None, device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Integrate from noise [*shape] at t = T-1 down to x_0 [*shape] in `steps` denoiser calls.

    `noise` (x_T) overrides drawing it from `generator`; both samplers are deterministic given x_T.
    """
    diffusion = diffusion or DiffusionConfig()
    if device is None:
        device = noise.device if noise is not None else (generator.device if generator is not None else "cpu")
    sched = make_scheduler(diffusion, scheduler)
    with warnings.catch_warnings():
        # diffusers calls np.array on a torch tensor here; numpy 2 warns about its `copy` argument, harmlessly.
        warnings.filterwarnings("ignore", message="__array__ implementation", category=DeprecationWarning)
        sched.set_timesteps(steps, device=device)
    if noise is None:
        noise = torch.randn(shape, generator=generator, device=device, dtype=dtype)
    elif tuple(noise.shape) != tuple(shape):
        raise ValueError(f"noise has shape {tuple(noise.shape)}, expected {tuple(shape)}")
    x = noise.to(device=device, dtype=dtype) * sched.init_noise_sigma
    for t in sched.timesteps:
        t_batch = torch.full((x.shape[0],), int(t), device=device, dtype=torch.long)
        out = denoiser(sched.scale_model_input(x, t), t_batch)
        x = sched.step(out, int(t), x).prev_sample
    return x


def _batched(ctx: torch.Tensor, batch: int) -> torch.Tensor:
    # A context given once ([1, L, D]) serves the whole batch.
    return ctx.expand(batch, *ctx.shape[1:]) if ctx.shape[0] == 1 and batch != 1 else ctx


def cfg_denoiser(model_fn: ModelFn, cond: torch.Tensor, null_cond: torch.Tensor, w: float) -> Denoiser:
    """Classifier-free guidance: null + w (cond - null), both passes in one batched model call."""

    def denoiser(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        if w == 1.0:
            return model_fn(x, t, _batched(cond, b))
        out = model_fn(torch.cat([x, x]), torch.cat([t, t]), torch.cat([_batched(cond, b), _batched(null_cond, b)]))
        out_cond, out_null = out.chunk(2)
        return out_null + w * (out_cond - out_null)

    return denoiser


def guided(
    model_fn: ModelFn, ctx_full: torch.Tensor, ctx_null_video: torch.Tensor | None,
    ctx_null_audio: torch.Tensor | None, w_video: float, w_audio: float = 1.0,
) -> Denoiser:
    """Separate video and audio guidance (module docstring); the passes a weight needs go in one model call.

    ctx_null_video = [null video ; audio tokens], ctx_null_audio = [video tokens ; null audio]; a context whose
    weight is 1 is never evaluated and may be None.
    """
    terms = [(w, c) for w, c in ((w_video, ctx_null_video), (w_audio, ctx_null_audio)) if w != 1.0]
    if any(c is None for _, c in terms):
        raise ValueError("a guidance weight != 1 needs its null context")

    def denoiser(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        n = 1 + len(terms)
        ctx = torch.cat([_batched(ctx_full, b)] + [_batched(c, b) for _, c in terms])
        outs = model_fn(x.repeat(n, *([1] * (x.ndim - 1))), t.repeat(n), ctx).chunk(n)
        full = outs[0]
        result = full
        for (w, _), out_null in zip(terms, outs[1:]):
            result = result + (w - 1.0) * (full - out_null)
        return result

    return denoiser
