"""The sync stream: dense frames -> a learned sync encoder -> one feature vector per latent column -> the UNet.

AV-LDM's video condition (16 frames per 3 s, cross-attention with learned positions) ties no frame to any
latent column, so the model cannot place an onset within +-50 ms (issue 10; SPEC §8: MMAudio, HunyuanVideo-
Foley and ThinkSound add Synchformer features per latent frame). Ours, small enough to train on a CPU:

- time grid: a latent column j covers `downsample` mel frames; its centre time comes from the profile's hop
  and framing (`column_times`). Frames are read at r times the column rate (`frames_per_column`: the smallest
  r reaching SyncStreamConfig.fps), placed so that r frames fall inside each column (`sync_frame_times`);
- video branch: each frame's difference to the previous one (camera-compensated: the previous frame moved by
  the phase-correlation translation first) -> its magnitude, its sign and the brightness on a coarse grid ->
  two convolutions over time -> per-frame features [N, D_s] -> resampled to the column centres (linear interpolation, `interpolation_matrix`) ->
  [W, D_s];
- audio branch (for training and for measuring): the normalised mel and its rise -> convolutions over time ->
  max over the `downsample` mel frames of each column (the VAE's own grid) -> [W, D_s];
- training (`SyncEncoder.offset_loss`): Synchformer-style offset contrast. The video of a crop of columns must
  pick its own audio among the same clip's audio at other time shifts, so only *when* things happen can tell
  them apart; the crop position is jittered so "the middle of the window" means nothing;
- measuring (`SyncEncoder.estimate_offset`): the shift of the audio that best matches the video, in seconds,
  a DeSync-like number for generated audio;
- heads on the video's column features (linear, so the features themselves must carry what they read): the
  onset head says where the action's sound rises (*when*), the timbre head what that sound's spectrum looks like
  (*what*: the struck object's material), both self-supervised from the action track;
- injection (`SyncInjection`): the column features enter the UNet per column, zero-initialised, so a model
  starts as the model without the stream; the null stream (guidance's unconditional branch) is all zeros.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..config import AudioProfile, Preset, SyncStreamConfig

INJECTIONS = ("channels", "film")
TIMBRE_COLUMNS = 4  # columns of sound after an onset whose spectrum the timbre head predicts (timbre_target)
TIMBRE_ONSET = 0.5  # onset target from which a column counts as one where a sound starts (SyncEncoder.timbre_target)
APPEARANCE_GRID = 4  # an appearance crop as APPEARANCE_GRID x APPEARANCE_GRID mean colours (appearance_features)
APPEARANCE_DIFFS = 3  # frame-to-frame differences, ending at a column's last frame, that place its crop
MIN_APPEARANCE_SIZE = 4 * APPEARANCE_GRID  # the smallest appearance frame: a crop a quarter as wide, on the grid


# ============================================================================================== time grid
def column_period(audio: AudioProfile, downsample: int) -> float:
    """Seconds per latent column (92.9 ms for universal22k, 128 ms for paper)."""
    return downsample * audio.hop / audio.sample_rate


def column_times(audio: AudioProfile, downsample: int, width: int) -> np.ndarray:
    """Centre time (s) of each latent column -> float64 [W]: the mean centre of its `downsample` mel frames.

    Mel frame i is centred on i hop ("center" framing) or (i + 1/2) hop ("hifigan": (n_fft - hop) / 2 padding,
    frame i covers [i hop - pad, i hop - pad + n_fft)).
    """
    first = 0.0 if audio.framing == "center" else 0.5
    frames = np.arange(width)[:, None] * downsample + np.arange(downsample)[None]  # [W, downsample]
    return ((frames + first) * audio.hop / audio.sample_rate).mean(axis=1)


def frames_per_column(cfg: SyncStreamConfig, audio: AudioProfile, downsample: int) -> int:
    """r: frames per latent column, the smallest integer with r x column rate >= cfg.fps."""
    rate = 1.0 / column_period(audio, downsample)
    return max(1, math.ceil(cfg.fps / rate - 1e-9))


def sync_frame_times(preset: Preset) -> np.ndarray:
    """Times (s, from the window start) of the sync encoder's frames -> float64 [r W], r per column.

    Column j's r frames sit at the centres of r equal slices of its span, so the column centre is their mean
    and the frames of one column never stray into the next. Times past the clip's end (the last column covers
    the padding) show the last frame, as media.read_frames_at does past a video's end.
    """
    p = preset
    _, _, w = p.latent_shape
    ds = p.vae.downsample
    r = frames_per_column(p.sync_stream, p.audio, ds)
    period = column_period(p.audio, ds)
    centres = column_times(p.audio, ds, w)
    offsets = (np.arange(r) + 0.5) / r * period - period / 2  # within a column, around its centre
    return (centres[:, None] + offsets[None]).reshape(-1)


def appearance_dim(cfg: SyncStreamConfig) -> int:
    """Numbers per column that `appearance_features` adds to the stream (0 without appearance)."""
    return 3 * APPEARANCE_GRID ** 2 if cfg.appearance_size else 0


def stream_dim(cfg: SyncStreamConfig) -> int:
    """Numbers per column of the stream the ldm reads: the learned features, then the appearance's."""
    return cfg.feature_dim + appearance_dim(cfg)


