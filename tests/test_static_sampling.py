"""The planned DPM-Solver++ loop (static_sampling) against sampling.sample, the diffusers loop it replaces."""

import pytest
import torch

from action2sound.config import DiffusionConfig, preset
from action2sound.models.ldm import LatentDiffusion
from action2sound.sampling import guided, make_scheduler, sample
from action2sound.static_sampling import GraphedLoop, dpm_plan, sample_planned

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def _toy_denoiser(seed):
    # Nonlinear in x and dependent on t, so that every coefficient of every step shows in the result.
    w = torch.randn(4, 4, generator=torch.Generator().manual_seed(seed)) * 0.3

    def denoiser(x, t):
        lin = torch.einsum("ij,bjhw->bihw", w, x) * torch.cos(t.float() / 300).view(-1, 1, 1, 1)
        return lin + 0.1 * torch.sin(x)

    return denoiser


@pytest.mark.parametrize("kind", ["dpm", "ddim"])
@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction"])
@pytest.mark.parametrize("steps", [25, 7, 2, 1])
def test_planned_loop_reproduces_sample(kind, prediction, steps):
    diffusion = DiffusionConfig(prediction_type=prediction)
    den = _toy_denoiser(steps)
    noise = torch.randn(2, 4, 3, 5, generator=torch.Generator().manual_seed(1))
    ref = sample(den, noise.shape, kind, steps, noise=noise, diffusion=diffusion)
    out = sample_planned(den, noise, dpm_plan(diffusion, steps, kind))
    assert out.dtype == torch.float32 and out.shape == noise.shape
    assert (out - ref).abs().max() <= 1e-5 * ref.abs().max()


def test_plan_orders_and_timesteps_follow_the_scheduler():
    d = DiffusionConfig()
    plan = dpm_plan(d, 25)
    sched = make_scheduler(d)
    sched.set_timesteps(25)
    assert plan.timesteps == tuple(int(t) for t in sched.timesteps) and len(plan.update) == 25
    # First and last steps at first order (no history term), every other at second order.
    assert plan.update[0][2] == 0.0 and plan.update[-1][2] == 0.0
    assert all(c != 0.0 for _, _, c in plan.update[1:-1])
    # The last step lands on sigma = 0: x_0 is the data prediction itself.
    assert plan.update[-1][0] == 0.0 and plan.update[-1][1] == pytest.approx(1.0)
    assert all(c == 0.0 for _, _, c in dpm_plan(d, 25, "ddim").update)


def test_planned_loop_reproduces_sample_on_the_tiny_model_with_guidance():
    p = preset("tiny")
    torch.manual_seed(0)
    model = LatentDiffusion.from_preset(p).eval()
    g = torch.Generator().manual_seed(0)
    video = torch.randn(2, p.video.num_frames, p.av.video_hidden, generator=g)
    audio = torch.randn(2, *p.latent_shape, generator=g)
    noise = torch.randn(2, *p.latent_shape, generator=g)
    with torch.no_grad():
        full, null_video, _ = model.guidance_contexts(video, audio)
        den = guided(model, full, null_video, None, w_video=p.diffusion.guidance_scale)
        ref = sample(den, noise.shape, "dpm", 25, noise=noise, diffusion=p.diffusion)
        out = sample_planned(den, noise, dpm_plan(p.diffusion, 25))
    assert torch.isfinite(ref).all() and ref.abs().max() > 1.0
    assert (out - ref).abs().max() <= 1e-5 * ref.abs().max()


def test_graphed_loop_needs_cuda():
    with pytest.raises(ValueError, match="CUDA"):
        GraphedLoop(lambda x: x * 2, torch.zeros(2))
