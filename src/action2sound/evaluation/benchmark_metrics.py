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

    def distances(self, segments: Sequence[np.ndarray], sr: int) -> np.ndarray:
        """Squared distance of each segment [T] at sr to each kind's centroid -> [N, K] (K: `kinds`' order)."""
        if self.centroids is None:
            raise Action2SoundError("the event-kind classifier is not fitted")
        z = (np.stack([kind_features(s, sr) for s in segments]) - self.mean) / self.std
        return ((z[:, None, :] - self.centroids[None]) ** 2).sum(axis=-1)

    def predict(self, segments: Sequence[np.ndarray], sr: int) -> list[str]:
        """The nearest centroid's kind of each segment [T] at sr."""
        if self.centroids is None:
            raise Action2SoundError("the event-kind classifier is not fitted")
        if not len(segments):
            return []
        return [self.kinds[i] for i in self.distances(segments, sr).argmin(axis=1)]


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


# ================================================================================================ synchrony
# Metrics that can tell a model that follows the video from one that puts a sound mid-window (issue 10): on
# centred clips a single impulse at the window centre scores onset F1 0.85, so every table carries that
# baseline (`centre_impulse_scores`), the recall of contacts away from the centre, the shift test, and a
# DeSync-like offset measured by the sync encoder (models/sync_stream.py).
ONSET_TOLERANCES_S = (0.05, 0.10)
OFF_CENTRE_S = 0.5  # a contact further than this from the window centre is off-centre
SHIFT_TEST_DELAYS_S = (-0.5, -0.3, 0.3, 0.5)
# The AP detector ranks weak candidates too (a lower rise than detect_onsets' default), so that a model's
# quieter true onsets still enter the precision-recall curve below its loud false ones.
ONSET_AP_RISE_DB = 1.5
CENTRE_IMPULSE_S = 0.08  # length of the centre impulse's decaying noise burst


def contact_onset_scores(onsets: Sequence[float], events: Sequence[dict], duration: float,
                         tolerances: Sequence[float] = ONSET_TOLERANCES_S) -> dict[float, OnsetScore]:
    """`contact_onset_score` at each tolerance (s) -> {tolerance: OnsetScore} (default +-50 ms and +-100 ms)."""
    return {float(tol): contact_onset_score(onsets, events, duration, tol) for tol in tolerances}


def onset_strengths(wave: np.ndarray, onsets: Sequence[float], sr: int = ANALYSIS_RATE) -> np.ndarray:
    """The detector's strength (spectral flux, dB, `onset_envelope`) at each onset time -> float64 [K].

    The inverse of detect_onsets' timing (time = (frame - 1/2) hop): the strongest of that frame and its two
    neighbours, so a time rounded to 0 s or moved by the min-gap rule still finds its peak.
    """
    from .embedders import resample

    t = np.asarray(onsets, dtype=np.float64).reshape(-1)
    if t.size == 0:
        return np.zeros(0)
    env = onset_envelope(resample(wave, sr, ANALYSIS_RATE).astype(np.float64), ANALYSIS_RATE)
    frames = np.clip(np.round(t * ANALYSIS_RATE / _HOP + 0.5).astype(int), 0, env.size - 1)
    padded = np.pad(env, 1)
    return np.max([padded[frames], padded[frames + 1], padded[frames + 2]], axis=0)


def scored_onsets(wave: np.ndarray, sr: int = ANALYSIS_RATE,
                  rise_db: float = ONSET_AP_RISE_DB) -> tuple[np.ndarray, np.ndarray]:
    """(onset times [K] s, detector strengths [K] dB) for `onset_ap`: detect_onsets with a low rise threshold."""
    times = detect_onsets(wave, sr, rise_db=rise_db)
    return times, onset_strengths(wave, times, sr)


def onset_ap(reference: Sequence[float], onsets: Sequence[float], strengths: Sequence[float],
             tolerance: float = ONSET_TOLERANCE_S) -> float:
    """Average precision of onsets ranked by strength against reference times (+-tolerance), in [0, 1].

    Detection AP (as PASCAL VOC, without interpolation): walk the onsets from the strongest, each taking the
    nearest unmatched reference within the tolerance (a hit) or none (a false alarm); AP is the mean, over the
    references, of the precision at the rank where each was found (0 for those never found). NaN without
    references (nothing to find).
    """
    ref = np.asarray(reference, dtype=np.float64).reshape(-1)
    est = np.asarray(onsets, dtype=np.float64).reshape(-1)
    score = np.asarray(strengths, dtype=np.float64).reshape(-1)
    if est.shape != score.shape:
        raise ValueError(f"onsets {est.shape} and strengths {score.shape} must have the same length")
    if ref.size == 0:
        return math.nan
    free = np.ones(ref.size, dtype=bool)
    hits, total = 0, 0.0
    for rank, k in enumerate(np.argsort(-score, kind="stable"), start=1):
        d = np.where(free, np.abs(ref - est[k]), np.inf)
        j = int(np.argmin(d))
        if d[j] <= tolerance:
            free[j] = False
            hits += 1
            total += hits / rank
    return total / ref.size


def off_centre_contacts(events: Sequence[dict], duration: float, min_distance_s: float = OFF_CENTRE_S) -> np.ndarray:
    """Visible contact starts further than min_distance_s from the window centre -> float64 [K], sorted."""
    ref = visible_contacts(events, duration)
    return ref[np.abs(ref - duration / 2.0) > min_distance_s]


