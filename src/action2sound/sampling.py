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
A model with the sync stream (models/sync_stream.py) has a third direction, the stream's own: + (w_s - 1) *
(out(v, a, s) - out(v, a, null_s)), the full pass against the same pass with the null (zero) stream.
"""

from __future__ import annotations

import math
import warnings
from typing import Callable

import numpy as np
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
    ctx_null_audio: torch.Tensor | None, w_video: float, w_audio: float = 1.0, w_sync: float = 1.0,
) -> Denoiser:
    """Separate video, audio and sync guidance (module docstring); the passes a weight needs go in one call.

    ctx_null_video = [null video ; audio tokens], ctx_null_audio = [video tokens ; null audio]; a context whose
    weight is 1 is never evaluated and may be None. The sync term's pass has the full context: `model_fn`
    tells it apart by its place in the batch (full, null video, null audio, null sync, each when its weight is
    not 1; `LatentDiffusion.guided_model_fn` gives that pass the null stream).
    """
    terms = [(w, c) for w, c in ((w_video, ctx_null_video), (w_audio, ctx_null_audio), (w_sync, ctx_full))
             if w != 1.0]
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


# ====================================================================================== the release's samplers
# What the public Action2Sound release samples with, reproduced exactly for a model converted from it (the
# pipeline picks them by `default_sampling_for`). Our own models keep `sample` above. Both take an
# epsilon-predicting (or v-predicting) denoiser; their timesteps are what the release feeds its UNet.
RELEASE_SAMPLERS = ("release-dpm", "release-ddim")
RELEASE_ORIGIN = "action2sound-release"  # model.json `converted_from.origin` of the release's converted model
RELEASE_CONTEXT_TOKENS = 40  # the release's unconditional context: one all-zero [1, 40, ctx] (16 video + 24 audio)


def _abar64(diffusion: DiffusionConfig) -> np.ndarray:
    # The schedule in float64, from the same betas as `alphas_cumprod` (the CompVis / diffusers formula).
    n = diffusion.num_train_timesteps
    if diffusion.beta_schedule == "scaled_linear":
        betas = np.linspace(diffusion.beta_start ** 0.5, diffusion.beta_end ** 0.5, n, dtype=np.float64) ** 2
    elif diffusion.beta_schedule == "linear":
        betas = np.linspace(diffusion.beta_start, diffusion.beta_end, n, dtype=np.float64)
    else:
        raise ValueError(f"the release samplers know the linear schedules, not {diffusion.beta_schedule!r}")
    return np.cumprod(1.0 - betas)


class DiscreteVPSchedule:
    """dpm_solver's `NoiseScheduleVP('discrete')` (Lu et al. 2022, arXiv 2206.00927, App. D; its codebase).

    The T training steps sit at continuous times t_n = (n + 1) / T; log alpha_t = 0.5 log abar is interpolated
    linearly in t between them, sigma_t = sqrt(1 - alpha_t^2), lambda_t = log alpha_t - log sigma_t. The model,
    trained on integer steps, is fed t_input = T t - 1 (fractional between grid points).
    """

    def __init__(self, diffusion: DiffusionConfig):
        self.T = diffusion.num_train_timesteps
        self.t_grid = (np.arange(self.T, dtype=np.float64) + 1.0) / self.T
        self.log_alpha_grid = 0.5 * np.log(_abar64(diffusion))

    def log_alpha(self, t: float) -> float:
        return float(np.interp(t, self.t_grid, self.log_alpha_grid))

    def alpha_sigma_lambda(self, t: float) -> tuple[float, float, float]:
        la = self.log_alpha(t)
        log_sigma = 0.5 * math.log1p(-math.exp(2.0 * la))
        return math.exp(la), math.exp(log_sigma), la - log_sigma

    def model_time(self, t: float) -> float:
        return self.T * t - 1.0


def release_dpm_times(steps: int, diffusion: DiffusionConfig) -> np.ndarray:
    """dpm_solver's "time_uniform" grid [steps + 1] float64: t = 1 down to t = 1/T, evenly in t."""
    T = diffusion.num_train_timesteps
    return np.linspace(1.0, 1.0 / T, steps + 1)


