"""Neighbour rules (SPEC §3.4): same long video, within k positions, never overlapping, deterministic draws."""

from __future__ import annotations

import numpy as np
import pytest

from action2sound.data import Clip, ClipTable, Neighbours


def table_of(spans: list[tuple[str, float, float]]) -> ClipTable:
    return ClipTable(Clip(f"c{i}", v, "/m/x.mp4", 0.0, e - s, s, e) for i, (v, s, e) in enumerate(spans))


def brute_force(table: ClipTable, k: int) -> list[list[int]]:
    """The rule written the slow, obvious way."""
    out = []
    for i, c in enumerate(table):
        same = sorted((j for j, d in enumerate(table) if d.video_id == c.video_id),
                      key=lambda j: (table[j].video_start, table[j].video_end, j))
        p = same.index(i)
        near = same[max(0, p - k):p] + same[p + 1:p + 1 + k]
        out.append([j for j in near
                    if not (table[j].video_start < c.video_end and c.video_start < table[j].video_end)])
    return out


def test_known_answer():
    t = table_of([
        ("a", 10.0, 13.0),  # 0
        ("a", 0.0, 3.0),    # 1
        ("b", 0.0, 3.0),    # 2  alone in its video
        ("a", 3.0, 6.0),    # 3  touches 1 and 0 at the edges: half-open, so no overlap
        ("a", 4.0, 7.0),    # 4  overlaps 3
        ("a", 20.0, 23.0),  # 5
    ])
    nb = Neighbours(t, k=2)
    # time order in video a: 1, 3, 4, 0, 5
    assert nb.candidates(1) == [3, 4]
    assert nb.candidates(3) == [1, 0]  # 4 overlaps
    assert nb.candidates(4) == [1, 0, 5]  # 3 overlaps
    assert nb.candidates(0) == [3, 4, 5]
    assert nb.candidates(5) == [4, 0]
    assert nb.candidates(2) == []
    assert nb.choose(2, epoch=0) is None
    assert nb.counts.tolist() == [3, 2, 0, 2, 3, 2]
    st = nb.stats()
    assert st["no_neighbour_fraction"] == pytest.approx(1 / 6)
    assert st["mean_candidates"] == pytest.approx(12 / 6)
    assert st["overlap_excluded_fraction"] == pytest.approx(2 / 14)  # 14 same-video pairs within k, 2 overlap


def random_table(rng: np.random.Generator, n: int) -> ClipTable:
    vids = rng.integers(0, 4, n)
    starts = np.round(rng.uniform(0, 30, n), 1)  # coarse grid: many ties and exact touches
    lens = rng.choice([0.5, 1.5, 3.0], n)
    return table_of([(f"v{v}", float(s), float(s + d)) for v, s, d in zip(vids, starts, lens)])


@pytest.mark.parametrize("k", [1, 3, 7])
def test_rules_hold_on_random_tables(k):
    rng = np.random.default_rng(k)
    for _ in range(25):
        t = random_table(rng, int(rng.integers(1, 40)))
        nb = Neighbours(t, k=k, seed=int(rng.integers(1000)))
        expected = brute_force(t, k)
        chosen = nb.choose_all(epoch=5)
        for i, c in enumerate(t):
            cands = nb.candidates(i)
            assert cands == expected[i]
            for j in cands:
                d = t[j]
                assert j != i and d.video_id == c.video_id
                assert d.video_end <= c.video_start or d.video_start >= c.video_end  # never overlapping
            pick = nb.choose(i, epoch=5)
            assert (pick in cands) if cands else pick is None
            assert chosen[i] == (-1 if pick is None else pick)


def test_from_arrays_matches_table():
    rng = np.random.default_rng(1)
    t = random_table(rng, 60)
    a = Neighbours(t, k=4, seed=9)
    b = Neighbours.from_arrays([c.video_id for c in t], [c.video_start for c in t], [c.video_end for c in t],
                               k=4, seed=9)
    assert [a.candidates(i) for i in range(len(t))] == [b.candidates(i) for i in range(len(t))]
    assert np.array_equal(a.choose_all(2), b.choose_all(2))


def test_choice_deterministic_varies_with_epoch_and_seed():
    t = table_of([("a", 10.0 * i, 10.0 * i + 3) for i in range(21)])
    nb, same = Neighbours(t, k=10, seed=0), Neighbours(t, k=10, seed=0)
    assert len(nb.candidates(10)) == 20
    picks = [nb.choose(10, e) for e in range(400)]
    assert picks == [same.choose(10, e) for e in range(400)]  # a pure function of (clip, epoch, seed)
    assert len(set(picks[:10])) >= 5  # changes from epoch to epoch
    counts = np.bincount([p for p in picks], minlength=21)
    assert counts[10] == 0 and counts[np.arange(21) != 10].min() >= 5  # every candidate gets drawn
    other_seed = Neighbours(t, k=10, seed=1)
    assert [other_seed.choose(10, e) for e in range(50)] != picks[:50]
    # choosing for one clip does not depend on which others are asked, or in which order
    assert [nb.choose(i, 7) for i in reversed(range(21))][::-1] == nb.choose_all(7).tolist()


def test_bad_k():
    with pytest.raises(ValueError):
        Neighbours(table_of([("a", 0, 3)]), k=0)


def test_empty_table():
    nb = Neighbours(ClipTable(), k=3)
    assert len(nb) == 0 and nb.choose_all(0).shape == (0,) and nb.stats()["no_neighbour_fraction"] == 0.0


@pytest.mark.slow
def test_scales_to_ego4d_size():
    import time

    rng = np.random.default_rng(0)
    n = 1_200_000
    s = rng.uniform(0, 600, n)
    t0 = time.perf_counter()
    nb = Neighbours.from_arrays(rng.integers(0, 10_000, n), s, s + 3.0, k=10)
    nb.choose_all(0)
    assert time.perf_counter() - t0 < 30
