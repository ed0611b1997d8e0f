"""Stage sync: the AV-Sync classifier (models/sync_classifier.py), trained on decoded clips with made-up negatives.

Each clip of a batch gives one example on one of its halves (1.5 s of frames):
- positive (half of the examples): the audio of the same span;
- shifted (a quarter): the clip's own audio from a start at least `MIN_SHIFT_S` away (same sound, wrong time:
  only timing tells it apart);
- other clip (a quarter): another clip's audio at the same span. Batches are made of runs of clips of one
  long video (as the av stage's), so this other clip usually shares the ambient and differs in the action.
Every choice comes from the stage's per-batch generator, so a resumed run draws the same examples.

Validation reports the accuracy on a fixed draw and `val/in_sync`: the fraction of aligned clips that the
paper's rule (either half >= 0.5) counts in sync, the ceiling AV-Sync of real audio.
"""

from __future__ import annotations

import torch

from ..config import Preset, StageTrainConfig
from ..models.sync_classifier import (HALVES, SyncClassifier, clip_in_sync, half_pixels, half_probabilities,
                                      half_samples, sync_loss)
from .base import StageModule

MIN_SHIFT_S = 0.5  # a shifted negative starts at least this far from the true start
P_SHIFTED, P_OTHER = 0.25, 0.25  # the rest are positives


def make_examples(batch: dict, preset: Preset, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor,
                                                                              torch.Tensor, torch.Tensor]:
    """Draw one example per clip -> (half [B], audio source clip [B], audio start sample [B], label [B] float)."""
    b = batch["wave"].shape[0]
    n_total = batch["wave"].shape[-1]
    n = half_samples(preset)
    span = n_total - n  # latest start of a segment
    min_shift = int(round(MIN_SHIFT_S * preset.audio.sample_rate))
    half = torch.randint(0, HALVES, (b,), generator=g)
    u = torch.rand(b, generator=g)
    true_start = half * n
    source = torch.arange(b)
    start = true_start.clone()
    label = torch.ones(b)
    shifted = u < P_SHIFTED
    other = (u >= P_SHIFTED) & (u < P_SHIFTED + P_OTHER) & (b > 1)
    # Shifted: a start uniform over [0, span] minus the +-min_shift band around the true start.
    r = torch.rand(b, generator=g)
    for i in torch.nonzero(shifted).flatten().tolist():
        t = int(true_start[i])
        lo_room, hi_room = max(0, t - min_shift + 1), max(0, span - (t + min_shift) + 1)
        if lo_room + hi_room == 0:
            continue  # the clip is too short to shift this far: keep it positive
        k = min(int(r[i] * (lo_room + hi_room)), lo_room + hi_room - 1)
        start[i] = k if k < lo_room else t + min_shift + (k - lo_room)
        label[i] = 0.0
    offsets = torch.randint(1, max(2, b), (b,), generator=g)
    for i in torch.nonzero(other).flatten().tolist():
        source[i] = (i + int(offsets[i])) % b
        label[i] = 0.0
    return half, source, start, label


class SyncStage(StageModule):
    """Trains SyncClassifier; batches come from a ClipDataset with 2T frames per clip (`sync.data_preset`)."""

    component = "sync"

    def __init__(self, preset: Preset, train_cfg: StageTrainConfig, seed: int = 0, train_size: int = 1):
        super().__init__(preset, train_cfg, seed, train_size)
        self.model = SyncClassifier(preset)
        self._val: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []

    def trainable(self) -> torch.nn.Module:
        return self.model

    def logits(self, batch: dict, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits [B], labels [B]) of one drawn example per clip of a decoded batch."""
        half, source, start, label = make_examples(batch, self.preset, g)
        frames = batch["frames"]  # [B, 2T, S, S, 3]
        t = self.preset.video.num_frames
        idx = (half[:, None] * t + torch.arange(t)[None]).to(frames.device)  # [B, T] frame indices of each half
        chosen = torch.gather(frames, 1, idx.view(*idx.shape, 1, 1, 1).expand(-1, -1, *frames.shape[2:]))
        pixels = half_pixels(chosen, 0, self.preset)
        src = source.to(frames.device)
        audio = self.model.audio_input(batch["wave"][src], batch["mel"][src], start)
        return self.model(pixels, audio), label.to(pixels.device)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        logits, label = self.logits(batch, self.step_generator("cpu"))
        loss = sync_loss(logits, label)
        self.batches_seen += 1
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/accuracy", ((logits > 0).float() == label).float().mean())
        return loss

    def on_validation_epoch_start(self) -> None:
        self._val = []

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        g = torch.Generator("cpu").manual_seed(self.seed * 7919 + batch_idx)  # the same draw at every validation
        logits, label = self.logits(batch, g)
        probs = half_probabilities(self.model, batch["frames"], batch["wave"], batch["mel"])
        self._val.append((logits.float().cpu(), label.cpu(), probs))

    def on_validation_epoch_end(self) -> None:
        if not self._val:
            return
        logits = torch.cat([x for x, _, _ in self._val])
        label = torch.cat([y for _, y, _ in self._val])
        probs = torch.cat([p for _, _, p in self._val])
        self.log("val/loss", sync_loss(logits, label))
        self.log("val/accuracy", ((logits > 0).float() == label).float().mean())
        self.log("val/in_sync", float(clip_in_sync(probs.numpy()).mean()))
        self._val = []

    def export_tensors(self) -> dict[str, torch.Tensor]:
        return self.model.state_dict()
