"""Frozen-in-Time's space-time transformer against a hand-written reference of its equations, its attention
pattern, and the paper-size backbone's shapes and parameter count."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest
import torch

from action2sound.config import preset
from action2sound.convert.tables import spacetime_rules
from action2sound.errors import Action2SoundError
from action2sound.models.av import VideoTower
from action2sound.models.spacetime import DividedAttention, SpaceTimeBlock, SpaceTimeTransformer

RELEASE_KEYS = json.loads((Path(__file__).parent / "data" / "original_checkpoint_keys.json").read_text())
# Tiny dims: 2 clips of 3 frames, 8x8 pixels in 4x4 patches (4 per frame), width 8 in 2 heads, MLP 16.
B, T, SIZE, PATCH, D, H, MLP = 2, 3, 8, 4, 8, 2, 16
N = (SIZE // PATCH) ** 2
EPS = 1e-6




# ------------------------------------------------------------- the reference: Frozen-in-Time, by hand
def release_weights(depth: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random float64 tensors under the release's video_model names (prefix-free), shapes as the release's."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape, scale=0.5):
        return scale * torch.randn(*shape, generator=g, dtype=torch.float64)

    w = {"cls_token": r(1, 1, D), "pos_embed": r(1, 1 + N, D), "temporal_embed": r(1, T, D),
         "patch_embed.proj.weight": r(D, 3, PATCH, PATCH, scale=0.2), "patch_embed.proj.bias": r(D),
         "norm.weight": 1 + r(D, scale=0.1), "norm.bias": r(D, scale=0.1)}
    for i in range(depth):
        for norm in ("norm1", "norm2", "norm3"):
            w[f"blocks.{i}.{norm}.weight"], w[f"blocks.{i}.{norm}.bias"] = 1 + r(D, scale=0.1), r(D, scale=0.1)
        for attn in ("attn", "timeattn"):
            w[f"blocks.{i}.{attn}.qkv.weight"], w[f"blocks.{i}.{attn}.qkv.bias"] = r(3 * D, D), r(3 * D)
            w[f"blocks.{i}.{attn}.proj.weight"], w[f"blocks.{i}.{attn}.proj.bias"] = r(D, D), r(D)
        w[f"blocks.{i}.mlp.fc1.weight"], w[f"blocks.{i}.mlp.fc1.bias"] = r(MLP, D), r(MLP)
        w[f"blocks.{i}.mlp.fc2.weight"], w[f"blocks.{i}.mlp.fc2.bias"] = r(D, MLP), r(D)
    return w


def ours(release: dict[str, torch.Tensor], dst: str = "") -> dict[str, torch.Tensor]:
    """The release tensors renamed by the converter's own key table."""
    depth = len({k.split(".")[1] for k in release if k.startswith("blocks.")})
    return {r.dst[0]: release[r.src[0]] for r in spacetime_rules("", dst, depth)}


def ref_layer_norm(x, w, b):
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + EPS) * w + b


def token(t: int, n: int) -> int:
    return 1 + t * N + n  # CLS first, then frame-major patches


def ref_attention(x, w, prefix, axis, cls_key_in_groups=True):
    """Frozen-in-Time's attention, one query at a time: CLS sees all; a patch sees CLS + its time / space group."""
    qkv = x @ w[f"{prefix}.qkv.weight"].T + w[f"{prefix}.qkv.bias"]  # [B, L, 3D]: q | k | v, each (head, dim)
    q, k, v = qkv[..., :D], qkv[..., D:2 * D], qkv[..., 2 * D:]
    hd = D // H
    out = torch.zeros_like(x)
    for h in range(H):
        c = slice(h * hd, (h + 1) * hd)

        def attend(i, keys):
            scores = torch.stack([(q[:, i, c] * k[:, j, c]).sum(-1) for j in keys], -1) / math.sqrt(hd)
            weights = torch.softmax(scores, -1)  # [B, len(keys)]
            return sum(weights[:, m, None] * v[:, j, c] for m, j in enumerate(keys))

        out[:, 0, c] = attend(0, range(x.shape[1]))
        for t in range(T):
            for n in range(N):
                group = [token(s, n) for s in range(T)] if axis == "time" else [token(t, m) for m in range(N)]
                out[:, token(t, n), c] = attend(token(t, n), ([0] if cls_key_in_groups else []) + group)
    return out @ w[f"{prefix}.proj.weight"].T + w[f"{prefix}.proj.bias"]


