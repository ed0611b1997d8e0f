"""A contact sheet of a clip: a strip of its frames over its waveform and its mel spectrogram, on one time axis.

Each thumbnail is the frame shown at the centre of its slot, so a thumbnail sits right above the sound of
the moment it shows. With ground truth (a benchmark clip's events.json) the visible contacts are marked with
solid lines and the off-screen sounds with dashed ones, and the stems found beside events.json are drawn
over the mix. Drawn with matplotlib's Agg canvas directly (no pyplot, no global backend switch).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config import AudioProfile, audio_profile
from ..errors import Action2SoundError

_STEM_COLOURS = {"action": "#d95f02", "offscreen": "#7570b3", "ambient": "#1b9e77"}


@dataclass(frozen=True)
class ClipArrays:
    """A clip held in memory: frames uint8 [T, H, W, 3] at fps, mono audio float [samples] at sample_rate."""

    frames: np.ndarray
    fps: float
    audio: np.ndarray
    sample_rate: int


def _load_clip(clip, profile: AudioProfile, num_frames: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """-> (thumbnails uint8 [N, H, W, 3], their times s [N], audio at the profile's rate, duration s)."""
    if isinstance(clip, (str, os.PathLike)):
        from ..media import probe, read_audio_file, read_frames_at

        info = probe(clip)
        if not info.has_video:
            raise Action2SoundError(f"{os.fspath(clip)} has no video stream; a contact sheet needs frames")
        audio = read_audio_file(clip, profile.sample_rate) if info.has_audio else np.zeros(0, np.float32)
        duration = info.duration or audio.size / profile.sample_rate
        if duration <= 0:
            raise Action2SoundError(f"{os.fspath(clip)}: could not tell the clip's duration")
        times = (np.arange(num_frames) + 0.5) * duration / num_frames
        thumbs = read_frames_at(clip, times, size=None)
        return thumbs, times, audio, duration
    if isinstance(clip, tuple):
        clip = ClipArrays(*clip)
    frames = np.asarray(clip.frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise Action2SoundError(f"frames must be uint8 [T, H, W, 3], got shape {frames.shape}")
    audio = np.asarray(clip.audio, dtype=np.float32).reshape(-1)
    if clip.sample_rate != profile.sample_rate and audio.size:
        import soxr

        audio = soxr.resample(audio, clip.sample_rate, profile.sample_rate).astype(np.float32)
    duration = max(frames.shape[0] / clip.fps, audio.size / profile.sample_rate)
    times = (np.arange(num_frames) + 0.5) * duration / num_frames
    idx = np.clip(np.floor(times * clip.fps).astype(int), 0, frames.shape[0] - 1)
    return frames[idx], times, audio, duration


def _load_events(events) -> tuple[list[dict], Path | None]:
    if events is None:
        return [], None
    if isinstance(events, (str, os.PathLike)):
        path = Path(events)
        if not path.is_file():
            raise Action2SoundError(f"events file {path} not found; pass a benchmark groundtruth/<clip>/events.json")
        data = json.loads(path.read_text())
        data = data["events"] if isinstance(data, dict) else data
        return list(data), path.parent
    return list(events), None


def _envelope(x: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Min and max of x over `bins` equal slices -> two float arrays [bins]."""
    if x.size == 0:
        return np.zeros(bins), np.zeros(bins)
    edges = np.linspace(0, x.size, bins + 1).astype(int)
    edges[-1] = x.size
    lo = np.array([x[a:max(b, a + 1)].min() for a, b in zip(edges[:-1], edges[1:])])
    hi = np.array([x[a:max(b, a + 1)].max() for a, b in zip(edges[:-1], edges[1:])])
    return lo, hi


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
    """A plain log-mel picture of any length: dB re. the peak, floored at -80 -> float32 [n_mels, frames]."""
    import librosa

    if audio.size < profile.n_fft:
        audio = np.pad(audio, (0, profile.n_fft - audio.size))
    mel = librosa.feature.melspectrogram(
        y=audio.astype(np.float32), sr=profile.sample_rate, n_fft=profile.n_fft, hop_length=profile.hop,
        win_length=profile.win, n_mels=profile.n_mels, fmin=profile.fmin, fmax=profile.fmax, power=1.0)
    return librosa.amplitude_to_db(mel, ref=np.max, amin=1e-5, top_db=80.0).astype(np.float32)


def contact_sheet(
    clip: str | os.PathLike | ClipArrays | tuple,
    out_png: str | os.PathLike,
    profile: str | AudioProfile = "universal22k",
    events: str | os.PathLike | list[dict] | None = None,
    stems: dict[str, np.ndarray] | None = None,
    num_frames: int = 8,
    title: str | None = None,
) -> Path:
    """Draw frames over waveform over mel spectrogram of a clip (file or ClipArrays) to a PNG -> its path.

    events: a benchmark events.json (or its list of {time, kind, action, onscreen}); stems: {name: wave} at
    the profile's rate (default: the action/ambient/offscreen .wav files beside events.json, if any).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    prof = audio_profile(profile)
    if num_frames < 1:
        raise Action2SoundError(f"num_frames must be >= 1, got {num_frames}")
    thumbs, times, audio, duration = _load_clip(clip, prof, num_frames)
    ev, gt_dir = _load_events(events)
    if stems is None and gt_dir is not None:
        stems = {}
        for name in _STEM_COLOURS:
            f = gt_dir / f"{name}.wav"
            if f.is_file():
                from ..media import read_audio_file

                stems[name] = read_audio_file(f, prof.sample_rate)
    stems = stems or {}

    width = 12.0
    thumb_h = width / num_frames * thumbs.shape[1] / thumbs.shape[2]
    fig = Figure(figsize=(width, thumb_h + 3.6), dpi=100)
    FigureCanvasAgg(fig)
    gs = fig.add_gridspec(3, 1, height_ratios=[thumb_h, 1.4, 2.2], hspace=0.08, left=0.06, right=0.99,
                          top=0.93, bottom=0.08)
    ax_f, ax_w, ax_m = (fig.add_subplot(gs[i]) for i in range(3))
    draw_frame_strip(ax_f, thumbs, times, duration)

    bins = 1500
    t_bins = (np.arange(bins) + 0.5) * (audio.size / prof.sample_rate) / bins
    lo, hi = _envelope(audio, bins)
    ax_w.fill_between(t_bins, lo, hi, color="0.6", lw=0, label="mix")
    for name, wave in stems.items():
        wave = np.asarray(wave, dtype=np.float32)
        s_lo, s_hi = _envelope(wave, bins)
        tb = (np.arange(bins) + 0.5) * (wave.size / prof.sample_rate) / bins
        ax_w.fill_between(tb, s_lo, s_hi, color=_STEM_COLOURS.get(name, "k"), alpha=0.6, lw=0, label=name)
    peak = max(1e-3, float(np.max(np.abs(audio))) if audio.size else 1e-3)
    ax_w.set_ylim(-1.05 * peak, 1.05 * peak)
    ax_w.set_xlim(0, duration)
    ax_w.set_ylabel("wave")
    ax_w.tick_params(labelbottom=False)
    if stems:
        ax_w.legend(loc="upper right", fontsize=7, ncol=len(stems) + 1, frameon=False)

    mel = log_mel_db(audio, prof)
    ax_m.imshow(mel, origin="lower", aspect="auto", cmap="magma",
                extent=(0, mel.shape[1] * prof.hop / prof.sample_rate, 0, prof.n_mels))
    ax_m.set_xlim(0, duration)
    ax_m.set_ylabel(f"mel bin ({prof.name})")
    ax_m.set_xlabel("time (s)")

    for e in ev:
        t = float(e["time"])
        if not 0.0 <= t <= duration:
            continue
        on = bool(e.get("onscreen", True))
        style = dict(color="#e41a1c" if on else "#984ea3", ls="-" if on else "--", lw=1.5)
        for ax in (ax_w, ax_m):
            ax.axvline(t, **style)
        ax_f.plot([t], [0.0], marker="^", ms=9, color=style["color"], clip_on=False)
        label = f"{e.get('action', '')} {e.get('kind', '')}".strip() + ("" if on else " (off-screen)")
        ax_w.text(t, 1.02 * peak, " " + label, fontsize=7, color=style["color"], va="top", ha="left")

    name = title if title is not None else (Path(clip).name if isinstance(clip, (str, os.PathLike)) else "clip")
    fig.suptitle(name, fontsize=10)
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    return out
