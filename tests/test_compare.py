"""`action2sound compare`: the paired bootstrap over clips of evaluate folders, on records with known answers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from action2sound.cli import main
from action2sound.errors import Action2SoundError
from action2sound.evaluation.compare import compare_runs, interval_lines, markdown


def _record(clip: int, seed: int, hit: bool, cond_db: float, gen_db: float, halluc: int = 0) -> dict:
    """One generated output as `evaluate` writes it: one contact, one detected onset (a hit or not)."""
    h = int(hit)
    return {"key": f"c{clip}#s{seed}", "clip_id": f"c{clip:02d}", "video_id": f"v{clip}", "seed": seed,
            "output": "model", "condition": {"mode": "retrieved", "ambient_db": cond_db}, "ambient_db": gen_db,
            "onset": {"hits": h, "n_reference": 1, "n_estimated": 1}, "hallucinated": halluc, "seconds": 3.0,
            "onset_tol": {"50ms": [h, 1, 1], "100ms": [h, 1, 1]}, "onset_ap": float(h), "off_centre": [h, 1],
            "kind": [h, 1]}


def _run(root: Path, name: str, records: list[dict], with_reference: bool = True) -> Path:
    d = root / name
    d.mkdir()
    refs = [{"clip_id": r["clip_id"], "seed": None, "output": "groundtruth"} for r in records if r["seed"] == 0]
    rows = (refs if with_reference else []) + records + [{"clip_id": "broken", "seed": 0, "error": "x"}]
    (d / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return d


def _levels(n: int) -> np.ndarray:
    return np.linspace(-70.0, -40.0, n)


def _half_hits(n: int = 20, seeds: int = 2, gen=lambda c, s, db: db) -> list[dict]:
    lv = _levels(n)
    return [_record(c, s, c % 2 == 0, lv[c], gen(c, s, lv[c])) for s in range(seeds) for c in range(n)]


def test_a_run_against_itself_differs_by_exactly_zero(tmp_path):
    recs = _half_hits(gen=lambda c, s, db: db + 3.0 * np.sin(c + s))
    a, b = _run(tmp_path, "a", recs), _run(tmp_path, "b", recs)
    res = compare_runs([a, b], boot=200)
    assert res["clips"] == 20 and res["seeds"] == [0, 1]
    for key, d in res["differences"]["b"].items():
        if d.value is not None:
            assert (d.value, d.low, d.high) == (0.0, 0.0, 0.0), key
            assert res["verdicts"]["b"][key] in ("within noise", "–")


def test_known_differences_get_their_value_and_direction(tmp_path):
    n = 20
    lv = _levels(n)
    a = _run(tmp_path, "a", _half_hits(n))  # F1 0.5, control r 1
    # Every contact found, the generated ambient unrelated to the condition's, 2 false onsets per clip.
    rng = np.random.default_rng(1)
    b_recs = [_record(c, s, True, lv[c], float(rng.normal(-55.0, 8.0)), halluc=2) for s in range(2) for c in range(n)]
    b = _run(tmp_path, "b", b_recs)
    res = compare_runs([a, b], boot=400)
    va, vb, d, v = res["values"]["a"], res["values"]["b"], res["differences"]["b"], res["verdicts"]["b"]
    assert va["onset_f1@50ms"].value == pytest.approx(0.5)  # 2 * 10 hits / (20 + 20), each seed
    assert vb["onset_f1@50ms"].value == pytest.approx(1.0)
    assert d["onset_f1@50ms"].value == pytest.approx(0.5) and d["onset_f1@50ms"].low > 0
    assert v["onset_f1@50ms"] == "better" and v["onset_ap"] == "better" and v["kind_accuracy"] == "better"
    assert va["controllability_r"].value == pytest.approx(1.0)
    assert d["controllability_r"].high < 0 and v["controllability_r"] == "worse"
    assert d["hallucination_per_s"].value == pytest.approx(2 / 3.0)  # lower is better: more is worse
    assert v["hallucination_per_s"] == "worse"
    assert v["ambient_db"] == "–"  # neither direction is better
    # The interval of a bounded metric stays within its bounds and holds its point estimate.
    iv = va["onset_f1@50ms"]
    assert 0.0 <= iv.low <= iv.value <= iv.high <= 1.0 and iv.high > iv.low
    # Reversed, the verdicts reverse.
    back = compare_runs([b, a], boot=400)["verdicts"]["a"]
    assert back["onset_f1@50ms"] == "worse" and back["controllability_r"] == "better"


def test_a_small_difference_on_few_clips_is_within_noise(tmp_path):
    n = 20
    lv = _levels(n)
    a = _run(tmp_path, "a", _half_hits(n))
    flipped = [_record(c, s, c % 2 == 0 or c == 1, lv[c], lv[c]) for s in range(2) for c in range(n)]  # one clip more
    res = compare_runs([a, _run(tmp_path, "b", flipped)], boot=400)
    d = res["differences"]["b"]["onset_f1@50ms"]
    assert d.value == pytest.approx(0.05) and d.low <= 0.0 <= d.high
    assert res["verdicts"]["b"]["onset_f1@50ms"] == "within noise"


def test_only_the_clips_and_seeds_every_run_has_are_compared(tmp_path):
    a = _run(tmp_path, "a", _half_hits(20, seeds=3))
    b = _run(tmp_path, "b", [r for r in _half_hits(20, seeds=2) if r["clip_id"] != "c03"], with_reference=False)
    res = compare_runs([a, b], boot=100)
    assert res["clips"] == 19 and res["seeds"] == [0, 1]
    # the same draw of clips for both runs: identical outputs on the common grid differ by zero
    assert res["differences"]["b"]["onset_f1@50ms"].high == 0.0
    # a seed that one run has for a few clips only is left out, not the clips
    partial = [r for r in _half_hits(20, seeds=3) if r["seed"] < 2 or r["clip_id"] < "c05"]
    res = compare_runs([a, _run(tmp_path, "partial", partial)], boot=100)
    assert res["clips"] == 20 and res["seeds"] == [0, 1]


def test_bad_inputs_say_what_to_do(tmp_path):
    a = _run(tmp_path, "a", _half_hits(10))
    with pytest.raises(Action2SoundError, match="two or more"):
        compare_runs([a], boot=200)
    with pytest.raises(Action2SoundError, match="no records.jsonl"):
        compare_runs([a, tmp_path / "missing"], boot=200)
    with pytest.raises(Action2SoundError, match="100 or more"):
        compare_runs([a, a], boot=10)
    other = _run(tmp_path, "other", [dict(r, clip_id="x" + r["clip_id"]) for r in _half_hits(10)])
    with pytest.raises(Action2SoundError, match="fewer than 3 clips"):
        compare_runs([a, other], boot=200)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "records.jsonl").write_text('{"clip_id": "c00", "seed": 0}\n{not json\n')
    with pytest.raises(Action2SoundError, match="line 2 is not JSON"):
        compare_runs([a, bad], boot=200)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "records.jsonl").write_text("")
    with pytest.raises(Action2SoundError, match="no generated outputs"):
        compare_runs([a, empty], boot=200)


def test_cli_writes_table_json_and_picture(tmp_path, capsys):
    a = _run(tmp_path, "a", _half_hits(12))
    b = _run(tmp_path, "b", [_record(c, s, True, r, r) for s in range(2) for c, r in enumerate(_levels(12))])
    out = tmp_path / "cmp"
    argv = ["compare", str(a), str(b), "--out", str(out), "--boot", "200", "--label", "base", "--label", "new"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "**new** against **base**" in text and "| onset F1 ±50 ms | 0.500" in text
    saved = json.loads((out / "compare.json").read_text())
    assert saved["verdicts"]["new"]["onset_f1@50ms"] == "better"
    assert saved["differences"]["new"]["onset_f1@50ms"][0] == pytest.approx(0.5)
    assert (out / "compare.png").stat().st_size > 10_000
    assert "compare.png" in (out / "compare.md").read_text()
    assert main(["compare", str(a), str(b), "--label", "only-one"]) == 2
    assert "give one per run" in capsys.readouterr().err


def test_markdown_leaves_out_metrics_no_run_has(tmp_path):
    recs = [{k: v for k, v in r.items() if k != "kind"} for r in _half_hits(10)]
    res = compare_runs([_run(tmp_path, "a", recs), _run(tmp_path, "b", recs)], boot=100)
    assert "kind accuracy" not in markdown(res) and "onset AP" in markdown(res)


def test_a_runs_report_gives_its_own_intervals_over_clips():
    recs = _half_hits(20) + [{"clip_id": "c00", "seed": None, "output": "groundtruth"}]
    line = interval_lines(recs, boot=200)[0]
    assert "over the 20 clips" in line and "onset F1 ±50 ms 0.500 [" in line and "control r 1.000 [" in line
    assert interval_lines(_half_hits(2), boot=200) == []  # too few clips to resample
