"""Reading media: frames at timestamps, audio spans on the shared timeline, and the package's one resampler."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import av
import numpy as np
import soxr

from ..errors import Action2SoundError
from .probe import (
    RESIZE_MODES, ResizeMode, _AUDIO_PAD_S, _PTS_EPS, _SEEK_MARGINS_S, _fail, _open, _origin, _rotation_of,
    _stream_start, rotate_image,
)


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
    (images,), picked = _frames_at(path, [(times, size)], resize)
    return (images, picked) if return_times else images


def read_frames_at_sizes(
    path: str | os.PathLike, requests: Sequence[tuple[Sequence[float] | np.ndarray, int | None]],
    resize: ResizeMode = "squash",
) -> list[np.ndarray]:
    """Several sets of times, each at its own size, from one decoding pass -> [uint8 [N_i, size_i, size_i, 3]]
    (e.g. the video tower's frames and the sync stream's dense small ones: the video is decoded once)."""
    return _frames_at(path, requests, resize)[0]


def _frames_at(path, requests, resize: ResizeMode) -> tuple[list[np.ndarray], np.ndarray]:
    if resize not in RESIZE_MODES:
        raise Action2SoundError(f"resize must be one of {RESIZE_MODES}, got {resize!r}")
    parts = [np.asarray(t, dtype=np.float64).reshape(-1) for t, _ in requests]
    if any(t.size == 0 for t in parts):
        raise Action2SoundError(f"{os.fspath(path)}: no frame times were asked for; pass at least one time")
    times = np.concatenate(parts)
    order = np.argsort(times, kind="stable")
    t_sorted = times[order]
    for margin in _SEEK_MARGINS_S:
        chosen = _pick_frames(path, t_sorted, margin)
        if chosen is not None:
            break
    frames, rotation, pts = chosen
    shown = [None] * times.size  # the decoded frame shown at each asked time, in the order asked
    for rank, i in enumerate(order):
        shown[i] = frames[rank]
    cache: dict[tuple[int, int | None], np.ndarray] = {}  # a frame converted once per size
    out, first = [], 0
    for part, (_, size) in zip(parts, requests):
        images = []
        for f in shown[first:first + part.size]:
            key = (id(f), size)
            if key not in cache:
                cache[key] = _to_image(f, size, resize, rotation)
            images.append(cache[key])
        out.append(np.stack(images))
        first += part.size
    picked = np.empty(times.size)
    picked[order] = pts
    return out, picked[: parts[0].size]


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


