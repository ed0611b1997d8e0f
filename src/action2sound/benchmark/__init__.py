"""The ambient-aware benchmark: synthetic episodes whose sound is known stem by stem.

config (settings, vocabulary, shared rules) <- sound, picture (synthesis) <- banks (procedural or recorded)
<- planning (scene motion) <- episode (one episode in numbered steps) <- clips (where clips are cut)
<- writer (files) <- build (the entry point); groundtruth reads what was written; soundbank builds a
recording bank from Debian packages; contact_sheet draws a clip; remix writes ambient swaps (training episodes
whose ambient only the audio condition tells).
"""

from .banks import ProceduralBank, RecordingBank, open_bank
from .build import BenchmarkSummary, build_benchmark
from .config import (
    ACTIONS,
    EGO4D_COLUMNS,
    FLAG_COLUMNS,
    STEMS,
    BenchmarkConfig,
    clip_id,
    episode_uid,
    frame_to_sample,
    test_episodes,
)
from .episode import Episode, Event, NarratedAction, make_episode, render_frames
from .groundtruth import ClipGroundTruth, load_clip_groundtruth, stems_digest
from .planning import Contact, SceneObject, Trajectory, detect_contacts
from .writer import read_config

__all__ = [
    "ACTIONS", "EGO4D_COLUMNS", "FLAG_COLUMNS", "STEMS", "BenchmarkConfig", "BenchmarkSummary", "ClipGroundTruth",
    "Contact", "Episode", "Event", "NarratedAction", "ProceduralBank", "RecordingBank", "SceneObject", "Trajectory",
    "build_benchmark", "clip_id", "detect_contacts", "episode_uid", "frame_to_sample", "load_clip_groundtruth",
    "make_episode", "open_bank", "read_config", "render_frames", "stems_digest", "test_episodes",
]
