"""The mel-image VAE: a diffusers AutoencoderKL, and the mel <-> latent conversions around it.

The normalised mel ([0, 1], [n_mels, padded_frames]) is the image, used as is (no rescale to [-1, 1], as
the release). Channel convention: the paper's VAE is Stable Diffusion v1's RGB one, so the mel is copied to
3 channels and channel 0 of the decoded image is kept (SPEC §2); VAEs we train ourselves (tiny / small)
take and give 1 channel, which costs nothing to reconstruct twice. `VAEConfig.in_channels` says which.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL

from ..config import AudioProfile, Preset, VAEConfig


def build_vae(cfg: VAEConfig, profile: AudioProfile) -> AutoencoderKL:
    """AutoencoderKL for the profile's mel image (paper: SD v1's ch 128, mult [1,2,4,4], 2 res blocks, z 4)."""
    n = len(cfg.block_out_channels)
    vae = AutoencoderKL(
        in_channels=cfg.in_channels, out_channels=cfg.in_channels,
        down_block_types=("DownEncoderBlock2D",) * n, up_block_types=("UpDecoderBlock2D",) * n,
        block_out_channels=tuple(cfg.block_out_channels), layers_per_block=cfg.layers_per_block,
        latent_channels=cfg.latent_channels, norm_num_groups=cfg.norm_groups,
        sample_size=profile.n_mels, scaling_factor=cfg.scaling_factor,
    )
    if not cfg.trainable:
        vae.requires_grad_(False).eval()
    return vae


def build_vae_from_preset(p: Preset) -> AutoencoderKL:
    return build_vae(p.vae, p.audio)


def _as_image(vae: AutoencoderKL, mel: torch.Tensor) -> torch.Tensor:
    if mel.ndim != 3:
        raise ValueError(f"mel must be [B, n_mels, frames], got {tuple(mel.shape)}")
    return mel.unsqueeze(1).expand(-1, vae.config.in_channels, -1, -1)  # [B, in_channels, n_mels, frames]


def encode_mel(vae: AutoencoderKL, mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised mel [B, n_mels, padded_frames] -> posterior (mean, std), each [B, C, F, W], unscaled."""
    posterior = vae.encode(_as_image(vae, mel)).latent_dist
    return posterior.mean, posterior.std


def sample_latent(mean: torch.Tensor, std: torch.Tensor, scaling_factor: float,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """A posterior sample times the scaling factor [B, C, F, W]: what the diffusion model sees (SPEC §2)."""
    eps = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
    return (mean + std * eps) * scaling_factor


def decode_latent(vae: AutoencoderKL, z: torch.Tensor, num_frames: int, clamp: bool = True,
                  edge_columns: int = 0) -> torch.Tensor:
    """Scaled latent [B, C, F, W] -> normalised mel [B, n_mels, num_frames] (channel 0, real frames only).

    Decoded as is, a latent encoded from a zero-padded mel (a cliff the VAE, trained on crops of real frames,
    never saw) fades its last frames towards silence after an overshoot, and its first frame is dim (the
    convolutions pad with zeros): onsets at both ends of every window that no video asked for. With
    `edge_columns` = k > 0 the latent is extended before decoding and the extension cropped after: k copies of
    its first column on the left; on the right the columns that hold padding frames replaced by the mean of them
    and the last column whose frames are all real, and k more copies past the end. (That last column repeated
    instead decodes a swell: the median output's last 0.1 s 12 dB above its median level; docs/RESULTS.md,
    session 11.) k = 0 decodes the latent as it is.
    """
    f = 2 ** (len(vae.config.block_out_channels) - 1)
    if edge_columns > 0:
        full = max(1, min(z.shape[-1], num_frames // f))  # columns whose frames are all real
        tail = z[..., full - 1 :].mean(-1, keepdim=True)  # the overshoot of the one and the fade of the others
        z = torch.cat([z[..., :1]] * edge_columns + [z[..., :full]] + [tail] * (z.shape[-1] - full + edge_columns), -1)
    image = vae.decode(z / vae.config.scaling_factor).sample  # [B, in_channels, n_mels, W * f]
    start = max(edge_columns, 0) * f
    if image.shape[-1] - start < num_frames:
        raise ValueError(f"decoded mel has {image.shape[-1] - start} frames, fewer than the {num_frames} asked for")
    mel = image[:, 0, :, start : start + num_frames]
    return mel.clamp(0.0, 1.0) if clamp else mel


def latents_to_mels(vae: AutoencoderKL, z: torch.Tensor, preset: Preset) -> torch.Tensor:
    """Scaled latents [B, C, F, W] -> normalised mels [B, n_mels, num_frames]: `decode_latent` as the preset
    says (its real frames, its edge columns). Every decode of a model's latents goes through here."""
    return decode_latent(vae, z, preset.audio.num_frames, edge_columns=preset.vae.decode_edge_columns)


def vae_loss(vae: AutoencoderKL, mel: torch.Tensor, kl_weight: float, num_frames: int | None = None,
             generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(total, L1 reconstruction, KL) for mel [B, n_mels, padded_frames]; the loss covers the first num_frames."""
    image = _as_image(vae, mel)
    posterior = vae.encode(image).latent_dist
    z = posterior.sample(generator=generator)
    recon = vae.decode(z).sample  # [B, in_channels, n_mels, W * f]
    frames = num_frames or recon.shape[-1]
    rec = F.l1_loss(recon[..., :frames], image[..., :frames])
    # KL to N(0, I) summed over latent elements, averaged over the batch (as SD's VAE training).
    kl = posterior.kl().mean()
    return rec + kl_weight * kl, rec, kl
