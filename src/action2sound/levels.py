"""Loudness measurements shared by the store, retrieval and evaluation."""

from __future__ import annotations

import math

import numpy as np

from .errors import Action2SoundError

_SILENCE_DB = -120.0  # the floor: digital silence reads as this, not -inf


def ambient_level_db(wave: np.ndarray, sample_rate: int, window_s: float = 0.5) -> float:
    """Ambient level of a mono wave [T]: mean energy of its quietest `window_s` window, in dB re full scale."""
    x = np.asarray(wave, dtype=np.float64).reshape(-1)
    if x.size == 0:
        raise Action2SoundError("ambient_level_db got an empty wave; pass at least one sample")
    n = max(1, min(x.size, int(round(window_s * sample_rate))))
    # Every window start, not a hop grid: a cumulative sum makes all T - n + 1 window energies O(T). Its
    # float64 rounding error, ~1e-16 x the wave's total energy / n, stays below the -120 dB floor up to hours.
    c = np.concatenate([[0.0], np.cumsum(x * x)])
    energy = (c[n:] - c[:-n]) / n
    return float(max(10.0 * math.log10(max(float(energy.min()), 1e-30)), _SILENCE_DB))
