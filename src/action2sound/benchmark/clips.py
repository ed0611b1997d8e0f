"""Where an episode's clips are cut: one window of clip_seconds per narrated action, in one of two layouts.

- `centred` (benchmark v1): each window is centred on its action's first contact. Every clip then has a
  visible contact at exactly its centre, so a single impulse at the centre, or any other clip's audio, scores
  a high onset F1 without looking at the video.
- `v2`: the window is placed at random around its action, so the first contact lands anywhere in it (at least
  CONTACT_EDGE_S from either end, where an onset is still detectable); other contacts of the action or of
  its neighbours fall where they fall (0, 1 or several per clip). When the hand rests after the action
  longer than a clip (v2 episodes have long pauses, episode.py), half such windows are moved into the rest
  instead: the clip shows no visible contact onset at all (maybe the action's tail, maybe only an off-screen sound, which is
  preferred when one is there). The narration still names the action, as Ego4D narrations name a moment
  near the clip, and narration_time stays the window's centre (the reader cuts clips around it).

v2's draws come from their own random stream (seed, CLIP_STREAM, episode index), so they never disturb the
episode's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .config import CLIP_STREAM, BenchmarkConfig, frame_to_sample
from .episode import Episode, NarratedAction

CONTACT_EDGE_S = 0.1  # v2: the anchoring contact sits at least this far inside its window
REST_CLIP_SHARE = 0.5  # v2: of the actions followed by a rest longer than a clip, the share whose clip shows it
OFFSCREEN_ONLY_SHARE = 0.5  # v2: of those, the share that holds an off-screen sound when the rest has one


@dataclass(frozen=True)
class ClipWindow:
    """One clip: its narration index, the episode frame it starts on, and the action its narration names."""

    index: int
    first_frame: int
    action: NarratedAction

    def first_sample(self, cfg: BenchmarkConfig) -> int:
        return frame_to_sample(self.first_frame, cfg.fps, cfg.sample_rate)


def clip_windows(ep: Episode, cfg: BenchmarkConfig) -> list[ClipWindow]:
    """The episode's clip windows in cfg.layout, one per narrated action, in narration order."""
    return centred_windows(ep, cfg) if cfg.layout == "centred" else v2_windows(ep, cfg)


def centred_windows(ep: Episode, cfg: BenchmarkConfig) -> list[ClipWindow]:
    """v1: each action's clip centred on its first contact (the planner left room for it)."""
    return [ClipWindow(a.index, a.frame - cfg.clip_frames // 2, a) for a in ep.actions]


def v2_windows(ep: Episode, cfg: BenchmarkConfig) -> list[ClipWindow]:
    """v2: windows placed so contacts fall anywhere in them, some with no visible contact (module docstring)."""
    rng = np.random.default_rng(np.random.SeedSequence(cfg.seed, spawn_key=(CLIP_STREAM, ep.index)))
    n = cfg.clip_frames
    last_start = ep.n_frames - n - 1  # strictly inside (one spare frame), as in v1: the audio never runs past
    edge = max(1, int(round(CONTACT_EDGE_S * cfg.fps)))
    onscreen = np.array(sorted(e.frame for e in ep.events if e.onscreen), dtype=np.int64)
    offscreen = np.array(sorted(e.frame for e in ep.events if not e.onscreen), dtype=np.int64)
    starts = np.arange(last_start + 1)
    # Windows [f0, f0 + n) with no visible onset, an edge's width of clearance included on both sides.
    clear = _count_in(onscreen, starts - edge, starts + n + edge) == 0
    with_offscreen = _count_in(offscreen, starts + edge, starts + n - edge) > 0
    out = []
    for j, a in enumerate(ep.actions):
        f0 = None
        # Contact-free windows between this action and the next one: the rest after it, if it is long enough.
        until = ep.actions[j + 1].frame if j + 1 < len(ep.actions) else ep.n_frames
        rest = clear & (starts > a.frame) & (starts < until)
        if np.any(rest) and rng.random() < REST_CLIP_SHARE:
            if np.any(rest & with_offscreen) and rng.random() < OFFSCREEN_ONLY_SHARE:
                rest &= with_offscreen
            f0 = int(rng.choice(starts[rest]))
        if f0 is None:
            # The first contact at u frames into the window, u uniform over what keeps the window in the episode.
            # (Clamping the edge to half a clip keeps the range non-empty for very short clips.)
            lo = max(min(edge, n // 2), a.frame - last_start)
            hi = min(max(n - 1 - edge, n // 2), a.frame)
            f0 = a.frame - int(rng.integers(lo, hi + 1))
        out.append(ClipWindow(a.index, f0, a))
    return out


def _count_in(frames: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """How many of the sorted `frames` lie in [lo, hi), for each pair -> int64 like lo."""
    return np.searchsorted(frames, hi, side="left") - np.searchsorted(frames, lo, side="left")
