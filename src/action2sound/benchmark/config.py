"""What a benchmark build is: its settings, the vocabulary it writes, and the rules every part shares.

The settings are one frozen dataclass (written to benchmark.json); the rules that tie pictures to sound
(`frame_to_sample`), name things (`episode_uid`, `clip_id`) and split episodes (`test_episodes`) live here
once, so the planner, the writer and the readers agree on them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import Action2SoundError

ACTIONS = ("hit", "scrape", "drop", "shake")
EGO4D_COLUMNS = ("video_uid", "video_dur", "narration_source", "narration_ind", "narration_time", "clip_start",
                 "clip_end", "clip_text", "tag_verb", "tag_noun", "positive", "clip_file", "speech",
                 "background_music", "traffic_noise", "wind_noise")
FLAG_COLUMNS = ("speech", "background_music", "traffic_noise", "wind_noise")
NARRATION_SOURCE = "narration_pass_1"
STEMS = ("action", "ambient", "offscreen")
# Where clips are cut (clips.py): "v2" places contacts anywhere in the window (0, 1 or several per clip);
# "centred" is benchmark v1, every clip centred on its action's first contact, kept to reproduce old results.
LAYOUTS = ("v2", "centred")

# Spawn keys of the build-wide random streams; episode i uses spawn key (i,), so these sit far above any index.
AMBIENT_ORDER_STREAM = 1 << 20
TEST_SPLIT_STREAM = 1 << 21
CLIP_STREAM = 1 << 22  # v2 clip windows: spawn key (CLIP_STREAM, episode index)
PAUSE_STREAM = 1 << 23  # v2 pauses in the plan: spawn key (PAUSE_STREAM, episode index)


@dataclass(frozen=True)
class BenchmarkConfig:
    """Settings of one benchmark build (written to benchmark.json)."""

    episodes: int
    seed: int
    bank: str
    size: int = 224
    fps: float = 15.0
    sample_rate: int = 22050
    episode_seconds: tuple[float, float] = (40.0, 90.0)
    clip_seconds: float = 3.0
    test_fraction: float = 0.2
    layout: str = "v2"

    @property
    def clip_frames(self) -> int:
        return int(round(self.clip_seconds * self.fps))

    @property
    def clip_samples(self) -> int:
        return int(round(self.clip_seconds * self.sample_rate))

    def check(self) -> None:
        """Raise Action2SoundError naming the setting (and its command-line option) that is out of range."""
        if self.episodes < 1:
            raise Action2SoundError(f"--episodes must be >= 1, got {self.episodes}")
        if self.seed < 0:
            raise Action2SoundError(f"--seed must be >= 0, got {self.seed}")
        if self.size < 32 or self.size % 2:
            raise Action2SoundError(f"--size must be an even number >= 32, got {self.size}")
        if self.fps <= 0 or abs(self.clip_seconds * self.fps - round(self.clip_seconds * self.fps)) > 1e-9:
            raise Action2SoundError(f"clip_seconds * fps must be a whole number of frames, got {self.clip_seconds} "
                                    f"s at {self.fps} fps; pick fps so that it is")
        lo, hi = self.episode_seconds
        if lo > hi or lo < self.clip_seconds + 3.0:
            raise Action2SoundError(f"episode_seconds {self.episode_seconds} must be an increasing pair with the "
                                    f"shortest at least clip_seconds + 3 = {self.clip_seconds + 3.0} s")
        if not 0.0 <= self.test_fraction < 1.0:
            raise Action2SoundError(f"test_fraction must be in [0, 1), got {self.test_fraction}")
        if self.sample_rate < 8000:
            raise Action2SoundError(f"sample_rate must be >= 8000, got {self.sample_rate}")
        if self.layout not in LAYOUTS:
            raise Action2SoundError(f"--layout must be one of {', '.join(LAYOUTS)}, got {self.layout!r}")


def frame_to_sample(frame: int, fps: float, sample_rate: int) -> int:
    """The audio sample at which frame `frame` is shown: round(frame * sample_rate / fps)."""
    return int(math.floor(frame * sample_rate / fps + 0.5))


def episode_uid(seed: int, index: int) -> str:
    return f"a2s-{seed}-{index:04d}"


def clip_id(uid: str, ind: int) -> str:
    return f"{uid}_{NARRATION_SOURCE}_{ind}"


def test_episodes(cfg: BenchmarkConfig) -> set[int]:
    """Which episodes form the test split: round(N * test_fraction), at least one when N >= 2."""
    n = cfg.episodes
    k = 0 if n < 2 else max(1 if cfg.test_fraction > 0 else 0, int(round(n * cfg.test_fraction)))
    order = np.random.default_rng(np.random.SeedSequence(cfg.seed, spawn_key=(TEST_SPLIT_STREAM,))).permutation(n)
    return set(int(i) for i in order[:k])
