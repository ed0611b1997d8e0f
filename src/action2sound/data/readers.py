"""Readers that turn a dataset's files into the clip table: Ego4D-Sounds, EPIC-KITCHENS-100, a folder of videos.

The table's schema, save/load and the train/val split live in ``manifest``; this file only reads foreign
metadata and media and fills that table.  Every reader returns ``(ClipTable, ReadReport)``; the report counts
what was read, kept and skipped (and why), so a silently shrinking dataset is visible: ``print(report.summary())``.
"""

from __future__ import annotations

import csv
import math
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import IO

import numpy as np

from .. import media
from ..errors import Action2SoundError
from ..media import VIDEO_EXTENSIONS, video_duration
from .manifest import SPLITS, Clip, ClipTable, ReadReport, assign_splits

# Columns of the Ego4D-Sounds metadata this reader uses; the other columns (narration_source, narration_ind,
# positive, speech, background_music, traffic_noise, wind_noise) are allowed and ignored.
EGO4D_REQUIRED = (
    "video_uid", "video_dur", "narration_time", "clip_start", "clip_end", "clip_text", "tag_verb", "tag_noun",
    "clip_file",
)
EGO4D_COLUMNS = (
    "video_uid", "video_dur", "narration_source", "narration_ind", "narration_time", "clip_start", "clip_end",
    "clip_text", "tag_verb", "tag_noun", "positive", "clip_file", "speech", "background_music",
    "traffic_noise", "wind_noise",
)
# The test-set timestamps CSV of EPIC-KITCHENS-100 has no narration/verb/noun, so those are optional.
EPIC_REQUIRED = ("narration_id", "participant_id", "video_id", "start_timestamp", "stop_timestamp")


# ---------------------------------------------------------------------------------------------------- splits
def _with_splits(clips: list[Clip], split: str | None, val_fraction: float, seed: int) -> ClipTable:
    if split is not None:
        return ClipTable(clips)
    splits = assign_splits((c.video_id for c in clips), val_fraction, seed)
    return ClipTable(_replace_split(c, splits[c.video_id]) for c in clips)


def _replace_split(c: Clip, split: str) -> Clip:
    return c if c.split == split else replace(c, split=split)


def _check_split(split: str | None) -> None:
    if split is not None and split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {SPLITS} or None for a train/val split")


# --------------------------------------------------------------------------------------------- shared helpers
def _open_table(path: Path, delimiter: str, required: Sequence[str], what: str) -> tuple[csv.DictReader, IO[str]]:
    if not path.is_file():
        raise Action2SoundError(f"{what} {path} not found; check the path")
    f = open(path, encoding="utf-8-sig", newline="")
    reader = csv.DictReader(f, delimiter=delimiter)
    header = reader.fieldnames or []
    missing = [c for c in required if c not in header]
    if missing:
        f.close()
        found = ", ".join(header[:20]) if header else "nothing (empty file)"
        raise Action2SoundError(
            f"{what} {path} lacks column(s) {', '.join(missing)} (found: {found}); "
            f"pass the right file or add the columns"
        )
    return reader, f


class _DirIndex:
    """exists() by listing each directory once: a 1.2 M-row manifest touches ~10^4 directories, not 10^6 files."""

    def __init__(self) -> None:
        self._names: dict[str, set[str]] = {}

    def names(self, directory: str) -> set[str]:
        if directory not in self._names:
            try:
                self._names[directory] = {e.name for e in os.scandir(directory) if e.is_file()}
            except OSError:
                self._names[directory] = set()
        return self._names[directory]

    def exists(self, path: str) -> bool:
        d, name = os.path.split(path)
        return name in self.names(d)


def _r6(x: float) -> float:
    return round(x, 6)  # microseconds: keeps the table readable and save/load exact


def _place(centre: float, duration: float, total: float | None) -> tuple[float, float]:
    """[start, end) of `duration` seconds centred on `centre`, shifted (not shortened) to fit [0, total]."""
    start = max(0.0, centre - duration / 2)
    end = start + duration
    if total is not None and total > 0 and end > total:
        end = total
        start = max(0.0, end - duration)
    return _r6(start), _r6(end)


