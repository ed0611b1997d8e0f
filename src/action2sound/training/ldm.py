"""Stage ldm: the latent diffusion model, trained from the pre-encoded store only.

Per batch: the target latent and the neighbour's (audio condition) latent are posterior samples times the VAE
scaling factor; video and audio conditions are dropped to their learned nulls with their probabilities, and a
clip without a neighbour always gets the audio null. EMA weights are kept by the EMA callback and are what
`export_tensors` (and the periodic samples) use.
"""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..config import Preset, StageTrainConfig
from ..media import write_audio
from ..mel import mel_to_wave_griffinlim
from ..models.ldm import LatentDiffusion
from ..models.sync_stream import widen_for_stream
from ..models.vae import latents_to_mels, sample_latent
from ..sampling import guided, sample
from .base import StageModule
from .callbacks import EMA


class LDMStage(StageModule):
    """Trains LatentDiffusion on StoreDataset batches; optionally decodes periodic samples with a frozen VAE."""

    component = "ldm"

    def __init__(self, preset: Preset, train_cfg: StageTrainConfig, seed: int = 0, train_size: int = 1,
                 vae: torch.nn.Module | None = None, sample_every: int = 0, sample_dir: Path | None = None,
                 sample_batch: dict | None = None):
        super().__init__(preset, train_cfg, seed, train_size)
        self.model = LatentDiffusion.from_preset(preset)
        # Not a registered submodule: the VAE is frozen and belongs to no checkpoint of this stage.
        self._vae = [vae.eval().requires_grad_(False)] if vae is not None else []
        self.sample_every, self.sample_dir, self.sample_batch = sample_every, sample_dir, sample_batch
        self._val = torch.zeros(2, dtype=torch.float64)

    def trainable(self) -> torch.nn.Module:
        return self.model

    def latents(self, batch: dict, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor | None,
                                                                        torch.Tensor | None]:
        """(target latent, neighbour latent or None, no-neighbour mask or None), scaled [B, C, F, W]."""
        sf = self.preset.vae.scaling_factor
        x0 = sample_latent(batch["latent_mean"], batch["latent_std"], sf, generator)
        if "cond_mean" not in batch or self.model.conditioner.audio is None:
            return x0, None, None
        cond = sample_latent(batch["cond_mean"], batch["cond_std"], sf, generator)
        return x0, cond, ~batch["has_cond"].bool()

    def compute_loss(self, batch: dict, generator: torch.Generator) -> torch.Tensor:
        x0, cond, missing = self.latents(batch, generator)
        return self.model.loss(x0, batch["video_tokens"], cond, generator, audio_missing=missing,
                               sync=batch.get("sync_features"))

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss = self.compute_loss(batch, self.step_generator())
        self.batches_seen += 1
        self.log("train/loss", loss, prog_bar=True)
        if "has_cond" in batch:
            self.log("train/with_neighbour", batch["has_cond"].float().mean())
        return loss

    def on_validation_epoch_start(self) -> None:
        self._val.zero_()

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        # A fixed generator per validation batch: the same noise and t every time, so curves are comparable.
        g = torch.Generator(device=self.device).manual_seed(self.seed + 7919 * batch_idx)
        loss = self.compute_loss(batch, g)
        self._val += torch.tensor([float(loss) * len(batch["index"]), len(batch["index"])], dtype=torch.float64)

    def on_validation_epoch_end(self) -> None:
        total, n = self._val.tolist()
        if n:
            self.log("val/loss", total / n)

    # ------------------------------------------------------------------------------------------- EMA, export
    def ema(self) -> EMA | None:
        if self._trainer is None:
            return None
        return next((c for c in self.trainer.callbacks if isinstance(c, EMA)), None)

    def init_from(self, tensors: dict[str, torch.Tensor], source: str) -> None:
        """Strict, except that a model trained without the sync stream may start one that has it (the stream's
        input channels start at zero: the fine-tune begins as exactly the given model), and a model without the
        audio condition (cond.use_audio=false: the study's video-only row) may start from one with it (the
        audio condition's weights are left behind; everything else must fit)."""
        if self.model.conditioner.audio is None:
            own = self.model.state_dict()
            tensors = {k: v for k, v in tensors.items()
                       if k in own or not (k.startswith("conditioner.audio.") or k == "conditioner.null_audio")}
        super().init_from(widen_for_stream(tensors, self.model), source)

    def export_tensors(self) -> dict[str, torch.Tensor]:
        ema = self.ema()
        return ema.averaged_state(self.model) if ema is not None and ema.shadow else self.model.state_dict()

    # ------------------------------------------------------------------------------------- periodic samples
    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        if (self.sample_every > 0 and self.batches_seen % self.sample_every == 0 and self.sample_batch
                and self.trainer.is_global_zero):
            self.write_samples()

    @torch.no_grad()
    def generate(self, batch: dict, generator: torch.Generator, steps: int | None = None) -> torch.Tensor:
        """Sample scaled latents [B, C, F, W] for a store batch (its video tokens, its sync features and, if any,
        its neighbour)."""
        model = self.model
        d = self.preset.diffusion
        video = batch["video_tokens"]
        audio = missing = None
        if model.conditioner.audio is not None and "cond_mean" in batch:
            # The neighbour's posterior mean; a clip without one gets the audio null, as in training.
            audio = batch["cond_mean"] * self.preset.vae.scaling_factor
            missing = ~batch["has_cond"].bool()
        full, null_video, _ = model.guidance_contexts(video, audio, missing, null_audio=False)
        model_fn = model.guided_model_fn(batch.get("sync_features"), w_video=d.guidance_scale)
        denoiser = guided(model_fn, full, null_video, None, w_video=d.guidance_scale)
        shape = (video.shape[0], *self.preset.latent_shape)
        return sample(denoiser, shape, d.sampler, steps or d.sample_steps, generator=generator, diffusion=d,
                      device=video.device)

    def write_samples(self) -> Path | None:
        """Generate the fixed sample batch with the EMA weights; write target | generated mels as a PNG and,
        with a VAE, the generated sounds as WAV (Griffin-Lim: the ldm stage has no vocoder)."""
        if self.sample_dir is None:
            return None
        batch = {k: (v.to(self.device) if torch.is_tensor(v) else v) for k, v in self.sample_batch.items()}
        ema = self.ema()
        was_training = self.model.training
        self.model.eval()
        with ema.swapped(self) if ema is not None and ema.shadow else nullcontext():
            g = torch.Generator(device=self.device).manual_seed(self.seed)
            z = self.generate(batch, g).float()
        self.model.train(was_training)
        target = batch["latent_mean"].float() * self.preset.vae.scaling_factor
        target_mels, mels = self._mels(target), self._mels(z)  # [B, F, frames] in [0, 1]
        rows = [np.concatenate([_picture(t), _picture(x)], axis=1) for t, x in zip(target_mels, mels)]
        image = np.concatenate(rows, axis=0)
        self.sample_dir.mkdir(parents=True, exist_ok=True)
        stem = f"step{self.batches_seen:08d}"
        path = self.sample_dir / f"{stem}.png"
        Image.fromarray(image).save(path)
        tensorboard = [lg.experiment for lg in self.loggers if hasattr(getattr(lg, "experiment", None), "add_image")]
        for exp in tensorboard:
            exp.add_image("samples/target_vs_generated", image, self.batches_seen, dataformats="HW")
        if self._vae:
            p = self.preset.audio
            for k, mel in enumerate(mels):
                wave = mel_to_wave_griffinlim(mel, p, n_iter=32, seed=self.seed)
                write_audio(self.sample_dir / f"{stem}_{k}.wav", wave, p.sample_rate)
                for exp in tensorboard:
                    exp.add_audio(f"samples/generated_{k}", torch.from_numpy(wave)[None], self.batches_seen,
                                  sample_rate=p.sample_rate)
        return path

    @torch.no_grad()
    def _mels(self, z: torch.Tensor) -> np.ndarray:
        """Scaled latents [B, C, F, W] -> their decoded mels [B, n_mels, num_frames] when there is a VAE; else
        each latent's first channel, min-max scaled to [0, 1] [B, F, W]."""
        if self._vae:
            vae = self._vae[0].to(z.device)
            return latents_to_mels(vae, z, self.preset).float().cpu().numpy()
        x = z[:, 0]
        lo, hi = x.amin(dim=(1, 2), keepdim=True), x.amax(dim=(1, 2), keepdim=True)
        return ((x - lo) / (hi - lo + 1e-8)).cpu().numpy()


def _picture(mel: np.ndarray) -> np.ndarray:
    """A mel [F, frames] in [0, 1] -> uint8 image at x2 (low bins at the bottom), with a 2-pixel white border
    on the right and at the bottom to separate the tiles."""
    img = np.kron(np.clip(mel[::-1], 0.0, 1.0), np.ones((2, 2)))
    return np.pad((img * 255).astype(np.uint8), ((0, 2), (0, 2)), constant_values=255)
