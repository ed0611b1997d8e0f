"""Media I/O with PyAV: frames at timestamps, audio decode + resample, wav/flac, muxing a track into a video.

The timeline. Every time in this module is in seconds from the first video frame's presentation time
(the video stream's start; for a file without video, the audio stream's), for pictures and sound alike, so
the same number picks the picture and the sound of the same instant and t = 0 is the first frame even in
files whose timestamps start elsewhere (an MPEG-TS starts near 1.4 s; a stream-copied cut may start at
0.03 s). A frame is shown from its presentation timestamp (pts) until the next frame's: the frame at time t
is the last frame whose pts <= t. That rule is right for variable frame rates too, where counting frames is
not.

Encoder priming. An AAC encoder emits 1024 samples of priming before the first real sample. FFmpeg stamps
that packet 1024 samples *before* the first real one (a negative pts when the track starts at 0), and the
mp4 muxer writes an edit list telling players to skip it (FFmpeg drops it on decode), so the first real
sample plays with the first frame. Containers without edit lists (MPEG-TS) keep the priming at its own,
earlier, timestamps. So we give the encoder the first sample at the first frame's pts, never pre-trim by
hand, and place decoded audio on the timeline by each decoded frame's pts, never by counting samples from
the start of the file.
"""

from __future__ import annotations

import math
import os
import secrets
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Literal

import av
import numpy as np
import soundfile
import soxr

from action2sound.errors import Action2SoundError

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


def clip_frame_times(start: float, duration: float, num_frames: int) -> np.ndarray:
    """The N target times start + (i + 0.5) * duration / N, i = 0..N-1 -> float64 [N] seconds."""
    # Centres of N equal slices: symmetric in the window and never on its (exclusive) end.
    if num_frames < 1 or duration <= 0:
        raise Action2SoundError(f"need num_frames >= 1 and duration > 0, got {num_frames} and {duration}")
    return start + (np.arange(num_frames) + 0.5) * (duration / num_frames)


def _frame_time(frame: av.VideoFrame, fallback: float) -> float:
    return float(frame.pts * frame.time_base) if frame.pts is not None and frame.time_base else fallback


def _to_image(frame: av.VideoFrame, size: int | None, resize: str, rotation: int) -> np.ndarray:
    """One decoded frame -> uint8 [size, size, 3] (or [H, W, 3] display-oriented when size is None)."""
    if size is None:
        img = frame.to_ndarray(format="rgb24")
    elif resize == "squash":
        # Squash to a square, as the paper does: the whole picture, aspect ratio not kept.
        img = frame.to_ndarray(format="rgb24", width=size, height=size)
    else:
        # Short side to `size`, then the centre square. The centre square of the coded picture is the
        # centre square of the rotated one, so rotating afterwards is the same.
        scale = size / min(frame.width, frame.height)
        w, h = max(size, round(frame.width * scale)), max(size, round(frame.height * scale))
        img = frame.to_ndarray(format="rgb24", width=w, height=h)
        y0, x0 = (h - size) // 2, (w - size) // 2
        img = img[y0 : y0 + size, x0 : x0 + size]
    return rotate_image(img, rotation)


