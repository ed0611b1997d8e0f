"""Weights files (safetensors + config metadata, strict loading) and the model directory (export round trip)."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from safetensors.torch import save_file

from action2sound.config import preset
from action2sound.errors import Action2SoundError
from action2sound.weights import (
    build_component,
    export,
    load_component,
    load_encoders,
    load_model_dir,
    load_state_strict,
    merge_presets,
    read_weights,
    save_weights,
)

TINY = preset("tiny")


def _fresh(component: str, seed: int, p=TINY) -> torch.nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_component(component, p)


def _fake_run(root, vocoder: bool = True, p=TINY):
    """A run folder whose stages hold freshly initialised weights (what `train` leaves behind)."""
    trained_vae = dataclasses.replace(p, vae=dataclasses.replace(p.vae, scaling_factor=0.731))
    modules = {}
    for k, (name, stage_preset) in enumerate([("av", p), ("vae", trained_vae), ("ldm", trained_vae),
                                              ("vocoder", p)]):
        if name == "vocoder" and not vocoder:
            continue
        modules[name] = _fresh(name, k, stage_preset)
        save_weights(root / name / "weights.safetensors", modules[name].state_dict(), name, stage_preset)
    return modules


def test_save_and_read_keep_tensors_and_config(tmp_path):
    module = _fresh("vae", 0)
    path = save_weights(tmp_path / "vae.safetensors", module.state_dict(), "vae", TINY)
    tensors, p = read_weights(path, "vae")
    assert p == TINY
    state = module.state_dict()
    assert tensors.keys() == state.keys() and all(torch.equal(tensors[k], state[k]) for k in state)
    half, _ = read_weights(save_weights(tmp_path / "h.safetensors", state, "vae", TINY, dtype=torch.float16))
    assert all(half[k].dtype == torch.float16 and torch.equal(half[k], state[k].half()) for k in state)
    with pytest.raises(Action2SoundError, match="holds the 'vae' component, expected 'ldm'"):
        read_weights(path, "ldm")


def test_foreign_or_missing_files_are_refused(tmp_path):
    save_file({"w": torch.zeros(2)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(Action2SoundError, match="not an action2sound weights file"):
        read_weights(tmp_path / "plain.safetensors")
    with pytest.raises(Action2SoundError, match="not found"):
        read_weights(tmp_path / "absent.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not safetensors at all")
    with pytest.raises(Action2SoundError, match="not a readable safetensors file"):
        read_weights(tmp_path / "junk.safetensors")


def test_strict_loading_names_the_offending_key():
    module = _fresh("av", 0)
    state = module.state_dict()
    missing = {k: v for k, v in state.items() if k != "logit_scale"}
    with pytest.raises(Action2SoundError, match=r"missing 1 key\(s\), first \['logit_scale'\]"):
        load_state_strict(module, missing, "f")
    with pytest.raises(Action2SoundError, match=r"unexpected 1 key\(s\), first \['extra.weight'\]"):
        load_state_strict(module, {**state, "extra.weight": torch.zeros(1)}, "f")
    with pytest.raises(Action2SoundError, match="key 'video_proj.weight' has shape"):
        load_state_strict(module, {**state, "video_proj.weight": torch.zeros(3, 3)}, "f")
    other = _fresh("av", 1)
    load_state_strict(other, state, "f")
    assert all(torch.equal(a, b) for a, b in zip(other.state_dict().values(), state.values()))


def test_export_round_trips_strictly(tmp_path):
    run, out = tmp_path / "run", tmp_path / "model"
    modules = _fake_run(run)
    export(run, out)
    manifest = json.loads((out / "model.json").read_text())
    assert set(manifest["files"]) == {"av", "vae", "ldm", "vocoder", "vocoder.json"}
    assert manifest["vocoder"] == {"kind": "file", "file": "vocoder.safetensors"}
    # The merged preset: the VAE's trained scaling factor travels with the model.
    assert manifest["preset"]["vae"]["scaling_factor"] == 0.731

    loaded = load_model_dir(out)
    assert loaded.preset.vae.scaling_factor == 0.731 and loaded.vocoder_kind == "file"
    for name in ("av", "vae", "ldm", "vocoder"):
        got = getattr(loaded, name).state_dict()
        want = modules[name].state_dict()
        assert got.keys() == want.keys(), name
        for k, v in want.items():
            # fp16 on disk, back to each parameter's dtype on load: exactly the fp16-rounded values.
            expected = v.half().to(v.dtype) if v.is_floating_point() else v
            assert torch.equal(got[k], expected), (name, k)
    assert not loaded.ldm.training

    # The same model computes the same thing after the round trip (up to the fp16 rounding of the weights).
    g = torch.Generator().manual_seed(0)
    x = torch.randn((2, *TINY.latent_shape), generator=g)
    ctx = torch.randn((2, *TINY.context_shape), generator=g)
    t = torch.tensor([10, 500])
    with torch.no_grad():
        ref = modules["ldm"].eval()(x, t, ctx)
        assert torch.allclose(loaded.ldm(x, t, ctx), ref, atol=5e-3, rtol=5e-3)

    fp32 = export(run, tmp_path / "fp32", fp16=False)
    exact = load_model_dir(fp32, components=("vae", "ldm"))
    assert exact.av is None and exact.vocoder is None
    assert all(torch.equal(a, b) for a, b in zip(exact.ldm.state_dict().values(), modules["ldm"].state_dict().values()))


def test_model_dir_detects_changed_or_missing_files(tmp_path):
    run, out = tmp_path / "run", tmp_path / "model"
    _fake_run(run)
    export(run, out)
    data = bytearray((out / "vae.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (out / "vae.safetensors").write_bytes(bytes(data))
    with pytest.raises(Action2SoundError, match="SHA-256 differs"):
        load_model_dir(out)
    (out / "vae.safetensors").unlink()
    with pytest.raises(Action2SoundError, match="vae.safetensors is missing"):
        load_model_dir(out)
    with pytest.raises(Action2SoundError, match="not a model directory"):
        load_model_dir(tmp_path)


def test_export_without_a_vocoder_refers_to_the_universal_one(tmp_path):
    run = tmp_path / "run"
    _fake_run(run, vocoder=False)
    out = export(run, tmp_path / "model")
    assert json.loads((out / "vocoder.json").read_text()) == {"kind": "universal-hifigan"}
    assert not (out / "vocoder.safetensors").exists()


def test_export_needs_the_vae_and_ldm_stages(tmp_path):
    run = tmp_path / "run"
    _fake_run(run)
    (run / "ldm" / "weights.safetensors").unlink()
    with pytest.raises(Action2SoundError, match="no ldm/weights.safetensors; run `action2sound train ldm`"):
        export(run, tmp_path / "model")


def test_a_runs_sync_encoder_sets_the_stream_of_av_and_vae_trained_without_it(tmp_path):
    """Fine-tuning a model without the stream: its av and vae (stream off) beside a sync encoder pre-encode
    with the encoder's stream, so the store and the ldm trained from it have it."""
    run = tmp_path / "run"
    plain = dataclasses.replace(TINY, sync_stream=preset("paper").sync_stream)
    _fake_run(run, vocoder=False, p=plain)
    assert not load_encoders(run)[2].sync_stream.enabled
    enc = _fresh("sync_encoder", 5, TINY)
    save_weights(run / "sync_encoder" / "weights.safetensors", enc.state_dict(), "sync_encoder", TINY)
    _, _, p, _ = load_encoders(run)
    assert p.sync_stream == TINY.sync_stream and p.vae.scaling_factor == 0.731


