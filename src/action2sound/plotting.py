"""Pictures of a clip on one time axis: a strip of its frames over its sound (waveform, mel spectrogram).

`render_png` draws the picture of a generated track (the pipeline's NAME.png); the contact sheet of a benchmark
clip is built from the same pieces (`figure`, `draw_frame_strip`, `draw_waveform`, `draw_mel`, `save_png`).
Each thumbnail is the frame shown at the centre of its slot (read by presentation time, so variable frame rates
and rotation are right), drawn over that slot, so a frame sits right above the sound of its moment. Drawn with
matplotlib's Agg canvas directly (no pyplot, no global backend switch), so drawing never touches the
process's matplotlib state.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import librosa
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from .config import AudioProfile, audio_profile
from .errors import Action2SoundError
from .media import probe, read_frames_at, resample
from .mel import mel_basis

WIDTH_IN = 12.0  # every picture is this wide
_DPI = 100
# The generation picture.
_STRIP_IN = 1.3  # height of the frame strip
_SPEC_IN = 2.6
_MAX_THUMBS = 24
_THUMB_PX = 160  # thumbnails are decoded, then shrunk to this height (a 4K frame need not be drawn at 4K)
_WAVE_BINS = 1500  # waveform envelope resolution: about one bin per pixel column at 12 in x 100 dpi


# ------------------------------------------------------------------------------------------------ pieces


def figure(height_in: float) -> Figure:
    """A WIDTH_IN x height_in figure on its own Agg canvas."""
    fig = Figure(figsize=(WIDTH_IN, height_in), dpi=_DPI)
    FigureCanvasAgg(fig)
    return fig


def save_png(fig: Figure, out_png: str | os.PathLike) -> Path:
    """Write the figure as a PNG (making its folder) -> its path."""
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    return out


def draw_frame_strip(ax, thumbs: Sequence[np.ndarray], times: Sequence[float], duration: float) -> None:
    """Draw thumbnails [H,W,3] centred on their times (s) along a [0, duration] axis shared with the plots below."""
    slot = duration / len(times)
    for img, t in zip(thumbs, times):
        ax.imshow(img, extent=(t - slot / 2, t + slot / 2, 0, 1), aspect="auto", interpolation="bilinear")
    ax.set_xlim(0, duration)
    ax.set_ylim(0, 1)
    ax.set_yticks([])
    ax.set_xticks(times)
    ax.tick_params(labelbottom=False, length=3)


def log_mel_db(audio: np.ndarray, profile: AudioProfile) -> np.ndarray:
    """A plain log-mel picture of any length: dB re. the peak, floored at -80 -> float32 [n_mels, frames].

    For looking at, not for the model: a centred STFT with zero padding over the whole wave, where
    `mel.wave_to_mel` fits one window and reflect-pads; the filterbank is the model's (`mel.mel_basis`).
    """
    if audio.size < profile.n_fft:
        audio = np.pad(audio, (0, profile.n_fft - audio.size))
    # librosa.feature.melspectrogram(power=1) written out (same numbers, same pixels) so that the picture
    # and the model read one filterbank.
    spec = np.abs(librosa.stft(audio.astype(np.float32), n_fft=profile.n_fft, hop_length=profile.hop,
                               win_length=profile.win, center=True, pad_mode="constant"))  # [n_fft/2+1, frames]
    mel = np.einsum("...ft,mf->...mt", spec, mel_basis(profile), optimize=True)  # [n_mels, frames]
    return librosa.amplitude_to_db(mel, ref=np.max, amin=1e-5, top_db=80.0).astype(np.float32)


def draw_mel(ax, audio: np.ndarray, profile: AudioProfile, duration: float, seams: Sequence[float] = ()) -> None:
    """Draw the log-mel picture of mono `audio` (at the profile's rate) on a [0, duration] s axis.

    seams: times (s) marked with dotted white lines (the generation's window cross-fade centres).
    """
    mel = log_mel_db(audio, profile)
    ax.imshow(mel, origin="lower", aspect="auto", cmap="magma",
              extent=(0, mel.shape[1] * profile.hop / profile.sample_rate, 0, profile.n_mels))
    for t in seams:
        ax.axvline(float(t), color="white", ls=":", lw=1.0, alpha=0.8)
    ax.set_xlim(0, duration)
    ax.set_ylabel(f"mel bin ({profile.name})")
    ax.set_xlabel("time (s)")


def envelope(x: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Min and max of x over `bins` equal slices -> two float arrays [bins]."""
    if x.size == 0:
        return np.zeros(bins), np.zeros(bins)
    edges = np.linspace(0, x.size, bins + 1).astype(int)
    edges[-1] = x.size
    lo = np.array([x[a:max(b, a + 1)].min() for a, b in zip(edges[:-1], edges[1:])])
    hi = np.array([x[a:max(b, a + 1)].max() for a, b in zip(edges[:-1], edges[1:])])
    return lo, hi


def draw_waveform(ax, audio: np.ndarray, sample_rate: int, duration: float,
                  stems: Mapping[str, np.ndarray] | None = None,
                  colours: Mapping[str, str] | None = None) -> float:
    """Draw the envelope of mono `audio` in grey and each stem's over it in its colour -> the y half-range.

    Stems are at `sample_rate` too; a stem without a colour is drawn in black. The axis shares the
    [0, duration] s time axis and hides its time labels (the spectrogram below carries them).
    """
    stems, colours = stems or {}, colours or {}
    t_bins = (np.arange(_WAVE_BINS) + 0.5) * (audio.size / sample_rate) / _WAVE_BINS
    lo, hi = envelope(audio, _WAVE_BINS)
    ax.fill_between(t_bins, lo, hi, color="0.6", lw=0, label="mix")
    for name, wave in stems.items():
        wave = np.asarray(wave, dtype=np.float32)
        s_lo, s_hi = envelope(wave, _WAVE_BINS)
        tb = (np.arange(_WAVE_BINS) + 0.5) * (wave.size / sample_rate) / _WAVE_BINS
        ax.fill_between(tb, s_lo, s_hi, color=colours.get(name, "k"), alpha=0.6, lw=0, label=name)
    peak = max(1e-3, float(np.max(np.abs(audio))) if audio.size else 1e-3)
    ax.set_ylim(-1.05 * peak, 1.05 * peak)
    ax.set_xlim(0, duration)
    ax.set_ylabel("wave")
    ax.tick_params(labelbottom=False)
    if stems:
        ax.legend(loc="upper right", fontsize=7, ncol=len(stems) + 1, frameon=False)
    return peak


# ---------------------------------------------------------------------------------- the generation picture


def thumbnail_times(duration: float, aspect: float, max_thumbs: int = _MAX_THUMBS) -> np.ndarray:
    """Slot centres (s) [N] for thumbnails of width/height `aspect` tiling the strip without squashing much."""
    if duration <= 0:
        raise Action2SoundError(f"cannot draw a video of duration {duration} s")
    n = int(np.clip(round(WIDTH_IN / (_STRIP_IN * aspect)), 1, max_thumbs))
    return (np.arange(n) + 0.5) * duration / n


def render_png(out_png: str | os.PathLike, video: str | os.PathLike, audio: np.ndarray, sample_rate: int,
               profile: str | AudioProfile = "universal22k", seams: Sequence[float] = (),
               title: str | None = None) -> Path:
    """Draw the video's frames over the mel spectrogram of `audio` (mono float [samples]) to a PNG -> its path.

    Window seams (s, the cross-fade centres) are marked on the spectrogram.
    """
    prof = audio_profile(profile)
    audio = np.asarray(audio, dtype=np.float32).reshape(-1)
    if audio.size:
        audio = resample(audio, sample_rate, prof.sample_rate)
    duration = audio.size / prof.sample_rate
    info = probe(video)
    aspect = (info.width or 1) / (info.height or 1)
    times = thumbnail_times(duration, aspect)
    frames = read_frames_at(video, times, size=None)  # display-oriented [N, H, W, 3]
    h = min(_THUMB_PX, frames.shape[1])
    w = max(1, round(h * frames.shape[2] / frames.shape[1]))
    thumbs = [np.asarray(Image.fromarray(f).resize((w, h), Image.BILINEAR)) for f in frames]

    fig = figure(_STRIP_IN + _SPEC_IN + 0.7)
    gs = fig.add_gridspec(2, 1, height_ratios=[_STRIP_IN, _SPEC_IN], hspace=0.06, left=0.06, right=0.99,
                          top=0.92, bottom=0.12)
    ax_f, ax_m = fig.add_subplot(gs[0]), fig.add_subplot(gs[1])
    draw_frame_strip(ax_f, thumbs, times, duration)
    draw_mel(ax_m, audio, prof, duration, seams)
    fig.suptitle(title if title is not None else Path(video).name, fontsize=10)
    return save_png(fig, out_png)
