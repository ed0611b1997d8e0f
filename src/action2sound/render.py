"""The picture of a generated track: a strip of the video's frames over the spectrogram, on one time axis.

Each thumbnail is the frame shown at the centre of its slot (read by presentation time, so variable frame
rates and rotation are right), drawn over that slot, so a frame sits right above the sound of its moment.
Window seams (cross-fade centres) are marked on the spectrogram. Drawn with matplotlib's Agg canvas
directly (no pyplot, no global backend switch).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .config import AudioProfile, audio_profile
from .errors import Action2SoundError

_WIDTH_IN = 12.0
_STRIP_IN = 1.3  # height of the frame strip
_SPEC_IN = 2.6
_MAX_THUMBS = 24
_THUMB_PX = 160  # thumbnails are decoded, then shrunk to this height (a 4K frame need not be drawn at 4K)


def thumbnail_times(duration: float, aspect: float, max_thumbs: int = _MAX_THUMBS) -> np.ndarray:
    """Slot centres (s) [N] for thumbnails of width/height `aspect` tiling the strip without squashing much."""
    if duration <= 0:
        raise Action2SoundError(f"cannot draw a video of duration {duration} s")
    n = int(np.clip(round(_WIDTH_IN / (_STRIP_IN * aspect)), 1, max_thumbs))
    return (np.arange(n) + 0.5) * duration / n


def render_png(out_png: str | os.PathLike, video: str | os.PathLike, audio: np.ndarray, sample_rate: int,
               profile: str | AudioProfile = "universal22k", seams: Sequence[float] = (),
               title: str | None = None) -> Path:
    """Draw the video's frames over the mel spectrogram of `audio` (mono float [samples]) to a PNG -> its path."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from PIL import Image

    from .benchmark.contact_sheet import draw_frame_strip, log_mel_db
    from .media import probe, read_frames_at

    prof = audio_profile(profile)
    audio = np.asarray(audio, dtype=np.float32).reshape(-1)
    if sample_rate != prof.sample_rate and audio.size:
        import soxr

        audio = soxr.resample(audio, sample_rate, prof.sample_rate).astype(np.float32)
    duration = audio.size / prof.sample_rate
    info = probe(video)
    aspect = (info.width or 1) / (info.height or 1)
    times = thumbnail_times(duration, aspect)
    frames = read_frames_at(video, times, size=None)  # display-oriented [N, H, W, 3]
    h = min(_THUMB_PX, frames.shape[1])
    w = max(1, round(h * frames.shape[2] / frames.shape[1]))
    thumbs = [np.asarray(Image.fromarray(f).resize((w, h), Image.BILINEAR)) for f in frames]

    fig = Figure(figsize=(_WIDTH_IN, _STRIP_IN + _SPEC_IN + 0.7), dpi=100)
    FigureCanvasAgg(fig)
    gs = fig.add_gridspec(2, 1, height_ratios=[_STRIP_IN, _SPEC_IN], hspace=0.06, left=0.06, right=0.99,
                          top=0.92, bottom=0.12)
    ax_f, ax_m = fig.add_subplot(gs[0]), fig.add_subplot(gs[1])
    draw_frame_strip(ax_f, thumbs, times, duration)

    mel = log_mel_db(audio, prof)
    ax_m.imshow(mel, origin="lower", aspect="auto", cmap="magma",
                extent=(0, mel.shape[1] * prof.hop / prof.sample_rate, 0, prof.n_mels))
    for t in seams:
        ax_m.axvline(float(t), color="white", ls=":", lw=1.0, alpha=0.8)
    ax_m.set_xlim(0, duration)
    ax_m.set_ylabel(f"mel bin ({prof.name})")
    ax_m.set_xlabel("time (s)")
    fig.suptitle(title if title is not None else Path(video).name, fontsize=10)
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    return out
