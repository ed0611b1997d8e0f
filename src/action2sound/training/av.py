"""Stage av: the audio-visual contrastive model (symmetric InfoNCE), with video->audio R@1/5/10 on validation."""

from __future__ import annotations

import torch

from ..config import Preset, StageTrainConfig
from ..models.av import AVModel, retrieval_recall
from .base import StageModule


class AVStage(StageModule):
    """Trains AVModel on decoded clips; batches hold runs of clips from the same long video (hard negatives)."""

    component = "av"

    def __init__(self, preset: Preset, train_cfg: StageTrainConfig, seed: int = 0, train_size: int = 1):
        super().__init__(preset, train_cfg, seed, train_size)
        self.model = AVModel.from_preset(preset)
        self._val: list[tuple[torch.Tensor, torch.Tensor]] = []

    def trainable(self) -> torch.nn.Module:
        return self.model

    def embed(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """(video embedding [B, E], audio embedding [B, E]) of a decoded batch."""
        pixels = self.model.pixels(batch["frames"])
        audio = self.model.audio_input(wave=batch["wave"], mel=batch["mel"])
        return self.model(pixels, audio)

    def compute_loss(self, batch: dict) -> torch.Tensor:
        v, a = self.embed(batch)
        return self.model.contrastive_loss(v.float(), a.float(), batch["video_code"])

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss = self.compute_loss(batch)
        self.batches_seen += 1
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/temperature", 1.0 / self.model.logit_scale.exp().clamp(max=100.0))
        return loss

    def on_validation_epoch_start(self) -> None:
        self._val = []

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        v, a = self.embed(batch)
        self._val.append((v.float().cpu(), a.float().cpu()))

    def on_validation_epoch_end(self) -> None:
        if not self._val:
            return
        v = torch.cat([x for x, _ in self._val])
        a = torch.cat([y for _, y in self._val])
        for k, r in retrieval_recall(v, a, (1, 5, 10)).items():
            self.log(f"val/R@{k}", r)
        self.log("val/clips", float(len(v)))
        self._val = []

    def export_tensors(self) -> dict[str, torch.Tensor]:
        return self.model.state_dict()
