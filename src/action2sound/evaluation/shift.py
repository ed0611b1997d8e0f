"""The shift test (issue 10): delay the input video by Δ and count the generated onsets that move by Δ.

A model that hears what it sees moves its sounds with the picture; one that copies its audio condition, or
sounds the middle of every window, does not. For each benchmark clip the window is cut again from its long
episode starting Δ earlier (so every visible contact comes Δ later in the window: the video delayed by Δ),
and generated with the same seed and the same audio condition (a random indexed clip of another video, drawn
per clip) as the undelayed window. An onset of the undelayed output at t counts as eligible when t + Δ lies
in the window, and as followed when an onset of the delayed output lies within ±50 ms of t + Δ
(`benchmark_metrics.shift_follow`); as stayed when one lies within ±50 ms of t itself (`shift_stayed`: placed by
what the delay leaves alone: the window's edges, the audio condition). Windows that would start before the
episode or end after it are skipped.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from .. import media
from ..api import make_options
from ..data.manifest import Clip
from ..mel import fit_wave
from ..pipeline import Pipeline
from . import benchmark_metrics as bm
from .clips import EvalClip, clip_media

DELAYS_S = (-0.5, -0.3, 0.3, 0.5)


def delayed_clip(clip: Clip, episode: Path, delay_s: float, episode_seconds: float) -> Clip | None:
    """The clip's window with its picture delay_s late (cut from the episode delay_s earlier), or None when
    that window leaves the episode."""
    start = clip.video_start - delay_s
    if start < 0.0 or start + clip.duration > episode_seconds + 1e-6:
        return None
    tag = f"{'m' if delay_s < 0 else 'p'}{round(abs(delay_s) * 1000):04d}ms"
    return replace(clip, clip_id=f"{clip.clip_id}_{tag}", media_path=str(episode), media_start=start,
                   media_end=start + clip.duration, video_start=start, video_end=start + clip.duration)


def shift_test(pipe: Pipeline, clips: Sequence[EvalClip], bench: str | Path, cache: str | Path, seed: int = 0,
               options: dict[str, Any] | None = None, delays: Sequence[float] = DELAYS_S,
               progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Run the shift test on benchmark clips -> {"delays": {"+0.3": {"followed", "eligible", "share", "stayed",
    "stay_share"}, ...}, "followed", "eligible", "share", "stayed", "stay_share", "clips"}. options: generation
    settings (steps, guidance weights) for every output; the ambient is always a random clip of another video,
    drawn per clip and seed."""
    bench, cache = Path(bench), Path(cache)
    counts = {d: [0, 0, 0] for d in delays}  # followed, eligible, stayed
    seconds: dict[str, float] = {}  # each episode's length, probed once
    used = 0
    rate = pipe.preset.audio.sample_rate
    opts = make_options(**{**(options or {}), "ambient": "random", "seed": seed})
    for n, item in enumerate(clips):
        clip = item.clip
        episode = bench / "episodes" / f"{clip.video_id}.mp4"
        if not episode.is_file():
            continue
        if clip.video_id not in seconds:
            seconds[clip.video_id] = media.probe(str(episode)).duration
        moved = {d: delayed_clip(clip, episode, d, seconds[clip.video_id]) for d in delays}
        moved = {d: c for d, c in moved.items() if c is not None}
        if not moved:
            continue
        paths = [clip_media(clip, cache)] + [clip_media(c, cache) for c in moved.values()]
        condition = pipe.conditions.random(clip.clip_id, seed, clip.video_id)
        results = pipe.generate(paths, opts, [condition] * len(paths))
        if any(isinstance(r, Exception) for r in results):
            continue
        onsets = [bm.detect_onsets(fit_wave(r.audio, pipe.preset.audio), rate) for r in results]
        for d, shifted in zip(moved, onsets[1:]):
            followed, eligible = bm.shift_follow(onsets[0], shifted, d, clip.duration)
            counts[d][0] += followed
            counts[d][1] += eligible
            counts[d][2] += bm.shift_stayed(onsets[0], shifted, d, clip.duration)
        used += 1
        if progress is not None:
            progress(n + 1, len(clips))
    rows = {f"{d:+.1f}": {"followed": f, "eligible": e, "share": f / e if e else None, "stayed": st,
                          "stay_share": st / e if e else None}
            for d, (f, e, st) in counts.items()}
    followed, eligible, stayed = (sum(c[i] for c in counts.values()) for i in range(3))
    return {"delays": rows, "followed": followed, "eligible": eligible,
            "share": followed / eligible if eligible else None, "stayed": stayed,
            "stay_share": stayed / eligible if eligible else None, "clips": used, "seed": seed}
