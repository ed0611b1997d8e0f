"""A contact sheet of a clip: a strip of its frames over its waveform and its mel spectrogram, on one time axis.

Each thumbnail is the frame shown at the centre of its slot, so a thumbnail sits right above the sound of
the moment it shows. With ground truth (a benchmark clip's events.json) the visible contacts are marked with
solid lines and the off-screen sounds with dashed ones, and the stems found beside events.json are drawn
over the mix. The drawing pieces are `plotting`'s, shared with the generation picture.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config import AudioProfile, audio_profile
from ..errors import Action2SoundError
from ..media import probe, read_audio_file, read_frames_at, resample
from ..plotting import WIDTH_IN, draw_frame_strip, draw_mel, draw_waveform, figure, save_png

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
    if audio.size:
        audio = resample(audio, clip.sample_rate, profile.sample_rate)
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
                stems[name] = read_audio_file(f, prof.sample_rate)
    stems = stems or {}

    thumb_h = WIDTH_IN / num_frames * thumbs.shape[1] / thumbs.shape[2]
    fig = figure(thumb_h + 3.6)
    gs = fig.add_gridspec(3, 1, height_ratios=[thumb_h, 1.4, 2.2], hspace=0.08, left=0.06, right=0.99,
                          top=0.93, bottom=0.08)
    ax_f, ax_w, ax_m = (fig.add_subplot(gs[i]) for i in range(3))
    draw_frame_strip(ax_f, thumbs, times, duration)

    peak = draw_waveform(ax_w, audio, prof.sample_rate, duration, stems, _STEM_COLOURS)
    draw_mel(ax_m, audio, prof, duration)

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
    return save_png(fig, out_png)
