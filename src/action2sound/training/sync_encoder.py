"""Stage sync_encoder: the sync stream's encoder (models/sync_stream.py), trained by offset contrast and onsets.

Each clip is decoded at the sync stream's dense frame times (`sync_frame_times`, >= 15 fps) with its
normalised mel; the loss asks the video of a randomly placed crop of latent columns to pick its own audio
among the same clip's audio at other shifts (SyncEncoder.offset_loss), and, with sync_stream.onset_weight > 0,
a linear head on the video's column features must predict where the sound rises (SyncEncoder.onset_loss), with
sync_stream.timbre_weight > 0 another what the rising sound's spectrum looks like (SyncEncoder.timbre_loss) —
the sound of the video's action track where one lies beside it (`data.store.action_track`: the benchmark's
episodes have one), else the clip's own. Frames are flipped left-right and up-down at random (timing does not
change; the training set's few scenes stop being learnable by heart). Randomness comes from the stage's
per-batch generator, so a resumed run draws the same crops and flips.

Validation, on held-out clips (all measured by the same estimator that scores generated audio):
- `val/shift_accuracy`: the true shift wins among the 2S + 1 of the centre crop;
- `val/offset_ms`: median |estimated offset| of the aligned audio (ms; 0 is perfect);
- `val/offset_error_ms@+k`: median |estimate - truth| when the mel is moved k columns late (k = KNOWN_SHIFT);
- `val/onset_r`: correlation of the onset head with the rise of the onset target's sound per column;
- `val/timbre_r`: correlation of the timbre head with the spectral shape of the sounds that start (the columns
  SyncEncoder.timbre_target weighs), both less the mean shape of those columns, so that predicting the average
  sound scores 0.
"""

from __future__ import annotations

import torch

from ..config import Preset, StageTrainConfig
from ..data.manifest import ClipTable
from ..data.store import ClipDataset
from ..models.sync_stream import SyncEncoder
from .base import StageModule

KNOWN_SHIFT = 3  # columns the validation moves the audio by (279 ms for universal22k)


def sync_clip_dataset(table: ClipTable, preset: Preset, cache_bytes: int = 0) -> ClipDataset:
    """The clips as the sync encoder trains on them: item i -> {"index", "video_code", "sync_frames", "mel",
    "wave", "onset_mel"} (`decode_clip` with sync frames, audio and the onset track, no tower frames), cached up
    to `cache_bytes`."""
    return ClipDataset(table, preset, frames=False, audio=True, cache_bytes=cache_bytes, sync=True,
                       onset_track=True)


def flip_frames(frames: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Frames [B, N, S, S, 3], each clip flipped left-right and up-down with probability 1/2 each."""
    b = frames.shape[0]
    lr, ud = (torch.rand(b, generator=generator) < 0.5 for _ in range(2))
    frames = torch.where(lr.to(frames.device)[:, None, None, None, None], frames.flip(3), frames)
    return torch.where(ud.to(frames.device)[:, None, None, None, None], frames.flip(2), frames)


def delay_mel(mel: torch.Tensor, columns: int, downsample: int) -> torch.Tensor:
    """The mel [B, n_mels, frames] made `columns` latent columns late (silence, 0, shifted in at the start)."""
    k = columns * downsample
    if k <= 0:
        return mel
    return torch.cat([torch.zeros_like(mel[..., :k]), mel[..., :-k]], dim=-1)


class SyncEncoderStage(StageModule):
    """Trains SyncEncoder on sync_clip_dataset batches (module docstring)."""

    component = "sync_encoder"

    def __init__(self, preset: Preset, train_cfg: StageTrainConfig, seed: int = 0, train_size: int = 1):
        super().__init__(preset, train_cfg, seed, train_size)
        self.model = SyncEncoder(preset)
        self._val: list[torch.Tensor] = []
        self._onsets: list[torch.Tensor] = []
        self._timbres: list[torch.Tensor] = []

    def trainable(self) -> torch.nn.Module:
        return self.model

    def init_from(self, tensors: dict[str, torch.Tensor], source: str) -> None:
        """Start from an encoder's weights; a head these weights lack (an encoder trained before the timbre head
        existed) starts from its own initialisation, every other key strict."""
        own = self.model.state_dict()
        fresh = {k: v for k, v in own.items() if k.split(".")[0] in ("onset", "timbre") and k not in tensors}
        super().init_from({**tensors, **fresh}, source)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        g = self.step_generator("cpu")
        loss = self.model.loss(flip_frames(batch["sync_frames"], g), batch["mel"], g, onset_mel=batch["onset_mel"])
        self.batches_seen += 1
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def on_validation_epoch_start(self) -> None:
        self._val, self._onsets, self._timbres = [], [], []

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        m = self.model
        video = m.video_features(batch["sync_frames"])
        scores = m.shift_scores(video, m.audio_features(batch["mel"]))
        late = m.estimate_offset(batch["sync_frames"], delay_mel(batch["mel"], KNOWN_SHIFT, m.audio.downsample))
        aligned = m.estimate_offset(batch["sync_frames"], batch["mel"])
        hit = (scores.argmax(dim=1) == m.cfg.max_shift_columns).float()
        self._val.append(torch.stack([hit, aligned.float(), late.float()], dim=1).cpu())
        if m.onset is not None:  # the onset head's predictions and targets between the edge margins
            self._onsets.append(torch.stack([m.onset_logits(video)[:, m.lo:m.hi].flatten(),
                                             m.onset_target(batch["onset_mel"])[:, m.lo:m.hi].flatten()]).float().cpu())
        if m.timbre is not None:  # predicted and true shapes of the columns where a sound starts
            shape, weight = m.timbre_target(batch["onset_mel"])
            starts = weight[:, m.lo:m.hi] > 0
            pred = m.timbre_prediction(video)[:, m.lo:m.hi]
            self._timbres.append(torch.stack([pred[starts], shape[:, m.lo:m.hi][starts]]).float().cpu())

    def on_validation_epoch_end(self) -> None:
        if not self._val:
            return
        v = torch.cat(self._val)
        truth = KNOWN_SHIFT * self.model.period
        self.log("val/shift_accuracy", v[:, 0].mean())
        self.log("val/offset_ms", v[:, 1].abs().median() * 1000.0)
        self.log(f"val/offset_error_ms@+{KNOWN_SHIFT}", (v[:, 2] - truth).abs().median() * 1000.0)
        self.log("val/clips", float(len(v)))
        if self._onsets:  # correlation of the onset head with the sound's rise on held-out clips
            o = torch.cat(self._onsets, dim=1)
            self.log("val/onset_r", float(torch.corrcoef(o)[0, 1].nan_to_num(0.0)))
        if self._timbres:
            pred, true = torch.cat(self._timbres, dim=1)  # [n, n_mels] each
            if len(true) > 1:
                mean = true.mean(dim=0, keepdim=True)
                r = torch.corrcoef(torch.stack([(pred - mean).flatten(), (true - mean).flatten()]))[0, 1]
                self.log("val/timbre_r", float(r.nan_to_num(0.0)))
        self._val, self._onsets, self._timbres = [], [], []

    def export_tensors(self) -> dict[str, torch.Tensor]:
        return self.model.state_dict()
