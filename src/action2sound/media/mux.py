"""Muxing a generated track into a copy of a video: the plan (stream copy or re-encode) and the mux."""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Literal

import av
import numpy as np

from ..errors import Action2SoundError
from .probe import MUX_MODES, _fail, _open, _origin, probe, rotate_image
from .read import _has_audio, read_audio, resample
from .write import (
    _add_audio_stream, _atomic_path, _audio_packets, _check_wave, _default_audio_codec, _encoder_errors,
    _mux_audio_until, video_duration,
)


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
