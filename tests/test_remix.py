"""Ambient swaps (benchmark/remix.py): pairs, looping without clicks, the remixed track, the written episodes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile

from action2sound import benchmark as B
from action2sound.benchmark import remix as R
from action2sound.cli import main
from action2sound.errors import Action2SoundError
from action2sound.media import read_audio_file, read_frames, video_duration

SR = 22050
TINY = dict(size=64, fps=15.0, sample_rate=SR, episode_seconds=(8.0, 10.0), progress=False)


@pytest.fixture(scope="module")
def bench(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("bench")
    B.build_benchmark(root, episodes=2, seed=3, **TINY)
    return root


def _stem(root: Path, uid: str, name: str) -> np.ndarray:
    x, rate = soundfile.read(str(root / "episodes" / f"{uid}.{name}.wav"), dtype="float32")
    assert rate == SR
    return x


def test_partners_are_the_next_episodes_in_a_ring_and_never_the_episode_itself():
    assert R.partners(["a", "b", "c"], 2) == [("a", "b"), ("a", "c"), ("b", "c"), ("b", "a"), ("c", "a"), ("c", "b")]
    assert R.partners(["a", "b"], 5) == [("a", "b"), ("b", "a")]  # as many as there are others
    with pytest.raises(Action2SoundError, match="at least 2 training episodes"):
        R.partners(["a"], 1)
    with pytest.raises(Action2SoundError, match="at least 1"):
        R.partners(["a", "b"], 0)


def test_fit_length_cuts_or_loops_and_a_seam_has_no_step():
    x = np.arange(10, dtype=np.float32)
    np.testing.assert_array_equal(R.fit_length(x, 4, SR), x[:4])
    # A constant bed stays constant across the crossfaded seams (the fades sum to one).
    y = R.fit_length(np.full(1000, 0.5, np.float32), 4321, SR)
    assert y.size == 4321
    np.testing.assert_allclose(y, 0.5, atol=1e-12)
    # The first piece is the bed itself up to where the first fade begins.
    z = np.random.default_rng(0).standard_normal(2000)
    looped = R.fit_length(z, 5000, 1000)  # 50 ms at 1 kHz: a 50-sample fade
    np.testing.assert_array_equal(looped[:1950], z[:1950])
    assert np.max(np.abs(np.diff(looped))) <= np.max(np.abs(np.diff(z))) * 1.5  # no click where it joins


def test_remix_is_the_exact_sum_and_one_scale_keeps_the_headroom():
    n = 500
    stems = {"action": np.full(n, 0.2, np.float32), "offscreen": np.full(n, 0.1, np.float32)}
    mix, scale = R.remix(stems, np.full(n, 0.3, np.float32), SR)
    assert scale == 1.0
    np.testing.assert_allclose(mix, 0.6, atol=1e-7)
    loud, scale = R.remix({"action": np.full(n, 0.9, np.float32), "offscreen": np.zeros(n, np.float32)},
                          np.full(n, 0.9, np.float32), SR)
    assert scale == pytest.approx(R.HEADROOM / 1.8)
    np.testing.assert_allclose(loud, R.HEADROOM, atol=1e-6)


def test_ambient_swaps_write_the_picture_with_another_episodes_ambient(bench, tmp_path):
    out = tmp_path / "swaps"
    summary = R.ambient_swaps(bench, out, count=1, split=None, progress=False)
    uids = sorted(e["video_uid"] for e in json.loads((bench / "benchmark.json").read_text())["episodes"])
    assert [(s["video_uid"], s["ambient_from"]) for s in summary["swaps"]] == [(uids[0], uids[1]), (uids[1], uids[0])]
    assert json.loads((out / R.SWAPS_JSON).read_text())["swaps"] == summary["swaps"]
    for rec in summary["swaps"]:
        uid, other = rec["video_uid"], rec["ambient_from"]
        path = out / f"{uid}~{other}.mp4"
        source = bench / "episodes" / f"{uid}.mp4"
        assert video_duration(path) == pytest.approx(video_duration(source), abs=1e-3)
        np.testing.assert_array_equal(read_frames(path, 0.5, 1.0, 4, size=32), read_frames(source, 0.5, 1.0, 4, size=32))
        got = read_audio_file(path, SR)
        action, off = _stem(bench, uid, "action"), _stem(bench, uid, "offscreen")
        want = (action + off + R.fit_length(_stem(bench, other, "ambient"), action.size, SR)) \
            * 10.0 ** (rec["scale_db"] / 20.0)
        own = action + off + _stem(bench, uid, "ambient")
        assert got.size == want.size
        inner = slice(2048, -2048)  # the codec's priming and padding frames aside

        def rms(x: np.ndarray) -> float:
            return float(np.sqrt(np.mean(x[inner] ** 2)))

        codec = rms(read_audio_file(source, SR) - own)  # the benchmark's own AAC error
        assert rms(got - want) < 2 * codec  # the track is the remix, as near as the codec allows ...
        assert rms(got - want) < 0.5 * rms(got - own)  # ... and not the episode's own mix
    # A rerun keeps what is written.
    mtimes = {p.name: p.stat().st_mtime_ns for p in out.glob("*.mp4")}
    assert R.ambient_swaps(bench, out, count=1, split=None, progress=False) == summary
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.mp4")} == mtimes


def test_ambient_swaps_errors_name_the_folder_and_the_fix(bench, tmp_path):
    with pytest.raises(Action2SoundError, match="benchmark.json: not found"):
        R.ambient_swaps(tmp_path, tmp_path / "o", progress=False)
    with pytest.raises(Action2SoundError, match="at least 2 training episodes"):
        R.ambient_swaps(bench, tmp_path / "o", split="train", progress=False)  # the tiny build has one


def test_cli_ambient_swaps_reports_a_clear_error(bench, tmp_path, capsys):
    rc = main(["data", "ambient-swaps", str(bench), "--out", str(tmp_path / "s"), "--split", "test", "--quiet"])
    assert rc == 2
    assert "at least 2 training episodes" in capsys.readouterr().err
