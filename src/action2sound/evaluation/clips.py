"""The clips an evaluation runs on: a benchmark folder, a store or a clip table, joined with their ground truth."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .. import media
from ..data.manifest import Clip, ClipTable
from ..data.readers import read_ego4d_sounds
from ..data.splits import load_clip_table
from ..data.store import Store
from ..errors import Action2SoundError


@dataclass(frozen=True)
class EvalClip:
    """One clip to evaluate: its table row and its ground-truth folder (None outside the benchmark)."""

    clip: Clip
    groundtruth: Path | None


def _benchmark_root(path: Path, levels: int = 4) -> Path | None:
    for parent in list(path.parents)[:levels]:
        if (parent / "benchmark.json").is_file():
            return parent
    return None


def _with_groundtruth(clips, root: Path | None = None) -> list[EvalClip]:
    out = []
    for c in clips:
        r = root or _benchmark_root(Path(c.media_path))
        gt = r / "groundtruth" / c.clip_id if r is not None else None
        out.append(EvalClip(c, gt if gt is not None and (gt / "events.json").is_file() else None))
    return out


def load_eval_clips(data: str | os.PathLike, split: str = "test", limit: int | None = None) -> list[EvalClip]:
    """The clips of a benchmark folder, a store or a clip table / Ego4D-Sounds TSV, with their ground truth."""
    path = Path(data)
    if path.is_dir() and (path / "benchmark.json").is_file():
        names = ("train", "test") if split == "all" else (split,)
        table = ClipTable()
        for name in names:
            tsv = path / f"{name}.tsv"
            if not tsv.is_file():
                raise Action2SoundError(f"{path}: benchmark has no {tsv.name}; pass --split test, train or all")
            part, _ = read_ego4d_sounds(tsv, path / "clips", split="val" if name == "val" else name)
            table = table + part
        clips = _with_groundtruth(table, path)
    else:
        if path.is_dir() and (path / "store.json").is_file():
            table = Store(path).table
        else:
            table = load_clip_table(path)
        if split != "all":
            chosen = table.split(split)
            # A table without that split (an Ego4D test TSV read as train/val, a folder) is used whole.
            table = chosen if len(chosen) else table
        clips = _with_groundtruth(table)
    if not clips:
        raise Action2SoundError(f"--data {path}: no clips for split {split!r}; pass --split all or other data")
    return clips[:limit] if limit else clips


def clip_media(clip: Clip, cache: Path) -> Path:
    """A file holding exactly the clip: its media when that is the clip, else a cut copy under cache."""
    info = media.probe(clip.media_path)
    if clip.media_start <= 1e-6 and abs(info.duration - clip.duration) < 0.05:
        return Path(clip.media_path)
    out = cache / f"{clip.clip_id}.mp4"
    if not out.is_file():
        fps = info.fps or 25.0
        n = max(1, int(round(clip.duration * fps)))
        frames = media.read_frames(clip.media_path, clip.media_start, clip.duration, n, size=None)
        rate = info.sample_rate or 48_000
        wave = media.read_audio(clip.media_path, clip.media_start, clip.duration, rate, required=False)
        cache.mkdir(parents=True, exist_ok=True)
        media.write_video(out, frames, fps, wave, rate)
    return out