def _float(s: str | None) -> float:
    x = float(s)  # raises ValueError on empty / garbage
    if not math.isfinite(x):
        raise ValueError(s)
    return x


_TAG = re.compile(r"^\s*#\s*([A-Za-z])\b\s*")
_SUBJECT_C = re.compile(r"^[Cc]\b\s*")
_HASH_WORD = re.compile(r"#\s*(unsure|summary)\b", re.IGNORECASE)


def clean_narration(text: str) -> str:
    """Ego4D narration -> plain text: "#C C hits the pan" -> "hits the pan"; "#O man X ..." -> "man X ...".

    The leading #C / #O tag is dropped; after #C the camera wearer's "C" is dropped too, so every clip's text
    is the action itself.  "#unsure" / "#summary" markers are removed; whitespace collapsed.  The raw text stays
    in the source metadata file (join on clip_id) for anyone who needs it.
    """
    m = _TAG.match(text)
    if m:
        text = text[m.end():]
        if m.group(1) in "Cc":
            text = _SUBJECT_C.sub("", text, count=1)
    text = _HASH_WORD.sub(" ", text)
    return " ".join(text.split())


def _tag(value: str | None) -> str:
    """Ego4D tags are list literals ("[]", "['cut']"); keep them as a comma-joined plain string."""
    value = (value or "").strip()
    if value.startswith("[") and value.endswith("]"):
        items = [s.strip().strip("'\"").strip() for s in value[1:-1].split(",")]
        return ",".join(s for s in items if s)
    return value


# ------------------------------------------------------------------------------------------------ Ego4D-Sounds
def read_ego4d_sounds(
    tsv: str | os.PathLike,
    clip_root: str | os.PathLike,
    split: str | None = None,
    val_fraction: float = 0.05,
    seed: int = 0,
    check_files: bool = True,
    clip_duration: float = 3.0,
) -> tuple[ClipTable, ReadReport]:
    """Read the Ego4D-Sounds metadata TSV (SPEC §4) over its pre-cut clip files.

    Each clip file is `clip_duration` seconds cut from the long video around ``narration_time`` (the public
    extraction script: narration_time ± 1.5 s, shifted to start at 0 near the beginning and to end at
    ``video_dur`` near the end when that is known).  Note that ``clip_start``/``clip_end`` in the released TSVs
    mark a 1.5 s narration window *inside* that file, not the file itself; they are only sanity-checked.  So:
    media = [0, clip_duration) of the clip file; video_start/end = the file's span in the long video.

    split: give one ("test" for the test TSV) to label every row; None splits by long video into train and
    a deterministic `val_fraction` of videos as val.  Rows whose clip file is missing are skipped and counted
    (a ``.wav`` clip_file is looked up as ``.mp4`` too, as the release's extraction script writes).
    """
    _check_split(split)
    tsv, clip_root = Path(tsv), Path(clip_root)
    if check_files and not clip_root.is_dir():
        raise Action2SoundError(f"Ego4D-Sounds clip folder {clip_root} not found; pass the folder the "
                                f"clip_file paths of {tsv.name} are relative to")
    root = os.path.abspath(clip_root)
    reader, f = _open_table(tsv, "\t", EGO4D_REQUIRED, "Ego4D-Sounds metadata")
    report = ReadReport(source=str(tsv))
    files = _DirIndex()
    clips: list[Clip] = []
    seen: set[str] = set()
    with f:
        for row in reader:
            report.read += 1
            where = f"line {reader.line_num}"
            if None in row or any(row[c] is None for c in EGO4D_REQUIRED):
                report.skip("malformed row (wrong number of fields)", where)
                continue
            uid = row["video_uid"].strip()
            rel = row["clip_file"].strip()
            if not uid or not rel:
                report.skip("empty video_uid or clip_file", where)
                continue
            try:
                t = _float(row["narration_time"])
                c0, c1 = _float(row["clip_start"]), _float(row["clip_end"])
                vdur = _float(row["video_dur"]) if row["video_dur"].strip() else -1.0
            except ValueError:
                report.skip("bad number in a time column", where)
                continue
            if c1 <= c0:
                report.skip("negative duration (clip_end <= clip_start)", where)
                continue
            if t < 0 or (vdur > 0 and t > vdur):
                report.skip("narration_time outside the video", where)
                continue
            path = os.path.join(root, rel)
            if check_files and not files.exists(path):
                alt = os.path.splitext(path)[0] + ".mp4"
                if rel.lower().endswith(".wav") and files.exists(alt):
                    path = alt
                else:
                    report.skip("clip file missing", rel)
                    continue
            clip_id = Path(rel).stem
            if clip_id in seen:
                report.skip("duplicate clip_file", rel)
                continue
            seen.add(clip_id)
            v0, v1 = _place(t, clip_duration, vdur if vdur > 0 else None)
            clips.append(Clip(
                clip_id=clip_id, video_id=sys.intern(uid), media_path=path,
                media_start=0.0, media_end=_r6(v1 - v0), video_start=v0, video_end=v1,
                text=clean_narration(row["clip_text"] or ""), verb=sys.intern(_tag(row["tag_verb"])),
                noun=sys.intern(_tag(row["tag_noun"])), split=split or "train", source="ego4d",
            ))
    table = _with_splits(clips, split, val_fraction, seed)
    report.kept = report.clips = len(table)
    return table, report


