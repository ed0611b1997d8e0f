"""The normalised clip table: its schema, save/load, the read report and the train/val split by long video.

Every dataset becomes the same table: one row per clip, saved as a tab-separated file with a header line and
these columns, in this order:

======================  ========================================================================================
column                  meaning
======================  ========================================================================================
``clip_id``             unique id of the clip (Ego4D: the clip file's stem; EPIC: ``narration_id``;
                        folder: ``<video_id>_<start in ms>``)
``video_id``            the long video the clip comes from; splits and neighbours are per long video
``media_path``          the file to read.  Saved relative to the table's own directory when the file lies
                        inside it (the folder can be moved as a whole), else absolute; always absolute in memory
``media_start``         where the clip starts in ``media_path``, seconds (0 for a pre-cut clip file)
``media_end``           where the clip ends in ``media_path``, seconds
``video_start``         where the clip starts in its long video, seconds (ordering and overlap tests)
``video_end``           where the clip ends in its long video, seconds; intervals are half-open [start, end)
``text``                the narration, cleaned (Ego4D's ``#C C `` tag removed, see ``readers.clean_narration``)
``verb``                verb tag, may be empty
``noun``                noun tag, may be empty
``split``               ``train`` | ``val`` | ``test``
``source``              ``ego4d`` | ``epic`` | ``folder``
======================  ========================================================================================

Times are written with Python's shortest round-trip float repr, so save -> load is exact.  Tabs and line
breaks inside text fields are replaced by spaces on save.

The readers that build this table from Ego4D-Sounds, EPIC-KITCHENS-100 or a folder of videos live in
``readers``; each returns ``(ClipTable, ReadReport)``.
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import overload

from ..errors import Action2SoundError

SPLITS = ("train", "val", "test")
SOURCES = ("ego4d", "epic", "folder")
TABLE_COLUMNS = (
    "clip_id", "video_id", "media_path", "media_start", "media_end", "video_start", "video_end",
    "text", "verb", "noun", "split", "source",
)
_FLOAT_COLUMNS = ("media_start", "media_end", "video_start", "video_end")

@dataclass(frozen=True, slots=True)
class Clip:
    """One row of the clip table (see the module docstring for the meaning of each field)."""

    clip_id: str
    video_id: str
    media_path: str
    media_start: float
    media_end: float
    video_start: float
    video_end: float
    text: str = ""
    verb: str = ""
    noun: str = ""
    split: str = "train"
    source: str = "folder"

    def __post_init__(self) -> None:
        if self.split not in SPLITS:
            raise ValueError(f"clip {self.clip_id}: split {self.split!r} is not one of {SPLITS}")
        if self.source not in SOURCES:
            raise ValueError(f"clip {self.clip_id}: source {self.source!r} is not one of {SOURCES}")
        if not (self.media_end > self.media_start >= 0 and self.video_end > self.video_start >= 0):
            raise ValueError(
                f"clip {self.clip_id}: needs 0 <= start < end, got media [{self.media_start}, {self.media_end}) "
                f"video [{self.video_start}, {self.video_end})"
            )

    @property
    def duration(self) -> float:
        """Length of the clip in seconds."""
        return self.media_end - self.media_start


class ClipTable(Sequence[Clip]):
    """An immutable list of clips with save/load and the few selections the pipeline needs."""

    def __init__(self, clips: Iterable[Clip] = ()):
        self._clips: tuple[Clip, ...] = tuple(clips)

    def __len__(self) -> int:
        return len(self._clips)

    @overload
    def __getitem__(self, i: int) -> Clip: ...
    @overload
    def __getitem__(self, i: slice) -> ClipTable: ...

    def __getitem__(self, i: int | slice) -> Clip | ClipTable:
        if isinstance(i, slice):
            return ClipTable(self._clips[i])
        return self._clips[i]

    def __iter__(self) -> Iterator[Clip]:
        return iter(self._clips)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ClipTable) and self._clips == other._clips

    def __add__(self, other: ClipTable) -> ClipTable:
        return ClipTable(self._clips + tuple(other))

    def __repr__(self) -> str:
        return f"ClipTable({len(self)} clips, {len(self.video_ids())} videos)"

    def video_ids(self) -> list[str]:
        """Distinct long-video ids in first-seen order."""
        return list(dict.fromkeys(c.video_id for c in self._clips))

    def by_video(self) -> dict[str, list[int]]:
        """Indices of each long video's clips, sorted by (video_start, video_end, clip_id)."""
        groups: dict[str, list[int]] = {}
        for i, c in enumerate(self._clips):
            groups.setdefault(c.video_id, []).append(i)
        clips = self._clips
        for idx in groups.values():
            idx.sort(key=lambda i: (clips[i].video_start, clips[i].video_end, clips[i].clip_id))
        return groups

    def split(self, name: str) -> ClipTable:
        """The clips of one split (train / val / test)."""
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; choose one of {SPLITS}")
        return self.filter(lambda c: c.split == name)

    def filter(self, keep: Callable[[Clip], bool]) -> ClipTable:
        """The clips for which keep(clip) is true, in order."""
        return ClipTable(c for c in self._clips if keep(c))

    def save(self, path: str | os.PathLike) -> Path:
        """Write the table as TSV (schema in the module docstring); returns the path written."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        base = os.path.abspath(path.parent)
        lines = ["\t".join(TABLE_COLUMNS)]
        for c in self._clips:
            media = os.path.abspath(c.media_path)
            if os.path.commonpath([base, media]) == base:
                media = os.path.relpath(media, base)
            row = [
                c.clip_id, c.video_id, Path(media).as_posix(), repr(float(c.media_start)),
                repr(float(c.media_end)), repr(float(c.video_start)), repr(float(c.video_end)),
                c.text, c.verb, c.noun, c.split, c.source,
            ]
            lines.append("\t".join(_one_line(v) for v in row))
        tmp = path.with_name(path.name + ".partial")
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
        tmp.replace(path)  # never leave a half-written table behind
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> ClipTable:
        """Read a table written by save(); relative media paths resolve against the table's directory."""
        path = Path(path)
        if not path.is_file():
            raise Action2SoundError(f"clip table {path} not found; build one with a reader first")
        base = os.path.abspath(path.parent)
        with open(path, encoding="utf-8", newline="") as f:
            header = f.readline().rstrip("\r\n").split("\t")
            missing = [c for c in TABLE_COLUMNS if c not in header]
            if missing:
                raise Action2SoundError(
                    f"clip table {path} lacks column(s) {', '.join(missing)}; it is not a clip table "
                    f"(expected header: {' '.join(TABLE_COLUMNS)})"
                )
            col = [header.index(c) for c in TABLE_COLUMNS]
            clips = []
            for line_no, line in enumerate(f, start=2):
                line = line.rstrip("\r\n")
                if not line:
                    continue
                parts = line.split("\t")
                if len(parts) != len(header):
                    raise Action2SoundError(
                        f"clip table {path} line {line_no}: {len(parts)} fields, expected {len(header)}; "
                        "fix or rebuild the table"
                    )
                v = [parts[j] for j in col]
                try:
                    media = v[2] if os.path.isabs(v[2]) else os.path.normpath(os.path.join(base, v[2]))
                    clips.append(Clip(
                        clip_id=v[0], video_id=sys.intern(v[1]), media_path=media,
                        media_start=float(v[3]), media_end=float(v[4]),
                        video_start=float(v[5]), video_end=float(v[6]),
                        text=v[7], verb=sys.intern(v[8]), noun=sys.intern(v[9]),
                        split=sys.intern(v[10]), source=sys.intern(v[11]),
                    ))
                except ValueError as e:
                    raise Action2SoundError(f"clip table {path} line {line_no}: {e}; fix or rebuild the table") \
                        from None
        table = cls(clips)
        _check_unique_ids(table, str(path))
        return table


