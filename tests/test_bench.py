"""The speed benchmark of the ldm (`training.bench`, `benchmarks/gpu.sh`'s engine) runs on a CPU with tiny."""

from __future__ import annotations

import math
import subprocess
from pathlib import Path

from action2sound.training.bench import bench_ldm, check_report, format_report

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


def test_gpu_script_runs_the_paper_preset_on_cuda_with_compile():
    # The script itself needs a GPU; what it asks for is checked here.
    text = (ROOT / "benchmarks" / "gpu.sh").read_text()
    for part in ("--presets paper", "--device cuda", "--train-batch 90", "--sample-batches 1 50",
                 "--sample-steps 25", "--compile", "timeout"):
        assert part in text
    out = subprocess.run(["bash", "-n", str(ROOT / "benchmarks" / "gpu.sh")], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