def _to_x0(out: torch.Tensor, x: torch.Tensor, alpha: float, sigma: float, prediction_type: str) -> torch.Tensor:
    # The data prediction from the network's output (epsilon: x0 = (x - sigma eps) / alpha; v: alpha x - sigma v).
    if prediction_type == "epsilon":
        return (x - sigma * out) / alpha
    return alpha * x - sigma * out


def _start(shape, generator, noise, device, dtype) -> torch.Tensor:
    if device is None:
        device = noise.device if noise is not None else (generator.device if generator is not None else "cpu")
    if noise is None:
        return torch.randn(shape, generator=generator, device=device, dtype=dtype)
    if tuple(noise.shape) != tuple(shape):
        raise ValueError(f"noise has shape {tuple(noise.shape)}, expected {tuple(shape)}")
    return noise.to(device=device, dtype=dtype)


@torch.no_grad()
def sample_release_dpm(
    denoiser: Denoiser, shape: tuple[int, ...], steps: int = 25, generator: torch.Generator | None = None,
    diffusion: DiffusionConfig | None = None, noise: torch.Tensor | None = None,
    device: torch.device | str | None = None, dtype: torch.dtype = torch.float32, lower_order_below: int = 10,
) -> torch.Tensor:
    """The release's DPM-Solver++(2M), x_T [*shape] -> x at t = 1/T: dpm_solver's
    `DPM_Solver(algorithm_type="dpmsolver++").sample(steps, order=2, skip_type="time_uniform",
    method="multistep", lower_order_final=True)` on `NoiseScheduleVP("discrete")`.

    Lu et al. 2022b ("DPM-Solver++", arXiv 2211.01095), Algorithm 2, with h_i = lambda_i - lambda_{i-1}:
        first step    x_1 = (sigma_1 / sigma_0) x_0 - alpha_1 (e^{-h_1} - 1) D_0
        step i >= 2   x_i = (sigma_i / sigma_{i-1}) x_{i-1}
                          - alpha_i (e^{-h_i} - 1) (D_{i-1} + (D_{i-1} - D_{i-2}) / (2 r_i))
    with D_j the data prediction at t_j and r_i = h_{i-1} / h_i; the final step drops to first order when
    steps < `lower_order_below` (lower_order_final: 10 in the dpm_solver codebase, 15 in Stable Diffusion
    v1's older copy; the same for the release's 25 steps). `steps` denoiser calls, at t_input = T t - 1 for
    t = 1, ..., t_{steps-1} (999, 959.04, ..., 39.96 for 25 steps); the last point t = 1/T is returned, never
    evaluated.
    """
    diffusion = diffusion or DiffusionConfig()
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    x = _start(shape, generator, noise, device, dtype)
    ns, times = DiscreteVPSchedule(diffusion), release_dpm_times(steps, diffusion)
    coeffs = [ns.alpha_sigma_lambda(float(t)) for t in times]
    order = 2

    def data_pred(x: torch.Tensor, i: int) -> torch.Tensor:
        alpha, sigma, _ = coeffs[i]
        t_in = torch.full((x.shape[0],), ns.model_time(float(times[i])), device=x.device, dtype=torch.float32)
        return _to_x0(denoiser(x, t_in), x, alpha, sigma, diffusion.prediction_type)

    history = [data_pred(x, 0)]  # D_0
    for i in range(1, steps + 1):
        step_order = min(order, i, steps + 1 - i) if steps < lower_order_below else min(order, i)
        alpha, sigma, lam = coeffs[i]
        _, sigma_prev, lam_prev = coeffs[i - 1]
        h = lam - lam_prev
        phi = math.expm1(-h)
        d = history[-1]
        if step_order == 2:
            r = (lam_prev - coeffs[i - 2][2]) / h
            d = d + (history[-1] - history[-2]) / (2.0 * r)
        x = (sigma / sigma_prev) * x - (alpha * phi) * d
        if i < steps:
            history = (history + [data_pred(x, i)])[-order:]
    return x


