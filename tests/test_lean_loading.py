"""Lean loading: modules built on the meta device take a weights file's tensors as their parameters."""

from __future__ import annotations

import pytest
import torch

from action2sound.config import preset
from action2sound.errors import Action2SoundError
from action2sound.weights import build_component, load_component, load_state_strict, save_weights

TINY = preset("tiny")


@pytest.mark.parametrize("component", ["av", "vae", "ldm", "vocoder"])
def test_meta_build_loads_the_same_module_as_a_full_build(tmp_path, component):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        saved = build_component(component, TINY)
    path = save_weights(tmp_path / "w.safetensors", saved.state_dict(), component, TINY, dtype=torch.float16)

    meta = build_component(component, TINY, meta=True)
    assert all(p.is_meta for p in meta.parameters())
    # Buffers computed at construction and never saved (the ldm's noise schedule) are real and right.
    for (name, b), (_, want) in zip(meta.named_buffers(), saved.named_buffers()):
        assert not b.is_meta, name
        if name not in saved.state_dict():
            torch.testing.assert_close(b, want)

    loaded, _ = load_component(path, component)
    reference = build_component(component, TINY)
    load_state_strict(reference, saved.state_dict(), "reference")  # the copying path, for comparison
    params = dict(loaded.named_parameters())
    assert params and all(isinstance(p, torch.nn.Parameter) and p.dtype == torch.float32 and not p.is_meta
                          for p in params.values())
    assert all(p.requires_grad == q.requires_grad for p, q in zip(params.values(), saved.parameters()))
    for name, want in saved.state_dict().items():
        # The file is fp16: the loaded weights are the fp16 rounding of the saved ones, cast back to fp32.
        torch.testing.assert_close(loaded.state_dict()[name], want.to(torch.float16).to(want.dtype), rtol=0, atol=0)
    for name, buf in saved.named_buffers():
        torch.testing.assert_close(dict(loaded.named_buffers())[name], buf.to(torch.float16).to(buf.dtype)
                                   if name in saved.state_dict() else buf)


def test_meta_build_with_a_missing_key_is_an_error_naming_the_file():
    meta = build_component("vae", TINY, meta=True)
    state = build_component("vae", TINY).state_dict()
    state.pop(next(iter(state)))
    with pytest.raises(Action2SoundError, match="some.safetensors.*missing 1 key"):
        load_state_strict(meta, state, "some.safetensors")
