"""Explicit key tables: the public Action2Sound release's parameter names -> ours, and back.

Each `Rule` names its source key(s), its destination key(s) and one of three operations:

- ``copy``: the same tensor under another name;
- ``conv1x1_to_linear``: a 1x1 convolution [out, in, 1, 1] that our module holds as a Linear [out, in]
  (the VAE mid-block attention of the CompVis code vs diffusers' Attention);
- ``split_qkv``: a fused attention input projection [3 D, ...] -> query, key, value [D, ...] each. The fused
  rows are ordered (q|k|v, head, head_dim), as timm's ``qkv(x).reshape(B, N, 3, H, D/H)`` reads them, so the
  split is three equal chunks along dim 0 and each chunk keeps its (head, head_dim) row order, which is also
  how transformers' separate projections are read (``view(B, N, H, D/H)``);
- ``drop_batch_dim``: a [1, ...] tensor held without its leading 1 (the release's `audio_zero_embed`).

Tables are generated per block from the architecture's numbers (channels, layers per block, attention levels);
every rule is written out below, and `apply_rules` checks every shape and fails on any key left over.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import torch

from ..errors import Action2SoundError

OPS = ("copy", "conv1x1_to_linear", "split_qkv", "drop_batch_dim")
_ARITY = {"copy": (1, 1), "conv1x1_to_linear": (1, 1), "split_qkv": (1, 3), "drop_batch_dim": (1, 1)}


@dataclass(frozen=True)
class Rule:
    """One release tensor (or a fused group) and where it lives in our model."""

    src: tuple[str, ...]
    dst: tuple[str, ...]
    op: str = "copy"

    def __post_init__(self) -> None:
        if self.op not in OPS:
            raise ValueError(f"unknown rule op {self.op!r}")
        n_src, n_dst = _ARITY[self.op]
        if (len(self.src), len(self.dst)) != (n_src, n_dst):
            raise ValueError(f"rule {self.op} needs {n_src} source and {n_dst} destination keys: {self}")


def copy(src: str, dst: str) -> Rule:
    return Rule((src,), (dst,))


def _params(src: str, dst: str, names: Iterable[str] = ("weight", "bias")) -> list[Rule]:
    return [copy(f"{src}.{n}", f"{dst}.{n}") for n in names]


# ---------------------------------------------------------------------------------------------- the UNet
# CompVis openaimodel.UNetModel -> diffusers UNet2DConditionModel. Layout of the CompVis model with
# L = layers_per_block and N levels (SD v1: L = 2, N = 4, attention on levels 0..2):
#   input_blocks[0]                      conv_in
#   input_blocks[1 + i (L + 1) + j]      level i, layer j < L: [ResBlock, SpatialTransformer if attention]
#   input_blocks[(i + 1)(L + 1)]         level i < N - 1: Downsample (.op conv)
#   middle_block                         [ResBlock, SpatialTransformer, ResBlock]
#   output_blocks[i (L + 1) + j]         up level i (coarsest first), layer j <= L: [ResBlock,
#                                        SpatialTransformer if that level attends, Upsample at j = L, i < N - 1]
#   out                                  [GroupNorm, SiLU, conv]


def _unet_resnet(src: str, dst: str, shortcut: bool) -> list[Rule]:
    rules = (_params(f"{src}.in_layers.0", f"{dst}.norm1") + _params(f"{src}.in_layers.2", f"{dst}.conv1")
             + _params(f"{src}.emb_layers.1", f"{dst}.time_emb_proj") + _params(f"{src}.out_layers.0", f"{dst}.norm2")
             + _params(f"{src}.out_layers.3", f"{dst}.conv2"))
    if shortcut:  # a 1x1 conv only where the channel count changes
        rules += _params(f"{src}.skip_connection", f"{dst}.conv_shortcut")
    return rules


def _unet_transformer(src: str, dst: str, depth: int) -> list[Rule]:
    rules = _params(f"{src}.norm", f"{dst}.norm") + _params(f"{src}.proj_in", f"{dst}.proj_in")
    for d in range(depth):
        s, t = f"{src}.transformer_blocks.{d}", f"{dst}.transformer_blocks.{d}"
        for attn in ("attn1", "attn2"):
            # SD v1 attention projections have no bias; the names are the same on both sides.
            rules += [copy(f"{s}.{attn}.to_{x}.weight", f"{t}.{attn}.to_{x}.weight") for x in "qkv"]
            rules += _params(f"{s}.{attn}.to_out.0", f"{t}.{attn}.to_out.0")
        rules += _params(f"{s}.ff.net.0.proj", f"{t}.ff.net.0.proj") + _params(f"{s}.ff.net.2", f"{t}.ff.net.2")
        rules += [r for n in ("norm1", "norm2", "norm3") for r in _params(f"{s}.{n}", f"{t}.{n}")]
    rules += _params(f"{src}.proj_out", f"{dst}.proj_out")
    return rules


def unet_rules(src: str, dst: str, channels: tuple[int, ...], layers_per_block: int,
               attention_levels: tuple[bool, ...], depth: int = 1) -> list[Rule]:
    """CompVis UNet (prefix `src`, e.g. 'model.diffusion_model.') -> diffusers UNet2DConditionModel (`dst`)."""
    n, lpb = len(channels), layers_per_block
    rules = (_params(f"{src}time_embed.0", f"{dst}time_embedding.linear_1")
             + _params(f"{src}time_embed.2", f"{dst}time_embedding.linear_2")
             + _params(f"{src}input_blocks.0.0", f"{dst}conv_in"))
    ch = channels[0]
    skip_channels = [ch]  # channels of every input block's output, consumed in reverse by the output blocks
    for i in range(n):
        for j in range(lpb):
            k = 1 + i * (lpb + 1) + j
            rules += _unet_resnet(f"{src}input_blocks.{k}.0", f"{dst}down_blocks.{i}.resnets.{j}", ch != channels[i])
            ch = channels[i]
            if attention_levels[i]:
                rules += _unet_transformer(f"{src}input_blocks.{k}.1", f"{dst}down_blocks.{i}.attentions.{j}", depth)
            skip_channels.append(ch)
        if i < n - 1:
            k = (i + 1) * (lpb + 1)
            rules += _params(f"{src}input_blocks.{k}.0.op", f"{dst}down_blocks.{i}.downsamplers.0.conv")
            skip_channels.append(ch)
    rules += (_unet_resnet(f"{src}middle_block.0", f"{dst}mid_block.resnets.0", False)
              + _unet_transformer(f"{src}middle_block.1", f"{dst}mid_block.attentions.0", depth)
              + _unet_resnet(f"{src}middle_block.2", f"{dst}mid_block.resnets.1", False))
    for i in range(n):
        level = n - 1 - i  # diffusers' up_blocks[i] mirrors down level n-1-i
        attends = attention_levels[level]
        for j in range(lpb + 1):
            k = i * (lpb + 1) + j
            in_ch = ch + skip_channels.pop()
            # Every output ResBlock takes a concatenated skip, so its input never equals its output width.
            rules += _unet_resnet(f"{src}output_blocks.{k}.0", f"{dst}up_blocks.{i}.resnets.{j}",
                                  in_ch != channels[level])
            ch = channels[level]
            if attends:
                rules += _unet_transformer(f"{src}output_blocks.{k}.1", f"{dst}up_blocks.{i}.attentions.{j}", depth)
            if j == lpb and i < n - 1:
                up = 2 if attends else 1
                rules += _params(f"{src}output_blocks.{k}.{up}.conv", f"{dst}up_blocks.{i}.upsamplers.0.conv")
    rules += _params(f"{src}out.0", f"{dst}conv_norm_out") + _params(f"{src}out.2", f"{dst}conv_out")
    return rules


# ----------------------------------------------------------------------------------------------- the VAE
# CompVis taming/ldm AutoencoderKL -> diffusers AutoencoderKL. The decoder's CompVis `up` list is indexed
# finest first (up[0] has the fewest channels) but runs coarsest first; diffusers' up_blocks run and are
# indexed coarsest first, so up[i] -> up_blocks[N - 1 - i]. Mid-block attention q/k/v/proj_out are 1x1 convs
# in CompVis and Linear layers in diffusers.


def _vae_resnet(src: str, dst: str, shortcut: bool) -> list[Rule]:
    rules = [r for a, b in (("norm1", "norm1"), ("conv1", "conv1"), ("norm2", "norm2"), ("conv2", "conv2"))
             for r in _params(f"{src}.{a}", f"{dst}.{b}")]
    if shortcut:
        rules += _params(f"{src}.nin_shortcut", f"{dst}.conv_shortcut")
    return rules


def _vae_mid(src: str, dst: str) -> list[Rule]:
    rules = _vae_resnet(f"{src}.block_1", f"{dst}.resnets.0", False)
    rules += _params(f"{src}.attn_1.norm", f"{dst}.attentions.0.group_norm")
    for a, b in (("q", "to_q"), ("k", "to_k"), ("v", "to_v"), ("proj_out", "to_out.0")):
        rules.append(Rule((f"{src}.attn_1.{a}.weight",), (f"{dst}.attentions.0.{b}.weight",), "conv1x1_to_linear"))
        rules.append(copy(f"{src}.attn_1.{a}.bias", f"{dst}.attentions.0.{b}.bias"))
    rules += _vae_resnet(f"{src}.block_2", f"{dst}.resnets.1", False)
    return rules


def vae_rules(src: str, dst: str, channels: tuple[int, ...], layers_per_block: int) -> list[Rule]:
    """CompVis AutoencoderKL (prefix `src`, e.g. 'first_stage_model.') -> diffusers AutoencoderKL (`dst`)."""
    n, lpb = len(channels), layers_per_block
    rules = (_params(f"{src}encoder.conv_in", f"{dst}encoder.conv_in")
             + _params(f"{src}quant_conv", f"{dst}quant_conv")
             + _params(f"{src}post_quant_conv", f"{dst}post_quant_conv"))
    ch = channels[0]
    for i in range(n):
        for j in range(lpb):
            rules += _vae_resnet(f"{src}encoder.down.{i}.block.{j}", f"{dst}encoder.down_blocks.{i}.resnets.{j}",
                                 ch != channels[i])
            ch = channels[i]
        if i < n - 1:
            rules += _params(f"{src}encoder.down.{i}.downsample.conv",
                             f"{dst}encoder.down_blocks.{i}.downsamplers.0.conv")
    rules += _vae_mid(f"{src}encoder.mid", f"{dst}encoder.mid_block")
    rules += (_params(f"{src}encoder.norm_out", f"{dst}encoder.conv_norm_out")
              + _params(f"{src}encoder.conv_out", f"{dst}encoder.conv_out"))
    rules += _params(f"{src}decoder.conv_in", f"{dst}decoder.conv_in")
    rules += _vae_mid(f"{src}decoder.mid", f"{dst}decoder.mid_block")
    ch = channels[-1]
    for i in reversed(range(n)):  # run order: coarsest first
        b = n - 1 - i
        for j in range(lpb + 1):
            rules += _vae_resnet(f"{src}decoder.up.{i}.block.{j}", f"{dst}decoder.up_blocks.{b}.resnets.{j}",
                                 ch != channels[i])
            ch = channels[i]
        if i > 0:
            rules += _params(f"{src}decoder.up.{i}.upsample.conv", f"{dst}decoder.up_blocks.{b}.upsamplers.0.conv")
    rules += (_params(f"{src}decoder.norm_out", f"{dst}decoder.conv_norm_out")
              + _params(f"{src}decoder.conv_out", f"{dst}decoder.conv_out"))
    return rules


# --------------------------------------------------------------------------------------- the video model
# The release's video model is Frozen-in-Time's SpaceTimeTransformer (EgoVLP), which our
# `models.spacetime.SpaceTimeTransformer` computes exactly (VideoTower with video_arch="frozen_in_time"). Only
# the names differ: per block norm3 -> time_norm, timeattn -> time_attn, norm1 -> space_norm, attn -> space_attn,
# norm2 -> mlp_norm; temporal_embed -> time_embed, patch_embed.proj -> patch_embed. Shapes are the same, and the
# fused qkv stays fused: both read its rows as (q|k|v, head, head_dim).


def spacetime_rules(src: str, dst: str, layers: int) -> list[Rule]:
    """Release video_model (prefix `src`) -> our SpaceTimeTransformer (`dst`)."""
    rules = [copy(f"{src}cls_token", f"{dst}cls_token"),
             copy(f"{src}pos_embed", f"{dst}pos_embed"),
             copy(f"{src}temporal_embed", f"{dst}time_embed")]
    rules += _params(f"{src}patch_embed.proj", f"{dst}patch_embed")
    for i in range(layers):
        s, t = f"{src}blocks.{i}", f"{dst}blocks.{i}"
        rules += (_params(f"{s}.norm3", f"{t}.time_norm")
                  + _params(f"{s}.timeattn.qkv", f"{t}.time_attn.qkv")
                  + _params(f"{s}.timeattn.proj", f"{t}.time_attn.proj")
                  + _params(f"{s}.norm1", f"{t}.space_norm")
                  + _params(f"{s}.attn.qkv", f"{t}.space_attn.qkv")
                  + _params(f"{s}.attn.proj", f"{t}.space_attn.proj")
                  + _params(f"{s}.norm2", f"{t}.mlp_norm")
                  + _params(f"{s}.mlp.fc1", f"{t}.mlp.fc1")
                  + _params(f"{s}.mlp.fc2", f"{t}.mlp.fc2"))
    rules += _params(f"{src}norm", f"{dst}norm")
    return rules


# --------------------------------------------------------------------------------------- the audio model
# The release's audio model is AST (timm ViT `v` + `mlp_head`): fused qkv -> transformers' separate
# q_proj / k_proj / v_proj (split_qkv); v.norm -> layernorm; mlp_head (LayerNorm, Linear) -> our projection.


def ast_rules(src: str, dst: str, layers: int) -> list[Rule]:
    """Release audio_model.v (prefix `src`) -> transformers ASTModel (`dst`)."""
    rules = [copy(f"{src}cls_token", f"{dst}embeddings.cls_token"),
             copy(f"{src}dist_token", f"{dst}embeddings.distillation_token"),
             copy(f"{src}pos_embed", f"{dst}embeddings.position_embeddings")]
    rules += _params(f"{src}patch_embed.proj", f"{dst}embeddings.patch_embeddings.projection")
    for i in range(layers):
        s, t = f"{src}blocks.{i}", f"{dst}layers.{i}"
        for n in ("weight", "bias"):
            rules.append(Rule((f"{s}.attn.qkv.{n}",),
                              tuple(f"{t}.attention.{x}_proj.{n}" for x in "qkv"), "split_qkv"))
        rules += (_params(f"{s}.attn.proj", f"{t}.attention.o_proj")
                  + _params(f"{s}.norm1", f"{t}.layernorm_before")
                  + _params(f"{s}.norm2", f"{t}.layernorm_after")
                  + _params(f"{s}.mlp.fc1", f"{t}.mlp.fc1")
                  + _params(f"{s}.mlp.fc2", f"{t}.mlp.fc2"))
    rules += _params(f"{src}norm", f"{dst}layernorm")
    return rules


# ------------------------------------------------------------------------------------------- the engine


def forward_op(op: str, tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """Release tensors of one rule -> our tensors."""
    (x,) = tensors
    if op == "copy":
        return [x]
    if op == "drop_batch_dim":
        if x.ndim < 1 or x.shape[0] != 1:
            raise ValueError(f"expected a leading dimension of 1, got {list(x.shape)}")
        return [x[0]]
    if op == "conv1x1_to_linear":
        if x.ndim != 4 or x.shape[2:] != (1, 1):
            raise ValueError(f"expected a 1x1 conv weight [out, in, 1, 1], got {list(x.shape)}")
        return [x[:, :, 0, 0]]
    if x.shape[0] % 3:
        raise ValueError(f"a fused qkv needs a first dimension divisible by 3, got {list(x.shape)}")
    return list(x.chunk(3, dim=0))


def inverse_op(op: str, tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """Our tensors of one rule -> the release tensor (exact inverse of `forward_op`)."""
    if op == "copy":
        return list(tensors)
    if op == "conv1x1_to_linear":
        return [tensors[0][:, :, None, None]]
    if op == "drop_batch_dim":
        return [tensors[0][None]]
    return [torch.cat(tensors, dim=0)]


def _names(keys: Iterable[str], limit: int = 8) -> str:
    keys = sorted(keys)
    shown = ", ".join(keys[:limit])
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def apply_rules(
    rules: list[Rule], source: Mapping[str, torch.Tensor], target_shapes: Mapping[str, tuple[int, ...]],
    where: str, inverse: bool = False,
) -> dict[str, torch.Tensor]:
    """Map `source` through `rules` (or back, `inverse=True`), checking every shape against `target_shapes`.

    Every source key must be consumed and every target key produced, exactly once; otherwise an
    Action2SoundError names the keys and `where` (the file they came from).
    """
    out: dict[str, torch.Tensor] = {}
    used: set[str] = set()
    for rule in rules:
        src, dst = (rule.dst, rule.src) if inverse else (rule.src, rule.dst)
        missing = [k for k in src if k not in source]
        if missing:
            raise Action2SoundError(f"{where}: missing key {missing[0]!r} (expected for {dst[0]!r}); "
                                    "is this the right file, unmodified?")
        try:
            made = (inverse_op if inverse else forward_op)(rule.op, [source[k] for k in src])
        except ValueError as err:
            raise Action2SoundError(f"{where}: key {src[0]!r}: {err}") from None
        for key, tensor in zip(dst, made):
            if key not in target_shapes:
                raise Action2SoundError(f"{where}: the key table maps {src[0]!r} to {key!r}, which the target "
                                        "model does not have; the table and the model config disagree")
            if tuple(tensor.shape) != tuple(target_shapes[key]):
                raise Action2SoundError(
                    f"{where}: key {src[0]!r} has shape {list(source[src[0]].shape)}, but {key!r} needs "
                    f"{list(target_shapes[key])}; this file does not match the paper architecture")
            if key in out:
                raise Action2SoundError(f"{where}: two rules write {key!r}; the key table is wrong")
            out[key] = tensor
        used.update(src)
    leftover = set(source) - used
    if leftover:
        raise Action2SoundError(f"{where}: unexpected key(s) no table maps: {_names(leftover)}; "
                                "this file has parts the paper architecture lacks")
    unmade = set(target_shapes) - set(out)
    if unmade:
        raise Action2SoundError(f"{where}: no source for key(s) {_names(unmade)}; the key table is incomplete")
    return out
