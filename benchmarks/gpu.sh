#!/usr/bin/env bash
# The GPU numbers of the paper-preset latent diffusion model (860.6 M parameters), each step under its own time
# limit; every line is printed as soon as it is measured, so a step cut short still leaves what it measured.
# Default: about 5.5 minutes of device time (at most 7 with every limit reached), three processes of
# benchmarks/bench_ldm.py --variants, the most telling first:
#   1. no compilation (about 1.2 min): 25-step guided sampling at batch 1 and 50 with bf16 weights: diffusers'
#      loop, the planned loop (static_sampling), the planned loop as one CUDA graph (NCHW and channels-last);
#      training at batch 90 eager, with cuDNN autotuning, channels-last, and as one CUDA graph per step (NCHW
#      and channels-last); kernel profiles of one guided denoiser call and of the eager training step. The
#      graph variants of each phase come last in it: a failed capture may leave the device unusable;
#   2. compiled training (one compilation, about 2 min): torch.compile, then the same compiled UNet inside a
#      whole-step CUDA graph;
#   3. compiled sampling (one compilation per batch, about 2.5 min): the bf16 UNet compiled inside the 25-step
#      CUDA graph, batch 1, then batch 50 (COMPILED_SAMPLE_BATCHES="1": batch 1 only, about 1.5 min).
# Targets: >= 1,600 samples/s, <= 100 ms at batch 1, <= 8 ms/clip at 50.
#     bash benchmarks/gpu.sh           # PYTHON=.venv/bin/python by default; JSON results under out/
#     CHECK=1     ...  also benchmarks/cuda_check.py first (the default model on CUDA against the CPU)
#     BASELINE=1  ...  also bench_ldm's plain eager and --compile runs (the numbers the variants are compared to)
#     EXTRA=1     ...  also compiled training with mode reduce-overhead and max-autotune-no-cudagraphs (long)
#     SKIP="2 3"  ...  skip default steps by number
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
OUTDIR=${OUTDIR:-out}
SKIP=" ${SKIP:-} "
mkdir -p "$OUTDIR"
export PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
status=0
if [ -n "${CHECK:-}" ]; then timeout "${CHECK_LIMIT:-100}" "$PYTHON" benchmarks/cuda_check.py || status=1; fi
bench() {  # $1: time limit, $2: json name, then extra arguments
    local limit=$1 json=$2
    shift 2
    echo "== bench_ldm.py $* (limit ${limit} s)"
    # --sample-batches given last (in "$@") replaces the default.
    timeout "$limit" "$PYTHON" benchmarks/bench_ldm.py --presets paper --device cuda --train-batch 90 \
        --sample-steps 25 --json "$OUTDIR/$json" --sample-batches 1 50 "$@" || status=1
}
if [ -n "${BASELINE:-}" ]; then
    bench "${EAGER_LIMIT:-120}" gpu_bench_eager.json --train-steps 20
    bench "${COMPILE_LIMIT:-280}" gpu_bench_compiled.json --train-steps 20 --compile
fi
case $SKIP in *" 1 "*) ;; *)
    bench "${VARIANTS_LIMIT:-130}" gpu_variants_eager.json --train-steps 10 --variants \
        sample-bf16 sample-planned profile-sample sample-graph sample-graph-cl \
        train train-cudnn train-cl profile-train train-graph train-cl-graph ;;
esac
case $SKIP in *" 2 "*) ;; *)
    bench "${TRAIN_COMPILE_LIMIT:-150}" gpu_variants_train_compiled.json --train-steps 10 --variants \
        train-compiled train-compiled-graph ;;
esac
case $SKIP in *" 3 "*) ;; *)
    # shellcheck disable=SC2086  # the batches are words
    bench "${SAMPLE_COMPILE_LIMIT:-170}" gpu_variants_sample_compiled.json --variants sample-compiled-graph \
        --sample-batches ${COMPILED_SAMPLE_BATCHES:-1 50} ;;
esac
if [ -n "${EXTRA:-}" ]; then
    bench "${EXTRA_LIMIT:-300}" gpu_variants_train_extra.json --train-steps 10 --variants \
        train-compiled-ro train-compiled-ma
fi
exit $status