def ldm_ddim_timesteps(steps: int, diffusion: DiffusionConfig) -> np.ndarray:
    """The LDM `DDIMSampler`'s "uniform" steps, ascending: range(0, T, T // steps) + 1 (751, 501, 251, 1 reversed
    for 4 of 1000). As in that code, a step count not dividing T gives more steps (7 -> T // 7 = 142 -> 8 steps)."""
    T = diffusion.num_train_timesteps
    if not 1 <= steps <= T:
        raise ValueError(f"steps must be in 1 .. {T}, got {steps}")
    return np.arange(0, T, T // steps) + 1


@torch.no_grad()
def sample_release_ddim(
    denoiser: Denoiser, shape: tuple[int, ...], steps: int = 25, generator: torch.Generator | None = None,
    diffusion: DiffusionConfig | None = None, noise: torch.Tensor | None = None,
    device: torch.device | str | None = None, dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """The release's DDIM (eta = 0): the LDM `DDIMSampler`, x_T [*shape] -> x at abar_0 (not abar = 1).

    Song et al. 2021 (arXiv 2010.02502), eq. 12 with sigma = 0, on `ldm_ddim_timesteps` from the last down:
    x_prev = sqrt(abar_prev) x0_hat + sqrt(1 - abar_prev) eps_hat, abar_prev = abar at the next step down and
    abar_0 (the first training step's) after the last, as that code's `ddim_alphas_prev` has it.
    """
    diffusion = diffusion or DiffusionConfig()
    x = _start(shape, generator, noise, device, dtype)
    abar = _abar64(diffusion)
    ts = ldm_ddim_timesteps(steps, diffusion)
    prev = np.concatenate([[abar[0]], abar[ts[:-1]]])
    for k in range(len(ts) - 1, -1, -1):
        a_t, a_prev = float(abar[ts[k]]), float(prev[k])
        t_in = torch.full((x.shape[0],), int(ts[k]), device=x.device, dtype=torch.long)
        out = denoiser(x, t_in)
        if diffusion.prediction_type == "epsilon":
            eps = out
        else:  # v: eps = sqrt(abar) v + sqrt(1 - abar) x
            eps = math.sqrt(a_t) * out + math.sqrt(1.0 - a_t) * x
        x0 = (x - math.sqrt(1.0 - a_t) * eps) / math.sqrt(a_t)
        x = math.sqrt(a_prev) * x0 + math.sqrt(1.0 - a_prev) * eps
    return x


def sample_release(denoiser: Denoiser, shape: tuple[int, ...], sampler: str = "release-dpm", steps: int = 25,
                   **kwargs) -> torch.Tensor:
    """`sample_release_dpm` or `sample_release_ddim` by name (one of RELEASE_SAMPLERS)."""
    if sampler == "release-dpm":
        return sample_release_dpm(denoiser, shape, steps, **kwargs)
    if sampler == "release-ddim":
        return sample_release_ddim(denoiser, shape, steps, **kwargs)
    raise ValueError(f"unknown release sampler {sampler!r}; choose one of {RELEASE_SAMPLERS}")


def release_guided(model_fn: ModelFn, ctx_full: torch.Tensor, w: float) -> Denoiser:
    """The release's guidance: one weight against one all-zero context of the same shape (not our learned nulls)."""
    return cfg_denoiser(model_fn, ctx_full, torch.zeros_like(ctx_full[:1]), w)


def default_sampling_for(model_json: dict) -> str | None:
    """The sampler a model directory samples with by default: "release-dpm" for the release's own model (its
    model.json `converted_from.origin`, written by `convert`), None (the preset's) for everything else."""
    origin = (model_json.get("converted_from") or {}).get("origin")
    return "release-dpm" if origin == RELEASE_ORIGIN else None
