"""Does a store's sync stream say *when* the sound happens? A linear probe, measured on held-out videos.

For every stored clip: the stream's column features [W, D_s] (unit-normalised, as the UNet reads them) of
columns j-1, j, j+1 -> the rise of the clip's own sound in column j (the log energy of the VAE latent's column,
its increase over the previous column). Each column's mean over the training clips is taken out of the target
first, so that the probe cannot score by knowing *where in the window* sounds tend to be. Ridge regression on a
random three quarters of the long videos; the correlation on the other quarter, with the clip's own features
and, as the control, with another held-out clip's features. A stream that carries timing scores clearly above
its control; issue 10's first encoder scored 0.007 against -0.014 (docs/RESULTS.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ProbeResult:
    own_r: float  # held-out correlation with the clip's own features
    other_r: float  # the same with another held-out clip's features (the control)
    train_clips: int
    test_clips: int


def column_rise(latents: np.ndarray) -> np.ndarray:
    """Latents [N, C, F, W] -> the rise of each column's log energy over the previous column [N, W] (>= 0)."""
    energy = np.log((latents.astype(np.float64) ** 2).mean(axis=(1, 2)) + 1e-4)
    return np.maximum(np.diff(energy, axis=1, prepend=energy[:, :1]), 0.0)


def _with_neighbours(features: np.ndarray) -> np.ndarray:
    """[N, W, D] -> [N, W, 3 D]: each column's features beside its left and right neighbours' (zeros outside)."""
    padded = np.pad(features, ((0, 0), (1, 1), (0, 0)))
    return np.concatenate([padded[:, :-2], padded[:, 1:-1], padded[:, 2:]], axis=-1)


def probe_stream(features: np.ndarray, latents: np.ndarray, videos: np.ndarray, seed: int = 0,
                 ridge: float = 0.1) -> ProbeResult:
    """features [N, W, D] (the store's sync_features), latents [N, C, F, W] (latent means), videos [N] (the long
    video of each clip: the split keeps a video's clips together) -> ProbeResult."""
    features, videos = np.asarray(features, dtype=np.float64), np.asarray(videos)
    if features.ndim != 3 or len(features) != len(latents) or len(videos) != len(features):
        raise ValueError("probe_stream needs features [N, W, D], latents [N, C, F, W] and videos [N] for the "
                         "same N clips")
    unique = np.unique(videos)
    if len(unique) < 4:
        raise ValueError(f"probe_stream needs at least 4 long videos to hold a quarter out, got {len(unique)}")
    rng = np.random.default_rng(seed)
    held = set(rng.choice(unique, len(unique) // 4, replace=False).tolist())
    test = np.array([v in held for v in videos])
    unit = features / (np.linalg.norm(features, axis=-1, keepdims=True) + 1e-6)
    x = _with_neighbours(unit)
    y = column_rise(latents)
    y = y - y[~test].mean(axis=0, keepdims=True)  # the position in the window out
    d = x.shape[-1]
    a = np.c_[x[~test].reshape(-1, d), np.ones(int((~test).sum()) * x.shape[1])]
    w = np.linalg.solve(a.T @ a + ridge * np.eye(a.shape[1]), a.T @ y[~test].reshape(-1))

    def r(xs: np.ndarray) -> float:
        pred = np.c_[xs.reshape(-1, d), np.ones(xs.shape[0] * xs.shape[1])] @ w
        truth = y[test].reshape(-1)
        if pred.std() == 0 or truth.std() == 0:
            return 0.0
        return float(np.corrcoef(pred, truth)[0, 1])

    own = x[test]
    other = own[np.roll(np.arange(len(own)), 1)]  # each clip with the next held-out clip's features
    return ProbeResult(r(own), r(other), int((~test).sum()), int(test.sum()))
