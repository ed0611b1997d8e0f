"""Stage vae: the mel AutoencoderKL (L1 reconstruction + KL), reporting mel L1 and PSNR on validation.

When the stage ends, the latent scaling factor is set to 1 / std of the training latents (as Stable Diffusion
did for its VAE), so that the diffusion model sees latents of unit variance; it travels in the preset stored
with the weights.
"""

from __future__ import annotations

import dataclasses
import math

import torch

from ..config import Preset, StageTrainConfig
from ..models.vae import build_vae_from_preset, encode_mel, latents_to_mels, vae_loss
from .base import StageModule


class VAEStage(StageModule):
    """Trains the mel VAE from decoded audio (no video is decoded)."""

    component = "vae"

    def __init__(self, preset: Preset, train_cfg: StageTrainConfig, seed: int = 0, train_size: int = 1):
        super().__init__(preset, train_cfg, seed, train_size)
        self.vae = build_vae_from_preset(preset)
        self.vae.requires_grad_(True).train()
        # Sums over validation batches: |error|, error^2, elements, clips.
        self._val = torch.zeros(4, dtype=torch.float64)
        self.scaling_factor = preset.vae.scaling_factor

    def trainable(self) -> torch.nn.Module:
        return self.vae

    def compute_loss(self, mel: torch.Tensor, generator: torch.Generator | None = None):
        """(total, L1, KL) on the real (unpadded) frames of mels [B, n_mels, frames]."""
        return vae_loss(self.vae, mel, self.preset.vae.kl_weight, min(mel.shape[-1], self.preset.audio.num_frames),
                        generator=generator)

    def crop(self, mel: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """A random window of vae.train_crop_frames real frames of each mel [B, n_mels, padded] (all frames
        when the setting is 0): the VAE is convolutional, and full-width convolutions dominate its cost."""
        width = self.preset.vae.train_crop_frames
        real = self.preset.audio.num_frames
        if width <= 0 or width >= real:
            return mel
        starts = torch.randint(0, real - width + 1, (mel.shape[0],), generator=generator, device=generator.device)
        return torch.stack([m[:, int(s):int(s) + width] for m, s in zip(mel, starts)])

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        g = self.step_generator()
        total, rec, kl = self.compute_loss(self.crop(batch["mel"], g), g)
        self.batches_seen += 1
        self.log("train/loss", total, prog_bar=True)
        self.log("train/l1", rec)
        self.log("train/kl", kl)
        return total

    def on_validation_epoch_start(self) -> None:
        self._val.zero_()

    @torch.no_grad()
    def reconstruct(self, mel: torch.Tensor) -> torch.Tensor:
        """Mel [B, n_mels, padded] -> the VAE's reconstruction from the posterior mean [B, n_mels, num_frames]."""
        mean, _ = encode_mel(self.vae, mel)
        return latents_to_mels(self.vae, mean * self.vae.config.scaling_factor, self.preset)

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        mel = batch["mel"]
        real = mel[..., : self.preset.audio.num_frames].float()
        err = (self.reconstruct(mel).float() - real).double()
        self._val += torch.tensor([err.abs().sum().item(), err.square().sum().item(), err.numel(), len(mel)],
                                  dtype=torch.float64)

    def on_validation_epoch_end(self) -> None:
        l1, se, n, clips = self._val.tolist()
        if n == 0:
            return
        mse = se / n
        self.log("val/mel_l1", l1 / n)
        # The mel lives in [0, 1]: PSNR against a peak of 1.
        self.log("val/psnr_db", 10.0 * math.log10(1.0 / max(mse, 1e-12)))
        self.log("val/clips", clips)

    @torch.no_grad()
    def fit_scaling_factor(self, loader, max_batches: int = 16) -> float:
        """Set the scaling factor to 1 / std of posterior samples over up to `max_batches` batches; returns it."""
        g = torch.Generator(device=self.device).manual_seed(self.seed)
        total, sq, n = 0.0, 0.0, 0
        self.vae.eval()
        for k, batch in enumerate(loader):
            if k >= max_batches:
                break
            mean, std = encode_mel(self.vae, batch["mel"].to(self.device))
            z = mean + std * torch.randn(mean.shape, generator=g, device=mean.device, dtype=mean.dtype)
            total += float(z.double().sum())
            sq += float(z.double().square().sum())
            n += z.numel()
        self.vae.train()
        if n == 0:
            return self.scaling_factor
        var = max(sq / n - (total / n) ** 2, 1e-12)
        self.scaling_factor = float(1.0 / math.sqrt(var))
        self.vae.register_to_config(scaling_factor=self.scaling_factor)
        return self.scaling_factor

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["a2s_scaling_factor"] = self.scaling_factor

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        super().on_load_checkpoint(checkpoint)
        self.scaling_factor = float(checkpoint.get("a2s_scaling_factor", self.scaling_factor))
        self.vae.register_to_config(scaling_factor=self.scaling_factor)

    def export_tensors(self) -> dict[str, torch.Tensor]:
        return self.vae.state_dict()

    def export_preset(self) -> Preset:
        p = self.preset
        return dataclasses.replace(p, vae=dataclasses.replace(p.vae, scaling_factor=self.scaling_factor))
