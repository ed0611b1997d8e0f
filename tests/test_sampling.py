"""Samplers against toy denoisers with known answers; guidance closures against their formulas."""

import math

import numpy as np
import pytest
import torch

from action2sound.config import DiffusionConfig
from action2sound.sampling import alphas_cumprod, cfg_denoiser, guided, make_scheduler, sample

# diffusers' set_timesteps calls np.array on a tensor; numpy 2 warns about it (tests call it directly below).
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")




def _abar(diffusion, t):
    return alphas_cumprod(diffusion).double()[t.long()].view(-1, *([1] * 3))


def _point_denoiser(x0, diffusion):
    """Ideal denoiser when the data is the single point x0: eps = (x - sqrt(abar) x0) / sqrt(1 - abar)."""
    def denoiser(x, t):
        a = _abar(diffusion, t)
        eps = (x.double() - a.sqrt() * x0) / (1 - a).sqrt()
        if diffusion.prediction_type == "epsilon":
            return eps.float()
        return (a.sqrt() * eps - (1 - a).sqrt() * x0).float()  # v
    return denoiser


def test_schedule_is_the_scaled_linear_one_of_spec():
    abar = alphas_cumprod(DiffusionConfig()).double()
    betas = np.linspace(math.sqrt(0.00085), math.sqrt(0.012), 1000, dtype=np.float64) ** 2
    np.testing.assert_allclose(abar.numpy(), np.cumprod(1 - betas), rtol=1e-5)
    assert abar.shape == (1000,)


@pytest.mark.parametrize("kind", ["dpm", "ddim"])
@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction"])
@pytest.mark.parametrize("steps", [25, 7])
def test_samplers_return_the_single_data_point(kind, prediction, steps):
    diffusion = DiffusionConfig(prediction_type=prediction)
    g = torch.Generator().manual_seed(3)
    x0 = torch.randn(2, 4, 3, 5, generator=g, dtype=torch.float64)
    out = sample(_point_denoiser(x0, diffusion), x0.shape, kind, steps, generator=g, diffusion=diffusion)
    assert out.shape == x0.shape and out.dtype == torch.float32
    assert (out.double() - x0).abs().max() < 1e-4


def _gaussian_denoiser(mu, s, diffusion):
    """Ideal eps for data N(mu, s^2): E[x0 | x_t] = mu + a s^2 (x - a mu) / (a^2 s^2 + sigma^2)."""
    def denoiser(x, t):
        abar = _abar(diffusion, t)
        a, sig2 = abar.sqrt(), 1 - abar
        x = x.double()
        x0_hat = mu + a * s**2 * (x - a * mu) / (a**2 * s**2 + sig2)
        return ((x - a * x0_hat) / sig2.sqrt()).float()
    return denoiser


def _gaussian_answer(noise, mu, s, diffusion, kind, steps):
    """Exact result of "follow the probability-flow ODE from t = T-1 to the last step t_L, then denoise to x_0".

    For Gaussian data the ODE keeps z = (x_t - a_t mu) / sqrt(a_t^2 s^2 + sigma_t^2) constant; the samplers'
    final step (to sigma = 0) returns E[x_0 | x_{t_L}].
    """
    abar = alphas_cumprod(diffusion).double()
    sched = make_scheduler(diffusion, kind)
    sched.set_timesteps(steps)
    a_T, a_L = abar[int(sched.timesteps[0])], abar[int(sched.timesteps[-1])]
    z = (noise.double() - a_T.sqrt() * mu) / (a_T * s**2 + 1 - a_T).sqrt()
    x_last = a_L.sqrt() * mu + z * (a_L * s**2 + 1 - a_L).sqrt()
    return mu + a_L.sqrt() * s**2 / (a_L * s**2 + 1 - a_L) * (x_last - a_L.sqrt() * mu)


@pytest.mark.parametrize("kind,steps,tol", [("dpm", 10, 1e-2), ("dpm", 25, 3e-2), ("dpm", 100, 1e-2),
                                             ("ddim", 100, 6e-2)])