# ------------------------------------------------------------------------------------------ EPIC-KITCHENS-100
def parse_timestamp(value: str) -> float:
    """"HH:MM:SS.ff" (also "MM:SS.ff" or plain seconds) -> seconds."""
    parts = value.strip().split(":")
    if not 1 <= len(parts) <= 3 or any(not p for p in parts):
        raise ValueError(f"bad timestamp {value!r}")
    seconds = 0.0
    for p in parts[:-1]:
        if not p.isdigit():
            raise ValueError(f"bad timestamp {value!r}")
        seconds = seconds * 60 + int(p)
    last = float(parts[-1])
    if not math.isfinite(last) or last < 0 or (len(parts) > 1 and last >= 60):
        raise ValueError(f"bad timestamp {value!r}")
    return seconds * 60 + last if len(parts) > 1 else last


def _find_video(video_root: str, participant: str, video_id: str, listing: _DirIndex) -> str | None:
    """<root>/<participant>/videos/<video_id>.<ext> or <root>/<video_id>.<ext>, any case of extension."""
    for d in (os.path.join(video_root, participant, "videos"), video_root):
        names = listing.names(d)
        for ext in VIDEO_EXTENSIONS:  # mp4 first: EPIC ships .MP4
            for name in (video_id + ext, video_id + ext.upper()):
                if name in names:
                    return os.path.join(d, name)
        for name in sorted(names):  # rarer spellings such as .Mp4
            stem, ext = os.path.splitext(name)
            if stem == video_id and ext.lower() in VIDEO_EXTENSIONS:
                return os.path.join(d, name)
    return None