def ref_block(x, w, i, cls_key_in_groups=True, time_residual=False):
    """x + A_space(LN1(x + A_time(LN3(x)))), then + MLP(LN2(.)). The variants are what Frozen-in-Time is not."""
    p = f"blocks.{i}"
    t = ref_attention(ref_layer_norm(x, w[f"{p}.norm3.weight"], w[f"{p}.norm3.bias"]), w, f"{p}.timeattn", "time",
                      cls_key_in_groups)
    s = ref_attention(ref_layer_norm(x + t, w[f"{p}.norm1.weight"], w[f"{p}.norm1.bias"]), w, f"{p}.attn", "space",
                      cls_key_in_groups)
    y = x + t + s if time_residual else x + s
    hidden = ref_layer_norm(y, w[f"{p}.norm2.weight"], w[f"{p}.norm2.bias"]) @ w[f"{p}.mlp.fc1.weight"].T
    hidden = hidden + w[f"{p}.mlp.fc1.bias"]
    hidden = 0.5 * hidden * (1 + torch.erf(hidden / math.sqrt(2)))  # exact GELU
    return y + hidden @ w[f"{p}.mlp.fc2.weight"].T + w[f"{p}.mlp.fc2.bias"]


def ref_transformer(pixels, w, depth):
    """Patchify by hand (row-major patches per frame), embed, blocks, final norm -> [B, 1 + T N, D]."""
    grid = SIZE // PATCH
    kernel = w["patch_embed.proj.weight"].reshape(D, -1)
    x = torch.zeros(pixels.shape[0], 1 + T * N, D, dtype=pixels.dtype)
    x[:, 0] = w["cls_token"][0, 0] + w["pos_embed"][0, 0]  # the CLS gets no temporal embedding
    for t in range(T):
        for n in range(N):
            i, j = divmod(n, grid)
            patch = pixels[:, t, :, i * PATCH:(i + 1) * PATCH, j * PATCH:(j + 1) * PATCH].reshape(pixels.shape[0], -1)
            x[:, token(t, n)] = (patch @ kernel.T + w["patch_embed.proj.bias"] + w["pos_embed"][0, 1 + n]
                                 + w["temporal_embed"][0, t])
    for i in range(depth):
        x = ref_block(x, w, i)
    return ref_layer_norm(x, w["norm.weight"], w["norm.bias"])


def _inputs(seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, 1 + T * N, D, generator=g, dtype=torch.float64)


def _block(w) -> SpaceTimeBlock:
    block = SpaceTimeBlock(D, H, MLP).double().eval()
    block.load_state_dict({k[len("blocks.0."):]: v for k, v in ours(w).items() if k.startswith("blocks.0.")},
                          strict=True)
    return block


# ------------------------------------------------------------------------------------------- the tests
def test_one_block_equals_the_hand_written_reference_and_not_timesformers_wiring():
    w = release_weights(depth=1)
    x = _inputs()
    with torch.no_grad():
        got = _block(w)(x, T)
    want = ref_block(x, w, 0)
    assert (got - want).abs().max() < 1e-6
    # The two ways transformers' TimeSformer differs give visibly different outputs: the test can tell.
    for variant in (dict(cls_key_in_groups=False), dict(time_residual=True)):
        assert (got - ref_block(x, w, 0, **variant)).abs().max() > 1e-2, variant


def test_whole_backbone_and_video_tower_equal_the_reference():
    depth = 2
    w = release_weights(depth, seed=2)
    g = torch.Generator().manual_seed(3)
    pixels = torch.randn(B, T, 3, SIZE, SIZE, generator=g, dtype=torch.float64)
    want = ref_transformer(pixels, w, depth)  # [B, 1 + T N, D]

    net = SpaceTimeTransformer(T, SIZE, PATCH, D, depth, H, MLP).double().eval()
    net.load_state_dict(ours(w), strict=True)
    with torch.no_grad():
        got = net(pixels)
    assert got.shape == (B, 1 + T * N, D) and (got - want).abs().max() < 1e-6

    # The tower pools, per frame, the maximum over that frame's own patch tokens (SPEC §2), and keeps the CLS.
    cfg = dataclasses.replace(preset("tiny").av, video_arch="frozen_in_time", video_patch=PATCH, video_hidden=D,
                              video_layers=depth, video_heads=H, video_mlp=MLP)
    tower = VideoTower(cfg, dataclasses.replace(preset("tiny").video, num_frames=T, size=SIZE)).double().eval()
    tower.load_state_dict(ours(w, "spacetime."), strict=True)
    with torch.no_grad():
        frames, cls = tower(pixels)
    pooled = torch.stack([want[:, [token(t, n) for n in range(N)]].amax(dim=1) for t in range(T)], dim=1)
    assert frames.shape == (B, T, D) and (frames - pooled).abs().max() < 1e-6
    assert (cls - want[:, 0]).abs().max() < 1e-6


