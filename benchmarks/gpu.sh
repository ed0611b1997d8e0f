#!/usr/bin/env bash
# The GPU numbers of the paper-preset latent diffusion model, in under 5 minutes (run it where there is a GPU):
#   training samples/s at batch 90 (bf16 autocast, SDPA, torch.compile, fused AdamW),
#   25-step guided DPM-Solver++ sampling: latency at batch 1 (compiled with CUDA graphs), ms/clip at batch 50,
#   and the peak memory of each phase. Targets: >= 1,600 samples/s, <= 100 ms at batch 1, <= 8 ms/clip at 50.
# Every line is printed as soon as it is measured, so a run cut by the time limit still shows what it got.
#     bash benchmarks/gpu.sh                  # PYTHON=.venv/bin/python by default; LIMIT=280 seconds
#     NO_COMPILE=1 bash benchmarks/gpu.sh     # eager (no compilation time), for comparison
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
COMPILE=--compile
if [ -n "${NO_COMPILE:-}" ]; then COMPILE=; fi
mkdir -p out
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH} timeout "${LIMIT:-280}" "$PYTHON" benchmarks/bench_ldm.py \
    --presets paper --device cuda --train-batch 90 --train-steps 20 --sample-batches 1 50 --sample-steps 25 \
    $COMPILE --json "${JSON:-out/gpu_bench.json}"
