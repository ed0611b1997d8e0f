#!/usr/bin/env bash
# Reproduce the embedded default model (`make default-model`): the `small` preset trained by the project's
# own commands on the procedural benchmark, exported into src/action2sound/default_model/.
# Resumable: run it again after a kill and every finished stage is skipped, an unfinished one resumes.
set -euo pipefail
cd "$(dirname "$0")/.."
A2S=".venv/bin/action2sound"
RUN="${RUN:-runs/default}"
BENCH="$RUN/bench"
OUT="${OUT:-src/action2sound/default_model}"
AV_STEPS="${AV_STEPS:-150}"
VAE_STEPS="${VAE_STEPS:-600}"
LDM_STEPS="${LDM_STEPS:-1500}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
mkdir -p "$RUN"

# Training episodes use seed 0; the demo's held-out episodes use another seed (action2sound.demo.DEMO_SEED).
[ -f "$BENCH/benchmark.json" ] || $A2S data benchmark "$BENCH" --episodes 32 --seed 0 --size 128

stage() {  # stage NAME STEPS ARGS... : train unless finished, resuming a killed run
  local name=$1 steps=$2; shift 2
  if [ -f "$RUN/$name/summary.json" ]; then echo "== $name: done"; return; fi
  local resume=()
  [ -f "$RUN/$name/checkpoints/last.ckpt" ] && resume=(--resume)
  echo "== $name: training ($steps steps)"
  $A2S train "$name" --preset small --out "$RUN" --max-steps "$steps" --checkpoint-every 200 "${resume[@]}" "$@"
}

stage av "$AV_STEPS" --data "$BENCH"
stage vae "$VAE_STEPS" --data "$BENCH"
$A2S preencode --data "$BENCH" --model "$RUN" --out "$RUN/store"
stage ldm "$LDM_STEPS" --data "$RUN/store"

rm -rf "$OUT.tmp" && $A2S export "$RUN" --out "$OUT.tmp"
$A2S index build --store "$RUN/store" --model "$OUT.tmp" --out "$OUT.tmp/index"
rm -f "$OUT.tmp/index/source.json"  # the shipped index carries its latents; the training store stays behind
mkdir -p "$OUT.tmp/training"
for s in av vae ldm; do
  cp "$RUN/$s/summary.json" "$OUT.tmp/training/$s.summary.json"
  cp "$(ls -d "$RUN/$s"/logs/version_* | tail -n 1)/metrics.csv" "$OUT.tmp/training/$s.metrics.csv"
done
rm -rf "$OUT" && mv "$OUT.tmp" "$OUT"
du -sh "$OUT"
