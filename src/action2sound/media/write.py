"""Writing media: staged (atomic) files, wav/flac, videos from frames, and a video's duration."""

from __future__ import annotations

import math
import os
import secrets
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import soundfile

from ..errors import Action2SoundError
from .probe import AUDIO_WRITE_EXTENSIONS, _fail, _open, _origin


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


