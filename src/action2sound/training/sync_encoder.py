"""Stage sync_encoder: the sync stream's encoder (models/sync_stream.py), trained by offset contrast.

Each clip is decoded at the sync stream's dense frame times (`sync_frame_times`, >= 15 fps) with its
normalised mel; the loss asks the video of a randomly placed crop of latent columns to pick its own audio
among the same clip's audio at other shifts (SyncEncoder.offset_loss). Randomness comes from the stage's
per-batch generator, so a resumed run draws the same crops.

Validation, on held-out clips (all measured by the same estimator that scores generated audio):
- `val/shift_accuracy`: the true shift wins among the 2S + 1 of the centre crop;
- `val/offset_ms`: median |estimated offset| of the aligned audio (ms; 0 is perfect);
- `val/offset_error_ms@+k`: median |estimate - truth| when the mel is moved k columns late (k = KNOWN_SHIFT).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ..config import Preset, StageTrainConfig
from ..data.manifest import Clip, ClipTable
from ..data.store import decode_clip
from ..models.sync_stream import SyncEncoder
from .base import StageModule

KNOWN_SHIFT = 3  # columns the validation moves the audio by (279 ms for universal22k)


def decode_sync_clip(clip: Clip, preset: Preset) -> dict[str, np.ndarray]:
    """One clip -> {"sync_frames": uint8 [N, S, S, 3] at sync_frame_times, "mel": float32 [n_mels, padded]}."""
    decoded = decode_clip(clip, preset, frames=False, audio=True, sync=True)
    return {"sync_frames": decoded["sync_frames"], "mel": decoded["mel"]}


class SyncClipDataset(Dataset):
    """Item i (or (i, epoch)) -> {"index", "video_code", "sync_frames", "mel"} (decode_sync_clip), cached."""

    def __init__(self, table: ClipTable, preset: Preset, cache_bytes: int = 0):
        self.table, self.preset = table, preset
        codes: dict[str, int] = {}
        self.video_codes = np.array([codes.setdefault(c.video_id, len(codes)) for c in table], dtype=np.int64)
        # As ClipDataset: decoding is deterministic, so a small training set is decoded once.
        self.cache_bytes = cache_bytes
        self._cache: dict[int, dict[str, np.ndarray]] = {}
        self._cached_bytes = 0

    def __len__(self) -> int:
        return len(self.table)

    def __getitem__(self, item: int | tuple[int, int]) -> dict[str, Any]:
        i = item[0] if isinstance(item, tuple) else item
        decoded = self._cache.get(i)
        if decoded is None:
            decoded = decode_sync_clip(self.table[i], self.preset)
            size = sum(a.nbytes for a in decoded.values())
            if self._cached_bytes + size <= self.cache_bytes:
                self._cache[i] = decoded
                self._cached_bytes += size
        return {**decoded, "index": i, "video_code": self.video_codes[i]}


def delay_mel(mel: torch.Tensor, columns: int, downsample: int) -> torch.Tensor:
    """The mel [B, n_mels, frames] made `columns` latent columns late (silence, 0, shifted in at the start)."""
    k = columns * downsample
    if k <= 0:
        return mel
    return torch.cat([torch.zeros_like(mel[..., :k]), mel[..., :-k]], dim=-1)


class SyncEncoderStage(StageModule):
    """Trains SyncEncoder on SyncClipDataset batches (module docstring)."""

    component = "sync_encoder"

    def __init__(self, preset: Preset, train_cfg: StageTrainConfig, seed: int = 0, train_size: int = 1):
        super().__init__(preset, train_cfg, seed, train_size)
        self.model = SyncEncoder(preset)
        self._val: list[torch.Tensor] = []

    def trainable(self) -> torch.nn.Module:
        return self.model

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss = self.model.offset_loss(batch["sync_frames"], batch["mel"], self.step_generator("cpu"))
        self.batches_seen += 1
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def on_validation_epoch_start(self) -> None:
        self._val = []

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        m = self.model
        video = m.video_features(batch["sync_frames"])
        scores = m.shift_scores(video, m.audio_features(batch["mel"]))
        late = m.estimate_offset(batch["sync_frames"], delay_mel(batch["mel"], KNOWN_SHIFT, m.audio.downsample))
        aligned = m.estimate_offset(batch["sync_frames"], batch["mel"])
        hit = (scores.argmax(dim=1) == m.cfg.max_shift_columns).float()
        self._val.append(torch.stack([hit, aligned.float(), late.float()], dim=1).cpu())

    def on_validation_epoch_end(self) -> None:
        if not self._val:
            return
        v = torch.cat(self._val)
        truth = KNOWN_SHIFT * self.model.period
        self.log("val/shift_accuracy", v[:, 0].mean())
        self.log("val/offset_ms", v[:, 1].abs().median() * 1000.0)
        self.log(f"val/offset_error_ms@+{KNOWN_SHIFT}", (v[:, 2] - truth).abs().median() * 1000.0)
        self.log("val/clips", float(len(v)))
        self._val = []

    def export_tensors(self) -> dict[str, torch.Tensor]:
        return self.model.state_dict()
