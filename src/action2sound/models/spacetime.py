"""Frozen-in-Time's Space-Time Transformer, the video backbone of the released audio-visual model.

Bain et al. 2021, "Frozen in Time" (arXiv 2104.00650), as EgoVLP and the Action2Sound release use it: a ViT over
T frames with divided space-time attention. It computes a different function from TimeSformer (Bertasius et al.
2021, transformers' `TimesformerModel`) with the same weights, in three places:

- tokens are frame-major, [CLS, frame 0 patches, frame 1 patches, ...]; the CLS token gets only the first
  spatial position embedding, a patch the embedding of its position in the frame plus that of its frame;
- in both attentions the CLS query attends to every token of the clip, and every group of patch queries (one
  patch position across the frames for time, one frame for space) attends to the CLS key and value as well as
  to its own group;
- a block is  x <- x + A_space(LN_space(x + A_time(LN_time(x)))),  then  x <- x + MLP(LN_mlp(x)): the temporal
  output feeds the spatial attention's input but has no residual of its own, and no Linear follows it.

The qkv projection stays fused, its rows read as (q|k|v, head, head_dim), as the release reads them.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

_INIT_STD = 0.02
AXES = ("time", "space")


class DividedAttention(nn.Module):
    """Multi-head attention over one axis of the clip, with a global CLS token (module docstring)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        if dim % heads:
            raise ValueError(f"width {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, frames: int, axis: str) -> torch.Tensor:
        """x [B, 1 + T N, D] (CLS, then frame-major patches) -> [B, 1 + T N, D]; axis 'time' or 'space'."""
        if axis not in AXES:
            raise ValueError(f"axis must be one of {AXES}, got {axis!r}")
        b, length, dim = x.shape
        patches = (length - 1) // frames
        heads = self.heads
        q, k, v = self.qkv(x).view(b, length, 3, heads, dim // heads).permute(2, 0, 3, 1, 4)  # 3 x [B, H, L, d]
        # The CLS query attends to the whole clip, whichever axis this is.
        cls_out = F.scaled_dot_product_attention(q[:, :, :1], k, v)  # [B, H, 1, d]

        def groups(t: torch.Tensor) -> torch.Tensor:
            t = t[:, :, 1:].unflatten(2, (frames, patches))  # [B, H, T, N, d]
            return t.transpose(2, 3) if axis == "time" else t  # [B, H, G, S, d]: G groups of S tokens

        qg, kg, vg = groups(q), groups(k), groups(v)
        g = qg.shape[2]
        # Every group also sees the CLS key / value: [B, H, G, 1 + S, d].
        kg = torch.cat([k[:, :, None, :1].expand(-1, -1, g, -1, -1), kg], dim=3)
        vg = torch.cat([v[:, :, None, :1].expand(-1, -1, g, -1, -1), vg], dim=3)
        out = F.scaled_dot_product_attention(qg.flatten(1, 2), kg.flatten(1, 2), vg.flatten(1, 2))
        out = out.unflatten(1, (heads, g))  # [B, H, G, S, d]
        if axis == "time":
            out = out.transpose(2, 3)  # back to [B, H, T, N, d]
        out = torch.cat([cls_out, out.flatten(2, 3)], dim=2)  # [B, H, L, d]
        return self.proj(out.transpose(1, 2).reshape(b, length, dim))


class SpaceTimeBlock(nn.Module):
    """Temporal attention, spatial attention and MLP, wired as Frozen-in-Time wires them (module docstring)."""

    def __init__(self, dim: int, heads: int, mlp_dim: int, eps: float = 1e-6):
        super().__init__()
        self.time_norm = nn.LayerNorm(dim, eps=eps)
        self.time_attn = DividedAttention(dim, heads)
        self.space_norm = nn.LayerNorm(dim, eps=eps)
        self.space_attn = DividedAttention(dim, heads)
        self.mlp_norm = nn.LayerNorm(dim, eps=eps)
        self.mlp = nn.Sequential(OrderedDict(fc1=nn.Linear(dim, mlp_dim), act=nn.GELU(), fc2=nn.Linear(mlp_dim, dim)))

    def forward(self, x: torch.Tensor, frames: int) -> torch.Tensor:
        """x [B, 1 + T N, D] -> [B, 1 + T N, D]."""
        t = self.time_attn(self.time_norm(x), frames, "time")
        # The temporal output enters only through the spatial attention's input (no residual of its own).
        x = x + self.space_attn(self.space_norm(x + t), frames, "space")
        return x + self.mlp(self.mlp_norm(x))


class SpaceTimeTransformer(nn.Module):
    """Frames [B, T, C, H, W] -> final-norm tokens [B, 1 + T N, D]: CLS first, then frame-major patches."""

    def __init__(self, num_frames: int, image_size: int, patch_size: int, dim: int, depth: int, heads: int,
                 mlp_dim: int, in_channels: int = 3, eps: float = 1e-6):
        super().__init__()
        if image_size % patch_size:
            raise ValueError(f"image size {image_size} is not a multiple of the patch {patch_size}")
        self.num_frames, self.image_size, self.in_channels = num_frames, image_size, in_channels
        self.num_patches = (image_size // patch_size) ** 2  # per frame
        self.patch_embed = nn.Conv2d(in_channels, dim, kernel_size=patch_size, stride=patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + self.num_patches, dim))  # CLS + one frame's positions
        self.time_embed = nn.Parameter(torch.zeros(1, num_frames, dim))  # one per frame
        self.blocks = nn.ModuleList(SpaceTimeBlock(dim, heads, mlp_dim, eps) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=eps)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """ViT initialisation: truncated normal (std 0.02) weights and embeddings, zero biases, unit norms."""
        for p in (self.cls_token, self.pos_embed, self.time_embed):
            nn.init.trunc_normal_(p, std=_INIT_STD)
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                nn.init.trunc_normal_(m.weight, std=_INIT_STD)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """pixels [B, T, C, H, W] -> tokens [B, 1 + T N, D] after the final LayerNorm."""
        want = (self.num_frames, self.in_channels, self.image_size, self.image_size)
        if pixels.ndim != 5 or tuple(pixels.shape[1:]) != want:
            raise ValueError(f"the space-time transformer expects [B, {', '.join(map(str, want))}], "
                             f"got {tuple(pixels.shape)}")
        b, frames = pixels.shape[:2]
        x = self.patch_embed(pixels.flatten(0, 1))  # [B T, D, h, w]
        x = x.flatten(2).transpose(1, 2).reshape(b, frames * self.num_patches, -1)  # [B, T N, D], frame-major
        # Position within the frame, tiled over frames, plus the frame's own embedding repeated over its patches.
        pos = self.pos_embed[:, 1:].repeat(1, frames, 1) + self.time_embed.repeat_interleave(self.num_patches, dim=1)
        x = torch.cat([self.cls_token.expand(b, -1, -1) + self.pos_embed[:, :1], x + pos], dim=1)
        for block in self.blocks:
            x = block(x, frames)
        return self.norm(x)
