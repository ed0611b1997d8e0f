"""A model.json with wrong types or absurd sizes is refused, naming the field, before any network is allocated."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from action2sound import weights
from action2sound.config import PRESETS, preset_from_dict
from action2sound.demo import DEFAULT_MODEL
from action2sound.errors import Action2SoundError


@pytest.fixture
def model_dir(tmp_path) -> Path:
    """The embedded default model, its weights linked (not copied), its model.json ours to edit."""
    out = tmp_path / "model"
    out.mkdir()
    for f in DEFAULT_MODEL.iterdir():
        if f.name != "model.json":
            (out / f.name).symlink_to(f)
    (out / "model.json").write_text((DEFAULT_MODEL / "model.json").read_text())
    return out


@pytest.fixture(autouse=True)
def no_real_networks(monkeypatch):
    """Building a network anywhere but on the meta device (where it takes no memory) fails the test."""
    build = weights.build_component

    def guarded(component, preset):
        if torch.get_default_device().type != "meta":
            raise AssertionError(f"a {component} network was allocated")
        return build(component, preset)

    monkeypatch.setattr(weights, "build_component", guarded)


def _edit(model_dir: Path, *path, value) -> Path:
    mj = model_dir / "model.json"
    manifest = json.loads(mj.read_text())
    node = manifest
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    mj.write_text(json.dumps(manifest))
    return mj


def _refused(model_dir: Path) -> str:
    with pytest.raises(Action2SoundError) as info:
        weights.load_model_dir(model_dir)
    message = str(info.value)
    assert len(message.splitlines()) == 1 and str(model_dir / "model.json") in message, message
    return message


@pytest.mark.parametrize("path, value, words", [
    (("preset", "unet", "heads"), "4", "preset.unet.heads: expected an integer, got str '4'"),
    (("preset", "vae", "block_out_channels"), [16, "32", 64, 64], "preset.vae.block_out_channels[1]: expected an"),
    (("preset", "av", "embed_dim"), 128.5, "preset.av.embed_dim: expected an integer"),
    (("preset", "cond", "use_audio"), "yes", "preset.cond.use_audio: expected true or false"),
    (("preset", "video", "size"), None, "preset.video.size: expected an integer, got NoneType"),
    (("preset", "audio"), "universal22k", "preset.audio: expected a {...} section"),
    (("preset", "diffusion", "guidance_scale"), math.inf, "preset.diffusion.guidance_scale: expected a finite"),
])
def test_wrong_types_are_refused_naming_the_field(model_dir, path, value, words):
    _edit(model_dir, *path, value=value)
    assert words in _refused(model_dir)


@pytest.mark.parametrize("path, value, words", [
    (("preset", "unet", "block_out_channels"), [48, 10**9, 192], "preset.unet.block_out_channels[1]: 1000000000 is "
                                                                "outside the sane range [1, 16384]"),
    (("preset", "av", "video_layers"), 100_000, "preset.av.video_layers: 100000 is outside"),
    (("preset", "video", "num_frames"), 0, "preset.video.num_frames: 0 is outside"),
    (("preset", "unet", "block_out_channels"), [48] * 40, "preset.unet.block_out_channels: 40 entries"),
])
def test_absurd_values_are_refused_naming_the_field(model_dir, path, value, words):
    _edit(model_dir, *path, value=value)
    assert words in _refused(model_dir)


def test_sane_fields_that_make_an_absurd_network_are_refused_before_allocating(model_dir):
    # Every width within its field's range, together a UNet of tens of billions of parameters (~100 GB).
    _edit(model_dir, "preset", "unet", "block_out_channels", value=[16384] * 4)
    _edit(model_dir, "preset", "unet", "attention_levels", value=[True] * 4)
    message = _refused(model_dir)
    assert "parameters" in message and f"{weights.MAX_MODEL_PARAMETERS:,}" in message


def test_a_preset_that_builds_no_network_is_refused(model_dir):
    _edit(model_dir, "preset", "vae", "norm_groups", value=7)  # 16 channels do not split into 7 groups
    assert "does not describe a vae network" in _refused(model_dir)


@pytest.mark.parametrize("path, value, words", [
    (("files", "av", "file"), "../../elsewhere.safetensors", "files.av: expected"),
    (("files", "ldm"), "ldm.safetensors", "files.ldm: expected"),
    (("vocoder",), {"kind": "file", "file": "/tmp/x.safetensors"}, "vocoder: expected"),
])
def test_file_entries_must_name_files_in_the_directory(model_dir, path, value, words):
    _edit(model_dir, *path, value=value)
    assert words in _refused(model_dir)


def test_the_default_model_passes_and_presets_round_trip(model_dir):
    manifest = weights.read_model_json(model_dir)  # on the meta device only (the guard above)
    assert manifest["preset"]["name"] == "small"
    for p in PRESETS.values():
        assert preset_from_dict(json.loads(json.dumps(p.to_dict()))) == p
    with pytest.raises(ValueError, match=r"^audio\.sample_rate: missing$"):
        data = PRESETS["tiny"].to_dict()
        del data["audio"]["sample_rate"]
        preset_from_dict(data)