def test_stages_of_different_presets_do_not_merge():
    other = dataclasses.replace(TINY, vae=dataclasses.replace(TINY.vae, scaling_factor=2.0))
    with pytest.raises(Action2SoundError, match="VAE config"):
        merge_presets({"ldm": TINY, "vae": other})
    with pytest.raises(Action2SoundError, match="audio profile"):
        merge_presets({"ldm": TINY, "vocoder": preset("paper")})


def test_the_merged_sync_stream_takes_the_encoders_heads_and_the_ldms_injection():
    stream = TINY.sync_stream
    ldm = dataclasses.replace(TINY, sync_stream=dataclasses.replace(stream, deep=True))
    enc = dataclasses.replace(TINY, sync_stream=dataclasses.replace(stream, timbre_weight=5.0, temperature=0.2))
    merged = merge_presets({"ldm": ldm, "sync_encoder": enc}).sync_stream
    assert merged == dataclasses.replace(stream, deep=True, timbre_weight=5.0, temperature=0.2)
    other = dataclasses.replace(TINY, sync_stream=dataclasses.replace(stream, feature_dim=stream.feature_dim + 1))
    with pytest.raises(Action2SoundError, match="feature_dim"):
        merge_presets({"ldm": ldm, "sync_encoder": other})


def test_pre_encoding_networks_come_from_a_run_or_a_model_dir(tmp_path):
    run = tmp_path / "run"
    modules = _fake_run(run)
    av, vae, p, source = load_encoders(run)
    assert p.vae.scaling_factor == 0.731 and p.av == TINY.av
    assert all(torch.equal(a, b) for a, b in zip(av.state_dict().values(), modules["av"].state_dict().values()))
    assert set(source) == {"av", "vae"} and all(len(h) == 64 for h in source.values())
    model_dir = export(run, tmp_path / "model")
    av2, _, p2, source2 = load_encoders(model_dir)
    assert p2 == p and source2["vae"] == json.loads((model_dir / "model.json").read_text())["files"]["vae"]["sha256"]
    with pytest.raises(Action2SoundError, match="no av/weights.safetensors"):
        load_encoders(tmp_path)
    module, stored = load_component(run / "vae" / "weights.safetensors", "vae")
    assert stored.vae.scaling_factor == 0.731 and module.config.scaling_factor == 0.731