def _changed_tokens(attn: DividedAttention, axis: str, where: int) -> set[int]:
    """Output tokens of one attention that move when input token `where` changes."""
    x = _inputs(seed=4)
    y = x.clone()
    y[:, where] += torch.linspace(-1.0, 1.0, D, dtype=x.dtype)
    with torch.no_grad():
        diff = (attn(y, T, axis) - attn(x, T, axis)).abs().amax(dim=(0, 2))
    return {i for i in range(1 + T * N) if diff[i] > 1e-9}


def test_cls_takes_part_in_the_temporal_and_the_spatial_attention():
    w = release_weights(depth=1)
    attn = DividedAttention(D, H).double().eval()
    attn.load_state_dict({k[len("blocks.0.time_attn."):]: v for k, v in ours(w).items()
                          if k.startswith("blocks.0.time_attn.")}, strict=True)
    t, n = 2, 1
    for axis in ("time", "space"):
        group = {token(s, n) for s in range(T)} if axis == "time" else {token(t, m) for m in range(N)}
        # A patch moves the CLS (which attends to the whole clip) and its own group, nothing else.
        assert _changed_tokens(attn, axis, token(t, n)) == {0} | group, axis
        # The CLS is a key of every group: changing it moves every token.
        assert _changed_tokens(attn, axis, 0) == set(range(1 + T * N)), axis


def test_cls_after_one_block_sees_a_patch_of_another_frame():
    block = _block(release_weights(depth=1))
    x = _inputs(seed=5)
    y = x.clone()
    # A patch of the last frame. (Not a constant shift: the LayerNorms would remove it.)
    y[:, token(2, 3)] += torch.linspace(-1.0, 1.0, D, dtype=x.dtype)
    with torch.no_grad():
        moved = (block(y, T) - block(x, T))[:, 0].abs().max()
    assert moved > 1e-3


def test_paper_backbone_on_meta_has_the_release_parameters_and_shapes():
    p = preset("paper")
    assert p.av.video_arch == "frozen_in_time"
    with torch.device("meta"):
        tower = VideoTower(p.av, p.video)
        frames, cls = tower(torch.empty(2, 16, 3, 224, 224))
    assert frames.shape == (2, 16, 768) and cls.shape == (2, 768)
    release = {k[len("module.video_model."):]: tuple(s) for k, s in RELEASE_KEYS["av_pth"].items()
               if k.startswith("module.video_model.") and not k.startswith("module.video_model.head.")}
    state = {k: tuple(v.shape) for k, v in tower.spacetime.state_dict().items()}
    rules = spacetime_rules("", "", p.av.video_layers)
    assert {r.src[0]: state[r.dst[0]] for r in rules} == release  # every name, every shape
    assert len(rules) == len(state)
    total = sum(math.prod(s) for s in release.values())
    assert sum(x.numel() for x in tower.parameters()) == total == 114_177_792


def test_bad_input_and_unknown_architecture_are_refused():
    net = SpaceTimeTransformer(T, SIZE, PATCH, D, 1, H, MLP)
    with pytest.raises(ValueError, match=r"expects \[B, 3, 3, 8, 8\], got \(1, 2, 3, 8, 8\)"):
        net(torch.zeros(1, 2, 3, SIZE, SIZE))
    with pytest.raises(ValueError, match="not a multiple of the patch"):
        SpaceTimeTransformer(T, 10, PATCH, D, 1, H, MLP)
    tiny = preset("tiny")
    with pytest.raises(Action2SoundError, match=r"video_arch must be one of .*'frozen_in_time'.*got 'vivit'"):
        VideoTower(dataclasses.replace(tiny.av, video_arch="vivit"), tiny.video)
