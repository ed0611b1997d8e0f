#!/usr/bin/env bash
# The GPU numbers, in one call of under 9 minutes (run it where there is a GPU):
#   1. cuda_check.py: the embedded default model on CUDA against the CPU (fp32 and bf16 errors, stage times);
#   2. the paper-preset latent diffusion model, eager: training samples/s at batch 90 (bf16 autocast, SDPA, fused
#      AdamW), 25-step guided DPM-Solver++ sampling at batch 1 and 50, peak memory of each phase;
#   3. the same with torch.compile (CUDA graphs for batch 1).
# Targets: >= 1,600 samples/s, <= 100 ms at batch 1, <= 8 ms/clip at 50. Every line is printed as soon as it is
# measured and each step has its own time limit, so a step cut short still leaves the others' numbers.
#     bash benchmarks/gpu.sh                  # PYTHON=.venv/bin/python by default; JSON results under out/
#     NO_COMPILE=1 bash benchmarks/gpu.sh     # steps 1 and 2 only
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
OUTDIR=${OUTDIR:-out}
mkdir -p "$OUTDIR"
export PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
status=0
timeout "${CHECK_LIMIT:-100}" "$PYTHON" benchmarks/cuda_check.py || status=1
bench() {  # $1: time limit, $2: json name, then extra arguments
    local limit=$1 json=$2
    shift 2
    timeout "$limit" "$PYTHON" benchmarks/bench_ldm.py --presets paper --device cuda --train-batch 90 \
        --train-steps 20 --sample-batches 1 50 --sample-steps 25 --json "$OUTDIR/$json" "$@" || status=1
}
bench "${EAGER_LIMIT:-120}" gpu_bench_eager.json
if [ -z "${NO_COMPILE:-}" ]; then bench "${COMPILE_LIMIT:-280}" gpu_bench_compiled.json --compile; fi
exit $status