def off_centre_recall(onsets: Sequence[float], events: Sequence[dict], duration: float,
                      min_distance_s: float = OFF_CENTRE_S, tolerance: float = ONSET_TOLERANCE_S) -> tuple[int, int]:
    """(found, total) off-centre contacts (`off_centre_contacts`) with an onset within +-tolerance.

    Counts, not a rate, so clips sum into one recall; a model that only sounds mid-window finds none.
    """
    ref = off_centre_contacts(events, duration, min_distance_s)
    return match_onsets(ref, onsets, tolerance), int(ref.size)


def shift_follow(onsets: Sequence[float], shifted_onsets: Sequence[float], delay_s: float, duration: float,
                 tolerance: float = ONSET_TOLERANCE_S) -> tuple[int, int]:
    """The shift test for one clip: (followed, eligible) onsets when the input video is delayed by delay_s.

    `onsets` were generated for the original video, `shifted_onsets` for the same video delayed by delay_s
    (negative: advanced). An onset at t is eligible when t + delay_s lies in the window (and not within the
    tolerance of its edges), and follows when one onset of the delayed output lies within +-tolerance of
    t + delay_s (one-to-one). A model in sync follows every onset; one that ignores the video follows none
    (for |delay_s| beyond the spacing of its onsets).
    """
    t = _shift_eligible(onsets, delay_s, duration, tolerance)
    return match_onsets(t + delay_s, shifted_onsets, tolerance), int(t.size)


def shift_stayed(onsets: Sequence[float], shifted_onsets: Sequence[float], delay_s: float, duration: float,
                 tolerance: float = ONSET_TOLERANCE_S) -> int:
    """The shift test's other side: how many of `shift_follow`'s eligible onsets did *not* move, i.e. the
    delayed output has an onset within +-tolerance of the original time t (one-to-one).

    Such a sound was placed by something the delay leaves alone: the window's edges (a decoder can add an
    onset in a window's first frame or last latent column), the audio condition (the same for every delay), or
    a fixed preference for a time in the window. A follower scores 0, a model that ignores the video
    scores every eligible onset.
    """
    return match_onsets(_shift_eligible(onsets, delay_s, duration, tolerance), shifted_onsets, tolerance)


def _shift_eligible(onsets: Sequence[float], delay_s: float, duration: float, tolerance: float) -> np.ndarray:
    """The onsets (s, float64 [K]) whose time + delay_s lies in the window, tolerance away from its edges."""
    t = np.asarray(onsets, dtype=np.float64).reshape(-1)
    moved = t + delay_s
    return t[(moved >= tolerance) & (moved <= duration - tolerance)]


def centre_impulse_wave(duration: float, sr: int = ANALYSIS_RATE, seed: int = 0,
                        length_s: float = CENTRE_IMPULSE_S) -> np.ndarray:
    """The centre-impulse baseline: one decaying noise burst at duration / 2, silence elsewhere -> float32 [T].

    It knows nothing of the video; any metric it scores well on cannot show synchrony. Deterministic in seed.
    """
    n = int(round(duration * sr))
    x = np.zeros(n, dtype=np.float64)
    rng = np.random.default_rng(seed)
    i, m = int(round(duration / 2.0 * sr)), int(round(length_s * sr))
    burst = 0.5 * rng.standard_normal(m) * np.exp(-np.arange(m) / (0.015 * sr))
    x[i:i + m] = burst[: max(0, n - i)]
    return x.astype(np.float32)


def centre_impulse_scores(events: Sequence[dict], duration: float, sr: int = ANALYSIS_RATE,
                          tolerances: Sequence[float] = ONSET_TOLERANCES_S) -> dict[str, float]:
    """The centre impulse's scores on one clip, measured as a model's are (its wave through the same detector).

    {"f1@50ms", "f1@100ms" (per tolerance), "ap", "off_centre_found", "off_centre_total"}.
    """
    wave = centre_impulse_wave(duration, sr)
    onsets = detect_onsets(wave, sr)
    out = {f"f1@{round(tol * 1000)}ms": s.f1 for tol, s in contact_onset_scores(onsets, events, duration,
                                                                               tolerances).items()}
    times, strengths = scored_onsets(wave, sr)
    out["ap"] = onset_ap(visible_contacts(events, duration), times, strengths)
    found, total = off_centre_recall(onsets, events, duration)
    out["off_centre_found"], out["off_centre_total"] = float(found), float(total)
    return out


def sync_offsets_s(encoder, frames: np.ndarray, waves: Sequence[np.ndarray], sr: int) -> np.ndarray:
    """How late each wave is against its video (s) by the sync encoder -> float64 [B] (DeSync-like, signed).

    encoder: a trained models.sync_stream.SyncEncoder; frames: uint8 [B, N, S, S, 3] at its sync_frame_times;
    waves: B waves at sr (resampled to the encoder's profile and fitted to one window). The range is
    +-sync_stream.max_shift_columns columns: a larger offset reads as the largest.
    """
    import torch

    from ..mel import wave_to_mel
    from .embedders import resample

    profile = encoder.profile
    mels = np.stack([wave_to_mel(resample(w, sr, profile.sample_rate), profile) for w in waves])
    dev = next(encoder.parameters()).device
    with torch.no_grad():
        est = encoder.estimate_offset(torch.as_tensor(np.asarray(frames)).to(dev), torch.from_numpy(mels).to(dev))
    return est.double().cpu().numpy()


def median_abs_offset_ms(offsets_s: Sequence[float]) -> float:
    """The DeSync-like number of a set: median |offset| in milliseconds (NaN for an empty set)."""
    x = np.abs(np.asarray(offsets_s, dtype=np.float64).reshape(-1))
    x = x[np.isfinite(x)]
    return float(np.median(x) * 1000.0) if x.size else math.nan
