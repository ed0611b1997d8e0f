"""The release's samplers against references written here from the published algorithms, not our sampler.

DPM-Solver++(2M): Lu et al. 2022b (arXiv 2211.01095), Algorithm 2, on the discrete-time VP schedule of the
dpm_solver codebase (log alpha linear in t between the training steps at t_n = (n + 1) / 1000, model fed
1000 t - 1, time_uniform grid from 1 to 1/1000). DDIM: Song et al. 2021 (arXiv 2010.02502) eq. 12 with
sigma = 0 on the LDM DDIMSampler's uniform steps (c = 1000 // S, steps 1, 1 + c, ...; abar_prev of the last
step = abar_0).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from action2sound.config import DiffusionConfig, preset
from action2sound.sampling import (
    RELEASE_ORIGIN, default_sampling_for, ldm_ddim_timesteps, release_guided, sample_release,
    sample_release_ddim, sample_release_dpm,
)

D = DiffusionConfig()




# ------------------------------------------------------------------------------------------ references
def _ref_abar() -> np.ndarray:
    betas = np.linspace(math.sqrt(0.00085), math.sqrt(0.012), 1000) ** 2
    return np.cumprod(1 - betas)


def _ref_alpha_sigma_lambda(t: float) -> tuple[float, float, float]:
    """Continuous t in [1/1000, 1] -> (alpha_t, sigma_t, lambda_t): log alpha_t interpolated between steps."""
    log_alpha = 0.5 * np.log(_ref_abar())
    pos = t * 1000.0 - 1.0  # the fractional training step
    lo = min(int(math.floor(pos)), 998)
    la = log_alpha[lo] + (pos - lo) * (log_alpha[lo + 1] - log_alpha[lo])
    alpha = math.exp(la)
    sigma = math.sqrt(1.0 - alpha**2)
    return alpha, sigma, math.log(alpha / sigma)


def reference_dpmpp_2m(eps_fn, x_T: np.ndarray, steps: int) -> np.ndarray:
    """Algorithm 2 of DPM-Solver++ (multistep second order), data prediction x0 = (x - sigma eps) / alpha."""
    ts = [1.0 - i * (1.0 - 1e-3) / steps for i in range(steps + 1)]
    a, s, lam = zip(*[_ref_alpha_sigma_lambda(t) for t in ts])

    def x0_pred(x, i):
        return (x - s[i] * eps_fn(x, 1000.0 * ts[i] - 1.0)) / a[i]

    x = x_T.astype(np.float64)
    preds = [x0_pred(x, 0)]
    for i in range(1, steps + 1):
        h = lam[i] - lam[i - 1]
        last = i == steps and steps < 10  # lower_order_final
        if i == 1 or last:
            D_i = preds[-1]
        else:
            r = (lam[i - 1] - lam[i - 2]) / h
            D_i = (1 + 1 / (2 * r)) * preds[-1] - 1 / (2 * r) * preds[-2]
        x = s[i] / s[i - 1] * x - a[i] * (math.exp(-h) - 1.0) * D_i
        if i < steps:
            preds.append(x0_pred(x, i))
    return x


def reference_ldm_ddim(eps_fn, x_T: np.ndarray, steps: list[int]) -> np.ndarray:
    """DDIM with eta = 0 over the given training steps (descending), ending at abar_0."""
    abar = _ref_abar()
    x = x_T.astype(np.float64)
    for k, t in enumerate(steps):
        a_t = abar[t]
        a_prev = abar[steps[k + 1]] if k + 1 < len(steps) else abar[0]
        eps = eps_fn(x, float(t))
        x0 = (x - math.sqrt(1 - a_t) * eps) / math.sqrt(a_t)
        x = math.sqrt(a_prev) * x0 + math.sqrt(1 - a_prev) * eps
    return x


def _toy_eps(x: np.ndarray, t: float) -> np.ndarray:
    # Non-linear in x and in t, so a wrong time, coefficient or history shows.
    return np.tanh(0.7 * x + 0.3 * np.sin(t / 97.0)) + 0.05 * x * (t / 1000.0) ** 2


def _toy_denoiser(calls: list | None = None):
    def denoiser(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if calls is not None:
            calls.append(float(t[0]))
        out = _toy_eps(x.double().numpy(), t.double().numpy().reshape(-1, *([1] * (x.ndim - 1))))
        return torch.from_numpy(out).to(x.dtype)
    return denoiser


# ------------------------------------------------------------------------------------------ the grids
def test_release_time_grids_are_the_releases():
    calls: list[float] = []
    x = torch.randn(1, 2, 3, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    sample_release_dpm(_toy_denoiser(calls), x.shape, 25, noise=x, dtype=torch.float64)
    assert len(calls) == 25
    np.testing.assert_allclose(calls[:3], [999.0, 959.04, 919.08], atol=1e-4)
    assert calls[-1] == pytest.approx(39.96, abs=1e-4)
    calls.clear()
    sample_release_ddim(_toy_denoiser(calls), x.shape, 4, noise=x, dtype=torch.float64)
    assert calls == [751, 501, 251, 1]
    assert list(ldm_ddim_timesteps(10, D)) == list(range(1, 1000, 100))
    assert len(ldm_ddim_timesteps(7, D)) == 8  # as the LDM code: 1000 // 7 = 142 divides into 8 steps


# ------------------------------------------------------------------------------------------ toy denoiser
@pytest.mark.parametrize("steps", [25, 12, 6, 2])
def test_release_dpm_matches_the_published_algorithm_on_a_toy_denoiser(steps):
    x = torch.randn(2, 4, 3, 5, generator=torch.Generator().manual_seed(steps), dtype=torch.float64)
    ours = sample_release_dpm(_toy_denoiser(), x.shape, steps, noise=x, dtype=torch.float64).numpy()
    ref = reference_dpmpp_2m(_toy_eps, x.numpy(), steps)
    assert np.abs(ours - ref).max() < 1e-6
    assert np.abs(ref - x.numpy()).max() > 0.1  # the reference did move


@pytest.mark.parametrize("steps,grid", [(4, [751, 501, 251, 1]), (10, list(range(901, 0, -100)))])
def test_release_ddim_matches_the_published_algorithm_on_a_toy_denoiser(steps, grid):
    x = torch.randn(2, 4, 3, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    ours = sample_release(_toy_denoiser(), x.shape, "release-ddim", steps, noise=x,
                          dtype=torch.float64).numpy()
    ref = reference_ldm_ddim(_toy_eps, x.numpy(), grid)
    assert np.abs(ours - ref).max() < 1e-6


def test_release_dpm_solves_gaussian_data_to_second_order():
    # Data N(mu, s^2): the ideal eps keeps z = (x_t - alpha mu) / sqrt(alpha^2 s^2 + sigma^2) constant along the
    # flow, so the exact x at t = 1/1000 is known. DPM-Solver++(2M) converges to it at second order (x16 for 4x
    # the steps; first order would give x4); the time-uniform grid makes its constant large at few steps.
    mu, s = 0.5, 1.0

    def eps(x, t):
        a, sig, _ = _ref_alpha_sigma_lambda((np.asarray(t) + 1.0) / 1000.0)
        x0 = mu + a * s**2 * (x - a * mu) / (a**2 * s**2 + sig**2)
        return (x - a * x0) / sig

    def den(x, t):
        return torch.from_numpy(eps(x.double().numpy(), float(t[0])))

    x = torch.randn(4, 1, 4, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    a1, s1, _ = _ref_alpha_sigma_lambda(1.0)
    a0, s0, _ = _ref_alpha_sigma_lambda(1e-3)
    z = (x.numpy() - a1 * mu) / math.sqrt(a1**2 * s**2 + s1**2)
    exact = a0 * mu + z * math.sqrt(a0**2 * s**2 + s0**2)
    err = {n: np.abs(sample_release_dpm(den, x.shape, n, noise=x, dtype=torch.float64).numpy() - exact).max()
           for n in (100, 400)}
    assert err[400] < 3e-3 and err[400] < err[100] / 8


# ------------------------------------------------------------------------------------------ guidance
def test_release_guidance_is_against_one_all_zero_context():
    seen = []

    def model(x, t, ctx):
        seen.append(ctx.clone())
        return x * 0.5 + ctx.mean(dim=(1, 2)).view(-1, 1, 1, 1)

    x, t = torch.randn(2, 1, 2, 2), torch.tensor([10.0, 10.0])
    cond = torch.full((2, 40, 8), 3.0)
    out = release_guided(model, cond, 6.5)(x, t)
    torch.testing.assert_close(out, x * 0.5 + 6.5 * 3.0)  # null pass: x/2 + 0
    assert len(seen) == 1 and seen[0].shape == (4, 40, 8)
    assert torch.equal(seen[0][2:], torch.zeros(2, 40, 8))


def test_default_sampling_follows_the_model_directorys_origin():
    assert default_sampling_for({"converted_from": {"origin": RELEASE_ORIGIN}}) == "release-dpm"
    assert default_sampling_for({"converted_from": {"stable_diffusion_init": True}}) is None
    assert default_sampling_for({"source_run": "run1"}) is None


# ------------------------------------------------------------------------------------------ tiny model
def test_release_samplers_on_the_tiny_model_end_to_end():
    from action2sound.weights import build_component

    p = preset("tiny")
    torch.manual_seed(0)
    ldm = build_component("ldm", p).eval()
    g = torch.Generator().manual_seed(1)
    b = 2
    tokens = torch.randn(b, p.video.num_frames, ldm.conditioner.video.proj.in_features, generator=g)
    audio = torch.randn(b, *p.latent_shape, generator=g)
    with torch.no_grad():
        ctx = ldm.context(tokens, audio, batch_size=b)

    def guided_eps(x: np.ndarray, t: float) -> np.ndarray:
        # The release's guidance, written out: uncond (all-zero context) + w (cond - uncond), float32 network.
        xt = torch.from_numpy(x).float()
        tt = torch.full((b,), t, dtype=torch.float32)
        with torch.no_grad():
            cond = ldm(xt, tt, ctx)
            unc = ldm(xt, tt, torch.zeros_like(ctx))
        return (unc + 3.0 * (cond - unc)).double().numpy()

    denoiser = release_guided(lambda x, t, c: ldm(x.float(), t, c).double(), ctx, 3.0)
    x = torch.randn(b, *p.latent_shape, generator=g, dtype=torch.float64)
    ours = sample_release_dpm(denoiser, x.shape, 5, noise=x, diffusion=p.diffusion, dtype=torch.float64).numpy()
    ref = reference_dpmpp_2m(guided_eps, x.numpy(), 5)
    assert np.abs(ours - ref).max() < 1e-4 * max(1.0, np.abs(ref).max())
    ours = sample_release_ddim(denoiser, x.shape, 4, noise=x, diffusion=p.diffusion, dtype=torch.float64).numpy()
    ref = reference_ldm_ddim(guided_eps, x.numpy(), [751, 501, 251, 1])
    assert np.abs(ours - ref).max() < 1e-4 * max(1.0, np.abs(ref).max())
