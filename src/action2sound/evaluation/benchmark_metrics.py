"""Metrics that need the benchmark's ground truth (stems and events), and the set-level ones beside them.

The benchmark (data/benchmark.py) tells, for every clip, when each visible contact starts, what material it
struck, and the clean action stem. That turns questions other video-to-audio work can only ask people into
measurements:

- onset F1: do generated sound events start when the video shows a contact? (`detect_onsets`, ±50 ms);
- off-screen hallucination: generated onsets with no visible cause, per second;
- event-kind accuracy: does each contact sound like its material? (`KindClassifier`);
- ambient leakage: how much sound does the output put where the ground truth has only ambient?
- ambient controllability: does the generated ambient level follow the condition's (over a set)?

All of them read audio at ANALYSIS_RATE (waves are resampled first), so outputs of any profile compare alike.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ..errors import Action2SoundError

ANALYSIS_RATE = 22_050
ONSET_TOLERANCE_S = 0.05
# The onset detector (see detect_onsets): 512-sample frames every 128 (23 ms / 5.8 ms at 22.05 kHz).
_N_FFT, _HOP, _BANDS = 512, 128, 64
_DB_FLOOR = -80.0
ONSET_RISE_DB = 3.5  # mean rise across bands that counts as an onset
ONSET_ABOVE_MEDIAN_DB = 2.5  # ... and at least this far above the clip's median flux
ONSET_FLOOR_DB = -50.0  # an onset's next 50 ms must be at least this loud (RMS, dBFS)
ONSET_MIN_GAP_S = 0.05
KIND_WINDOW_S = 0.4  # a contact's sound, as the kind classifier hears it: [t, t + 0.4 s)
EVENT_FLOOR_DB = 40.0  # event windows: where the action stem is within 40 dB of its peak (50 ms frames)


# ================================================================================================ onsets
def _log_mel(wave: np.ndarray, sr: int) -> np.ndarray:
    """Wave [T] -> absolute log-mel [bands, frames] in dB re full scale, floored at -80 dB (centred frames)."""
    import librosa

    x = np.asarray(wave, dtype=np.float32).reshape(-1)
    if x.size < _N_FFT:
        x = np.pad(x, (0, _N_FFT - x.size))
    power = librosa.feature.melspectrogram(y=x, sr=sr, n_fft=_N_FFT, hop_length=_HOP, n_mels=_BANDS, power=2.0,
                                           center=True, pad_mode="constant")
    # Window-normalised so that a full-scale sine reads about 0 dB: (sum of the Hann window)^2 / 4.
    scale = (np.hanning(_N_FFT + 1)[:-1].sum() ** 2) / 4.0
    return np.maximum(10.0 * np.log10(np.maximum(power / scale, 1e-12)), _DB_FLOOR)


def onset_envelope(wave: np.ndarray, sr: int = ANALYSIS_RATE) -> np.ndarray:
    """Spectral flux [frames]: mean over mel bands of the rise in dB from the previous frame (never negative).

    The previous frame is max-filtered across 3 neighbouring bands first (SuperFlux, Böck & Widmer 2013), so
    a tone that wobbles in pitch does not read as onsets. Absolute dB, not relative to the clip's maximum:
    stationary noise stays near 0 at any level instead of being stretched to full scale.
    """
    from scipy.ndimage import maximum_filter1d

    s = _log_mel(wave, sr)
    ref = maximum_filter1d(s, size=3, axis=0)
    flux = np.maximum(0.0, s[:, 1:] - ref[:, :-1]).mean(axis=0)
    return np.concatenate([[0.0], flux])


def detect_onsets(wave: np.ndarray, sr: int = ANALYSIS_RATE, rise_db: float = ONSET_RISE_DB,
                  floor_db: float = ONSET_FLOOR_DB, min_gap_s: float = ONSET_MIN_GAP_S) -> np.ndarray:
    """Onset times (s, float64 [K], increasing) of a wave [T] at sr (resampled to ANALYSIS_RATE first).

    A frame is an onset when its flux (`onset_envelope`) is a local maximum over +-2 frames, at least `rise_db`,
    and the next 50 ms of the wave reach `floor_db` RMS; of two onsets closer than `min_gap_s` the stronger
    stays. Its time is the frame's centre minus half a hop (the rise happened between the two frames).
    Digital silence has no onsets.
    """
    from ..media import resample

    x = resample(wave, sr, ANALYSIS_RATE).astype(np.float64)
    if x.size == 0 or not np.any(x):
        return np.zeros(0)
    env = onset_envelope(x, ANALYSIS_RATE)
    n = env.size
    padded = np.pad(env, 2, constant_values=-np.inf)
    local_max = np.all([env >= padded[2 + k: 2 + k + n] for k in (-2, -1, 1, 2)], axis=0)
    # The clip's own flux floor (its median: most frames hold no onset) raises the bar over noisy ambient.
    threshold = max(rise_db, float(np.median(env)) + ONSET_ABOVE_MEDIAN_DB)
    candidates = np.flatnonzero(local_max & (env >= threshold))
    times = (candidates - 0.5) * _HOP / ANALYSIS_RATE
    keep_t, keep_s = [], []
    after = int(round(0.05 * ANALYSIS_RATE))
    for f, t in zip(candidates, times):
        i = max(0, int(round(t * ANALYSIS_RATE)))
        seg = x[i : i + after]
        if seg.size == 0 or 10.0 * math.log10(max(float(np.mean(seg * seg)), 1e-30)) < floor_db:
            continue
        if keep_t and t - keep_t[-1] < min_gap_s:
            if env[f] > keep_s[-1]:
                keep_t[-1], keep_s[-1] = max(0.0, t), env[f]
            continue
        keep_t.append(max(0.0, float(t)))
        keep_s.append(env[f])
    return np.asarray(keep_t, dtype=np.float64)


def match_onsets(reference: Sequence[float], estimated: Sequence[float], tolerance: float = ONSET_TOLERANCE_S) -> int:
    """Size of the largest one-to-one matching of estimated to reference times within +-tolerance.

    Both sorted, greedy in time order is optimal for intervals on a line (each reference takes the earliest
    estimate it can).
    """
    ref, est = np.sort(np.asarray(reference, float)), np.sort(np.asarray(estimated, float))
    i = j = hits = 0
    while i < ref.size and j < est.size:
        if est[j] < ref[i] - tolerance:
            j += 1
        elif est[j] > ref[i] + tolerance:
            i += 1
        else:
            hits, i, j = hits + 1, i + 1, j + 1
    return hits


@dataclass(frozen=True)
class OnsetScore:
    """Precision, recall and F1 of detected onsets against reference times (NaN where undefined)."""

    precision: float
    recall: float
    f1: float
    hits: int
    n_reference: int
    n_estimated: int


def onset_f1(reference: Sequence[float], estimated: Sequence[float],
             tolerance: float = ONSET_TOLERANCE_S) -> OnsetScore:
    """F1 = 2 hits / (n_ref + n_est); NaN when both are empty (nothing to find, nothing found)."""
    hits = match_onsets(reference, estimated, tolerance)
    nr, ne = len(reference), len(estimated)
    precision = hits / ne if ne else math.nan
    recall = hits / nr if nr else math.nan
    f1 = 2.0 * hits / (nr + ne) if nr + ne else math.nan
    return OnsetScore(precision, recall, f1, hits, nr, ne)


# ================================================================================================ events
def visible_contacts(events: Sequence[dict], duration: float) -> np.ndarray:
    """Start times (s) of the visible contacts that start inside [0, duration) -> float64 [K], sorted."""
    return np.sort(np.asarray([e["time"] for e in events if e.get("onscreen") and 0.0 <= e["time"] < duration],
                              dtype=np.float64))


def contact_onset_score(onsets: Sequence[float], events: Sequence[dict], duration: float,
                        tolerance: float = ONSET_TOLERANCE_S) -> OnsetScore:
    """Onset F1 of detected onsets against the clip's visible contact starts (`visible_contacts`).

    A scrape or a shake sounds on for its whole contact and may show several onsets: an unmatched onset inside
    a visible contact's span (t + tol, t + duration + tol] is neither right nor wrong and is left out.
    """
    ref = visible_contacts(events, duration)
    est = np.sort(np.asarray(onsets, dtype=np.float64))
    spans = [(e["time"] + tolerance, e["time"] + float(e.get("duration", 0.0)) + tolerance)
             for e in events if e.get("onscreen") and float(e.get("duration", 0.0)) > 0]
    if spans and est.size:
        # Remove matched onsets first (greedy as in match_onsets), then the sustained ones among the rest.
        used = np.zeros(est.size, dtype=bool)
        i = j = 0
        while i < ref.size and j < est.size:
            if est[j] < ref[i] - tolerance:
                j += 1
            elif est[j] > ref[i] + tolerance:
                i += 1
            else:
                used[j], i, j = True, i + 1, j + 1
        sustained = np.array([not used[k] and any(a < t <= b for a, b in spans) for k, t in enumerate(est)])
        est = est[~sustained]
    return onset_f1(ref, est, tolerance)


def hallucinated_onsets(onsets: Sequence[float], events: Sequence[dict],
                        tolerance: float = ONSET_TOLERANCE_S) -> int:
    """Onsets with no visible cause: not within [t - tol, t + contact duration + tol] of any visible contact.

    A scrape or a shake sounds for the whole contact, so onsets during it have a visible cause too; events
    that started before the clip count (their sound reaches into it).
    """
    windows = [(e["time"] - tolerance, e["time"] + float(e.get("duration", 0.0)) + tolerance)
               for e in events if e.get("onscreen")]
    return int(sum(1 for t in onsets if not any(a <= t <= b for a, b in windows)))


def _frame_power(x: np.ndarray, frame: int) -> np.ndarray:
    n = x.size // frame
    return (x[: n * frame].reshape(n, frame) ** 2).mean(axis=1) if n else np.zeros(0)


def event_mask(action_stem: np.ndarray, sr: int = ANALYSIS_RATE, floor_db: float = EVENT_FLOOR_DB,
               frame_s: float = 0.05) -> np.ndarray:
    """Where the clean action stem sounds: bool [T] over its samples (50 ms frames within floor_db of its peak).

    One frame of margin each side covers the attack the framing splits. A silent stem has no event window.
    """
    x = np.asarray(action_stem, dtype=np.float64).reshape(-1)
    frame = max(1, int(round(frame_s * sr)))
    p = _frame_power(np.pad(x, (0, (-x.size) % frame)), frame)
    if p.size == 0 or p.max() <= 0:
        return np.zeros(x.size, dtype=bool)
    on = p >= p.max() * 10.0 ** (-floor_db / 10.0)
    grown = on.copy()
    grown[1:] |= on[:-1]
    grown[:-1] |= on[1:]
    on = grown
    return np.repeat(on, frame)[: x.size]


def ambient_leakage(generated: np.ndarray, action_stem: np.ndarray, sr: int) -> float:
    """Mean power of the output outside the event windows / mean power of the GT action stem inside them.

    0 for a silent output; about the ground truth's own ambient-to-action ratio for the ground-truth mix; NaN
    when the clip has no event window. Both waves at sr (the output is cut or zero-padded to the stem's length).
    """
    stem = np.asarray(action_stem, dtype=np.float64).reshape(-1)
    gen = np.asarray(generated, dtype=np.float64).reshape(-1)[: stem.size]
    gen = np.pad(gen, (0, stem.size - gen.size))
    mask = event_mask(stem, sr)
    if not mask.any():
        return math.nan
    inside = float(np.mean(stem[mask] ** 2))
    if inside <= 0:
        return math.nan
    outside = float(np.mean(gen[~mask] ** 2)) if (~mask).any() else 0.0
    return outside / inside


# ================================================================================================ event kinds
def kind_features(segment: np.ndarray, sr: int = ANALYSIS_RATE) -> np.ndarray:
    """A sound segment [T] -> mel statistics [2 * 64]: mean and std over time of its log-mel (dB, re its own peak).

    Relative to the segment's loudest bin, so the features describe timbre and decay, not loudness.
    """
    from ..media import resample

    s = _log_mel(resample(segment, sr, ANALYSIS_RATE), ANALYSIS_RATE)
    s = np.maximum(s - s.max(), -80.0)
    return np.concatenate([s.mean(axis=1), s.std(axis=1)]).astype(np.float64)


def event_segments(wave: np.ndarray, sr: int, events: Sequence[dict],
                   window_s: float = KIND_WINDOW_S) -> list[tuple[np.ndarray, str]]:
    """(segment [window], kind) of each visible contact starting inside the clip with a whole window after it."""
    x = np.asarray(wave, dtype=np.float32).reshape(-1)
    n = int(round(window_s * sr))
    out = []
    for e in events:
        if not e.get("onscreen"):
            continue
        i = int(round(e["time"] * sr))
        if 0 <= i and i + n <= x.size:
            out.append((x[i : i + n], str(e["kind"])))
    return out


@dataclass
class KindClassifier:
    """Nearest class centroid on standardised mel statistics (`kind_features`), fitted on clean event stems.

    Deliberately simple: it must be trained on the benchmark's own clean action stems in a second, and its
    mistakes are easy to read (a centroid per material). Accuracy on the ground-truth mix is its ceiling.
    """

    kinds: list[str] = field(default_factory=list)
    centroids: np.ndarray | None = None  # [K, D] in standardised units
    mean: np.ndarray | None = None
    std: np.ndarray | None = None

    def fit(self, segments: Sequence[tuple[np.ndarray, str]], sr: int) -> KindClassifier:
        """Fit on (segment [T], kind) pairs at sr; needs at least two kinds."""
        if not segments:
            raise Action2SoundError("the event-kind classifier got no training events; the benchmark's train clips "
                                    "have no visible contacts")
        feats = np.stack([kind_features(s, sr) for s, _ in segments])
        labels = np.array([k for _, k in segments])
        self.kinds = sorted(set(labels.tolist()))
        if len(self.kinds) < 2:
            raise Action2SoundError(f"the event-kind classifier needs at least two kinds, got {self.kinds}")
        self.mean = feats.mean(axis=0)
        self.std = feats.std(axis=0) + 1e-6
        z = (feats - self.mean) / self.std
        self.centroids = np.stack([z[labels == k].mean(axis=0) for k in self.kinds])
        return self

    def predict(self, segments: Sequence[np.ndarray], sr: int) -> list[str]:
        """The nearest centroid's kind of each segment [T] at sr."""
        if self.centroids is None:
            raise Action2SoundError("the event-kind classifier is not fitted")
        if not len(segments):
            return []
        z = (np.stack([kind_features(s, sr) for s in segments]) - self.mean) / self.std
        d = ((z[:, None, :] - self.centroids[None]) ** 2).sum(axis=-1)
        return [self.kinds[i] for i in d.argmin(axis=1)]


def kind_accuracy(classifier: KindClassifier, wave: np.ndarray, sr: int, events: Sequence[dict]) -> tuple[int, int]:
    """(correct, total) of the clip's visible contacts, classified from `wave` at the contact times.

    A segment quieter than ONSET_FLOOR_DB (RMS) holds no sound to classify and counts as wrong: silence is
    no material.
    """
    pairs = event_segments(wave, sr, events)
    if not pairs:
        return 0, 0
    audible = [10.0 * math.log10(max(float(np.mean(np.square(s, dtype=np.float64))), 1e-30)) >= ONSET_FLOOR_DB
               for s, _ in pairs]
    predicted = classifier.predict([s for s, _ in pairs], sr)
    return sum(a and p == k for a, p, (_, k) in zip(audible, predicted, pairs)), len(pairs)


# ================================================================================================ set level
@dataclass(frozen=True)
class Controllability:
    """Pearson r and least-squares slope of generated vs condition ambient level (dB) over n clips."""

    r: float
    slope: float
    n: int


def controllability(condition_db: Sequence[float], generated_db: Sequence[float]) -> Controllability:
    """How the generated ambient level follows the condition's over a set: r = 1 for an exact linear relation.

    NaN r (and slope) when fewer than 3 clips or either side has no spread.
    """
    c = np.asarray(condition_db, dtype=np.float64)
    g = np.asarray(generated_db, dtype=np.float64)
    ok = np.isfinite(c) & np.isfinite(g)
    c, g = c[ok], g[ok]
    if c.size < 3 or np.ptp(c) == 0 or np.ptp(g) == 0:
        return Controllability(math.nan, math.nan, int(c.size))
    cc, gc = c - c.mean(), g - g.mean()
    r = float(cc @ gc / math.sqrt(float(cc @ cc) * float(gc @ gc)))
    return Controllability(max(-1.0, min(1.0, r)), float(cc @ gc / (cc @ cc)), int(c.size))


def recall_at_k(video: np.ndarray, audio: np.ndarray, ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """Video -> audio retrieval R@k of unit embeddings [N, E] where row i of each is the same clip."""
    import torch

    from ..models.av import retrieval_recall

    r = retrieval_recall(torch.from_numpy(np.ascontiguousarray(video, np.float32)),
                         torch.from_numpy(np.ascontiguousarray(audio, np.float32)),
                         tuple(ks))
    return {f"R@{k}": float(v) for k, v in r.items()}