def _one_line(value: str) -> str:
    return value.replace("\t", " ").replace("\r", " ").replace("\n", " ")


def _check_unique_ids(table: ClipTable, where: str) -> None:
    seen: set[str] = set()
    for c in table:
        if c.clip_id in seen:
            raise Action2SoundError(f"{where}: clip_id {c.clip_id!r} appears twice; clip ids must be unique")
        seen.add(c.clip_id)


@dataclass
class ReadReport:
    """What a reader read, kept and skipped (with reasons); filled in while reading."""

    source: str
    unit: str = "rows"  # what `read` and `kept` count: rows of a metadata file, or videos of a folder
    read: int = 0
    kept: int = 0
    clips: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    examples: dict[str, str] = field(default_factory=dict)  # the first offending item per reason

    def skip(self, reason: str, example: str = "") -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1
        if example and reason not in self.examples:
            self.examples[reason] = example

    @property
    def total_skipped(self) -> int:
        return sum(self.skipped.values())

    def summary(self) -> str:
        """One line: counts, then each skip reason with its count and first example."""
        line = f"{self.source}: read {self.read} {self.unit}, kept {self.kept}, {self.clips} clips"
        if self.skipped:
            reasons = ", ".join(
                f"{r}: {n}" + (f" (e.g. {self.examples[r]})" if r in self.examples else "")
                for r, n in sorted(self.skipped.items(), key=lambda kv: (-kv[1], kv[0]))
            )
            line += f"; skipped {self.total_skipped}: {reasons}"
        return line


# ----------------------------------------------------------------------------------------------------- splits
def video_hash(video_id: str, seed: int) -> int:
    """A stable 64-bit hash of (seed, video_id); Python's hash() is salted per process, so never that."""
    return int.from_bytes(hashlib.blake2b(f"{seed}\0{video_id}".encode(), digest_size=8).digest(), "big")


def assign_splits(video_ids: Iterable[str], val_fraction: float = 0.05, seed: int = 0) -> dict[str, str]:
    """Map each long video to "train" or "val": the round(val_fraction * n) videos of lowest hash are val.

    At least one video goes to val when val_fraction > 0 and there are two or more videos, and at least one
    stays in train.  A video's rank depends only on (seed, id), so the choice never depends on row order.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    ids = sorted(set(video_ids), key=lambda v: (video_hash(v, seed), v))
    n_val = round(val_fraction * len(ids))
    if val_fraction > 0 and len(ids) >= 2:
        n_val = min(max(n_val, 1), len(ids) - 1)
    return {v: ("val" if r < n_val else "train") for r, v in enumerate(ids)}