def read_frames_at(
    path: str | os.PathLike, times: Sequence[float] | np.ndarray, size: int | None = 224,
    resize: ResizeMode = "squash", return_times: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Frames shown at the given times (s) -> uint8 [N, size, size, 3] (and float64 [N] pts when asked)."""
    if resize not in RESIZE_MODES:
        raise Action2SoundError(f"resize must be one of {RESIZE_MODES}, got {resize!r}")
    times = np.asarray(times, dtype=np.float64).reshape(-1)
    if times.size == 0:
        raise Action2SoundError(f"{os.fspath(path)}: no frame times were asked for; pass at least one time")
    order = np.argsort(times, kind="stable")
    t_sorted = times[order]
    for margin in _SEEK_MARGINS_S:
        chosen = _pick_frames(path, t_sorted, margin)
        if chosen is not None:
            break
    frames, rotation, pts = chosen
    cache: dict[int, np.ndarray] = {}
    out = [None] * times.size
    for rank, i in enumerate(order):
        f = frames[rank]
        if id(f) not in cache:
            cache[id(f)] = _to_image(f, size, resize, rotation)
        out[i] = cache[id(f)]
    images = np.stack(out)
    picked = np.empty(times.size)
    picked[order] = pts
    return (images, picked) if return_times else images


def _pick_frames(path, t_sorted: np.ndarray, margin: float | None):
    """Decode forward from a seek before t_sorted[0]; None when the seek overshot (retry further back)."""
    with _open(path) as c:
        if not c.streams.video:
            raise _fail(path, "has no video stream", "pass a video file (this one is audio only)")
        vs = c.streams.video[0]
        vs.thread_type = "AUTO"
        origin = _origin(c)
        first_wanted = t_sorted[0] + origin
        start = _stream_start(vs)
        seeked = False
        if margin is not None and first_wanted - margin > (start or 0.0):
            target = first_wanted - margin
            c.seek(int(target / vs.time_base), stream=vs, backward=True, any_frame=False)
            seeked = True
        rate = vs.average_rate or vs.guessed_rate or 25
        chosen: list[av.VideoFrame] = []
        chosen_pts: list[float] = []
        prev = None
        prev_t = 0.0
        rotation = None
        k = 0
        n = t_sorted.size
        t_guess = 0.0
        for frame in c.decode(vs):
            t = _frame_time(frame, t_guess) - origin
            t_guess = t + origin + 1.0 / float(rate)
            if rotation is None:
                rotation = _rotation_of(vs, frame)
                if seeked and t > t_sorted[0] + _PTS_EPS:
                    return None  # the keyframe we landed on is already past the first wanted time
            # Every wanted time before this frame's pts is shown by the previous frame (or, before the
            # first frame of the video, by the first frame).
            while k < n and t > t_sorted[k] + _PTS_EPS:
                chosen.append(prev if prev is not None else frame)
                chosen_pts.append(prev_t if prev is not None else t)
                k += 1
            if k == n:
                break
            prev, prev_t = frame, t
        if prev is None and not chosen:
            raise _fail(path, "has a video stream but no frame could be decoded", "re-export the video")
        while k < n:  # past the end: the last frame stays on screen
            chosen.append(prev)
            chosen_pts.append(prev_t)
            k += 1
        if rotation is None:
            rotation = _rotation_of(vs, None)
        # Frames keep their own buffers after the container closes; convert them outside.
        return chosen, rotation, np.asarray(chosen_pts)


def read_frames(
    path: str | os.PathLike, start: float, duration: float, num_frames: int, size: int | None = 224,
    resize: ResizeMode = "squash", return_times: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """N frames at start + (i + 0.5) * duration / N -> uint8 [N, size, size, 3] (and their pts in s)."""
    return read_frames_at(path, clip_frame_times(start, duration, num_frames), size, resize, return_times)


# ------------------------------------------------------------------------------------------------- audio


_SAMPLE_SCALE = {"u8": None, "s16": 32768.0, "s32": 2147483648.0, "s64": 9.223372036854775808e18,
                 "flt": 1.0, "dbl": 1.0}


def _frame_mono(frame: av.AudioFrame) -> np.ndarray:
    """One decoded audio frame -> float32 [samples], the mean of its channels."""
    arr = frame.to_ndarray()
    channels = max(1, frame.layout.nb_channels)
    if not frame.format.is_planar:  # packed: [1, samples * channels], interleaved
        arr = arr.reshape(-1, channels).T
    base = frame.format.packed.name
    if base == "u8":
        x = (arr.astype(np.float32) - 128.0) / 128.0
    else:
        x = arr.astype(np.float32) / np.float32(_SAMPLE_SCALE[base])
    return x.mean(axis=0) if x.shape[0] > 1 else x[0]


def _decode_audio_span(path, t0: float, t1: float | None, margin: float | None):
    """Native-rate mono samples covering [t0, t1) on the timeline (t1 None: to the end) -> (x, rate) or None."""
    with _open(path) as c:
        stream = c.streams.audio[0]
        rate = stream.codec_context.sample_rate
        origin = _origin(c)
        start = _stream_start(stream)
        seeked = False
        if margin is not None and t0 + origin - margin > (start or 0.0):
            c.seek(int((t0 + origin - margin) / stream.time_base), stream=stream, backward=True)
            seeked = True
        n_total = None if t1 is None else int(math.ceil((t1 - t0) * rate))
        chunks: list[tuple[int, np.ndarray]] = []
        expected = None  # where the next frame goes if the stream is contiguous
        # Decoders do not drop the encoder's end padding (an mp4's last AAC packet says 640 samples, the
        # decoder gives 1024); the packets' pts + duration say where the real sound ends.
        packet_end = -math.inf
        done = False
        for packet in c.demux(stream):
            if packet.pts is not None and packet.duration:
                packet_end = max(packet_end, float((packet.pts + packet.duration) * packet.time_base))
            for frame in packet.decode():
                x = _frame_mono(frame)
                if frame.pts is not None and frame.time_base:
                    pos = (float(frame.pts * frame.time_base) - origin - t0) * rate
                    # Millisecond time bases (mkv, webm) put frames a few samples off their true place:
                    # keep the stream contiguous unless the pts says there is a real gap or jump.
                    if expected is not None and abs(pos - expected) <= 0.002 * rate + 1:
                        pos = expected
                    pos = int(round(pos))
                else:
                    pos = expected if expected is not None else 0
                if expected is None and seeked and pos > 0:
                    return None  # the seek landed after t0: retry further back
                expected = pos + x.size
                chunks.append((pos, x))
                done = n_total is not None and pos >= n_total
            if done:
                break
        decoded = max((p + x.size for p, x in chunks), default=0)
        n_total = decoded if n_total is None else n_total
        if math.isfinite(packet_end):
            n_total = min(n_total, int(round((packet_end - origin - t0) * rate)))
        buf = np.zeros(max(n_total, 0), dtype=np.float32)
        for pos, x in chunks:
            lo, hi = max(pos, 0), min(pos + x.size, buf.size)
            if hi > lo:
                buf[lo:hi] = x[lo - pos : hi - pos]
        return buf, rate


def resample(x: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Mono wave [T] at rate_in -> float32 [round(T * rate_out / rate_in)] (soxr, high quality).

    The package's one resampler. The input is taken as float32 first, so float64 and float32 callers get
    the same samples; an array of shape [T, 1] or [1, T] is read as [T].
    """
    wave = np.asarray(x, dtype=np.float32)
    if wave.ndim != 1:
        if sum(d > 1 for d in wave.shape) > 1:
            raise Action2SoundError(f"resample takes mono audio [samples], got shape {wave.shape}; "
                                    "average the channels first")
        wave = wave.reshape(-1)
    if rate_in == rate_out:
        return wave
    # soxr compensates its filter delay, so output sample j sits at input time j / rate_out.
    return soxr.resample(wave, rate_in, rate_out, quality="HQ").astype(np.float32, copy=False)


def _has_audio(path, required: bool) -> bool:
    with _open(path) as c:
        if c.streams.audio:
            return True
    if required:
        raise _fail(path, "has no audio stream", "pass a file with sound, or treat the audio as optional")
    return False


def read_audio(
    path: str | os.PathLike, start: float, duration: float, sample_rate: int, required: bool = True,
) -> np.ndarray:
    """Mono audio of [start, start + duration) resampled to sample_rate -> float32 [round(duration * rate)]."""
    n = int(round(duration * sample_rate))
    if n < 0:
        raise Action2SoundError(f"{os.fspath(path)}: duration must be >= 0, got {duration}")
    if not _has_audio(path, required):
        return np.zeros(n, dtype=np.float32)
    pad = _AUDIO_PAD_S
    for margin in _SEEK_MARGINS_S:
        got = _decode_audio_span(path, start - pad, start + duration + pad, margin)
        if got is not None:
            break
    x, rate = got
    y = resample(x, rate, sample_rate)
    j0 = int(round(pad * sample_rate))
    out = np.zeros(n, dtype=np.float32)
    seg = y[j0 : j0 + n]
    out[: seg.size] = seg
    return out


def read_audio_file(path: str | os.PathLike, sample_rate: int) -> np.ndarray:
    """The whole audio track from t = 0, mono, resampled to sample_rate -> float32 [samples]."""
    _has_audio(path, required=True)
    x, rate = _decode_audio_span(path, 0.0, None, margin=None)
    return resample(x, rate, sample_rate)


# ------------------------------------------------------------------------------------------------ writing


# Staged files carry this before their extension; a killed writer's leftovers are recognised by it.
STAGING_MARK = ".partial"


def staging_path(path: str | os.PathLike) -> Path:
    """A new empty hidden file beside `path` with its extension (.NAME.XXXXXXXX.partial.EXT) -> its path.

    Made with mode 0666 so the umask applies as to any `open` (tempfile.mkstemp's 0600 would survive the
    rename and hide results from other users and web servers). Writers pick the format by extension.
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    while True:
        tmp = p.with_name(f".{p.stem}.{secrets.token_hex(4)}{STAGING_MARK}{p.suffix}")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return tmp
        except FileExistsError:
            continue


@contextmanager
def _atomic_path(path: str | os.PathLike) -> Iterator[str]:
    """A temp file beside `path` (same extension) that replaces `path` only when the block succeeds."""
    tmp = staging_path(path)
    try:
        yield str(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def check_finite(path: str | os.PathLike, wave: np.ndarray) -> None:
    """Refuse audio with NaN/inf samples, naming the file it was meant for."""
    # NaN would be written as -32768 (full-scale noise); refusing keeps a broken result from looking like one.
    if not np.all(np.isfinite(wave)):
        bad = int(np.count_nonzero(~np.isfinite(wave)))
        raise Action2SoundError(f"{os.fspath(path)}: the audio holds {bad} NaN/inf samples, so it was not written; "
                                "the generation diverged (try fewer --steps, fp32 precision or other guidance)")


@contextmanager
def _encoder_errors(path: str | os.PathLike, source: str | os.PathLike | None = None) -> Iterator[None]:
    """FFmpeg refusing a codec/container/rate combination -> one Action2SoundError naming the file (and input)."""
    try:
        yield
    except Action2SoundError:
        raise
    except (av.error.FFmpegError, ValueError) as exc:  # PyAV says "format does not support codec" as ValueError
        detail = f"{exc.strerror}: {exc.filename}" if isinstance(exc, av.error.FFmpegError) else str(exc)
        origin = f" from {os.fspath(source)}" if source is not None else ""
        raise _fail(path, f"could not be written{origin} ({detail})",
                    "pick a codec and sample rate the container takes (libx264 + aac in mp4/mkv/mov, "
                    "libvpx-vp9 + libopus at 48 kHz in webm, mpeg4 + pcm in avi)") from None


def write_audio(path: str | os.PathLike, wave: np.ndarray, sample_rate: int) -> None:
    """Write float audio [samples] or [samples, channels] in [-1, 1] as 16-bit wav or flac (by extension)."""
    ext = Path(path).suffix.lower()
    if ext not in AUDIO_WRITE_EXTENSIONS:
        raise Action2SoundError(f"{os.fspath(path)}: can only write {' or '.join(AUDIO_WRITE_EXTENSIONS)}; "
                                "change the extension")
    wave = np.asarray(wave, dtype=np.float32)
    check_finite(path, wave)
    wave = np.clip(wave, -1.0, 1.0)
    with _atomic_path(path) as tmp:
        soundfile.write(tmp, wave, int(sample_rate), subtype="PCM_16", format=ext[1:].upper())


def _default_audio_codec(path: str | os.PathLike) -> str:
    ext = Path(path).suffix.lower()
    return {".webm": "libopus", ".avi": "pcm_s16le", ".ogg": "libopus"}.get(ext, "aac")


def _pixel_format(codec: str) -> str:
    if codec == "mjpeg":
        return "yuvj420p"  # full-range JPEG; plain yuv420p would also need the colour range set
    formats = [f.name for f in (av.codec.Codec(codec, "w").video_formats or [])]
    for name in ("yuv420p", "yuvj420p"):
        if not formats or name in formats:
            return name
    return formats[0]


def _audio_packets(stream: av.audio.stream.AudioStream, wave: np.ndarray, sample_rate: int, pts0: int,
                   chunk: int = 1 << 16) -> Iterator[av.Packet]:
    """Encode mono float audio whose first sample is at `pts0` (in 1/sample_rate) -> packets, in order."""
    fmt = stream.codec_context.format.name if stream.codec_context.format else "fltp"
    for i in range(0, wave.size, chunk):
        part = np.ascontiguousarray(wave[i : i + chunk], dtype=np.float32)
        frame = av.AudioFrame.from_ndarray(part[None, :], format="fltp", layout="mono")
        frame.sample_rate = sample_rate
        frame.time_base = Fraction(1, sample_rate)
        frame.pts = pts0 + i
        if fmt != "fltp":
            for f in av.AudioResampler(format=fmt, layout="mono", rate=sample_rate).resample(frame):
                yield from stream.encode(f)
        else:
            yield from stream.encode(frame)
    yield from stream.encode(None)


def _add_audio_stream(out: av.container.OutputContainer, codec: str, sample_rate: int):
    stream = out.add_stream(codec, rate=int(sample_rate))
    stream.layout = "mono"
    if codec in ("aac",):
        stream.bit_rate = 128_000
    return stream


def _check_wave(path, wave: np.ndarray) -> np.ndarray:
    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim != 1:
        raise Action2SoundError(f"{os.fspath(path)}: audio must be mono [samples], got shape {wave.shape}; "
                                "average the channels first")
    check_finite(path, wave)
    return np.clip(wave, -1.0, 1.0)


def write_video(
    path: str | os.PathLike, frames: np.ndarray | Iterable[np.ndarray], fps: float,
    audio: np.ndarray | None = None, sample_rate: int | None = None, codec: str = "libx264", crf: int = 18,
    *, frame_times: Sequence[float] | None = None, rotation: int = 0, audio_codec: str | None = None,
    preset: str = "veryfast",
) -> None:
    """Encode uint8 frames [T, H, W, 3] (+ mono float audio in [-1, 1]) to a video file, audio at t = 0.

    frame_times (seconds, increasing) gives each frame its own pts, for variable-frame-rate files; fps is
    then only the nominal rate. rotation (counter-clockwise degrees) is written as the display matrix.
    Container by extension (mp4, mov, mkv, webm, avi); audio codec AAC unless the container needs another.
    """
    if audio is not None and not sample_rate:
        raise Action2SoundError(f"{os.fspath(path)}: audio given without sample_rate; pass sample_rate")
    if fps <= 0:
        raise Action2SoundError(f"{os.fspath(path)}: fps must be > 0, got {fps}")
    wave = _check_wave(path, audio) if audio is not None else None
    rate = Fraction(fps).limit_denominator(100_000)
    if frame_times is not None:
        frame_times = np.asarray(frame_times, dtype=np.float64)
        if np.any(np.diff(frame_times) <= 0):
            raise Action2SoundError(f"{os.fspath(path)}: frame_times must be strictly increasing")
        time_base = Fraction(1, 90_000)  # the MPEG clock: fine enough for any irregular timing
    else:
        time_base = 1 / rate
    with _encoder_errors(path), _atomic_path(path) as tmp, av.open(tmp, "w") as out:
        vstream = None
        astream = None
        apackets: Iterator[av.Packet] | None = None
        pending: av.Packet | None = None
        n = 0
        for n, img in enumerate(frames):
            img = np.asarray(img)
            if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
                raise Action2SoundError(f"{os.fspath(path)}: frames must be uint8 [H, W, 3], got "
                                        f"{img.dtype} {img.shape}")
            if vstream is None:
                h, w = img.shape[:2]
                if h % 2 or w % 2:
                    raise Action2SoundError(f"{os.fspath(path)}: frame size {w}x{h} must be even for "
                                            "4:2:0 video; crop or pad the frames")
                vstream = out.add_stream(codec, rate=rate)
                vstream.width, vstream.height = w, h
                vstream.pix_fmt = _pixel_format(codec)
                vstream.codec_context.time_base = time_base
                if codec == "libx264":
                    vstream.options = {"crf": str(crf), "preset": preset}
                elif codec == "libvpx-vp9":
                    vstream.options = {"crf": str(crf), "b": "0"}
                else:  # mpeg4, mjpeg, vp8: a generous bit rate stands in for a quality knob
                    vstream.bit_rate = 8_000_000
                if rotation % 360:
                    vstream.set_display_rotation(rotation % 360)
                if wave is not None:
                    astream = _add_audio_stream(out, audio_codec or _default_audio_codec(path), sample_rate)
                    apackets = _audio_packets(astream, wave, int(sample_rate), 0)
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
            if frame_times is not None:
                if n >= frame_times.size:
                    raise Action2SoundError(f"{os.fspath(path)}: more frames than frame_times")
                frame.pts = int(round(frame_times[n] / time_base))
                t_now = float(frame_times[n])
            else:
                frame.pts = n
                t_now = n / float(rate)
            frame.time_base = time_base
            out.mux(vstream.encode(frame))
            # Interleave: feed the audio up to the current picture so long files never buffer it all.
            if apackets is not None:
                pending = _mux_audio_until(out, apackets, pending, t_now)
        if vstream is None:
            raise Action2SoundError(f"{os.fspath(path)}: no frames to write; pass at least one frame")
        out.mux(vstream.encode(None))
        if apackets is not None:
            _mux_audio_until(out, apackets, pending, math.inf)


def _mux_audio_until(out, packets: Iterator[av.Packet], pending: av.Packet | None, t: float) -> av.Packet | None:
    """Mux audio packets up to time t; return the first packet past t (kept for later)."""
    while True:
        if pending is None:
            pending = next(packets, None)
            if pending is None:
                return None
        if pending.pts is not None and float(pending.pts * pending.time_base) > t:
            return pending
        out.mux(pending)
        pending = None


def _video_end(path: str | os.PathLike) -> float:
    """File-clock time (s) at which the first video stream's last frame stops showing (scans its packets)."""
    with _open(path) as c:
        vs = c.streams.video[0]
        rate = vs.average_rate or vs.guessed_rate or 25
        end = -math.inf
        for pkt in c.demux(vs):
            if pkt.pts is not None:
                shown = pkt.duration * pkt.time_base if pkt.duration else 1 / rate
                end = max(end, float(pkt.pts * pkt.time_base + shown))
    if not math.isfinite(end):
        raise _fail(path, "has a video stream without timestamps", "remux it (e.g. to mp4) first")
    return end


def video_duration(path: str | os.PathLike) -> float:
    """Seconds of the first video stream: its duration, else the span of its frames. mux_audio's track length."""
    with _open(path) as c:
        if not c.streams.video:
            raise _fail(path, "has no video stream", "pass a video file")
        vs = c.streams.video[0]
        if vs.duration is not None and vs.time_base is not None:
            return float(vs.duration * vs.time_base)
        origin = _origin(c)  # mkv, webm, ts: no per-stream duration, and the container's may be the audio's
    return _video_end(path) - origin


# ------------------------------------------------------------------------------------------------ muxing

# Output containers mux_audio writes, by extension -> FFmpeg's format name.
MUX_CONTAINERS = {".mp4": "mp4", ".mkv": "matroska", ".mov": "mov", ".webm": "webm"}
# The encoder that re-encodes a video stream a container cannot take as it is: H.264 everywhere it plays,
# VP9 where the container allows nothing else (webm, the browser preview).
_REENCODER = {"webm": "libvpx-vp9"}
_DEFAULT_REENCODER = "libx264"
# A trial copy of this many packets into memory shows whether the container takes the streams: some refusals
# come only when the header is written (rawvideo in mkv) or at the first packet (missing timestamps).
_TRIAL_PACKETS = 16


@dataclass(frozen=True)
class MuxPlan:
    """How mux_audio writes one input's picture into one container, decided before any generation."""

    source: str  # the input video
    container: str  # FFmpeg format name of the output (mp4, matroska, mov, webm)
    video_codec: str  # the input's video codec
    copy_video: bool  # stream copy (bit-exact); else decoded and re-encoded with `encoder`
    encoder: str | None  # libx264 or libvpx-vp9 when re-encoding
    reason: str  # why the stream is re-encoded ("" when copied): FFmpeg's refusal
    # The input's own sound for keep_original_audio="add": copied (True), re-encoded (False), None: not kept.
    copy_original_audio: bool | None = None

    def record(self) -> dict[str, object]:
        """The plan as the JSON record keeps it."""
        return {"container": self.container, "video_codec": self.video_codec,
                "video": "copied" if self.copy_video else f"re-encoded ({self.encoder})",
                **({"reason": self.reason} if self.reason else {}),
                **({"original_audio": "copied" if self.copy_original_audio else "re-encoded"}
                   if self.copy_original_audio is not None else {})}


def mux_container(path: str | os.PathLike) -> str:
    """FFmpeg format name mux_audio writes for an output path (by extension); other extensions are an error."""
    ext = Path(path).suffix.lower()
    if ext not in MUX_CONTAINERS:
        raise Action2SoundError(f"{os.fspath(path)}: cannot write a video with sound as {ext or 'no extension'}; "
                                f"use one of {', '.join(MUX_CONTAINERS)}")
    return MUX_CONTAINERS[ext]


def _trial_copy(path: str | os.PathLike, fmt: str, kind: str) -> str | None:
    """None when container `fmt` takes the input's first `kind` stream as it is, else FFmpeg's refusal."""
    import io

    with _open(path) as src:
        stream = (src.streams.video if kind == "video" else src.streams.audio)[0]
        try:
            with av.open(io.BytesIO(), "w", format=fmt) as out:
                ostream = out.add_stream_from_template(stream)
                out.start_encoding()
                n = 0
                for pkt in src.demux(stream):
                    if pkt.dts is None and pkt.size == 0:
                        continue  # demuxer's end-of-stream marker
                    pkt.stream = ostream
                    out.mux(pkt)
                    n += 1
                    if n >= _TRIAL_PACKETS:
                        break
        except av.error.FFmpegError as exc:  # refused when the header or a packet was written
            return f"the {fmt} muxer refused the {stream.codec_context.name} stream ({exc.strerror})"
        except ValueError as exc:  # PyAV up front: "'mp4' format does not support 'cinepak' codec"
            return str(exc)
    return None


def plan_mux(video_path: str | os.PathLike, container: str = "mp4",
             keep_original_audio: Literal["replace", "mix", "add"] = "replace") -> MuxPlan:
    """Decide how mux_audio will write `video_path` into `container` (mp4, mkv, mov, webm) -> MuxPlan.

    The video stream is copied when the container takes it (a trial copy into memory), else re-encoded:
    H.264 yuv420p (VP9 for webm) with the same frame timestamps, so the picture and the track stay aligned.
    Errors name the input: a file that will not open, has no video, or can be neither copied nor decoded.
    """
    fmt = MUX_CONTAINERS.get(f".{container}".lower(), container)
    if fmt not in MUX_CONTAINERS.values():
        raise Action2SoundError(f"unknown output container {container!r}; use one of "
                                f"{', '.join(e[1:] for e in MUX_CONTAINERS)}")
    with _open(video_path) as src:
        if not src.streams.video:
            raise _fail(video_path, "has no video stream", "pass a video file to mux the audio into")
        codec = src.streams.video[0].codec_context.name
        has_audio = bool(src.streams.audio)
    refusal = _trial_copy(video_path, fmt, "video")
    encoder = None
    if refusal is not None:
        encoder = _REENCODER.get(fmt, _DEFAULT_REENCODER)
        try:
            av.codec.Codec(codec, "r")
        except av.codec.codec.UnknownCodecError:
            raise _fail(video_path, f"its video codec {codec} cannot go into {fmt} ({refusal}) and this FFmpeg "
                        "cannot decode it to re-encode it", "convert the video to H.264 first") from None
    keep = None
    if keep_original_audio == "add" and has_audio:
        keep = _trial_copy(video_path, fmt, "audio") is None
    return MuxPlan(os.fspath(video_path), fmt, codec, refusal is None, encoder, refusal or "", keep)


def _add_reencoded_video(out: av.container.OutputContainer, vs: av.video.stream.VideoStream, encoder: str,
                         rotation: int):
    """An output stream that re-encodes `vs` on the input's own clock (its time base and frame timestamps).

    The pictures are turned upright (`rotation`, counter-clockwise degrees) rather than tagged: not every
    container and player honours a display matrix (webm in a browser does not).
    """
    rate = vs.average_rate or vs.guessed_rate or Fraction(25)
    ov = out.add_stream(encoder, rate=rate)
    w, h = vs.codec_context.width, vs.codec_context.height
    if rotation % 180:
        w, h = h, w
    # 4:2:0 needs even sizes; an odd one loses its last row or column to scaling by one pixel.
    ov.width, ov.height = w // 2 * 2, h // 2 * 2
    ov.pix_fmt = "yuv420p"
    ov.codec_context.time_base = vs.time_base
    if encoder == "libx264":
        ov.options = {"crf": "18", "preset": "veryfast"}
    elif encoder == "libvpx-vp9":
        # A preview: realtime speed settings; quality by crf alone.
        ov.options = {"crf": "32", "b": "0", "deadline": "realtime", "cpu-used": "8", "row-mt": "1"}
    return ov


def _reencode(ov, frames: Iterable[av.VideoFrame], state: dict) -> Iterator[av.Packet]:
    """Encode decoded frames upright with their own pts (a missing or repeated pts goes one frame later)."""
    step, last = state["step"], state["last"]
    for frame in frames:
        pts = frame.pts if frame.pts is not None else (0 if last is None else last + step)
        if last is not None and pts <= last:
            pts = last + step
        state["last"] = last = pts
        if state["rotation"] % 360:
            upright = rotate_image(frame.to_ndarray(format="rgb24"), state["rotation"])
            frame_in = av.VideoFrame.from_ndarray(upright, format="rgb24")
        else:
            frame_in = frame
        out = frame_in.reformat(width=ov.width, height=ov.height, format="yuv420p")
        out.pts, out.time_base = pts, ov.codec_context.time_base
        out.duration = frame.duration or step
        yield from ov.encode(out)


def _audio_rate(codec: str, sample_rate: int) -> int:
    # Opus codes only 8, 12, 16, 24 or 48 kHz; the track is resampled (soxr keeps sample 0 at t = 0).
    if codec == "libopus" and sample_rate not in (8000, 12000, 16000, 24000, 48000):
        return 48_000
    return int(sample_rate)


def mux_audio(
    video_path: str | os.PathLike, wave: np.ndarray, sample_rate: int, out_path: str | os.PathLike,
    keep_original_audio: Literal["replace", "mix", "add"] = "replace", plan: MuxPlan | None = None,
) -> MuxPlan:
    """Write the video with `wave` (mono float [samples], sample 0 = first frame) as its track -> the plan used.

    The container is the extension of out_path (mp4, mkv, mov, webm). The picture is stream-copied when the
    container takes it, else re-encoded with the same frame timestamps (`plan_mux`); `plan` skips the probe.
    The track is trimmed or zero-padded to the video's duration. keep_original_audio: "replace" drops the
    source's audio, "mix" sums it into the new track (clipped to [-1, 1]), "add" keeps it as a second track.
    """
    if keep_original_audio not in MUX_MODES:
        raise Action2SoundError(f"keep_original_audio must be one of {MUX_MODES}, got {keep_original_audio!r}")
    if Path(out_path).resolve() == Path(video_path).resolve():
        raise Action2SoundError(f"{os.fspath(out_path)}: the output would overwrite the input video; "
                                "choose another output path")
    fmt = mux_container(out_path)
    wave = _check_wave(video_path, wave)
    if plan is None or plan.container != fmt or (keep_original_audio == "add" and plan.copy_original_audio is None):
        plan = plan_mux(video_path, fmt, keep_original_audio)  # none given, or made for another output
    duration = video_duration(video_path)
    n = int(round(duration * sample_rate))
    track = np.zeros(n, dtype=np.float32)
    track[: min(n, wave.size)] = wave[:n]
    original = None
    if keep_original_audio == "mix" or (keep_original_audio == "add" and plan.copy_original_audio is False):
        if _has_audio(video_path, required=False):
            original = read_audio(video_path, 0.0, n / sample_rate, sample_rate)
    if keep_original_audio == "mix" and original is not None:
        track, original = np.clip(track + original, -1, 1), None
    rotation = probe(video_path).rotation if not plan.copy_video else 0
    acodec = _default_audio_codec(out_path)
    rate = _audio_rate(acodec, sample_rate)
    if rate != sample_rate:
        track = resample(track, sample_rate, rate)[: int(round(duration * rate))]
        original = resample(original, sample_rate, rate) if original is not None else None
    with _open(video_path) as src:
        vs = src.streams.video[0]
        vs.thread_type = "AUTO"
        v_start = _origin(src)  # the video stream's start: t = 0 of this module's timeline
        pts0 = int(round(v_start * rate))  # the generated sample 0 belongs to the video's first frame
        keep = src.streams.audio[0] if keep_original_audio == "add" and plan.copy_original_audio else None
        with _encoder_errors(out_path, source=video_path), _atomic_path(out_path) as tmp, \
                av.open(tmp, "w", format=fmt) as out:
            if plan.copy_video:
                ov = out.add_stream_from_template(vs)
            else:
                ov = _add_reencoded_video(out, vs, plan.encoder, rotation)
                state = {"last": None, "rotation": rotation,
                         "step": max(1, int(round(1 / ((vs.average_rate or vs.guessed_rate or 25) * vs.time_base))))}
            oa = _add_audio_stream(out, acodec, rate)
            ok = out.add_stream_from_template(keep) if keep is not None else None
            o2 = _add_audio_stream(out, acodec, rate) if original is not None else None
            feeds = [[_audio_packets(oa, track, rate, pts0), None]]
            if o2 is not None:
                feeds.append([_audio_packets(o2, original.astype(np.float32), rate, pts0), None])

            def mux_video(packets: Iterable[av.Packet]) -> None:
                for p in packets:
                    out.mux(p)
                    if p.dts is not None:  # feed the audio up to here: long files never buffer it all
                        for feed in feeds:
                            feed[1] = _mux_audio_until(out, feed[0], feed[1], float(p.dts * p.time_base))

            for pkt in src.demux([vs] + ([keep] if keep is not None else [])):
                if pkt.stream_index != vs.index:
                    if pkt.dts is not None or pkt.size:
                        pkt.stream = ok
                        out.mux(pkt)
                elif not plan.copy_video:
                    mux_video(_reencode(ov, pkt.decode(), state))  # the end marker flushes the decoder
                elif pkt.dts is not None or pkt.size:
                    pkt.stream = ov
                    mux_video([pkt])
            if not plan.copy_video:
                mux_video(ov.encode(None))
            for feed in feeds:
                _mux_audio_until(out, feed[0], feed[1], math.inf)
    return plan