def appearance_features(frames: torch.Tensor, per_column: int) -> torch.Tensor:
    """What is seen where the picture moves: uint8 frames [B, N, S, S, 3] at `sync_frame_times` (N = r W, r =
    `per_column`) -> [B, W, 3 APPEARANCE_GRID^2].

    Per column: the magnitude of the camera-compensated differences of its last APPEARANCE_DIFFS frame steps
    (ending at the column's last frame); around the centroid of that motion within the crop-sized box that
    holds the most of it, the crop (S / 4 px) of the column's last frame, as mean colours on an APPEARANCE_GRID
    grid, scaled to (colour - 1/2) x 4 (entries of order 1, as the learned features after their normalisation).
    A contact is a hand meeting an object, so the crop that moves most at the contact holds the struck object
    (session 12: a linear probe named the kind from such a crop on unseen episodes at 0.25, from a crop at the
    object itself at 0.76, chance 0.05). Where nothing moves, the frame's centre. No weights: what the crop
    sounds like is the ldm's to learn (session 13: a fine-tune used it to place onsets, not to pick the kind).
    """
    b, n, size = frames.shape[:3]
    if n % per_column:
        raise ValueError(f"appearance_features: {n} frames are not {per_column} per column")
    w = n // per_column
    half = max(APPEARANCE_GRID // 2, size // 8)
    x = frames.permute(0, 1, 4, 2, 3).float() / 255.0  # [B, N, 3, S, S]
    moved = camera_compensated_difference(x[:, 1:], x[:, :-1]).abs().sum(dim=2)  # [B, N - 1, S, S]
    moved = F.pad(moved, (0, 0, 0, 0, 1, 0))  # [B, N, S, S]: the motion into frame k (none into the first)
    last = torch.arange(w, device=frames.device) * per_column + per_column - 1  # each column's last frame
    motion = sum(moved[:, (last - i).clamp(min=0)] for i in range(APPEARANCE_DIFFS))  # [B, W, S, S]
    # The crop-sized box holding the most motion, then the motion's centroid within it (a box's sum is flat
    # wherever it covers a small moving thing whole).
    motion = motion.flatten(0, 1).unsqueeze(1)  # [B W, 1, S, S]
    ys, xs = torch.meshgrid(torch.arange(size, device=frames.device, dtype=motion.dtype),
                            torch.arange(size, device=frames.device, dtype=motion.dtype), indexing="ij")
    boxed = box_sums(torch.cat([motion, motion * ys, motion * xs], dim=1), half).flatten(2)  # [B W, 3, S S]
    peak = boxed[:, 0].argmax(dim=1, keepdim=True)
    mass = boxed[:, 0].gather(1, peak)[:, 0]
    still = mass <= 0
    centre = torch.full_like(mass, size // 2)
    safe = mass.where(~still, torch.ones_like(mass))
    cy = torch.where(still, centre, boxed[:, 1].gather(1, peak)[:, 0] / safe)
    cx = torch.where(still, centre, boxed[:, 2].gather(1, peak)[:, 0] / safe)
    cy = cy.round().long().clamp(half, size - half).tolist()  # crops stay inside the frame
    cx = cx.round().long().clamp(half, size - half).tolist()
    images = x[:, last].flatten(0, 1)  # [B W, 3, S, S]
    crops = torch.stack([images[i, :, y - half : y + half, c - half : c + half]
                         for i, (y, c) in enumerate(zip(cy, cx))])
    colours = F.adaptive_avg_pool2d(crops, APPEARANCE_GRID).flatten(1)  # [B W, 3 G^2]
    return (4.0 * (colours - 0.5)).view(b, w, -1)


def box_sums(x: torch.Tensor, half: int) -> torch.Tensor:
    """Sums of x [N, C, H, W] over the (2 half + 1)^2 square centred on each pixel (zero outside) -> float64, the
    same shape. From an integral image (summed in float64, so motion-free maps sum to exactly 0): the cost does
    not grow with the square, where a pooling's grows with its area (33^2 at 128 px, 1.3 s per window)."""
    k = 2 * half + 1
    c = F.pad(x.double(), (half + 1, half, half + 1, half)).cumsum(-1).cumsum(-2)
    return c[..., k:, k:] - c[..., :-k, k:] - c[..., k:, :-k] + c[..., :-k, :-k]


def interpolation_matrix(source: np.ndarray, target: np.ndarray) -> torch.Tensor:
    """Linear interpolation in time as a matrix M [len(target), len(source)]: y = M x (clamped at the ends).

    Linear, not nearest: with r = 2 frames per column (universal22k) each column centre lies exactly midway
    between two frames, where nearest would have to break a tie and so move every feature half a frame one
    way; linear weighs both equally. Either way a shift of r frames is a shift of exactly one column, because
    the weights repeat from column to column. The temporal convolutions before it have already mixed a
    column's frames, so weighting only the two nearest loses nothing they could not carry.
    """
    src = np.asarray(source, dtype=np.float64)
    m = np.zeros((len(target), len(src)))
    for j, t in enumerate(np.asarray(target, dtype=np.float64)):
        k = int(np.searchsorted(src, t))
        if k <= 0:
            m[j, 0] = 1.0
        elif k >= len(src):
            m[j, -1] = 1.0
        else:
            a = (t - src[k - 1]) / (src[k] - src[k - 1])
            m[j, k - 1], m[j, k] = 1.0 - a, a
    return torch.from_numpy(m).float()


def rise(x: torch.Tensor) -> torch.Tensor:
    """How much x grows from each step to the next along its last axis (0 where it falls; 0 at the first)."""
    return F.pad(torch.relu(x[..., 1:] - x[..., :-1]), (1, 0))


# ================================================================================================ encoder
class VideoSyncBranch(nn.Module):
    """uint8 frames [B, N, S, S, 3] -> per-frame features [B, N, D_s]: how the picture moves, then convolutions
    over time.

    Two views of each frame, side by side. (1) Motion numbers: per cell of a GRID x GRID grid, the mean
    magnitude of the camera-compensated difference to the previous frame (logged: a scene's contrast becomes
    an offset), its signed mean (a hand coming down onto its shadow and going up again differ only in sign) and
    the cell's mean brightness, plus the whole frame's magnitude -> 3 GRID^2 + 1 numbers. (2) A small CNN on
    the camera-compensated difference beside the frame itself -> `CNN_FEATURES` numbers: the shapes of what
    moves (a hand closing on an object, an object meeting its shadow), which cell means average away.
    Measured on benchmark v2's six held-out test episodes (docs/RESULTS.md, issue 10): with the onset target
    from the action track, the motion numbers alone reach onset AP 0.26 (base rate 0.03), with the CNN 0.45.
    """

    GRID = 4
    CNN_FEATURES = 32

    def __init__(self, cfg: SyncStreamConfig):
        super().__init__()
        w, k = cfg.width, cfg.temporal_kernel
        # Strided 3x3 convolutions down to a 2 x 2 map (S = 32: 16, 8, 4, then pooled), then one linear layer.
        self.cnn = nn.Sequential(
            nn.Conv2d(6, 16, 3, 2, 1), nn.GELU(), nn.Conv2d(16, 32, 3, 2, 1), nn.GELU(),
            nn.Conv2d(32, 32, 3, 2, 1), nn.GELU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
            nn.Linear(128, self.CNN_FEATURES),
        )
        self.temporal = nn.Sequential(
            nn.Conv1d(3 * self.GRID ** 2 + 1 + self.CNN_FEATURES, w, k, padding=k // 2), nn.GELU(),
            nn.Conv1d(w, w, k, padding=2 * (k // 2), dilation=2), nn.GELU(),
            nn.Conv1d(w, cfg.feature_dim, 1),
        )
        # Frames each side that one output frame depends on: the difference's previous frame and the two
        # convolutions (the second dilated).
        self.reach = 1 + k // 2 + 2 * (k // 2)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """frames uint8 (or float in [0, 255]) [B, N, S, S, 3] -> [B, N, D_s]."""
        b, n = frames.shape[:2]
        x = frames.permute(0, 1, 4, 2, 3).float() / 255.0  # [B, N, 3, S, S]
        prev = torch.cat([x[:, :1], x[:, :-1]], dim=1)  # the first frame has no predecessor: no motion
        d = camera_compensated_difference(x, prev)  # [B, N, 3, S, S]
        shapes = self.cnn(torch.cat([8.0 * d, x - 0.5], dim=2).flatten(0, 1)).view(b, n, -1).transpose(1, 2)
        return self.temporal(torch.cat([self.motion(x, d), shapes], dim=1)).transpose(1, 2)

    def motion(self, x: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        """Frames x in [0, 1] and their camera-compensated differences d, both [B, N, 3, S, S] -> per-frame
        numbers [B, 3 GRID^2 + 1, N]."""
        b, n = x.shape[:2]
        d = d.mean(dim=2).flatten(0, 1).unsqueeze(1)  # [B N, 1, S, S] grey
        grey = x.mean(dim=2).flatten(0, 1).unsqueeze(1)

        def cells(v: torch.Tensor) -> torch.Tensor:  # [B N, 1, S, S] -> cell means [B N, GRID^2]
            return F.adaptive_avg_pool2d(v, self.GRID).flatten(1)

        energy = torch.cat([cells(d.abs()), d.abs().mean(dim=(1, 2, 3)).unsqueeze(1)], dim=1)
        # Scaled so that each group has entries of order 1 on typical video.
        numbers = torch.cat([torch.log(energy + 1e-3), 8.0 * cells(d), 4.0 * (cells(grey) - 0.5)], dim=1)
        return numbers.view(b, n, -1).transpose(1, 2)


def camera_compensated_difference(x: torch.Tensor, prev: torch.Tensor) -> torch.Tensor:
    """x - prev after moving prev by the whole-pixel translation that best aligns it with x -> [B, N, 3, S, S].

    A first-person camera drifts and shakes over textured surfaces: the plain difference of two frames is
    mostly the picture moving, and the hand's contact drowns in it (the prototype of issue 10 compensated the
    camera too). The translation is the peak of the phase correlation of the grey frames (Kuglin & Hines
    1975); pixels that the translation brings in from outside the frame get no difference.
    """
    *lead, c, hgt, wid = x.shape
    grey, grey_prev = x.mean(dim=-3), prev.mean(dim=-3)  # [B, N, S, S]
    f1 = torch.fft.rfft2(grey - grey.mean(dim=(-2, -1), keepdim=True))
    f0 = torch.fft.rfft2(grey_prev - grey_prev.mean(dim=(-2, -1), keepdim=True))
    cross = f1 * f0.conj()
    corr = torch.fft.irfft2(cross / (cross.abs() + 1e-9), s=(hgt, wid))  # peaks at d where x(p) = prev(p - d)
    peak = corr.flatten(-2).argmax(dim=-1)
    dy, dx = peak // wid, peak % wid
    dy = torch.where(dy > hgt // 2, dy - hgt, dy)
    dx = torch.where(dx > wid // 2, dx - wid, dx)
    rows = torch.arange(hgt, device=x.device) - dy.unsqueeze(-1)  # [B, N, S]: source row of each row
    cols = torch.arange(wid, device=x.device) - dx.unsqueeze(-1)
    moved = torch.gather(prev, -2, (rows % hgt)[..., None, :, None].expand(*lead, c, hgt, wid))
    moved = torch.gather(moved, -1, (cols % wid)[..., None, None, :].expand(*lead, c, hgt, wid))
    inside = (((rows >= 0) & (rows < hgt))[..., :, None] & ((cols >= 0) & (cols < wid))[..., None, :])
    return (x - moved) * inside.unsqueeze(-3).to(x.dtype)


class AudioSyncBranch(nn.Module):
    """Normalised mel [B, n_mels, frames] -> per-column features [B, W, D_s] (W = frames // downsample)."""

    def __init__(self, cfg: SyncStreamConfig, n_mels: int, downsample: int):
        super().__init__()
        w = cfg.width
        self.downsample = downsample
        self.frames = nn.Sequential(
            nn.Conv1d(2 * n_mels, w, 3, padding=1), nn.GELU(),
            nn.Conv1d(w, w, 3, padding=1), nn.GELU(),
        )
        self.columns = nn.Sequential(nn.Conv1d(w, w, 3, padding=1), nn.GELU(), nn.Conv1d(w, cfg.feature_dim, 1))

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        """mel [B, n_mels, frames] in [0, 1] -> [B, frames // downsample, D_s]."""
        h = self.frames(torch.cat([mel, rise(mel)], dim=1))  # [B, w, frames]: onsets are rises
        # Max over each column's mel frames: an onset anywhere in the column counts, on the VAE's own grid.
        h = F.max_pool1d(h, self.downsample, self.downsample)  # [B, w, W]
        return self.columns(h).transpose(1, 2)


class SyncEncoder(nn.Module):
    """Video and audio branches on the latent column grid; `video_features` is what the UNet's stream carries."""

    def __init__(self, preset: Preset):
        super().__init__()
        cfg = preset.sync_stream
        _, _, w = preset.latent_shape
        # Columns [lo, hi) are free of edge effects (SyncStreamConfig.edge_columns) and hold real audio only.
        self.lo, self.hi = cfg.edge_columns, preset.audio.num_frames // preset.vae.downsample - cfg.edge_columns
        if cfg.crop_columns + 2 * cfg.max_shift_columns > self.hi - self.lo:
            raise ValueError(f"sync_stream: crop_columns + 2 x max_shift_columns ({cfg.crop_columns} + 2 x "
                             f"{cfg.max_shift_columns}) must fit the {self.hi - self.lo} columns between the edge "
                             "margins; lower one of them (or edge_columns)")
        if 0 < cfg.appearance_size < MIN_APPEARANCE_SIZE:
            raise ValueError(f"sync_stream.appearance_size must be 0 (none) or at least {MIN_APPEARANCE_SIZE} px "
                             f"(a crop of a quarter of the frame on a {APPEARANCE_GRID} x {APPEARANCE_GRID} grid), "
                             f"got {cfg.appearance_size}")
        self.cfg = cfg
        self.profile = preset.audio
        self.per_column = frames_per_column(cfg, preset.audio, preset.vae.downsample)
        self.columns = w
        self.period = column_period(preset.audio, preset.vae.downsample)
        self.frame_times = sync_frame_times(preset)
        self.video = VideoSyncBranch(cfg)
        self.audio = AudioSyncBranch(cfg, preset.audio.n_mels, preset.vae.downsample)
        cols = column_times(preset.audio, preset.vae.downsample, w)
        self.register_buffer("resample", interpolation_matrix(self.frame_times, cols), persistent=False)  # [W, N]
        # The onset head (onset_loss): column features -> how much the sound rises there; linear, so that the
        # features themselves must carry it in a form the UNet's first layer can read.
        self.onset = nn.Linear(cfg.feature_dim, 1) if cfg.onset_weight > 0 else None
        # The timbre head (timbre_loss): column features -> the spectral shape of the sound starting there.
        # Its weights start at zero: the bias learns the average sound first, and the features are not pushed
        # about by a random head's errors (from a random start the toy's timbre loss began at 190 times the
        # shapes' spread, and a trained encoder's onset r fell from 0.45 to 0.34 in 400 steps).
        self.timbre = nn.Linear(cfg.feature_dim, preset.audio.n_mels) if cfg.timbre_weight > 0 else None
        if self.timbre is not None:
            nn.init.zeros_(self.timbre.weight)

    @property
    def num_frames(self) -> int:
        return len(self.frame_times)

    def video_features(self, frames: torch.Tensor) -> torch.Tensor:
        """frames uint8 [B, N, S, S, 3] at `sync_frame_times` -> column features [B, W, D_s]."""
        if frames.shape[1] != self.num_frames:
            raise ValueError(f"the sync encoder takes {self.num_frames} frames per window (sync_frame_times), "
                             f"got {frames.shape[1]}")
        per_frame = self.video(frames)  # [B, N, D_s]
        return torch.einsum("wn,bnd->bwd", self.resample.to(per_frame.dtype), per_frame)

    def stream_features(self, frames: torch.Tensor, detail: torch.Tensor | None = None) -> torch.Tensor:
        """What the ldm reads per column -> [B, W, stream_dim]: `video_features` of frames, then, when the stream
        has appearance, `appearance_features` of detail (uint8 [B, N, A, A, 3], the same times at
        appearance_size)."""
        v = self.video_features(frames)
        if not self.cfg.appearance_size:
            return v
        if detail is None or detail.shape[2] != self.cfg.appearance_size:
            raise ValueError(f"this stream has appearance: pass its frames at {self.cfg.appearance_size} px too "
                             "(sync_stream.appearance_size)")
        return torch.cat([v, appearance_features(detail, self.per_column).to(v.dtype)], dim=-1)

    def audio_features(self, mel: torch.Tensor) -> torch.Tensor:
        """Normalised mel [B, n_mels, padded_frames] -> column features [B, W, D_s]."""
        a = self.audio(mel)
        if a.shape[1] != self.columns:
            raise ValueError(f"the mel gives {a.shape[1]} columns, the latent grid has {self.columns}; pass the "
                             "profile's padded mel (mel.wave_to_mel)")
        return a

    # ----------------------------------------------------------------------------------------- offsets
    def shift_scores(self, video: torch.Tensor, audio: torch.Tensor, start: torch.Tensor | None = None,
                     length: int | None = None) -> torch.Tensor:
        """Cosine agreement of a video crop with the audio at each shift -> [B, 2S + 1] (shift -S .. +S columns).

        video, audio: column features [B, W, D_s]; the crop is columns [start, start + length) of the video
        (default: all of the columns between the edge margins that leave S columns each side); shift s pairs
        video column j with audio column j + s, so s > 0 means the audio comes late.
        """
        s_max = self.cfg.max_shift_columns
        b = video.shape[0]
        length = length or self.hi - self.lo - 2 * s_max
        if start is None:
            start = torch.full((b,), self.lo + s_max, dtype=torch.long, device=video.device)
        v, a = F.normalize(video, dim=-1), F.normalize(audio, dim=-1)
        idx = start.view(b, 1) + torch.arange(length, device=video.device).view(1, -1)  # [B, L] video columns
        v_crop = torch.gather(v, 1, idx.unsqueeze(-1).expand(-1, -1, v.shape[-1]))  # [B, L, D]
        scores = []
        for s in range(-s_max, s_max + 1):
            a_crop = torch.gather(a, 1, (idx + s).unsqueeze(-1).expand(-1, -1, a.shape[-1]))
            scores.append((v_crop * a_crop).sum(-1).mean(-1))  # [B]
        return torch.stack(scores, dim=1)

    def offset_loss(self, frames: torch.Tensor, mel: torch.Tensor,
                    generator: torch.Generator | None = None) -> torch.Tensor:
        """Offset contrast: cross-entropy of the true shift (0) among 2S + 1 shifts of the same clip's audio.

        frames [B, N, S, S, 3] uint8, mel [B, n_mels, padded]; the crop start is drawn per clip from
        `generator` (on the CPU) so that every candidate shift stays between the edge margins.
        """
        return self._offset_loss(self.video_features(frames), mel, generator)

    def _offset_loss(self, video: torch.Tensor, mel: torch.Tensor,
                     generator: torch.Generator | None = None) -> torch.Tensor:
        s_max, length = self.cfg.max_shift_columns, self.cfg.crop_columns
        b = video.shape[0]
        last = self.hi - length - s_max  # last valid start
        start = torch.randint(self.lo + s_max, last + 1, (b,), generator=generator).to(video.device)
        scores = self.shift_scores(video, self.audio_features(mel), start, length)
        target = torch.full((b,), s_max, dtype=torch.long, device=scores.device)
        return F.cross_entropy(scores.float() / self.cfg.temperature, target)

    def onset_target(self, mel: torch.Tensor) -> torch.Tensor:
        """Normalised mel [B, n_mels, padded] -> how much the sound rises in each column [B, W], in [0, 1).

        The largest frame-to-frame rise of the mean mel within the column's `downsample` frames, divided by the
        clip's largest plus 0.05: relative, so that a soft contact in a quiet room counts as a loud one in a
        loud room, and a clip with no rise at all (steady ambient) has no onsets.
        """
        ds = self.audio.downsample
        up = rise(mel.mean(dim=1))[:, : self.columns * ds]  # [B, frames] of the mean mel
        per_column = F.max_pool1d(up.unsqueeze(1), ds, ds).squeeze(1)  # [B, W]
        return per_column / (per_column.amax(dim=1, keepdim=True) + 0.05)

    def onset_logits(self, video: torch.Tensor) -> torch.Tensor:
        """Column features [B, W, D_s] -> onset logits [B, W] (needs onset_weight > 0)."""
        if self.onset is None:
            raise ValueError("this sync encoder has no onset head (sync_stream.onset_weight = 0)")
        return self.onset(F.normalize(video, dim=-1) * math.sqrt(video.shape[-1])).squeeze(-1)

    def onset_loss(self, video: torch.Tensor, mel: torch.Tensor) -> torch.Tensor:
        """Binary cross-entropy of the onset head against `onset_target` over the columns between the edge
        margins (the edges' convolutions see padding, a cue of position, not of time)."""
        target = self.onset_target(mel)[:, self.lo:self.hi]
        logits = self.onset_logits(video)[:, self.lo:self.hi]
        return F.binary_cross_entropy_with_logits(logits.float(), target.float())

    def timbre_target(self, mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised mel [B, n_mels, padded] -> (shape [B, W, n_mels], weight [B, W]).

        shape: per column j, the mean mel over columns j .. j + TIMBRE_COLUMNS - 1 (the sound that starts in
        column j and its decay: 372 ms for universal22k, about the kind classifier's 0.4 s window) minus its
        loudest bin, so that it describes the spectrum's shape, not its level; weight: 1 where a sound starts
        (`onset_target` >= TIMBRE_ONSET), else 0. Hard, not the onset target itself: the quiet columns' small
        rises are many, and their flat shapes (silence less its loudest bin) made "sound or not" the variance the
        head explained, not "which sound" (toy: loss 0.15 of the batch spread, yet R² -0.03 on the onsets).
        """
        ds, k = self.audio.downsample, TIMBRE_COLUMNS
        per_column = F.avg_pool1d(mel[..., : self.columns * ds], ds, ds)  # [B, n_mels, W]
        ahead = F.avg_pool1d(F.pad(per_column, (0, k - 1), mode="replicate"), k, 1)  # [B, n_mels, W]: j .. j+k-1
        shape = (ahead - ahead.amax(dim=1, keepdim=True)).transpose(1, 2)
        return shape, (self.onset_target(mel) >= TIMBRE_ONSET).to(shape.dtype)

    def timbre_prediction(self, video: torch.Tensor) -> torch.Tensor:
        """Column features [B, W, D_s] -> predicted spectral shape [B, W, n_mels] (needs timbre_weight > 0)."""
        if self.timbre is None:
            raise ValueError("this sync encoder has no timbre head (sync_stream.timbre_weight = 0)")
        return self.timbre(F.normalize(video, dim=-1) * math.sqrt(video.shape[-1]))

    def timbre_loss(self, video: torch.Tensor, mel: torch.Tensor) -> torch.Tensor:
        """The share of the spectral shapes' variance the timbre head leaves unexplained: its squared error
        against `timbre_target`'s shape over the batch's onset columns between the edge margins, divided by the
        same sum for the batch's mean shape (so 1 for predicting the average sound, whatever the spectra's
        scale). Without the division most mel bins are floor that every kind shares, the error differs little
        between kinds and the head learned only the average: a toy with a 300 Hz and a 3 kHz kind scored
        held-out r 0.02 with weight 20 and plain squared error.
        """
        shape, weight = self.timbre_target(mel)
        shape, weight = shape[:, self.lo:self.hi].float(), weight[:, self.lo:self.hi].float()
        err = (self.timbre_prediction(video)[:, self.lo:self.hi].float() - shape).pow(2).sum(-1)  # [B, W']
        total = weight.sum().clamp(min=1e-6)
        mean = (weight.unsqueeze(-1) * shape).sum(dim=(0, 1)) / total  # [n_mels]
        spread = (weight * (shape - mean).pow(2).sum(-1)).sum().detach()
        return (weight * err).sum() / (spread + 1e-3 * total)

    def loss(self, frames: torch.Tensor, mel: torch.Tensor, generator: torch.Generator | None = None,
             onset_mel: torch.Tensor | None = None) -> torch.Tensor:
        """The stage's objective: offset contrast plus onset_weight x onset loss plus timbre_weight x timbre
        loss (each when its head exists).

        onset_mel: the mel the onset target is taken from (default `mel`); the stage passes the action track's
        where the data has one (`data.store.decode_clip`), so that ambient swells and off-screen sounds do not
        count as contacts.
        """
        video = self.video_features(frames)
        total = self._offset_loss(video, mel, generator)
        target_mel = mel if onset_mel is None else onset_mel
        if self.onset is not None:
            total = total + self.cfg.onset_weight * self.onset_loss(video, target_mel)
        if self.timbre is not None:
            total = total + self.cfg.timbre_weight * self.timbre_loss(video, target_mel)
        return total

    @torch.no_grad()
    def estimate_offset(self, frames: torch.Tensor, mel: torch.Tensor) -> torch.Tensor:
        """How late the audio is against the video, in seconds [B] (negative: early), within +-S columns.

        The best shift of the centre crop, refined below a column by a parabola through the best score and its
        two neighbours (an onset rarely falls on a column centre).
        """
        scores = self.shift_scores(self.video_features(frames), self.audio_features(mel)).float()  # [B, K]
        return offset_from_scores(scores, self.cfg.max_shift_columns) * self.period


def offset_from_scores(scores: torch.Tensor, max_shift: int) -> torch.Tensor:
    """Scores [B, 2S + 1] over shifts -S..S -> the best shift in columns [B] (float, parabola-refined)."""
    k = scores.argmax(dim=1)
    best = k.float() - max_shift
    inner = (k > 0) & (k < scores.shape[1] - 1)
    km, kp = (k - 1).clamp(min=0), (k + 1).clamp(max=scores.shape[1] - 1)
    y0 = scores.gather(1, km[:, None])[:, 0]
    y1 = scores.gather(1, k[:, None])[:, 0]
    y2 = scores.gather(1, kp[:, None])[:, 0]
    curve = y0 - 2 * y1 + y2
    # Vertex of the parabola through (-1, y0), (0, y1), (1, y2): -(y2 - y0) / (2 curve), within half a column.
    delta = torch.where(inner & (curve < 0), (0.5 * (y0 - y2) / curve.where(curve != 0, torch.ones_like(curve))),
                        torch.zeros_like(curve)).clamp(-0.5, 0.5)
    return best + delta


# ============================================================================================== injection
class SyncInjection(nn.Module):
    """Puts column features [B, W, D_s] into the UNet's input, per column, starting as no change at all.

    "channels": D_s extra input channels of the UNet's first convolution, their weights zero at the start;
    the stream enters as a [D_s, F, W] map (each column's features repeated over the mel bins), so the first
    3 x 3 convolution already sees sound and motion of the same column side by side. "film": a per-column
    scale and shift of the noisy latent's C channels from a bias-free, zero-initialised Linear.
    The learned features are unit-normalised (times sqrt(D_s), entries of order 1), the form the offset
    contrast compares them in; the appearance's numbers (SyncStreamConfig.appearance_size) enter as they are
    (already of order 1), as further channels of the same kind. An all-zero stream (the null of guidance) stays
    zero, and then the UNet computes exactly what it would without the stream.
    """

    def __init__(self, cfg: SyncStreamConfig, unet: nn.Module):
        super().__init__()
        if cfg.injection not in INJECTIONS:
            raise ValueError(f"sync_stream.injection must be one of {INJECTIONS}, got {cfg.injection!r}")
        # dim: the stream's numbers per column (the learned features, then the appearance's, if any).
        self.kind, self.dim, self.learned = cfg.injection, stream_dim(cfg), cfg.feature_dim
        # With cfg.deep: one zero-initialised, bias-free 1 x 1 projection per resnet block of the UNet, applied
        # by a forward hook to the block's output (the stream of the current call is held in `_stream`). The
        # hook is a bound method and the block carries its index, so a deep copy of the model hooks the copy.
        self.deep = nn.ModuleList()
        self._stream: torch.Tensor | None = None
        if cfg.deep:
            for block in (m for m in unet.modules() if type(m).__name__ == "ResnetBlock2D"):
                proj = nn.Conv1d(self.dim, block.out_channels, 1, bias=False)
                nn.init.zeros_(proj.weight)
                block.a2s_deep_index = len(self.deep)
                self.deep.append(proj)
                block.register_forward_hook(self._add_stream)
        c = unet.conv_in.in_channels  # the latent's channels (before widening)
        if self.kind == "channels":
            old = unet.conv_in
            new = nn.Conv2d(old.in_channels + self.dim, old.out_channels, old.kernel_size, old.stride, old.padding)
            with torch.no_grad():
                new.weight.zero_()
                new.weight[:, : old.in_channels].copy_(old.weight)
                new.bias.copy_(old.bias)
            unet.conv_in = new
            unet.register_to_config(in_channels=old.in_channels + self.dim)
            self.film = None
        else:
            self.film = nn.Linear(self.dim, 2 * c, bias=False)
            nn.init.zeros_(self.film.weight)

    def _add_stream(self, block: nn.Module, args: tuple, out: torch.Tensor) -> torch.Tensor:
        """Forward hook of a resnet block (deep injection): its output plus its projection of the stream."""
        s = self._stream
        if s is None:
            raise RuntimeError("the UNet ran without its sync stream; call it through LatentDiffusion.forward")
        proj = self.deep[block.a2s_deep_index]
        return out + proj(at_width(s, out.shape[-1]).to(out.dtype)).unsqueeze(2)

    def forward(self, x: torch.Tensor, sync: torch.Tensor | None) -> torch.Tensor:
        """x [B, C, F, W], sync [B, W, D_s] (None: the null stream) -> the UNet's input ([B, C (+ D_s), F, W]).

        With `deep`, the stream is also kept for the resnet hooks of the UNet call that follows.
        """
        b, _, f, w = x.shape
        if sync is None:
            sync = x.new_zeros(b, w, self.dim)
        if sync.shape[1:] != (w, self.dim):
            raise ValueError(f"sync features must be [B, {w}, {self.dim}], got {tuple(sync.shape)}")
        sync = sync.to(x.dtype)
        learned = F.normalize(sync[..., : self.learned], dim=-1) * math.sqrt(self.learned)
        s = torch.cat([learned, sync[..., self.learned :]], dim=-1)  # [B, W, D]: the appearance as it is
        if len(self.deep):
            self._stream = s.transpose(1, 2)  # [B, D_s, W]
        if self.film is None:
            return torch.cat([x, s.permute(0, 2, 1).unsqueeze(2).expand(b, self.dim, f, w)], dim=1)
        gamma, beta = self.film(s).permute(0, 2, 1).unsqueeze(2).chunk(2, dim=1)  # [B, C, 1, W] each
        return x * (1.0 + gamma) + beta


def at_width(s: torch.Tensor, width: int) -> torch.Tensor:
    """The stream [B, D_s, W] on a UNet level with `width` columns -> [B, D_s, width].

    The UNet halves the time axis with stride-2 convolutions (kernel 3, padding 1), whose output column k is
    centred on input column 2k, and its upsamplers restore the same widths: a level of width ceil(W / 2^l) holds
    columns 0, 2^l, 2 * 2^l, ... of the latent. Other widths (none in our UNets) are linearly interpolated.
    """
    w = s.shape[-1]
    if width == w:
        return s
    step = 1
    while len(range(0, w, step)) > width:
        step *= 2
    if len(range(0, w, step)) == width:
        return s[..., ::step]
    return F.interpolate(s, size=width, mode="linear", align_corners=True)


def widen_for_stream(tensors: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """An ldm state dict without the sync stream -> the same for `model`, which has it ("channels" injection).

    The stream's extra input channels of the UNet's first convolution get zero weights, so the widened model
    starts as exactly the model it was given (`train ldm --init` of a model trained without the stream: the
    shipped default model, for instance); so do the appearance's channels (SyncStreamConfig.appearance_size) of
    a model trained with the stream but without them. Likewise the deep projections (`SyncStreamConfig.deep`)
    that a state dict lacks start at zero, so a model with the stream at the input alone starts a fine-tune with
    deep injection unchanged. A state dict that already fits is returned unchanged; any other mismatch is left for
    the strict load to report.
    """
    sync = getattr(model, "sync", None)
    if sync is None:
        return tensors
    own = model.state_dict()
    out = dict(tensors)
    for k, v in own.items():  # deep projections the given weights lack
        if k.startswith("sync.deep.") and k not in out:
            out[k] = torch.zeros_like(v)
    key = "unet.conv_in.weight"
    if sync.kind != "channels" or key not in out or key not in own:
        return out
    given, wide_shape = out[key], own[key].shape
    # The given weights' input channels: the latent's alone, or with a stream that lacks the appearance's numbers.
    narrower = {wide_shape[1] - sync.dim, wide_shape[1] - (sync.dim - sync.learned)} - {wide_shape[1]}
    if given.dim() != 4 or given.shape[0] != wide_shape[0] or given.shape[1] not in narrower:
        return out
    wide = torch.zeros(wide_shape, dtype=given.dtype)
    wide[:, : given.shape[1]] = given
    return {**out, key: wide}

