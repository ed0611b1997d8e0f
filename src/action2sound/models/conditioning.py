"""Condition tokens of AV-LDM: video tokens, audio tokens, and one learned null token set per condition.

context = [video tokens ; audio tokens]  ([T + W, ctx], [40, 768] for paper), the cross-attention context of
every UNet transformer block (SPEC §2). A dropped condition is replaced by its learned null tokens, the very
same parameters in training (condition dropout) and at sampling (guidance): SPEC §3.3 fixes the release,
whose two "nulls" differed.
"""

from __future__ import annotations

import torch
from torch import nn

from ..config import ConditioningConfig, Preset

_INIT_STD = 0.02


class VideoTokens(nn.Module):
    """Per-frame video features [B, T, Dv] -> tokens [B, T, ctx] (Linear + learned position)."""

    def __init__(self, video_dim: int, num_frames: int, ctx_dim: int):
        super().__init__()
        self.proj = nn.Linear(video_dim, ctx_dim)
        self.pos = nn.Parameter(torch.randn(num_frames, ctx_dim) * _INIT_STD)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """feats [B, T, Dv] -> [B, T, ctx]."""
        if feats.shape[1:] != (self.pos.shape[0], self.proj.in_features):
            raise ValueError(
                f"video features must be [B, {self.pos.shape[0]}, {self.proj.in_features}], got {tuple(feats.shape)}"
            )
        return self.proj(feats) + self.pos


class AudioTokens(nn.Module):
    """Neighbour latent [B, C, F, W] read as W time steps of C*F values -> tokens [B, W, ctx].

    MLP C*F -> hidden, GELU, hidden -> ctx, plus a learned position per time step. Trained (the release never
    trained it: SPEC §3.2).
    """

    def __init__(self, latent_shape: tuple[int, int, int], ctx_dim: int, hidden: int):
        super().__init__()
        self.latent_shape = tuple(latent_shape)
        c, f, w = self.latent_shape
        self.mlp = nn.Sequential(nn.Linear(c * f, hidden), nn.GELU(), nn.Linear(hidden, ctx_dim))
        self.pos = nn.Parameter(torch.randn(w, ctx_dim) * _INIT_STD)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        """latent [B, C, F, W] -> [B, W, ctx]."""
        if tuple(latent.shape[1:]) != self.latent_shape:
            raise ValueError(f"audio latent must be [B, {', '.join(map(str, self.latent_shape))}], "
                             f"got {tuple(latent.shape)}")
        b, c, f, w = latent.shape
        steps = latent.permute(0, 3, 1, 2).reshape(b, w, c * f)  # [B, W, C*F], channel-major per step
        return self.mlp(steps) + self.pos


class Conditioner(nn.Module):
    """Builds the cross-attention context [B, T (+ W), ctx], substituting learned nulls for dropped conditions."""

    def __init__(self, video_dim: int, num_frames: int, latent_shape: tuple[int, int, int], cfg: ConditioningConfig):
        super().__init__()
        self.cfg = cfg
        self.video = VideoTokens(video_dim, num_frames, cfg.ctx_dim)
        self.null_video = nn.Parameter(torch.randn(num_frames, cfg.ctx_dim) * _INIT_STD)
        if cfg.use_audio:
            self.audio = AudioTokens(latent_shape, cfg.ctx_dim, cfg.audio_hidden)
            self.null_audio = nn.Parameter(torch.randn(latent_shape[2], cfg.ctx_dim) * _INIT_STD)
        else:
            self.audio = None
            self.null_audio = None

    @classmethod
    def from_preset(cls, p: Preset) -> Conditioner:
        return cls(p.av.video_hidden, p.video.num_frames, p.latent_shape, p.cond)

    def forward(
        self, video_feats: torch.Tensor | None, audio_latent: torch.Tensor | None,
        drop_video: torch.Tensor | None = None, drop_audio: torch.Tensor | None = None,
        batch_size: int | None = None,
    ) -> torch.Tensor:
        """Context [B, T + W, ctx]. A None condition, or a True in its drop mask [B], gives that condition's null."""
        b = _batch_size((video_feats, audio_latent, drop_video, drop_audio), batch_size)
        parts = [_substitute(self.video, self.null_video, video_feats, drop_video, b)]
        if self.audio is not None:
            parts.append(_substitute(self.audio, self.null_audio, audio_latent, drop_audio, b))
        elif audio_latent is not None:
            raise ValueError("this model has no audio condition (cond.use_audio=False); pass audio_latent=None")
        return torch.cat(parts, dim=1)


def _batch_size(tensors: tuple[torch.Tensor | None, ...], given: int | None) -> int:
    for t in tensors:
        if t is not None:
            return t.shape[0]
    if given is None:
        raise ValueError("no condition and no drop mask given: pass batch_size")
    return given


def _substitute(encoder: nn.Module, null: nn.Parameter, x: torch.Tensor | None, drop: torch.Tensor | None,
                batch: int) -> torch.Tensor:
    nulls = null.unsqueeze(0).expand(batch, -1, -1)  # [B, tokens, ctx]
    if x is None:
        return nulls
    tokens = encoder(x)
    if drop is None:
        return tokens
    # torch.where keeps gradients flowing to the null rows that were used, and to the encoder elsewhere.
    return torch.where(drop.to(tokens.device).view(-1, 1, 1), nulls.to(tokens.dtype), tokens)
