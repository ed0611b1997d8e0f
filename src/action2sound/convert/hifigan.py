"""The official HiFi-GAN V1 generator checkpoint (Kong et al. 2020) -> transformers' SpeechT5HifiGan state dict.

The official code trains with weight normalisation and saves each convolution as (weight_g, weight_v, bias);
SpeechT5HifiGan has the same structure with plain weights. An explicit key table maps one onto the other and
w = g v / ||v|| folds the norm; a key with no place, a missing one or a shape mismatch is an error.
This file needs only torch: `models.vocoder.load_universal_hifigan` calls it without a cycle.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from ..errors import Action2SoundError


def universal_key_table(config: Any) -> dict[str, str]:
    """Module of the official HiFi-GAN checkpoint -> module of SpeechT5HifiGan (each has weight_g/v and bias).

    `config`: the generator's SpeechT5HifiGanConfig (upsample_rates, resblock_kernel_sizes, resblock_dilation_sizes).
    """
    table = {"conv_pre": "conv_pre", "conv_post": "conv_post"}
    for i in range(len(config.upsample_rates)):
        table[f"ups.{i}"] = f"upsampler.{i}"
    for j in range(len(config.upsample_rates) * len(config.resblock_kernel_sizes)):
        dilations = config.resblock_dilation_sizes[j % len(config.resblock_kernel_sizes)]
        for k in range(len(dilations)):
            for convs in ("convs1", "convs2"):
                table[f"resblocks.{j}.{convs}.{k}"] = f"resblocks.{j}.{convs}.{k}"
    return table


def fold_weight_norm(g: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """w = g v / ||v||, the norm over every axis but the first (torch weight_norm with dim=0)."""
    norm = v.flatten(1).norm(dim=1).view(-1, *([1] * (v.ndim - 1)))
    return g * v / norm


def convert_official_hifigan(state: Mapping[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """Official weight-normalised generator state dict -> `model`'s (a SpeechT5HifiGan) state dict; strict."""
    target = model.state_dict()
    out: dict[str, torch.Tensor] = {}
    used: set[str] = set()
    for src, dst in universal_key_table(model.config).items():
        for name in ("weight_g", "weight_v", "bias"):
            if f"{src}.{name}" not in state:
                raise Action2SoundError(f"HiFi-GAN checkpoint lacks {src}.{name}: not an official V1 generator")
        out[f"{dst}.weight"] = fold_weight_norm(state[f"{src}.weight_g"], state[f"{src}.weight_v"])
        out[f"{dst}.bias"] = state[f"{src}.bias"]
        used.update(f"{src}.{n}" for n in ("weight_g", "weight_v", "bias"))
    leftover = sorted(set(state) - used)
    if leftover:
        raise Action2SoundError(f"HiFi-GAN checkpoint has keys with no place in the model: {leftover[:5]}")
    # normalize_before is off: its mean / scale buffers stay at their neutral values.
    for key in ("mean", "scale"):
        out[key] = target[key]
    missing = sorted(set(target) - set(out))
    if missing:
        raise Action2SoundError(f"HiFi-GAN conversion left model weights unset: {missing[:5]}")
    for key, value in out.items():
        if value.shape != target[key].shape:
            raise Action2SoundError(f"HiFi-GAN weight {key}: checkpoint {tuple(value.shape)} vs model "
                                    f"{tuple(target[key].shape)}")
    return out
