"""DPM-Solver++(2M) as a fixed table of per-step numbers, so that one CUDA graph can hold the whole loop.

`sampling.sample(denoiser, shape, "dpm", steps)` drives diffusers' DPMSolverMultistepScheduler, whose `step`
keeps Python state (a step counter, the model-output history) and computes its coefficients from tensors at
every call: fine eagerly, but dozens of small kernels and host-side work per step, and nothing a graph can
replay. Every quantity it uses depends only on the schedule and the step count, so `dpm_plan` reads them from
the same scheduler once and `sample_planned` applies them as plain tensor arithmetic:

    D_i     = cx_i x_i + co_i out_i                       the data prediction (epsilon or v -> x_0)
    x_{i+1} = a_i x_i + b_i D_i + c_i D_{i-1}             first order: c_i = 0

(Lu et al. 2022b, "DPM-Solver++", arXiv 2211.01095, Algorithm 2, in diffusers' "midpoint" form, with its
first step and, with a final sigma of zero, its last step at first order). The result equals `sample`'s to
float32 rounding (tests/test_static_sampling.py). `GraphedLoop` captures any such static-shape function in
a `torch.cuda.CUDAGraph` and replays it.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .config import DiffusionConfig
from .sampling import Denoiser, make_scheduler


@dataclass(frozen=True)
class DpmPlan:
    """One entry per denoiser call: its integer timestep, (cx, co) to the data prediction, (a, b, c) of the update."""

    timesteps: tuple[int, ...]
    to_x0: tuple[tuple[float, float], ...]
    update: tuple[tuple[float, float, float], ...]


def _alpha_sigma(s: float) -> tuple[float, float]:
    # diffusers' sigma is sigma_t / alpha_t (variance-exploding form): alpha = 1 / sqrt(s^2 + 1), sigma = s alpha.
    alpha = 1.0 / math.sqrt(s * s + 1.0)
    return alpha, s * alpha


def _lam(s: float) -> float:
    # lambda = log(alpha / sigma) = -log(s); +inf at the final sigma of zero.
    return math.inf if s == 0.0 else -math.log(s)


def dpm_plan(diffusion: DiffusionConfig, steps: int, kind: str = "dpm") -> DpmPlan:
    """The numbers `sample(..., kind, steps)` uses (kind "dpm": DPM-Solver++(2M), "ddim": its first-order form)."""
    sched = make_scheduler(diffusion, kind)
    cfg = sched.config
    if sched.init_noise_sigma != 1.0 or cfg.algorithm_type != "dpmsolver++" or cfg.solver_type != "midpoint":
        raise ValueError("dpm_plan reproduces make_scheduler's DPM-Solver++ (midpoint, unit initial sigma); "
                         "sampling.make_scheduler changed: update static_sampling.dpm_plan to match")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="__array__ implementation", category=DeprecationWarning)
        sched.set_timesteps(steps, device="cpu")
    sig = [float(s) for s in sched.sigmas.double()]
    n = len(sched.timesteps)
    to_x0, update = [], []
    for i in range(n):
        alpha_s, sigma_s = _alpha_sigma(sig[i])
        if diffusion.prediction_type == "epsilon":
            to_x0.append((1.0 / alpha_s, -sigma_s / alpha_s))  # x0 = (x - sigma eps) / alpha
        else:
            to_x0.append((alpha_s, -sigma_s))  # x0 = alpha x - sigma v
        alpha_t, sigma_t = _alpha_sigma(sig[i + 1])
        h = _lam(sig[i + 1]) - _lam(sig[i])
        phi = -1.0 if math.isinf(h) else math.expm1(-h)  # exp(-h) - 1
        a = sigma_t / sigma_s
        # diffusers' step: first order on the first call, and on the last when lower_order_final applies.
        final = i == n - 1 and (cfg.euler_at_final or (cfg.lower_order_final and n < 15)
                                or cfg.final_sigmas_type == "zero")
        if cfg.solver_order == 1 or i == 0 or final:
            update.append((a, -alpha_t * phi, 0.0))
        else:
            r0 = (_lam(sig[i]) - _lam(sig[i - 1])) / h
            # - alpha phi D0 - 0.5 alpha phi (D0 - D_prev) / r0
            update.append((a, -alpha_t * phi * (1.0 + 0.5 / r0), 0.5 * alpha_t * phi / r0))
    return DpmPlan(tuple(int(t) for t in sched.timesteps), tuple(to_x0), tuple(update))


def sample_planned(denoiser: Denoiser, noise: torch.Tensor, plan: DpmPlan) -> torch.Tensor:
    """x_T [B, ...] -> x_0 [B, ...] float32 in len(plan.timesteps) denoiser calls; no host sync, no Python state."""
    x = noise.float()
    prev = None
    for t, (cx, co), (a, b, c) in zip(plan.timesteps, plan.to_x0, plan.update):
        t_batch = torch.full((x.shape[0],), t, device=x.device, dtype=torch.long)
        d = cx * x + co * denoiser(x, t_batch).float()
        x_next = a * x + b * d
        x = x_next + c * prev if c != 0.0 else x_next
        prev = d
    return x


class GraphedLoop:
    """fn(static input) captured once in a CUDA graph (for its input's shape); a call copies x in and replays.

    The warm-up calls run on a side stream before capture, as torch.cuda.graph asks (cuDNN / cuBLAS workspaces,
    lazily built state, compilation of a torch.compile'd module). The returned tensor is the graph's static
    output: the next call overwrites it.
    """

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor], example: torch.Tensor, warmup: int = 2):
        if example.device.type != "cuda":
            raise ValueError("GraphedLoop needs a CUDA tensor (CUDA graphs exist only on CUDA)")
        self.input = example.clone()
        side = torch.cuda.Stream(device=example.device)
        side.wait_stream(torch.cuda.current_stream(example.device))
        with torch.cuda.stream(side):
            for _ in range(warmup):
                fn(self.input)
        torch.cuda.current_stream(example.device).wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.output = fn(self.input)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.input.copy_(x)
        self.graph.replay()
        return self.output
