"""Long videos as overlapping model windows: where they start, their equal-power cross-fade gains, and the
assembly of their waves into one track of exactly the video's length."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from .config import Preset
from .errors import Action2SoundError


def window_length(preset: Preset) -> int:
    """Output samples of one model window: the model's clip (3 s), whatever its vocoder yields.

    The universal22k vocoder yields 258 x 256 = 66,048 of the clip's 66,150 samples; the last 4.6 ms are
    zeros (inside the next window's cross-fade, or the end of a video). A 3 s video is one window.
    """
    return preset.audio.num_samples


def plan_windows(total: int, length: int, overlap: int) -> list[int]:
    """First output sample of each window covering [0, total) -> starts (increasing, last one ends at total).

    Windows of `length` samples step by length - overlap; the last is moved back to end exactly at `total`
    (overlapping its predecessor by more), so no window reaches past the video. A video shorter than one
    window gets one window (its frames past the end hold the last frame; the sound is trimmed).
    """
    if total <= length:
        return [0]
    hop = length - overlap
    n = math.ceil((total - length) / hop) + 1
    return [k * hop for k in range(n - 1)] + [total - length]


def window_gains(starts: Sequence[int], length: int, fade: int) -> list[np.ndarray]:
    """Gain of each window over its own samples (float64 [length] each), equal-power cross-faded.

    Consecutive windows cross-fade over `fade` samples (or their whole overlap, if shorter) centred in their
    overlap: the earlier one by cos, the later by sin of (pi/2)(j + 1/2)/fade, so the gains' squares sum to
    one at every sample and uncorrelated windows keep a constant total power across the seam.
    """
    n = len(starts)
    gains = [np.ones(length) for _ in range(n)]
    for k in range(n - 1):
        a, b = starts[k], starts[k + 1]
        ov = a + length - b
        if ov <= 0:
            raise Action2SoundError(f"windows {k} and {k + 1} do not overlap; internal planning error")
        f = max(1, min(fade, ov))
        seg = b + (ov - f) // 2  # first sample of the fade, absolute
        t = (np.arange(f) + 0.5) / f
        g_out, g_in = np.cos(0.5 * np.pi * t), np.sin(0.5 * np.pi * t)
        lo = seg - a  # position of the fade inside window k
        gains[k][lo : lo + f] *= g_out
        gains[k][lo + f :] = 0.0
        lo = seg - b  # inside window k + 1
        gains[k + 1][:lo] = 0.0
        gains[k + 1][lo : lo + f] *= g_in
    return gains


def assemble_windows(waves: Sequence[np.ndarray], starts: Sequence[int], total: int, fade: int) -> np.ndarray:
    """Place window waves [length] at their starts with equal-power cross-fades -> float32 [total]."""
    length = len(waves[0])
    out = np.zeros(max(total, starts[-1] + length), dtype=np.float64)
    for s, w, g in zip(starts, waves, window_gains(starts, length, fade)):
        out[s : s + length] += g * np.asarray(w, dtype=np.float64)
    return out[:total].astype(np.float32)
