"""benchmarks/kind_trace.py: where the event kind is lost (its rank of the true kind, its level rise, its probe)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from action2sound.evaluation.benchmark_metrics import KindClassifier

SR = 22_050
_spec = importlib.util.spec_from_file_location("kind_trace", Path(__file__).parents[1] / "benchmarks" / "kind_trace.py")
kind_trace = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(kind_trace)


def _tone(freq: float, seed: int) -> np.ndarray:
    t = np.arange(int(0.4 * SR)) / SR
    rng = np.random.default_rng(seed)
    return (0.5 * np.sin(2 * np.pi * freq * t) * np.exp(-t * 8) + 1e-3 * rng.standard_normal(t.size)).astype(np.float32)


def _noise(seed: int) -> np.ndarray:
    return (0.3 * np.random.default_rng(seed).standard_normal(int(0.4 * SR))).astype(np.float32)


def test_the_true_kind_ranks_first_when_it_is_the_nearest_and_last_when_it_is_not():
    train = [(_tone(440 + 10 * k, k), "tone") for k in range(4)] + [(_noise(k), "noise") for k in range(4)]
    clf = KindClassifier().fit(train, SR)
    tone, noise = _tone(450, 99), _noise(99)
    assert kind_trace.true_kind_ranks(clf, [(tone, "tone"), (noise, "noise")], SR) == [0, 0]
    assert kind_trace.true_kind_ranks(clf, [(tone, "noise"), (noise, "tone")], SR) == [1, 1]


def test_the_rise_reads_a_contact_out_of_silence_and_none_in_steady_noise():
    n = SR // 5
    quiet_then_loud = np.concatenate([1e-3 * np.ones(n), np.ones(n)]).astype(np.float32)
    assert kind_trace.rise_db(quiet_then_loud, n, n) == pytest.approx(60.0, abs=0.01)
    steady = _noise(0)
    assert abs(kind_trace.rise_db(steady, steady.size // 2, n // 2)) < 1.0
    assert kind_trace.rise_db(steady, n // 4, n) is None  # the span before leaves the wave


def test_the_probe_separates_what_is_separable():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(-2, 1, (40, 5)), rng.normal(2, 1, (40, 5))])
    y = np.array(["a"] * 40 + ["b"] * 40)
    lin = kind_trace._logistic(x, y, ["a", "b"])
    with torch.no_grad():
        pred = lin(torch.from_numpy(x).float()).argmax(-1).numpy()
    assert np.mean(np.array(["a", "b"])[pred] == y) > 0.95


def test_the_crop_placed_by_motion_finds_what_moved_on_a_still_background():
    rng = np.random.default_rng(0)
    frames = np.repeat((rng.random((1, 32, 32, 3)) * 60).astype(np.uint8), 4, axis=0)  # a dim, still texture
    for k, x in enumerate((14, 16, 18, 20)):  # a red square moving right, in the lower left quadrant
        frames[k, 22:26, x : x + 4] = (255, 0, 0)
    colours = kind_trace._at_motion(frames, 3, 4, 8).reshape(3, 8, 8)
    assert colours[0].max() == pytest.approx(1.0)  # the square is in the crop
    assert colours[0].mean() > 2 * colours[1].mean()
    centred = kind_trace._at_motion(np.repeat(frames[:1], 4, axis=0), 3, 4, 8)  # nothing moves: the centre
    assert np.allclose(centred.reshape(3, 8, 8), frames[0, 12:20, 12:20].transpose(2, 0, 1) / 255)
