"""models.vocoder.HifiGanRunner: the CPU inference copy of a HiFi-GAN generator, and how the pipeline uses it."""

from __future__ import annotations

import pytest
import torch

from action2sound.config import VocoderConfig, preset
from action2sound.mel_bridge import BridgeVocoder
from action2sound.models.vocoder import HifiGanRunner, build_hifigan, cpu_has_amx, for_cpu_inference, vocode
from action2sound.options import GenerateOptions
from action2sound.pipeline import load_pipeline

# Four stages (so two middle ones), two resblock kernels with dilations, odd and even transposed kernels.
CFG = VocoderConfig(upsample_initial_channel=64, upsample_rates=(4, 4, 2, 2), upsample_kernel_sizes=(8, 8, 4, 4),
                    resblock_kernel_sizes=(3, 5), resblock_dilations=((1, 3, 5), (1, 2)))


@pytest.fixture(scope="module")
def generator():
    p = preset("tiny").audio
    with torch.random.fork_rng():
        torch.manual_seed(0)
        gen = build_hifigan(type(p)(**{**vars(p), "hop": 64}), CFG).eval()
    return gen


def _log_mel(gen, frames=37, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(2, gen.config.model_in_dim, frames, generator=g) - 4.0


def test_runner_in_fp32_computes_the_generators_function(generator):
    mel = _log_mel(generator)
    runner = HifiGanRunner(generator, mixed=False)
    with torch.inference_mode():
        ref, out = vocode(generator, mel), vocode(runner, mel)
    assert out.shape == ref.shape == (2, 37 * 64) and out.dtype == torch.float32
    assert torch.allclose(out, ref, atol=2e-5, rtol=0)
    # Every convolution is the channels-last Conv2d; no Conv1d is left.
    convs = [m for m in runner.modules() if isinstance(m, (torch.nn.Conv1d, torch.nn.ConvTranspose1d))]
    assert not convs and runner.middle == (1, 2)


def test_runner_applies_the_generators_input_normalisation(generator):
    gen = build_hifigan(type(preset("tiny").audio)(**{**vars(preset("tiny").audio), "hop": 64}), CFG).eval()
    gen.config.normalize_before = True
    gen.mean.fill_(-3.0)
    gen.scale.fill_(2.0)
    mel = _log_mel(gen, seed=2)
    with torch.inference_mode():
        assert torch.allclose(vocode(HifiGanRunner(gen, mixed=False), mel), vocode(gen, mel), atol=2e-5, rtol=0)


def test_mixed_runs_only_the_middle_stages_in_bf16_and_stays_near(generator):
    mel = _log_mel(generator, seed=3)
    runner = HifiGanRunner(generator, mixed=True)
    seen = []
    hooks = [m.register_forward_hook(lambda mod, inp, out, name=name: seen.append((name, inp[0].dtype)))
             for name, m in runner.named_modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    with torch.inference_mode():
        ref, out = vocode(generator, mel), vocode(runner, mel)
    for h in hooks:
        h.remove()
    half = {name for name, dtype in seen if dtype == torch.bfloat16}
    assert half and all(n.startswith(("ups16.", "blocks16.")) for n in half)
    assert {n.split(".")[1] for n in half} == {"1", "2"}  # the middle stages, never the first or the last
    assert any(n.startswith("pre") for n, _ in seen) and any(n.startswith("post") for n, _ in seen)
    # bf16 moved the output, but only by bf16 rounding: well under a percent of its energy.
    err = float(((out - ref) ** 2).mean() / (ref ** 2).mean())
    assert 1e-9 < err < 1e-2


def test_bridge_vocoders_universal_generator_is_swapped(generator):
    bridged = for_cpu_inference(BridgeVocoder(generator, "paper"))
    assert isinstance(bridged, BridgeVocoder) and isinstance(bridged.universal, HifiGanRunner)
    assert for_cpu_inference(None) is None
    runner = for_cpu_inference(generator)
    assert isinstance(runner, HifiGanRunner) and for_cpu_inference(runner) is runner


def test_pipeline_runs_the_runner_and_precision_fp32_turns_mixing_off(env, monkeypatch):
    pipe = load_pipeline(env.model, device="cpu", index=env.index)
    assert isinstance(pipe.vocoder, HifiGanRunner) and pipe.model_info["vocoder"] != "runner"
    states = []
    original = HifiGanRunner.forward

    def spy(self, spectrogram):
        states.append(self.mixed)
        return original(self, spectrogram)

    monkeypatch.setattr(HifiGanRunner, "forward", spy)
    video = env.bench / "clips" / "a2s-0-0002" / "a2s-0-0002_narration_pass_1_0.mp4"
    pipe.vocoder.mixed = "untouched"
    records = []
    for precision in ("fp32", "auto"):
        [res] = pipe.generate([video], GenerateOptions(ambient="none", steps=2, precision=precision))
        assert not isinstance(res, Exception)
        records.append(res.metadata["settings"]["vocoder_bf16_stages"])
    assert records == [False, cpu_has_amx()]  # the record says which way the wave was made
    assert states == [False, cpu_has_amx()]
    assert pipe.vocoder.mixed == "untouched"  # restored after each call
