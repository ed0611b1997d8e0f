"""Building the ambient-aware benchmark: settings -> episodes -> clips -> files.

Layout of OUT (clip_file in the TSVs is relative to OUT/clips, as in Ego4D-Sounds):
  benchmark.json                        seed, settings, kinds, actions, per-episode ambient, the bank's licence
  all.tsv, train.tsv, test.tsv          the 16 Ego4D-Sounds columns (SPEC §4); split by episode
  episodes/<uid>.mp4                    the long video with its mixed sound
  episodes/<uid>.{action,ambient,offscreen,mix}.wav   float32 stems of the whole episode
  episodes/<uid>.events.json            objects, narrated actions, every event, and the renderer's contacts
  episodes/<uid>.scene.npz              camera, fingertip and object trajectories, per frame
  clips/<uid>/<uid>_narration_pass_1_<i>.mp4     3 s clips (video + mixed sound), one per action, cut as
                                        the layout says (clips.py: v2 anywhere around it, or centred on it)
  groundtruth/<clip_id>/{action,ambient,offscreen,mix}.wav, events.json, clip.json
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from . import writer
from .banks import open_bank
from .clips import clip_windows
from .config import BenchmarkConfig, clip_id, test_episodes
from .episode import make_episode, render_frames
from .planning import detect_contacts


@dataclass(frozen=True)
class BenchmarkSummary:
    """What build_benchmark wrote."""

    root: Path
    episodes: int
    clips: int
    train_clips: int
    test_clips: int
    seconds: float  # total episode duration
    elapsed: float  # wall-clock seconds of the build

    def __str__(self) -> str:
        return (f"benchmark at {self.root}: {self.episodes} episodes ({self.seconds:.0f} s of video), "
                f"{self.clips} clips ({self.train_clips} train, {self.test_clips} test), "
                f"built in {self.elapsed:.1f} s")


def build_benchmark(
    out_dir: str | Path,
    episodes: int,
    seed: int,
    bank: str | Path = "procedural",
    size: int = 224,
    fps: float = 15.0,
    sample_rate: int = 22050,
    episode_seconds: tuple[float, float] = (40.0, 90.0),
    clip_seconds: float = 3.0,
    test_fraction: float = 0.2,
    layout: str = "v2",
    progress: bool = True,
) -> BenchmarkSummary:
    """Build the ambient-aware benchmark under out_dir (layout in the module docstring) -> its summary."""
    t_start = time.perf_counter()
    cfg = BenchmarkConfig(episodes, seed, str(bank), size, float(fps), int(sample_rate),
                          (float(episode_seconds[0]), float(episode_seconds[1])), float(clip_seconds),
                          float(test_fraction), layout)
    cfg.check()
    sound_bank = open_bank(bank, cfg.sample_rate)
    out = Path(out_dir)
    for sub in ("episodes", "clips", "groundtruth"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    if getattr(sound_bank, "licence_file", None):
        shutil.copyfile(sound_bank.licence_file, out / "BANK_LICENSES.md")
    test_set = test_episodes(cfg)
    rows: dict[str, list[list[str]]] = {"train": [], "test": []}
    ep_meta = []
    total_seconds = 0.0
    bar = None
    if progress:
        from tqdm import tqdm  # only when asked: tests and library callers build silently

        bar = tqdm(total=episodes, desc="benchmark episodes", unit="ep")
    for i in range(episodes):
        ep = make_episode(i, cfg, sound_bank)
        split = "test" if i in test_set else "train"
        frames = render_frames(ep)
        mix = ep.mix
        writer.write_episode_media(out, ep, frames, mix, cfg)
        total_seconds += ep.n_frames / cfg.fps
        clip_list = []
        for window in clip_windows(ep, cfg):
            rows[split].append(writer.write_clip(out, ep, frames, mix, window, split, cfg))
            clip_list.append(clip_id(ep.uid, window.index))
        writer.write_episode_events(out, ep, split, detect_contacts(ep.trajectory, ep.objects), int(mix.size), cfg)
        ep_meta.append({"video_uid": ep.uid, "split": split, "duration": ep.n_frames / cfg.fps,
                        "surface": ep.surface, "ambient": writer.ambient_record(ep),
                        "objects": [o.kind for o in ep.objects], "clips": clip_list})
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    writer.write_tsvs(out, rows)
    writer.write_metadata(out, cfg, sound_bank, ep_meta)
    n_train, n_test = len(rows["train"]), len(rows["test"])
    return BenchmarkSummary(out, episodes, n_train + n_test, n_train, n_test, total_seconds,
                            time.perf_counter() - t_start)
