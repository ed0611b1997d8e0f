"""Fréchet distance between two sets of embeddings (FAD when the embeddings are of audio).

Each set is summarised by a Gaussian (mean, covariance); the distance between N(m1, S1) and N(m2, S2) is
(Dowson & Landau 1982; Heusel et al. 2017, arXiv 1706.08500; Kilgour et al. 2019, arXiv 1812.08466):

    d^2 = |m1 - m2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^(1/2))

The square-root term is where implementations go wrong. S1 S2 is not symmetric, and with fewer embeddings
than dimensions both covariances are singular, so a general `sqrtm` returns complex noise or fails. We use
the symmetric form instead: S1 S2 is similar to S1^(1/2) S2 S1^(1/2) (conjugate by S1^(1/2)), which is
symmetric positive semi-definite, so tr((S1 S2)^(1/2)) = sum_i sqrt(max(lambda_i, 0)) over the eigenvalues
of that product, found with `eigh` in float64. No imaginary parts arise, and rounding below zero is clipped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import Action2SoundError


@dataclass(frozen=True)
class GaussianStats:
    """Mean [D] and covariance [D, D] (float64) of a set of n embeddings."""

    mean: np.ndarray
    cov: np.ndarray
    n: int


def gaussian_stats(embeddings: np.ndarray) -> GaussianStats:
    """Embeddings [N, D] -> their mean and unbiased covariance (float64); N >= 2."""
    x = np.asarray(embeddings, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise Action2SoundError(f"a Fréchet distance needs at least 2 embeddings of shape [N, D], got {x.shape}")
    if not np.isfinite(x).all():
        raise Action2SoundError("the embeddings hold NaN or inf; the audio or the embedder is broken")
    return GaussianStats(x.mean(axis=0), np.cov(x, rowvar=False).reshape(x.shape[1], x.shape[1]), x.shape[0])


def _psd_sqrt(s: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric PSD matrix [D, D] (eigenvalues below zero are rounding: clipped)."""
    w, v = np.linalg.eigh(0.5 * (s + s.T))
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def trace_sqrt_product(s1: np.ndarray, s2: np.ndarray) -> float:
    """tr((S1 S2)^(1/2)) of two covariances [D, D], via the symmetric S1^(1/2) S2 S1^(1/2)."""
    r = _psd_sqrt(np.asarray(s1, dtype=np.float64))
    m = r @ np.asarray(s2, dtype=np.float64) @ r
    w = np.linalg.eigvalsh(0.5 * (m + m.T))
    return float(np.sqrt(np.clip(w, 0.0, None)).sum())


def frechet_distance(a: GaussianStats, b: GaussianStats) -> float:
    """Fréchet distance between two Gaussians (formula in the module docstring); >= 0."""
    if a.mean.shape != b.mean.shape:
        raise Action2SoundError(f"embedding sizes differ ({a.mean.shape[0]} vs {b.mean.shape[0]}); use one embedder")
    diff = a.mean - b.mean
    d2 = float(diff @ diff) + float(np.trace(a.cov)) + float(np.trace(b.cov)) - 2.0 * trace_sqrt_product(a.cov, b.cov)
    # Identical sets give a rounding residue of either sign, ~1e-15 of the traces.
    return max(d2, 0.0)


def fad(embeddings_a: np.ndarray, embeddings_b: np.ndarray) -> float:
    """Fréchet distance between two embedding sets [Na, D], [Nb, D]."""
    return frechet_distance(gaussian_stats(embeddings_a), gaussian_stats(embeddings_b))
