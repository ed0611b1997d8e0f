"""The inference vocoder (`models.vocoder.inference_vocoder`): same weights and call, channels-last, bf16 on CPU."""

from __future__ import annotations

import pytest
import torch

from action2sound.config import preset
from action2sound.errors import Action2SoundError
from action2sound.models.vocoder import FastHifiGan, build_hifigan, inference_vocoder, vocode
from generation_factory import tiny_model_dir

TINY = preset("tiny")


def _generator():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return build_hifigan(TINY.audio, TINY.vocoder).eval()


def test_inference_vocoder_shares_the_weights_and_computes_the_same_wave():
    gen = _generator()
    log_mel = torch.randn(3, TINY.audio.n_mels, 12) - 5
    with torch.no_grad():
        want = vocode(gen, log_mel)
        fast = inference_vocoder(gen, "fp32")
        assert isinstance(fast, FastHifiGan) and fast.compute_dtype is None and not fast.training
        assert fast.state_dict().keys() == gen.state_dict().keys()
        assert all(a.data_ptr() == b.data_ptr() for a, b in zip(fast.state_dict().values(), gen.state_dict().values()))
        torch.testing.assert_close(vocode(fast, log_mel), want, rtol=1e-5, atol=1e-6)  # channels-last only

        bf16 = inference_vocoder(gen, "bf16")
        out = vocode(bf16, log_mel)
        assert out.dtype == torch.float32 and out.shape == want.shape
        err_db = 10 * torch.log10(((out - want) ** 2).mean() / (want ** 2).mean())
        assert -60 < err_db < -20  # bf16 rounding: changed, but only in the last bits
    # With gradients (training, losses) it is the exact fp32 generator whatever its compute dtype.
    torch.testing.assert_close(vocode(bf16, log_mel), want, rtol=1e-5, atol=1e-6)


def test_auto_precision_follows_the_cpu_and_bad_precision_is_an_error():
    from action2sound.models.vocoder import cpu_has_native_bf16

    auto = inference_vocoder(_generator())
    assert auto.compute_dtype == (torch.bfloat16 if cpu_has_native_bf16() else None)
    with pytest.raises(Action2SoundError, match="auto, bf16 or fp32"):
        inference_vocoder(_generator(), "fp16")


def test_model_directory_loads_its_vocoder_for_fast_inference(tmp_path):
    from action2sound.weights import load_model_dir

    md = load_model_dir(tiny_model_dir(tmp_path))
    assert isinstance(md.vocoder, FastHifiGan) and not md.vocoder.training
