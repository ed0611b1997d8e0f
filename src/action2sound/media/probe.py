"""Opening media files: container signatures, the timeline's origin, rotation, and `probe` (what a file holds)."""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import av
import numpy as np

from ..errors import Action2SoundError


ResizeMode = Literal["squash", "center_crop"]
RESIZE_MODES = ("squash", "center_crop")
MUX_MODES = ("replace", "mix", "add")

# The one list of file extensions (lower case) the package treats as media when it scans folders. Every one
# opens through FFmpeg; the order matters where a name is looked up by stem (mp4 first: EPIC ships .MP4).
VIDEO_EXTENSIONS = (".mp4", ".mkv", ".mov", ".webm", ".avi", ".m4v", ".mpg", ".mpeg", ".ts", ".flv", ".wmv")
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".m4a", ".aiff", ".aif")
# What write_audio writes (soundfile, 16-bit PCM).
AUDIO_WRITE_EXTENSIONS = (".wav", ".flac")

# Magic bytes of containers we read: a file that starts like one of these but will not open is damaged,
# not "something else".
_SIGNATURES = (
    (4, b"ftyp"),  # mp4 / mov / m4a
    (0, b"\x1a\x45\xdf\xa3"),  # matroska / webm
    (0, b"RIFF"),  # avi / wav
    (0, b"OggS"),
    (0, b"fLaC"),
    (0, b"ID3"),  # mp3 with a tag
    (0, b"FORM"),  # aiff
)
# Seeking lands on a keyframe at or before the target by *decode* time; with B-frames that keyframe's
# presentation time can be a few frames later, so we seek this far before the first wanted time and retry
# further back if the first decoded frame is still too late.
_SEEK_MARGINS_S = (0.5, 5.0, None)  # None: decode from the start, no seek
# Audio decoded around a window so the resampler and the AAC overlap-add have settled at its edges.
_AUDIO_PAD_S = 0.1
# A frame whose pts is within this of a wanted time counts as "at" it: times computed as start + k / fps
# carry float noise that must not flip the choice to the previous frame. Far below any time base tick.
_PTS_EPS = 1e-6


@dataclass(frozen=True)
class MediaInfo:
    """What probe() learns about a media file without decoding it all."""

    path: str
    duration: float  # seconds; 0.0 when the container does not say
    has_video: bool
    has_audio: bool
    fps: float | None  # average frame rate of the first video stream
    width: int | None  # display width, after rotation
    height: int | None  # display height, after rotation
    rotation: int  # degrees counter-clockwise the coded picture is turned for display (0/90/180/270)
    sample_rate: int | None  # of the first audio stream
    num_video_frames: int | None  # as the container states it; None when unknown


# ----------------------------------------------------------------------------------------------- opening


def _fail(path: str | os.PathLike, what: str, fix: str) -> Action2SoundError:
    return Action2SoundError(f"{os.fspath(path)}: {what}; {fix}")


