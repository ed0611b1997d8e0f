"""Known answers of the synchrony metrics (evaluation/benchmark_metrics.py): silence, an exact copy of the
ground truth's contacts, and a shifted copy, each through the same onset detector a model's output goes through."""

from __future__ import annotations

import math

import numpy as np
import pytest

from action2sound.config import preset
from action2sound.evaluation import benchmark_metrics as bm
from sync_factory import toy_waves, trained_toy_encoder

SR = bm.ANALYSIS_RATE
DUR = 3.0
CONTACTS = [0.4, 1.1, 1.55, 2.3]  # 0.4 and 2.3 are off-centre (> 0.5 s from 1.5 s)


def _events(times=CONTACTS):
    return [{"time": t, "kind": "wood", "onscreen": True, "duration": 0.0} for t in times]


def _clicks(times, gains=None, seconds: float = DUR, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = 0.002 * rng.standard_normal(int(seconds * SR))
    for t, g in zip(times, gains or [1.0] * len(times)):
        i, n = int(round(t * SR)), int(0.08 * SR)
        if 0 <= i < x.size:
            x[i:i + n] += (g * 0.5 * rng.standard_normal(n) * np.exp(-np.arange(n) / (0.015 * SR)))[: x.size - i]
    return x.astype(np.float32)


SILENCE = np.zeros(int(DUR * SR), np.float32)
COPY = _clicks(CONTACTS)
SHIFTED = _clicks([t + 0.075 for t in CONTACTS])  # 75 ms late: outside +-50 ms, inside +-100 ms


# ---------------------------------------------------------------------------------------------- onset F1
def test_onset_f1_at_50_and_100_ms():
    def f1(wave):
        s = bm.contact_onset_scores(bm.detect_onsets(wave, SR), _events(), DUR)
        return s[0.05].f1, s[0.10].f1

    assert f1(COPY) == (1.0, 1.0)
    assert f1(SILENCE) == (0.0, 0.0)
    assert f1(SHIFTED) == (0.0, 1.0)


# ---------------------------------------------------------------------------------------------- onset AP
def test_onset_ap_of_silence_copy_and_shifted_copy():
    def ap(wave, tol=bm.ONSET_TOLERANCE_S):
        times, strengths = bm.scored_onsets(wave, SR)
        return bm.onset_ap(CONTACTS, times, strengths, tol)

    assert ap(COPY) == 1.0
    assert ap(SILENCE) == 0.0
    assert ap(SHIFTED) == 0.0
    assert ap(SHIFTED, 0.10) == 1.0
    assert math.isnan(bm.onset_ap([], [1.0], [3.0]))


def test_onset_ap_ranks_by_strength():
    # A false alarm stronger than the hit: the hit comes at rank 2 -> precision 1/2.
    assert bm.onset_ap([1.0], [0.5, 1.0], [9.0, 5.0]) == 0.5
    assert bm.onset_ap([1.0], [0.5, 1.0], [5.0, 9.0]) == 1.0
    # Two references, one found at rank 1, one never: (1 + 0) / 2.
    assert bm.onset_ap([1.0, 2.0], [1.01], [1.0]) == 0.5
    with pytest.raises(ValueError, match="same length"):
        bm.onset_ap([1.0], [1.0, 2.0], [1.0])


def test_onset_strengths_are_the_detectors_peaks():
    wave = _clicks([0.5, 2.0], gains=[1.0, 0.05])
    times, strengths = bm.scored_onsets(wave, SR)
    assert len(times) == 2 and np.all(np.abs(times - [0.5, 2.0]) < 0.02)
    assert np.all(strengths >= bm.ONSET_AP_RISE_DB)  # each found onset passed the detector's threshold
    assert strengths[0] > strengths[1]  # the loud click ranks first
    assert bm.onset_strengths(wave, [], SR).size == 0


# -------------------------------------------------------------------------------------------- off-centre
def test_off_centre_recall():
    np.testing.assert_array_equal(bm.off_centre_contacts(_events(), DUR), [0.4, 2.3])
    assert bm.off_centre_recall(bm.detect_onsets(COPY, SR), _events(), DUR) == (2, 2)
    assert bm.off_centre_recall(bm.detect_onsets(SILENCE, SR), _events(), DUR) == (0, 2)
    assert bm.off_centre_recall(bm.detect_onsets(SHIFTED, SR), _events(), DUR) == (0, 2)
    assert bm.off_centre_recall(bm.detect_onsets(SHIFTED, SR), _events(), DUR, tolerance=0.1) == (2, 2)
    # A clip with only a centred contact has no off-centre contact to find.
    assert bm.off_centre_recall([1.5], _events([1.4]), DUR) == (0, 0)


# ---------------------------------------------------------------------------------------------- shift test
@pytest.mark.parametrize("delay", bm.SHIFT_TEST_DELAYS_S)
def test_shift_test_of_a_follower_an_ignorer_and_silence(delay):
    original = bm.detect_onsets(COPY, SR)
    moved = [t + delay for t in CONTACTS]
    eligible = sum(0.05 <= t <= DUR - 0.05 for t in moved)
    follower = bm.detect_onsets(_clicks(moved, seed=1), SR)  # sounds where the delayed video shows contacts
    assert bm.shift_follow(original, follower, delay, DUR) == (eligible, eligible)
    assert bm.shift_follow(original, original, delay, DUR) == (0, eligible)  # ignores the video: nothing moved
    assert bm.shift_follow(original, bm.detect_onsets(SILENCE, SR), delay, DUR) == (0, eligible)
    assert bm.shift_follow([], follower, delay, DUR) == (0, 0)  # nothing to move
    # What did not move: nothing for the follower and silence, every eligible onset for the ignorer.
    assert bm.shift_stayed(original, follower, delay, DUR) == 0
    assert bm.shift_stayed(original, original, delay, DUR) == eligible
    assert bm.shift_stayed(original, bm.detect_onsets(SILENCE, SR), delay, DUR) == 0


def test_shift_test_moved_by_the_wrong_amount_does_not_follow():
    original = bm.detect_onsets(COPY, SR)
    wrong = bm.detect_onsets(_clicks([t + 0.3 + 0.075 for t in CONTACTS]), SR)
    assert bm.shift_follow(original, wrong, 0.3, DUR) == (0, 4)
    assert bm.shift_follow(original, wrong, 0.3, DUR, tolerance=0.1) == (4, 4)


# ----------------------------------------------------------------------------------------- centre impulse
def test_centre_impulse_sounds_once_at_the_centre():
    wave = bm.centre_impulse_wave(DUR, SR)
    onsets = bm.detect_onsets(wave, SR)
    assert onsets.size == 1 and abs(onsets[0] - DUR / 2) < 0.01
    np.testing.assert_array_equal(wave, bm.centre_impulse_wave(DUR, SR))  # deterministic


def test_centre_impulse_scores_well_only_on_centred_contacts():
    centred = bm.centre_impulse_scores(_events([1.5]), DUR)
    assert (centred["f1@50ms"], centred["f1@100ms"], centred["ap"]) == (1.0, 1.0, 1.0)
    assert centred["off_centre_total"] == 0.0
    off = bm.centre_impulse_scores(_events([0.4, 2.3]), DUR)
    assert (off["f1@50ms"], off["f1@100ms"], off["ap"]) == (0.0, 0.0, 0.0)
    assert (off["off_centre_found"], off["off_centre_total"]) == (0.0, 2.0)
    near = bm.centre_impulse_scores(_events([1.58]), DUR)  # 80 ms late: only the wider tolerance forgives it
    assert (near["f1@50ms"], near["f1@100ms"]) == (0.0, 1.0)


# ---------------------------------------------------------------------------------------- DeSync-like offset
def test_median_abs_offset_ms():
    assert bm.median_abs_offset_ms([0.1, -0.2, 0.05]) == pytest.approx(100.0)
    assert bm.median_abs_offset_ms([0.0, 0.0]) == 0.0
    assert math.isnan(bm.median_abs_offset_ms([]))


def test_sync_offsets_of_an_exact_and_a_shifted_copy():
    enc, _ = trained_toy_encoder()
    p = preset("tiny")
    k = 3  # columns
    frames, waves = toy_waves(p, 12, seed=7)
    _, late = toy_waves(p, 12, seed=7, delay_s=k * enc.period)  # the same clips, audio k columns late
    exact = bm.sync_offsets_s(enc, frames, list(waves), p.audio.sample_rate)
    shifted = bm.sync_offsets_s(enc, frames, list(late), p.audio.sample_rate)
    column_ms = enc.period * 1000
    assert bm.median_abs_offset_ms(exact) < 0.3 * column_ms
    assert abs(np.median(shifted) * 1000 - k * column_ms) < 0.3 * column_ms
    # Given at another rate, the waves are resampled to the encoder's profile first.
    from action2sound.evaluation.embedders import resample

    at16k = [resample(w, p.audio.sample_rate, 16_000) for w in late]
    again = bm.sync_offsets_s(enc, frames, at16k, 16_000)
    assert abs(np.median(again) - np.median(shifted)) < 0.3 * enc.period


# ------------------------------------------------------------------------------------------- stream probe
def _probe_clips(n: int = 80, w: int = 20, seed: int = 0):
    """Latents with a loud burst in one random column per clip (its rise is known), 10 long videos."""
    rng = np.random.default_rng(seed)
    latents = rng.normal(0, 0.1, (n, 4, 5, w))
    onset = rng.integers(2, w - 2, n)
    for i, j in enumerate(onset):
        latents[i, :, :, j:] *= 8.0
    return latents, onset, np.arange(n) % 10


def test_stream_probe_finds_a_stream_that_marks_the_onset_and_not_one_that_does_not():
    from action2sound.evaluation.stream_probe import column_rise, probe_stream

    latents, onset, videos = _probe_clips()
    rise = column_rise(latents)
    assert (rise.argmax(axis=1) == onset).all()
    n, w = rise.shape
    marks = np.zeros((n, w, 4))
    marks[np.arange(n), onset, 0] = 1.0  # the stream says "here" in the onset's column
    marks[..., 1] = 0.5
    good = probe_stream(marks, latents, videos)
    assert good.own_r > 0.6 and abs(good.other_r) < 0.2, good
    assert good.train_clips + good.test_clips == n and good.test_clips > 0
    # A stream that only knows the column's position (the same for every clip) scores nothing.
    position = np.broadcast_to(np.eye(w)[None, :, :4] + 0.1, (n, w, 4))
    assert abs(probe_stream(position, latents, videos).own_r) < 0.2
    noise = np.random.default_rng(1).normal(size=(n, w, 4))
    assert abs(probe_stream(noise, latents, videos).own_r) < 0.2
    with pytest.raises(ValueError, match="4 long videos"):
        probe_stream(marks, latents, videos % 3)
