"""A generation's result and its files: NAME.wav|flac, NAME.mp4|mkv, NAME.png and NAME.json written as one
atomic set (staged names, the json last, listing each file's size and sha256), and the checks that tell a
complete set from a killed one."""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import media
from .errors import Action2SoundError
from .options import AUDIO_FORMATS, KEEP_AUDIO
from .plotting import render_png


@dataclass(frozen=True, eq=False)
class GenerationResult:
    """Generated audio for one video: float32 [samples] at sample_rate, and everything about how it was made."""

    audio: np.ndarray
    sample_rate: int
    metadata: dict[str, Any]
    video: Path | None = None  # the source video (for the muxed mp4 and the picture)

    @property
    def duration(self) -> float:
        return self.audio.size / self.sample_rate

    def save(self, out_dir: str | os.PathLike, name: str | None = None, format: str = "wav",
             keep_original_audio: str = "replace", image: bool = True, container: str = "mp4") -> dict[str, Path]:
        """Write the set NAME.wav|flac, NAME.mp4|mkv (the video with this track), NAME.png, NAME.json -> paths.

        The set is replaced as a whole: every file is written to a hidden temp name in out_dir first, then the
        old NAME.json is removed, the others renamed, and the new NAME.json (which records each file's size and
        sha256) renamed last. A failure while writing leaves the old set as it was; a kill while renaming
        leaves a set without its record, which `record_is_complete` (and so a rerun) treats as not done.
        The video stream is copied into `container` when it takes it, else re-encoded (`media.plan_mux`).
        """
        if format not in AUDIO_FORMATS:
            raise Action2SoundError(f"unknown audio format {format!r}; use one of {', '.join(AUDIO_FORMATS)}")
        if keep_original_audio not in KEEP_AUDIO:
            raise Action2SoundError(f"keep_original_audio must be one of {', '.join(KEEP_AUDIO)}, "
                                    f"got {keep_original_audio!r}")
        if f".{container}" not in media.MUX_CONTAINERS:
            raise Action2SoundError(f"unknown container {container!r}; use one of "
                                    f"{', '.join(e[1:] for e in media.MUX_CONTAINERS)}")
        out = prepare_output_folder(out_dir)
        name = name or (self.video.stem if self.video is not None else "generated")
        t0 = time.perf_counter()
        paths = output_paths(out, name, format, container if self.video is not None else None,
                             image and self.video is not None)
        media.check_finite(paths["audio"], self.audio)
        staged: dict[str, Path] = {}
        try:
            staged["audio"] = media.staging_path(paths["audio"])
            media.write_audio(staged["audio"], self.audio, self.sample_rate)
            if "video" in paths:
                staged["video"] = media.staging_path(paths["video"])
                mux = media.mux_audio(self.video, self.audio, self.sample_rate, staged["video"], keep_original_audio)
            if "image" in paths:
                staged["image"] = media.staging_path(paths["image"])
                render_png(staged["image"], self.video, self.audio, self.sample_rate,
                           profile=self.metadata.get("model", {}).get("profile", "universal22k"),
                           seams=[w["crossfade_centre"] for w in self.metadata.get("windows", [])[1:]],
                           title=f"{self.video.name}: ambient {self.metadata['settings']['ambient']}")
            meta = json.loads(json.dumps(self.metadata))  # a deep copy, JSON-clean
            meta["name"] = name
            meta["outputs"] = {k: p.name for k, p in paths.items()}
            meta["files"] = {paths[k].name: _file_record(tmp) for k, tmp in staged.items()}
            meta["settings"]["format"] = format
            meta["settings"]["keep_original_audio"] = keep_original_audio
            meta["settings"]["container"] = container
            if "video" in paths:
                meta["mux"] = mux.record()
            meta["timings"]["save"] = round(time.perf_counter() - t0, 4)
            staged["json"] = media.staging_path(paths["json"])
            staged["json"].write_text(json.dumps(meta, indent=1) + "\n")
            old = _recorded_outputs(paths["json"])
            # From here until the last rename the set has no record: a kill leaves it "not done", never mixed.
            paths["json"].unlink(missing_ok=True)
            for kind in ("audio", "video", "image", "json"):  # the record last
                if kind in staged:
                    os.replace(staged.pop(kind), paths[kind])
        except Action2SoundError as err:  # name the files the user will look for, not the temp names
            message = str(err)
            for kind, tmp in staged.items():
                message = message.replace(str(tmp), str(paths[kind]))
            raise Action2SoundError(message) from None
        finally:
            for tmp in staged.values():  # what was not renamed (a failure on the way)
                tmp.unlink(missing_ok=True)
        for stale in old - {p.name for p in paths.values()}:  # the old set's other files (another format)
            (out / stale).unlink(missing_ok=True)
        return paths


