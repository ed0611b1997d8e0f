"""The latent diffusion model: a diffusers UNet2DConditionModel plus the condition tokens, and its loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers import UNet2DConditionModel
from diffusers.models.attention_processor import AttnProcessor2_0
from torch import nn

from ..config import DiffusionConfig, Preset, SyncStreamConfig, UNetConfig
from ..sampling import alphas_cumprod
from .conditioning import Conditioner
from .sync_stream import SyncInjection


def build_unet(cfg: UNetConfig, latent_shape: tuple[int, int, int], ctx_dim: int) -> UNet2DConditionModel:
    """UNet2DConditionModel for latents [C, F, W] and a context of width ctx_dim (paper: SD v1, 859.5 M)."""
    if len(cfg.attention_levels) != len(cfg.block_out_channels):
        raise ValueError("unet.attention_levels needs one entry per unet.block_out_channels entry")
    c, f, w = latent_shape
    down = tuple("CrossAttnDownBlock2D" if a else "DownBlock2D" for a in cfg.attention_levels)
    up = tuple("CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(cfg.attention_levels))
    unet = UNet2DConditionModel(
        sample_size=(f, w), in_channels=c, out_channels=c, block_out_channels=tuple(cfg.block_out_channels),
        layers_per_block=cfg.layers_per_block, down_block_types=down, up_block_types=up,
        mid_block_type="UNetMidBlock2DCrossAttn", cross_attention_dim=ctx_dim,
        # diffusers' historical name: for SD v1 "attention_head_dim" holds the number of heads (8).
        attention_head_dim=cfg.heads, transformer_layers_per_block=cfg.transformer_depth,
        norm_num_groups=cfg.norm_groups,
    )
    unet.set_attn_processor(AttnProcessor2_0())  # torch SDPA (flash / memory-efficient kernels on GPU)
    if cfg.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
    return unet


class LatentDiffusion(nn.Module):
    """UNet + Conditioner; `forward` predicts epsilon (or v) and `loss` is the training objective."""

    def __init__(self, unet: UNet2DConditionModel, conditioner: Conditioner, diffusion: DiffusionConfig,
                 sync_stream: SyncStreamConfig | None = None):
        super().__init__()
        if diffusion.prediction_type not in ("epsilon", "v_prediction"):
            raise ValueError(f"diffusion.prediction_type must be 'epsilon' or 'v_prediction', "
                             f"got {diffusion.prediction_type!r}")
        # The sync stream (models/sync_stream.py), when enabled, widens the UNet's input before it is stored.
        enabled = sync_stream is not None and sync_stream.enabled
        self.sync = SyncInjection(sync_stream, unet) if enabled else None
        self.unet = unet
        self.conditioner = conditioner
        self.diffusion = diffusion
        self.register_buffer("alphas_cumprod", alphas_cumprod(diffusion), persistent=False)

    @classmethod
    def from_preset(cls, p: Preset) -> LatentDiffusion:
        unet = build_unet(p.unet, p.latent_shape, p.cond.ctx_dim)
        return cls(unet, Conditioner.from_preset(p), p.diffusion, p.sync_stream)

    def forward(self, x: torch.Tensor, t: torch.Tensor, context: torch.Tensor,
                sync: torch.Tensor | None = None) -> torch.Tensor:
        """x_t [B, C, F, W], t [B], context [B, L, ctx], sync [B, W, D_s] or None -> prediction [B, C, F, W].

        sync: the sync stream's column features; None (or zeros) is the null stream, the unconditional branch
        of guidance. A model without the stream takes none.
        """
        if self.sync is not None:
            x = self.sync(x, sync)
        elif sync is not None:
            raise ValueError("this model has no sync stream (sync_stream.enabled=False); pass sync=None")
        return self.unet(x, t, encoder_hidden_states=context).sample

    def context(
        self, video_feats: torch.Tensor | None, audio_latent: torch.Tensor | None,
        drop_video: torch.Tensor | None = None, drop_audio: torch.Tensor | None = None,
        batch_size: int | None = None,
    ) -> torch.Tensor:
        """Context [B, L, ctx] (see `Conditioner.forward`)."""
        return self.conditioner(video_feats, audio_latent, drop_video, drop_audio, batch_size)

    def guidance_contexts(
        self, video_feats: torch.Tensor | None, audio_latent: torch.Tensor | None,
        audio_missing: torch.Tensor | None = None, null_audio: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(full, video nulled, audio nulled) contexts [B, L, ctx] for `sampling.guided`.

        audio_missing [B]: rows without an audio condition, which get the audio null in the first two contexts.
        The third is None without an audio condition, or when `null_audio` is False (no audio guidance).
        """
        b = (video_feats if video_feats is not None else audio_latent).shape[0]
        yes = torch.ones(b, dtype=torch.bool, device=self.alphas_cumprod.device)
        full = self.context(video_feats, audio_latent, drop_audio=audio_missing, batch_size=b)
        null_video = self.context(video_feats, audio_latent, drop_video=yes, drop_audio=audio_missing, batch_size=b)
        nulled = (self.context(video_feats, audio_latent, drop_audio=yes, batch_size=b)
                  if null_audio and self.conditioner.audio is not None else None)
        return full, null_video, nulled

    def guided_model_fn(self, sync: torch.Tensor | None, w_video: float, w_audio: float = 1.0, w_sync: float = 1.0):
        """The model as `sampling.guided` calls it, with the sync stream of each of its passes.

        guided stacks the passes [full ; null video (when w_video != 1) ; null audio (when w_audio != 1) ; null
        sync (when w_sync != 1)]; the stream is the real one for the full and the null-audio passes and zero (the
        null stream) for the null-video and null-sync ones. The video's guidance then pushes along what the
        stream adds as well (issue 10's prototype: a zeroed stream in the unconditional branch beat keeping the
        real one, onset F1 0.22 vs 0.14); the null-sync pass keeps the full context, so the sync guidance pushes
        along what the stream alone adds. A model without the stream, or no stream given (None: zeros
        everywhere), is the model itself.
        """
        if self.sync is None or sync is None:
            return self
        b = sync.shape[0]
        parts = [sync] + ([torch.zeros_like(sync)] if w_video != 1.0 else []) + ([sync] if w_audio != 1.0 else []) \
            + ([torch.zeros_like(sync)] if w_sync != 1.0 else [])
        stacked = torch.cat(parts)

        def model_fn(x: torch.Tensor, t: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
            if x.shape[0] != b * len(parts):
                raise ValueError(f"guided passes {x.shape[0]} rows, the sync stream covers {b} x {len(parts)}; "
                                 "give guided_model_fn the same weights as guided")
            return self(x, t, ctx, stacked.to(x.device))

        return model_fn

    def loss(
        self, latents: torch.Tensor, video_feats: torch.Tensor | None, audio_latent: torch.Tensor | None,
        generator: torch.Generator | None = None, audio_missing: torch.Tensor | None = None,
        sync: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Plain MSE to epsilon (or v) at a uniform random t, conditions dropped with their probabilities.

        latents and audio_latent are scaled VAE latents [B, C, F, W]; `audio_missing` [B] forces the audio null
        on top of the random dropout (a clip without a neighbour); `generator` lives on latents.device. A model
        without an audio condition ignores audio_latent. sync [B, W, D_s]: the sync stream's column features
        (None: the null stream, zeros); a row whose video condition is dropped gets the null stream too, as the
        null-video branch of guidance does, and with probability p_drop_sync a row gets it alone (the null-sync
        branch of the sync guidance). A model without the stream ignores it.
        """
        d = self.diffusion
        b, dev = latents.shape[0], latents.device
        t = torch.randint(0, d.num_train_timesteps, (b,), generator=generator, device=dev)
        noise = torch.randn(latents.shape, generator=generator, device=dev, dtype=latents.dtype)
        drop_video = torch.rand(b, generator=generator, device=dev) < d.p_drop_video
        drop_audio = torch.rand(b, generator=generator, device=dev) < d.p_drop_audio
        if audio_missing is not None:
            drop_audio = drop_audio | audio_missing.to(dev)
        abar = self.alphas_cumprod[t].to(latents.dtype).view(b, 1, 1, 1)
        # Forward process (Ho et al. 2020, eq. 4); v = sqrt(abar) eps - sqrt(1 - abar) x0 (Salimans & Ho 2022).
        x_t = abar.sqrt() * latents + (1.0 - abar).sqrt() * noise
        if d.prediction_type == "epsilon":
            target = noise
        else:
            target = abar.sqrt() * noise - (1.0 - abar).sqrt() * latents
        audio = audio_latent if self.conditioner.audio is not None else None
        ctx = self.context(video_feats, audio, drop_video, drop_audio)
        stream = None
        if self.sync is not None:
            drop_stream = drop_video
            if d.p_drop_sync > 0:  # drawn only when asked for, so runs without it keep their random sequence
                drop_stream = drop_stream | (torch.rand(b, generator=generator, device=dev) < d.p_drop_sync)
            stream = torch.zeros(b, latents.shape[-1], self.sync.dim, device=dev, dtype=latents.dtype) \
                if sync is None else torch.where(drop_stream.view(b, 1, 1), torch.zeros_like(sync), sync)
        return F.mse_loss(self(x_t, t, ctx, stream).float(), target.float())