def read_epic_kitchens(
    csv_path: str | os.PathLike,
    video_root: str | os.PathLike,
    duration: float = 3.0,
    split: str | None = None,
    val_fraction: float = 0.05,
    seed: int = 0,
) -> tuple[ClipTable, ReadReport]:
    """Read an EPIC-KITCHENS-100 annotation CSV; each action -> a `duration` s window of its long video.

    The window is centred on the action's midpoint (start+stop)/2 and shifted to lie inside [0, video
    duration]; media_path is the long video itself (cut on the fly at read time, never re-encoded), so
    media_start/end equal video_start/end.  Videos are found at <video_root>/<participant_id>/videos/<video_id>.MP4
    or <video_root>/<video_id>.MP4 (any case of extension).  Rows with a missing or unreadable video, a bad
    timestamp, stop < start, or an action past the end of the video are skipped and counted.
    """
    _check_split(split)
    if duration <= 0:
        raise ValueError(f"duration must be positive, got {duration}")
    csv_path, video_root = Path(csv_path), Path(video_root)
    if not video_root.is_dir():
        raise Action2SoundError(f"EPIC-KITCHENS video folder {video_root} not found; pass the folder holding "
                                "P01/videos/P01_01.MP4 (or P01_01.MP4 directly)")
    root = os.path.abspath(video_root)
    reader, f = _open_table(csv_path, ",", EPIC_REQUIRED, "EPIC-KITCHENS annotation CSV")
    report = ReadReport(source=str(csv_path))
    listing = _DirIndex()
    located: dict[str, str | None] = {}
    durations: dict[str, float | None] = {}
    clips: list[Clip] = []
    seen: set[str] = set()
    with f:
        for row in reader:
            report.read += 1
            where = f"line {reader.line_num}"
            if None in row or any(row[c] is None for c in EPIC_REQUIRED):
                report.skip("malformed row (wrong number of fields)", where)
                continue
            nid, vid, pid = row["narration_id"].strip(), row["video_id"].strip(), row["participant_id"].strip()
            if not nid or not vid:
                report.skip("empty narration_id or video_id", where)
                continue
            try:
                t0, t1 = parse_timestamp(row["start_timestamp"]), parse_timestamp(row["stop_timestamp"])
            except ValueError:
                report.skip("bad timestamp", f"{where}: {row['start_timestamp']} / {row['stop_timestamp']}")
                continue
            if t1 < t0:
                report.skip("negative duration (stop before start)", nid)
                continue
            if vid not in located:
                located[vid] = _find_video(root, pid, vid, listing)
            path = located[vid]
            if path is None:
                report.skip("video file missing", f"{vid} under {video_root}")
                continue
            if vid not in durations:
                try:
                    durations[vid] = video_duration(path)
                except (ValueError, OSError) as e:  # Action2SoundError and PyAV's errors are ValueError/OSError
                    durations[vid] = None
                    report.examples.setdefault("video unreadable", f"{path}: {e}")
            total = durations[vid]
            if total is None:
                report.skip("video unreadable")
                continue
            if total <= 0:
                report.skip("video duration unknown (container does not say)", path)
                continue
            if t0 >= total:
                report.skip("action starts past the end of the video", nid)
                continue
            if nid in seen:
                report.skip("duplicate narration_id", nid)
                continue
            seen.add(nid)
            s, e = _place((t0 + t1) / 2, duration, total)
            clips.append(Clip(
                clip_id=nid, video_id=sys.intern(vid), media_path=path, media_start=s, media_end=e,
                video_start=s, video_end=e, text=" ".join((row.get("narration") or "").split()),
                verb=sys.intern((row.get("verb") or "").strip()), noun=sys.intern((row.get("noun") or "").strip()),
                split=split or "train", source="epic",
            ))
    table = _with_splits(clips, split, val_fraction, seed)
    report.kept = report.clips = len(table)
    return table, report


# ------------------------------------------------------------------------------------------ a folder of videos
def _folder_video_id(rel: Path, taken: set[str]) -> str:
    vid = rel.with_suffix("").as_posix()
    return vid if vid not in taken else rel.as_posix()  # a.mp4 beside a.mkv: keep the extension in the id