def test_samplers_solve_the_probability_flow_ode_for_gaussian_data(kind, steps, tol):
    diffusion = DiffusionConfig()
    noise = torch.randn(4, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    exact = _gaussian_answer(noise, 0.5, 1.0, diffusion, kind, steps)
    out = sample(_gaussian_denoiser(0.5, 1.0, diffusion), noise.shape, kind, steps, noise=noise, diffusion=diffusion)
    assert (out.double() - exact).abs().max() < tol


def test_dpm_is_second_order_and_ddim_first_order():
    diffusion = DiffusionConfig()
    noise = torch.randn(4, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    den = _gaussian_denoiser(0.5, 1.0, diffusion)

    def err(kind, steps):
        out = sample(den, noise.shape, kind, steps, noise=noise, diffusion=diffusion).double()
        return float((out - _gaussian_answer(noise, 0.5, 1.0, diffusion, kind, steps)).abs().max())

    assert err("dpm", 10) < err("ddim", 10) / 10
    assert err("ddim", 100) < err("ddim", 10) / 4  # first order: error ~ 1 / steps


def test_ddim_is_the_ddim_update():
    # Data N(0, 1): the ideal eps is sigma_t x, and one DDIM step x_t = a_t x0_hat + sigma_t eps_hat turns x_s into
    # cos(theta_t - theta_s) x_s with theta = atan2(sigma, a); the last step returns x0_hat = a_L x_L.
    diffusion = DiffusionConfig()
    abar = alphas_cumprod(diffusion).double()
    sched = make_scheduler(diffusion, "ddim")
    sched.set_timesteps(6)
    theta = [math.atan2(math.sqrt(1 - abar[int(t)]), math.sqrt(abar[int(t)])) for t in sched.timesteps]
    factor = math.prod(math.cos(t1 - t0) for t0, t1 in zip(theta, theta[1:])) * math.cos(theta[-1])
    noise = torch.randn(3, 1, 2, 2, generator=torch.Generator().manual_seed(2))
    out = sample(_gaussian_denoiser(0.0, 1.0, diffusion), noise.shape, "ddim", 6, noise=noise, diffusion=diffusion)
    torch.testing.assert_close(out.double(), noise.double() * factor, atol=1e-5, rtol=1e-5)


def test_sample_is_reproducible_from_the_generator_and_needs_a_known_scheduler():
    den = _point_denoiser(torch.zeros(1, 2, 2, 2, dtype=torch.float64), DiffusionConfig())
    noisy = lambda x, t: den(x, t) + 0.1  # noqa: E731  (so the result depends on the start noise)
    a = sample(noisy, (1, 2, 2, 2), "ddim", 5, generator=torch.Generator().manual_seed(7))
    b = sample(noisy, (1, 2, 2, 2), "ddim", 5, generator=torch.Generator().manual_seed(7))
    c = sample(noisy, (1, 2, 2, 2), "ddim", 5, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)
    with pytest.raises(ValueError, match="unknown sampler"):
        make_scheduler(DiffusionConfig(), "euler")


class _Recorder:
    """A model whose output is x * t_scale + mean(context): each context gives a known, distinct answer."""

    def __init__(self):
        self.calls = []

    def __call__(self, x, t, ctx):
        self.calls.append(x.shape[0])
        return x * 0.5 + ctx.mean(dim=(1, 2)).view(-1, 1, 1, 1)


def _ctx(value, b=2):
    return torch.full((b, 3, 4), float(value))


def test_cfg_combines_as_the_formula_in_one_call():
    model = _Recorder()
    x, t = torch.randn(2, 1, 2, 2), torch.tensor([10, 10])
    out = cfg_denoiser(model, _ctx(3.0), _ctx(1.0, b=1), w=6.5)(x, t)
    cond, null = x * 0.5 + 3.0, x * 0.5 + 1.0
    torch.testing.assert_close(out, null + 6.5 * (cond - null))
    assert model.calls == [4]  # cond and null batched into one UNet call
    model.calls.clear()
    torch.testing.assert_close(cfg_denoiser(model, _ctx(3.0), _ctx(1.0), w=1.0)(x, t), cond)
    assert model.calls == [2]


def test_two_condition_guidance_formula_and_batching():
    model = _Recorder()
    x, t = torch.randn(2, 1, 2, 2), torch.tensor([5, 5])
    full, nv, na = x * 0.5 + 4.0, x * 0.5 + 1.0, x * 0.5 + 2.5
    out = guided(model, _ctx(4.0), _ctx(1.0), _ctx(2.5), w_video=3.0, w_audio=2.0)(x, t)
    torch.testing.assert_close(out, full + 2.0 * (full - nv) + 1.0 * (full - na))
    assert model.calls == [6]
    model.calls.clear()
    # w_audio = 1: plain guidance on video with the audio kept, the audio-null context never evaluated.
    out = guided(model, _ctx(4.0), _ctx(1.0), None, w_video=6.5)(x, t)
    torch.testing.assert_close(out, nv + 6.5 * (full - nv))
    assert model.calls == [4]
    with pytest.raises(ValueError, match="null context"):
        guided(model, _ctx(4.0), None, None, w_video=2.0)
