"""AV-Sync: the paper's synchronisation classifier, and how a 3 s clip is scored with it (SPEC §5).

The classifier sees one half of a clip (1.5 s): the video tower's per-frame tokens of that half's frames and
the audio tower's tokens of an audio segment of the same length, and says whether the two are in sync
(P = sigmoid(logit)). Both towers have the sizes of the preset's AV model (tiny / small / paper) and are
trained from scratch by `action2sound train sync` (training/sync.py) and loaded for scoring by
`evaluation.sync.load_sync`; the release never published this
model's training code (SPEC §3.5), so ours is a reconstruction:

- video: T frames spread over the half (the preset's frame count, so twice the AV model's frame rate), tower
  -> per-frame max-pooled tokens [T, Dv] -> Linear -> [T, d];
- audio: the tower's input for the half's segment ("mel": the profile's normalised mel frames of the segment;
  "fbank": the Kaldi fbank of it) -> AST patch tokens, max-pooled over frequency -> [Ta, d];
- the head sees only the [T, Ta] matrix of cosines between every video step and every audio step, flattened,
  -> MLP -> one logit. It judges *when* things happen on each side through how the two sides agree, and
  carries no token of either side on its own, which would let a small model learn its training clips by
  heart instead of timing.

A 3 s clip counts as in sync when either half scores >= 0.5 (the paper's rule); AV-Sync is the fraction of
clips in sync. The ground-truth audio's rate is the ceiling to quote beside a model's.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..config import Preset
from ..mel import MelTransform
from .av import AudioTower, VideoTower, fbank_input, frames_to_pixels, mel_input

HALVES = 2


def half_samples(preset: Preset) -> int:
    """Samples of one half clip (the classifier's audio segment)."""
    return preset.audio.num_samples // HALVES


def half_mel_frames(preset: Preset) -> int:
    """Mel frames of one half clip's segment (a slice of the clip's mel)."""
    return preset.audio.num_frames // HALVES


def data_preset(preset: Preset) -> Preset:
    """The preset whose decoded clips feed the classifier: twice the frames over the clip, T per half."""
    return dataclasses.replace(preset, video=dataclasses.replace(preset.video, num_frames=2 * preset.video.num_frames))


class SyncClassifier(nn.Module):
    """Half-clip video frames [B, T, 3, H, W] + audio tower input -> in-sync logit [B] (module docstring)."""

    def __init__(self, preset: Preset):
        super().__init__()
        cfg = preset.av
        self.preset = preset
        self.video_tower = VideoTower(cfg, preset.video)
        if cfg.audio_input == "fbank":
            frames, bins = cfg.fbank_frames, cfg.fbank_bins
        else:
            frames, bins = half_mel_frames(preset), preset.audio.n_mels
        self.audio_tower = AudioTower(cfg, frames, bins)
        f_dim, t_dim = self.audio_tower.ast.embeddings.get_shape(self.audio_tower.ast.config)
        self.audio_grid = (f_dim, t_dim)
        d = cfg.embed_dim
        self.video_proj = nn.Linear(cfg.video_hidden, d)
        self.audio_proj = nn.Sequential(nn.LayerNorm(cfg.audio_hidden, eps=1e-6), nn.Linear(cfg.audio_hidden, d))
        width = preset.video.num_frames * t_dim
        self.head = nn.Sequential(nn.Linear(width, 2 * d), nn.GELU(), nn.Linear(2 * d, 1))
        self.scale = nn.Parameter(torch.tensor(5.0))  # cosines in [-1, 1] -> logits the MLP can use

    def audio_input(self, wave: torch.Tensor, mel: torch.Tensor, start: torch.Tensor) -> torch.Tensor:
        """The audio tower's input for segments of clips: wave [B, N], mel [B, n_mels, frames], start [B] samples."""
        p = self.preset
        n = half_samples(p)
        if p.av.audio_input == "fbank":
            seg = torch.stack([wave[i, int(s):int(s) + n] for i, s in enumerate(start.tolist())])
            return fbank_input(seg, p.audio.sample_rate, p.av)
        m = half_mel_frames(p)
        first = [min(int(round(int(s) / p.audio.hop)), mel.shape[-1] - m) for s in start.tolist()]
        seg = torch.stack([mel[i, :, f:f + m] for i, f in enumerate(first)])  # [B, n_mels, m]
        return mel_input(seg, m, p.av)

    def forward(self, pixels: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        """pixels [B, T, 3, H, W] (ImageNet-normalised), audio tower input [B, frames, bins] -> logits [B]."""
        frames, _ = self.video_tower(pixels)  # [B, T, Dv]
        v = self.video_proj(frames)  # [B, T, d]
        tokens = self.audio_tower.ast(input_values=audio).last_hidden_state  # [B, 2 + F*Ta, Da]
        f_dim, t_dim = self.audio_grid
        # AST orders its patches frequency-major; pooling over frequency leaves one token per time step.
        a = tokens[:, -f_dim * t_dim:].unflatten(1, (f_dim, t_dim)).amax(dim=1)  # [B, Ta, Da]
        a = self.audio_proj(a)  # [B, Ta, d]
        sim = F.normalize(v, dim=-1) @ F.normalize(a, dim=-1).transpose(1, 2)  # [B, T, Ta]
        return self.head(self.scale * sim.flatten(1)).squeeze(1)


def half_pixels(frames: torch.Tensor, half: int, preset: Preset) -> torch.Tensor:
    """uint8 frames of whole clips [B, 2T, S, S, 3] -> normalised pixels of one half [B, T, 3, S, S]."""
    t = preset.video.num_frames
    return frames_to_pixels(frames[:, half * t:(half + 1) * t], preset.video)


@torch.no_grad()
def half_probabilities(model: SyncClassifier, frames: torch.Tensor, wave: torch.Tensor,
                       mel: torch.Tensor | None = None) -> torch.Tensor:
    """P(in sync) of each half of clips: frames [B, 2T, S, S, 3] uint8, wave [B, N] -> [B, 2]."""
    p = model.preset
    dev = next(model.parameters()).device
    frames, wave = frames.to(dev), wave.to(dev).float()
    if mel is None and p.av.audio_input == "mel":
        mel = MelTransform(p.audio).to(dev)(wave)  # [B, n_mels, num_frames]
    out = []
    for h in range(HALVES):
        start = torch.full((wave.shape[0],), h * half_samples(p), dtype=torch.long)
        logits = model(half_pixels(frames, h, p), model.audio_input(wave, mel, start))
        out.append(torch.sigmoid(logits.float()))
    return torch.stack(out, dim=1).cpu()


def clip_in_sync(probabilities: np.ndarray | torch.Tensor, threshold: float = 0.5) -> np.ndarray:
    """Per-half probabilities [B, 2] -> bool [B]: either half >= threshold (the paper's rule)."""
    return (np.asarray(probabilities) >= threshold).any(axis=-1)


def sync_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of in-sync logits [B] against labels [B] (1 = in sync)."""
    return F.binary_cross_entropy_with_logits(logits.float(), labels.float())
