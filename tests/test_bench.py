"""The speed benchmark of the ldm (`training.bench`, `benchmarks/gpu.sh`'s engine) runs on a CPU with tiny."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from action2sound.training.bench import (
    SAMPLE_VARIANTS,
    TRAIN_VARIANTS,
    VARIANTS,
    bench_ldm,
    bench_variants,
    check_report,
    check_variants,
    format_report,
)

ROOT = Path(__file__).resolve().parents[1]


def test_bench_ldm_tiny_on_cpu_reports_positive_finite_numbers():
    lines = []
    r = bench_ldm("tiny", device="cpu", train_batch=2, train_steps=1, warmup=1, sample_batches=(1, 2),
                  sample_steps=2, progress=lines.append)
    assert {"device", "preset", "params_m", "compile", "precision", "train", "sample", "sample_steps"} <= set(r)
    assert r["preset"] == "tiny" and r["train"]["batch"] == 2 and set(r["sample"]) == {1, 2}
    assert {"step_ms", "samples_per_s", "peak_memory_gb"} <= set(r["train"]) and math.isfinite(r["train"]["loss"])
    for s in r["sample"].values():
        assert {"total_ms", "ms_per_clip", "peak_memory_gb"} <= set(s)
    assert check_report(r) == []
    assert math.isclose(r["sample"][2]["ms_per_clip"] * 2, r["sample"][2]["total_ms"])
    # One progress line per measurement (header, train, each batch), as gpu.sh prints them.
    assert len(lines) == 4 and "samples/s" in lines[1] and "batch 2" in lines[3]
    assert "samples/s" in format_report(r)


def test_check_report_names_a_bad_number():
    r = {"train": {"step_ms": 1.0, "samples_per_s": float("nan"), "peak_memory_gb": 1.0},
         "sample": {1: {"total_ms": 0.0, "ms_per_clip": 1.0, "peak_memory_gb": 1.0}}}
    assert check_report(r) == ["train.samples_per_s", "sample.1.total_ms"]


def test_bench_variants_runs_every_variant_that_needs_no_compiler_on_cpu():
    # Sampling first, as gpu.sh asks: the training phase must still find its fp32 model.
    names = tuple(v for v in VARIANTS if "compiled" not in v and v.startswith(("sample", "profile-sample")))
    names += tuple(v for v in VARIANTS if "compiled" not in v and v not in names)
    lines = []
    r = bench_variants("tiny", names, device="cpu", train_batch=2, train_steps=1, warmup=1, sample_batches=(1, 2),
                       sample_steps=2, top=3, progress=lines.append)
    assert check_variants(r) == [], lines
    train = [v for v in names if v in TRAIN_VARIANTS]
    sampling = [v for v in names if v in SAMPLE_VARIANTS]
    assert list(r["train"]) == train and list(r["sample"]) == sampling
    for res in r["train"].values():
        assert res["samples_per_s"] > 0 and math.isfinite(res["loss"])
    for per in r["sample"].values():
        assert set(per) == {1, 2}
        for res in per.values():
            # Every loop gives sampling.sample's result (channels-last reorders float sums: a little more).
            assert res["max_abs_diff"] <= 1e-5 * res["ref_max_abs"]
    assert r["sample"]["sample-bf16"][1]["max_abs_diff"] == 0.0  # the reference itself
    prof = r["profile"]["profile-train"]
    assert prof["busy_ms"] > 0 and len(prof["top"]) == 3 and prof["unit"] == "cpu ops"
    assert set(r["profile"]["profile-sample"]) == {1, 2}
    # One line per measurement, as soon as measured: header, train, sample per batch, profiles with their rows.
    assert lines[0].startswith("ldm tiny") and len([x for x in lines if "ms/step" in x]) == len(train)
    first = [next(i for i, x in enumerate(lines) if key in x) for key in ("max |diff|", "ms/step")]
    assert first[0] < first[1]
    assert len([x for x in lines if "max |diff|" in x]) == 2 * len(sampling)
    assert not any("FAILED" in x for x in lines)


def test_bench_variants_reports_a_failing_variant_and_goes_on(monkeypatch):
    import action2sound.training.bench as bench

    def broken(*args, **kwargs):
        raise RuntimeError("no graph today\nsecond line")

    monkeypatch.setattr("action2sound.static_sampling.sample_planned", broken)
    lines = []
    r = bench.bench_variants("tiny", ("sample-planned", "sample-bf16"), device="cpu", sample_batches=(1,),
                             sample_steps=2, progress=lines.append)
    assert r["sample"]["sample-planned"][1] == {"error": "RuntimeError: no graph today"}
    assert "  sample-planned, batch 1: FAILED RuntimeError: no graph today" in lines
    assert r["sample"]["sample-bf16"][1]["total_ms"] > 0  # the next variant ran
    assert check_variants(r) == ["sample.sample-planned.1"]


def test_bench_variants_names_unknown_variants():
    with pytest.raises(ValueError, match="train-fast"):
        bench_variants("tiny", ("train-fast",), device="cpu")


def test_check_variants_names_bad_numbers():
    r = {"train": {"train": {"step_ms": 1.0, "samples_per_s": float("inf"), "peak_memory_gb": 1.0},
                   "train-graph": {"error": "x"}},
         "sample": {"sample-graph": {50: {"total_ms": 1.0, "ms_per_clip": 1.0, "peak_memory_gb": 1.0,
                                          "max_abs_diff": float("nan"), "ref_max_abs": 1.0}}},
         "profile": {"profile-train": {"error": "x"}, "profile-sample": {1: {"error": "y"}}}}
    assert check_variants(r) == ["train.train.samples_per_s", "train.train-graph",
                                 "sample.sample-graph.50.max_abs_diff", "profile.profile-train",
                                 "profile.profile-sample.1"]


def test_gpu_script_asks_for_every_default_variant(tmp_path):
    # The script needs a GPU; with an `echo` for Python, what it would run is checked here.
    env = {**os.environ, "PYTHON": "echo", "OUTDIR": str(tmp_path), "PATH": os.environ["PATH"]}
    out = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu.sh")], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    runs = [x for x in out.stdout.splitlines() if x.startswith("benchmarks/bench_ldm.py")]
    assert len(runs) == 3
    for run in runs:
        for part in ("--presets paper", "--device cuda", "--train-batch 90", "--sample-batches 1 50",
                     "--sample-steps 25", "--variants"):
            assert part in run
    asked = {w for run in runs for w in run.split("--variants")[1].split("--")[0].split()}
    assert asked == {v for v in VARIANTS if v not in ("train-compiled-ro", "train-compiled-ma")}
    env.update(BASELINE="1", EXTRA="1", SKIP="2 3")
    out = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu.sh")], capture_output=True, text=True, env=env)
    runs = [x for x in out.stdout.splitlines() if x.startswith("benchmarks/bench_ldm.py")]
    assert len(runs) == 4 and "--compile" in runs[1] and "train-compiled-ma" in runs[3]
    env.update(BASELINE="", EXTRA="", SKIP="1 2", COMPILED_SAMPLE_BATCHES="1")
    out = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu.sh")], capture_output=True, text=True, env=env)
    runs = [x for x in out.stdout.splitlines() if x.startswith("benchmarks/bench_ldm.py")]
    assert len(runs) == 1 and runs[0].endswith("--variants sample-compiled-graph --sample-batches 1")


def test_bench_ldm_script_lists_the_variants():
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_ldm.py"), "--variants", "list"],
                         capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert [x.split()[0] for x in out.stdout.splitlines()] == list(VARIANTS)
    out = subprocess.run(["bash", "-n", str(ROOT / "benchmarks" / "gpu.sh")], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


@pytest.mark.slow
def test_bench_variants_compiled_variants_run_on_cpu():
    # torch.compile on a CPU (a C++ compiler, minutes on two cores): the wrapping the GPU run relies on.
    lines = []
    r = bench_variants("tiny", ("sample-compiled-graph", "train-compiled", "train-compiled-graph"), device="cpu",
                       train_batch=2, train_steps=1, warmup=1, sample_batches=(1,), sample_steps=2,
                       progress=lines.append)
    assert check_variants(r) == [], lines
    res = r["sample"]["sample-compiled-graph"][1]
    assert res["max_abs_diff"] <= 1e-4 * res["ref_max_abs"]
    assert set(r["train"]) == {"train-compiled", "train-compiled-graph"}
