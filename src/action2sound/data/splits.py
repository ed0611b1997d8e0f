"""The clips behind a --data argument, and a table's train / validation split (for training and evaluation)."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import Action2SoundError
from .manifest import TABLE_COLUMNS, ClipTable
from .readers import read_ego4d_sounds


def load_clip_table(data: str | os.PathLike) -> ClipTable:
    """The clips behind --data: a clip table (.tsv written by `data manifest`), an Ego4D-Sounds metadata TSV
    (clip files under a `clips/` folder beside it, or beside the TSV), or a benchmark folder (its train.tsv)."""
    path = Path(data)
    if path.is_dir():
        if not (path / "train.tsv").is_file():
            raise Action2SoundError(f"{path}: a folder given as --data must hold train.tsv (a benchmark folder); "
                                    "or pass a clip table .tsv")
        path = path / "train.tsv"
    if not path.is_file():
        raise Action2SoundError(f"--data {path}: file not found; pass a clip table, an Ego4D-Sounds TSV or a "
                                "benchmark folder")
    with open(path, encoding="utf-8") as f:
        header = f.readline().rstrip("\r\n").split("\t")
    if all(c in header for c in TABLE_COLUMNS):
        return ClipTable.load(path)
    if "video_uid" in header and "clip_file" in header:
        root = path.parent / "clips" if (path.parent / "clips").is_dir() else path.parent
        table, report = read_ego4d_sounds(path, root)
        if len(table) == 0:
            raise Action2SoundError(f"{path}: no readable clips ({report.summary()})")
        return table
    raise Action2SoundError(f"{path}: neither a clip table nor an Ego4D-Sounds TSV (header: {' '.join(header[:6])} "
                            "...); build a table with `action2sound data manifest`")


def split_train_val(table: ClipTable, val_clips: int = 64) -> tuple[ClipTable, ClipTable]:
    """(train, val) of a table: its own val split when it has one; else, so that a small run still reports
    held-out numbers, the clips of its last long video (at most `val_clips`), when there are two or more videos."""
    val = table.split("val")
    if len(val):
        return table.split("train"), val[:val_clips]
    videos = table.video_ids()
    if len(videos) < 2:
        return table, ClipTable()
    held = videos[-1]
    return table.filter(lambda c: c.video_id != held), table.filter(lambda c: c.video_id == held)[:val_clips]