def output_paths(out: Path, name: str, format: str = "wav", container: str | None = "mp4",
                 image: bool = True) -> dict[str, Path]:
    """The files of one output set: audio, video (container None: none), image, json (the record)."""
    paths = {"audio": out / f"{name}.{format}"}
    if container is not None:
        paths["video"] = out / f"{name}.{container}"
        if image:
            paths["image"] = out / f"{name}.png"
    paths["json"] = out / f"{name}.json"
    return paths


def prepare_output_folder(out_dir: str | os.PathLike) -> Path:
    """Make the output folder (with its parents) and check that files can be created in it -> its path.

    Called before any model work, so a bad --out costs nothing (not a traceback after the compute).
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise Action2SoundError(f"--out {out}: is a file, not a folder; choose a folder (it is made when missing)")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = media.staging_path(out / "write-test")
        probe.unlink()
    except OSError as err:
        raise Action2SoundError(f"--out {out}: cannot write there ({err.strerror or err}); choose a folder you "
                                "can write to") from None
    return out


def record_is_complete(record: str | os.PathLike) -> dict[str, Any] | None:
    """The metadata of a NAME.json whose files are all present with the sizes and sha256 it records, else None.

    A record without the `files` table (older versions) is not trusted: its set is redone.
    """
    record = Path(record)
    try:
        meta = json.loads(record.read_text())
    except (OSError, ValueError):
        return None  # missing or unreadable
    files = meta.get("files") if isinstance(meta, dict) else None
    if not isinstance(files, dict) or not files:
        return None
    for fname, want in files.items():
        f = record.parent / fname
        try:
            if f.stat().st_size != want.get("size") or _file_record(f)["sha256"] != want.get("sha256"):
                return None
        except (OSError, AttributeError):
            return None
    return meta


def _file_record(path: Path) -> dict[str, Any]:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return {"size": path.stat().st_size, "sha256": h.hexdigest()}


def _recorded_outputs(record: Path) -> set[str]:
    """File names an existing NAME.json lists as its outputs (empty when there is none or it is unreadable)."""
    try:
        outputs = json.loads(record.read_text()).get("outputs", {})
        return {n for n in outputs.values() if isinstance(n, str) and n == Path(n).name}
    except (OSError, ValueError, AttributeError):
        return set()


def remove_leftovers(out: Path, names: Sequence[str]) -> list[Path]:
    """Delete the staged files a killed `save` of one of `names` left in `out` -> the files deleted.

    Staged names are .NAME.XXXXXXXX.partial.EXT (`media.staging_path`), or a stage of one of those.
    """
    mark = re.escape(media.STAGING_MARK)
    staged = re.compile(rf"\.+(.+?)\.[0-9a-f]{{8}}{mark}(?:\.[0-9a-f]{{8}}{mark})?\.[A-Za-z0-9]+")
    wanted, removed = set(names), []
    if not out.is_dir():
        return removed
    for entry in os.scandir(out):
        m = staged.fullmatch(entry.name)
        if m and m.group(1) in wanted and entry.is_file():
            Path(entry.path).unlink(missing_ok=True)
            removed.append(Path(entry.path))
    return removed
