"""Where an episode's clips are cut: one window of clip_seconds per narrated action.

Layout `centred` (benchmark v1): each window is centred on its action's first contact.
"""

from __future__ import annotations

from dataclasses import dataclass

from .config import BenchmarkConfig, frame_to_sample
from .episode import Episode, NarratedAction


@dataclass(frozen=True)
class ClipWindow:
    """One clip: its narration index, the episode frame it starts on, and the action its narration names."""

    index: int
    first_frame: int
    action: NarratedAction

    def first_sample(self, cfg: BenchmarkConfig) -> int:
        return frame_to_sample(self.first_frame, cfg.fps, cfg.sample_rate)


def centred_windows(ep: Episode, cfg: BenchmarkConfig) -> list[ClipWindow]:
    """v1: each action's clip centred on its first contact (the planner left room for it)."""
    return [ClipWindow(a.index, a.frame - cfg.clip_frames // 2, a) for a in ep.actions]