def _looks_like_media(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(16)
    return any(head[off : off + len(sig)] == sig for off, sig in _SIGNATURES)


def _check_index_within_file(path: Path, container: av.container.InputContainer) -> None:
    """A container whose index points past the end of the file (an mp4 with its index first, cut short)."""
    size = path.stat().st_size
    for stream in container.streams:
        if stream.type not in ("video", "audio"):
            continue
        entries = stream.index_entries
        if entries is None or len(entries) == 0:
            continue
        last = entries[len(entries) - 1]
        if last.pos >= 0 and last.pos + last.size > size:
            raise _fail(path, f"is truncated (its index needs {last.pos + last.size} bytes, the file has {size})",
                        "re-download or re-export it")


@contextmanager
def _open(path: str | os.PathLike) -> Iterator[av.container.InputContainer]:
    """Open a media file for reading; every way it can be unreadable becomes one Action2SoundError."""
    p = Path(path)
    if not p.exists():
        raise _fail(p, "file not found", "check the path")
    if p.is_dir():
        raise _fail(p, "is a directory, not a media file", "pass a video or audio file")
    if p.stat().st_size == 0:
        raise _fail(p, "is empty (0 bytes)", "re-download or re-export it")
    try:
        container = av.open(os.fspath(p), "r")
    except av.error.FFmpegError as exc:
        if _looks_like_media(p):
            raise _fail(p, f"is truncated or corrupt ({exc.strerror})", "re-download or re-export it") from None
        raise _fail(p, "is not a media file FFmpeg can read", "pass a video (mp4/mkv/webm/avi/mov) "
                    "or audio (wav/flac/ogg/mp3/m4a) file") from None
    try:
        if not container.streams.video and not container.streams.audio:
            raise _fail(p, "has no video or audio stream", "pass a video or audio file")
        _check_index_within_file(p, container)
        yield container
    except av.error.FFmpegError as exc:
        raise _fail(p, f"is truncated or corrupt: decoding failed ({exc.strerror})",
                    "re-download or re-export it") from None
    finally:
        container.close()


def _origin(container: av.container.InputContainer) -> float:
    """Seconds (file clock) of t = 0: the first video stream's start, else the first audio stream's."""
    for streams in (container.streams.video, container.streams.audio):
        if streams:
            start = _stream_start(streams[0])
            if start is not None:
                return start
    st = container.start_time
    return 0.0 if st is None else st / av.time_base


def _stream_start(stream: av.stream.Stream) -> float | None:
    if stream.start_time is None or stream.time_base is None:
        return None
    return float(stream.start_time * stream.time_base)


# ---------------------------------------------------------------------------------------------- rotation


def rotation_from_display_matrix(matrix: Sequence[int]) -> int:
    """Counter-clockwise display rotation in degrees (0/90/180/270) of an FFmpeg 3x3 16.16 display matrix."""
    # Same maths as FFmpeg's av_display_rotation_get: the matrix maps coded to displayed pixels; its
    # first column's angle, negated, is the anticlockwise turn. Snap to the quarter turns video uses.
    a, b = matrix[0] / 65536.0, matrix[1] / 65536.0
    c, d = matrix[3] / 65536.0, matrix[4] / 65536.0
    sx, sy = math.hypot(a, c), math.hypot(b, d)
    if sx == 0 or sy == 0:
        return 0
    angle = -math.degrees(math.atan2(b / sy, a / sx))
    return int(round(angle / 90.0)) * 90 % 360


def _rotation_of(stream: av.video.stream.VideoStream, first_frame: av.VideoFrame | None) -> int:
    """Counter-clockwise degrees for display: the display matrix FFmpeg attaches to frames, else the tag."""
    if first_frame is not None:
        for sd in first_frame.side_data:
            if sd.type == av.sidedata.sidedata.Type.DISPLAYMATRIX:
                matrix = np.frombuffer(bytes(sd), dtype="<i4")
                return rotation_from_display_matrix(matrix.tolist())
    # Old muxers wrote a 'rotate' tag holding the *clockwise* turn.
    tag = stream.metadata.get("rotate")
    if tag:
        try:
            return int(round(-float(tag) / 90.0)) * 90 % 360
        except ValueError:
            return 0
    return 0


def rotate_image(img: np.ndarray, rotation: int) -> np.ndarray:
    """Turn a [H, W, C] image counter-clockwise by `rotation` degrees (a multiple of 90) -> [H', W', C]."""
    k = (int(rotation) // 90) % 4
    return np.ascontiguousarray(np.rot90(img, k=k)) if k else img


# ------------------------------------------------------------------------------------------------- probe


def probe(path: str | os.PathLike) -> MediaInfo:
    """Read a media file's header (and its first video frame, for the rotation) -> MediaInfo."""
    with _open(path) as c:
        duration = c.duration / av.time_base if c.duration is not None else None
        vs = c.streams.video[0] if c.streams.video else None
        aus = c.streams.audio[0] if c.streams.audio else None
        if duration is None:
            spans = [float(s.duration * s.time_base) for s in (vs, aus)
                     if s is not None and s.duration is not None and s.time_base is not None]
            duration = max(spans) if spans else 0.0
        fps = width = height = frames = None
        rotation = 0
        if vs is not None:
            rate = vs.average_rate or vs.guessed_rate
            fps = float(rate) if rate else None
            first = next(iter(c.decode(vs)), None)
            rotation = _rotation_of(vs, first)
            w = first.width if first is not None else vs.codec_context.width
            h = first.height if first is not None else vs.codec_context.height
            width, height = (h, w) if rotation in (90, 270) else (w, h)
            frames = vs.frames or None
        return MediaInfo(
            path=os.fspath(path), duration=float(duration), has_video=vs is not None, has_audio=aus is not None,
            fps=fps, width=width, height=height, rotation=rotation,
            sample_rate=aus.codec_context.sample_rate if aus is not None else None, num_video_frames=frames,
        )


# ------------------------------------------------------------------------------------------------ frames


