"""Multi-resolution STFT distance (Yamamoto et al. 2020, "Parallel WaveGAN", arXiv 1910.11480, eqs. 1-3).

For each (n_fft, hop, win) the spectral convergence || |S| - |S^| ||_F / || |S| ||_F plus the mean absolute
difference of log magnitudes; the distance is their sum averaged over resolutions (0 for identical waves).
The three resolutions are that paper's.
"""

from __future__ import annotations

import numpy as np
import torch

RESOLUTIONS = ((1024, 120, 600), (2048, 240, 1200), (512, 50, 240))
_POWER_FLOOR = 1e-7  # as that paper's code: |S| = sqrt(max(re^2 + im^2, 1e-7))


def _magnitude(wave: torch.Tensor, n_fft: int, hop: int, win: int) -> torch.Tensor:
    spec = torch.stft(wave, n_fft, hop, win, window=torch.hann_window(win, dtype=wave.dtype), return_complex=True)
    return (spec.real**2 + spec.imag**2).clamp(min=_POWER_FLOOR).sqrt()


def mr_stft_distance(reference: np.ndarray, estimate: np.ndarray) -> float:
    """Distance between two waves [T] of one sample rate (the shorter length is compared)."""
    n = min(len(reference), len(estimate))
    a = torch.from_numpy(np.asarray(reference[:n], dtype=np.float64))
    b = torch.from_numpy(np.asarray(estimate[:n], dtype=np.float64))
    total = 0.0
    for n_fft, hop, win in RESOLUTIONS:
        ma, mb = _magnitude(a, n_fft, hop, win), _magnitude(b, n_fft, hop, win)
        convergence = torch.linalg.norm(ma - mb) / torch.linalg.norm(ma)
        log_mag = (ma.log() - mb.log()).abs().mean()
        total += float(convergence + log_mag)
    return total / len(RESOLUTIONS)