def _safe(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", s)


def onset_times(wave, sample_rate: int) -> tuple[list[float], list[float]]:
    """Audio onsets of a mono wave [n] -> (times in seconds, onset strengths), via librosa."""
    import librosa  # slow to import (numba); only onset mining needs it

    wave = np.asarray(wave, dtype=np.float32)
    hop = 512
    env = librosa.onset.onset_strength(y=wave, sr=sample_rate, hop_length=hop)
    frames = librosa.onset.onset_detect(onset_envelope=env, sr=sample_rate, hop_length=hop, units="frames")
    times = librosa.frames_to_time(frames, sr=sample_rate, hop_length=hop)
    return [float(t) for t in times], [float(env[f]) for f in frames]


def _onset_windows(times: Sequence[float], strengths: Sequence[float], duration: float,
                   total: float) -> list[tuple[float, float]]:
    """Non-overlapping windows centred on onsets, strongest onset first; a window only joins if it fits."""
    chosen: list[tuple[float, float]] = []
    for i in sorted(range(len(times)), key=lambda i: (-strengths[i], times[i])):
        s, e = _place(times[i], duration, total)
        if e - s < duration - 1e-6:
            continue
        if all(e <= a or s >= b for a, b in chosen):
            chosen.append((s, e))
    return sorted(chosen)


def mine_folder(
    folder: str | os.PathLike,
    duration: float = 3.0,
    mode: str = "windows",
    hop: float | None = None,
    val_fraction: float = 0.05,
    seed: int = 0,
    sample_rate: int = 16_000,
) -> tuple[ClipTable, ReadReport]:
    """Mine clips from every video under `folder` (recursive; mp4 mkv mov webm avi m4v, any case).

    mode "windows": windows of `duration` s every `hop` s (default `duration`), each fully inside the video.
    mode "onsets": windows centred on audio onsets (librosa, on the track decoded at `sample_rate`), strongest
    first, never overlapping (so at most one clip per `duration`); videos without audio are skipped and counted.
    video_id is the path below `folder` without extension; splits are by video.
    """
    if mode not in ("windows", "onsets"):
        raise ValueError(f"mode must be 'windows' or 'onsets', got {mode!r}")
    if duration <= 0 or (hop is not None and hop <= 0):
        raise ValueError(f"duration and hop must be positive, got duration={duration}, hop={hop}")
    hop = duration if hop is None else hop
    folder = Path(folder)
    if not folder.is_dir():
        raise Action2SoundError(f"video folder {folder} not found; pass a folder holding your videos")
    root = Path(os.path.abspath(folder))
    paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in VIDEO_EXTENSIONS and p.is_file())
    report = ReadReport(source=str(folder), unit="videos")
    clips: list[Clip] = []
    taken: set[str] = set()
    ids: set[str] = set()
    for p in paths:
        report.read += 1
        rel = p.relative_to(root)
        try:
            info = media.probe(str(p))
        except (ValueError, OSError) as e:  # Action2SoundError and PyAV's errors are ValueError/OSError
            report.skip("unreadable file", f"{rel}: {e}")
            continue
        total = float(info.duration)
        if not total >= duration:
            report.skip("shorter than one clip", str(rel))
            continue
        if mode == "windows":
            n = int(math.floor((total - duration) / hop + 1e-9)) + 1
            spans = [(_r6(i * hop), _r6(i * hop + duration)) for i in range(n)]
        else:
            if not info.has_audio:
                report.skip("no audio track (onset mode)", str(rel))
                continue
            try:
                wave = media.read_audio(str(p), 0, total, sample_rate)
            except (ValueError, OSError) as e:
                report.skip("unreadable audio", f"{rel}: {e}")
                continue
            spans = _onset_windows(*onset_times(wave, sample_rate), duration, total)
            if not spans:
                report.skip("no audio onsets", str(rel))
                continue
        vid = _folder_video_id(rel, taken)
        taken.add(vid)
        report.kept += 1
        for s, e in spans:
            clip_id = f"{_safe(vid)}_{int(round(s * 1000)):08d}"
            while clip_id in ids:  # two paths that sanitise alike ("a b" and "a_b")
                clip_id += "_"
            ids.add(clip_id)
            clips.append(Clip(
                clip_id=clip_id, video_id=vid, media_path=str(p),
                media_start=s, media_end=e, video_start=s, video_end=e, split="train", source="folder",
            ))
    table = _with_splits(clips, None, val_fraction, seed)
    report.clips = len(table)
    return table, report
