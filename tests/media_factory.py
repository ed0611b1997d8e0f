"""Tiny test media with known answers: frames whose pixels spell their index, click trains, odd containers."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

# A frame's index is written into its red and green levels: red = BASE + STEP * (i % 15),
# green = BASE + STEP * (i // 15). 16 levels between codes survive lossy coding and colour conversion.
_BASE, _STEP, _PER = 8, 16, 15
MAX_INDEXED_FRAMES = _PER * _PER


def index_frames(n: int, height: int = 32, width: int = 48) -> np.ndarray:
    """n flat frames whose colour encodes their index -> uint8 [n, height, width, 3]."""
    if n > MAX_INDEXED_FRAMES:
        raise ValueError(f"at most {MAX_INDEXED_FRAMES} indexed frames")
    i = np.arange(n)
    frames = np.zeros((n, height, width, 3), np.uint8)
    frames[..., 0] = (_BASE + _STEP * (i % _PER))[:, None, None]
    frames[..., 1] = (_BASE + _STEP * (i // _PER))[:, None, None]
    frames[..., 2] = 128
    return frames


def frame_index(images: np.ndarray) -> np.ndarray:
    """Decode the index of frames made by index_frames (any size) -> int [N], from the centre pixel."""
    images = np.asarray(images)
    c = images[..., images.shape[-3] // 2, images.shape[-2] // 2, :].astype(np.float64)
    lo = np.round((c[..., 0] - _BASE) / _STEP).astype(int)
    hi = np.round((c[..., 1] - _BASE) / _STEP).astype(int)
    return hi * _PER + lo


def click_train(num_samples: int, positions, amplitude: float = 0.8) -> np.ndarray:
    """Silence with one-sample clicks at the given sample positions -> float32 [num_samples]."""
    x = np.zeros(num_samples, np.float32)
    x[np.asarray(positions, dtype=int)] = amplitude
    return x


def find_clicks(wave: np.ndarray, expected, radius: int) -> np.ndarray:
    """Position of the largest |sample| within +-radius of each expected click -> int [K]."""
    wave = np.abs(np.asarray(wave))
    found = []
    for p in np.asarray(expected, dtype=int):
        lo = max(0, p - radius)
        found.append(lo + int(np.argmax(wave[lo : p + radius + 1])))
    return np.asarray(found)


def asymmetric_picture(height: int = 32, width: int = 48) -> np.ndarray:
    """A picture no rotation or flip maps onto itself: red top-left block, blue bottom band -> uint8 [H, W, 3]."""
    img = np.full((height, width, 3), 40, np.uint8)
    img[: height // 4, : width // 4] = (230, 30, 30)
    img[-height // 4 :, :] = (30, 30, 230)
    return img


def write_audio_pyav(path: str | Path, wave: np.ndarray, sample_rate: int, codec: str) -> None:
    """Encode mono float audio with PyAV (for ogg/mp3/m4a files the package itself does not write)."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=sample_rate)
        stream.layout = "mono"
        fmt = stream.codec_context.format.name
        frame = av.AudioFrame.from_ndarray(np.asarray(wave, np.float32)[None], format="fltp", layout="mono")
        frame.sample_rate = sample_rate
        frame.time_base = Fraction(1, sample_rate)
        frame.pts = 0
        frames = [frame] if fmt == "fltp" else av.AudioResampler(format=fmt, layout="mono",
                                                                   rate=sample_rate).resample(frame)
        for f in frames:
            out.mux(stream.encode(f))
        out.mux(stream.encode(None))


def write_faststart_mp4(path: str | Path, frames: np.ndarray, fps: int) -> None:
    """An mp4 with its index (moov) before the data, so a cut-short copy still opens."""
    with av.open(str(path), "w", options={"movflags": "faststart"}) as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        for i, img in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))


def packets(path: str | Path, kind: str = "video") -> list[tuple[bytes, int | None, int | None]]:
    """(payload, pts, dts) of every packet of the first stream of a kind, in file order."""
    with av.open(str(path)) as c:
        stream = c.streams.video[0] if kind == "video" else c.streams.audio[0]
        return [(bytes(p), p.pts, p.dts) for p in c.demux(stream) if p.size]
