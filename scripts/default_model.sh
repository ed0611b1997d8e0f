#!/usr/bin/env bash
# Reproduce the embedded default model (`make default-model`): the `small` preset, sync stream on, trained by the
# project's own commands on benchmark v2 built with real recordings (`data soundbank`: CC0/GPL sounds from Debian
# packages; the procedural bank when apt-get cannot fetch them), exported into src/action2sound/default_model/.
# Resumable: run it again after a kill and every finished stage is skipped, an unfinished one resumes.
# The av, vae and sync_encoder stages are independent and run side by side (one thread each).
set -euo pipefail
cd "$(dirname "$0")/.."
A2S=".venv/bin/action2sound"
RUN="${RUN:-runs/default}"
BENCH="$RUN/bench"
OUT="${OUT:-src/action2sound/default_model}"
BANK="${BANK:-$RUN/bank}"
AV_STEPS="${AV_STEPS:-300}"
VAE_STEPS="${VAE_STEPS:-600}"
SYNC_STEPS="${SYNC_STEPS:-2000}"
LDM_STEPS="${LDM_STEPS:-2500}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
mkdir -p "$RUN"

# Training episodes use seed 0; the demo's held-out episodes use another seed (action2sound.demo.DEMO_SEED).
if [ ! -f "$BENCH/benchmark.json" ]; then
  [ -f "$BANK/LICENSES.md" ] || $A2S data soundbank "$BANK" || { echo "== no sound bank: procedural sounds"; BANK=procedural; }
  $A2S data benchmark "$BENCH" --episodes 32 --seed 0 --size 128 --bank "$BANK"
fi

# Training windows: every 3 s window, one per second, of the benchmark's train episodes (4x the narrated clips,
# and windows the narration never picked: quiet stretches, off-screen sounds), so that no stage can learn the
# clips by heart. The benchmark's test episodes stay out; its test.tsv is what `evaluate` scores.
WIN="$RUN/windows"
if [ ! -f "$WIN/clips.tsv" ]; then
  mkdir -p "$WIN/videos"
  for uid in $(tail -n +2 "$BENCH/train.tsv" | cut -f1 | sort -u); do
    ln -sfn "$(realpath "$BENCH/episodes/$uid.mp4")" "$WIN/videos/$uid.mp4"
  done
  $A2S data manifest folder "$WIN/videos" --hop 1 --out "$WIN/clips.tsv"  # written atomically
fi

stage() {  # stage NAME STEPS ARGS... : train unless finished, resuming a killed run
  local name=$1 steps=$2; shift 2
  if [ -f "$RUN/$name/summary.json" ]; then echo "== $name: done"; return; fi
  local resume=()
  [ -f "$RUN/$name/checkpoints/last.ckpt" ] && resume=(--resume)
  echo "== $name: training ($steps steps)"
  $A2S train "$name" --preset small --out "$RUN" --max-steps "$steps" --checkpoint-every 200 "${resume[@]}" "$@"
}

stage av "$AV_STEPS" --data "$WIN/clips.tsv" --quiet & av=$!
stage vae "$VAE_STEPS" --data "$WIN/clips.tsv" --quiet & vae=$!
stage sync_encoder "$SYNC_STEPS" --data "$WIN/clips.tsv" --quiet --cache-mb 2048 & sync=$!
wait $av && wait $vae && wait $sync
$A2S preencode --data "$WIN/clips.tsv" --model "$RUN" --out "$RUN/store" --workers 2
stage ldm "$LDM_STEPS" --data "$RUN/store"

rm -rf "$OUT.tmp" && $A2S export "$RUN" --out "$OUT.tmp"
$A2S index build --store "$RUN/store" --model "$OUT.tmp" --out "$OUT.tmp/index"
rm -f "$OUT.tmp/index/source.json"  # the shipped index carries its latents; the training store stays behind
mkdir -p "$OUT.tmp/training"
for s in av vae sync_encoder ldm; do
  cp "$RUN/$s/summary.json" "$OUT.tmp/training/$s.summary.json"
  cp "$(ls -d "$RUN/$s"/logs/version_* | tail -n 1)/metrics.csv" "$OUT.tmp/training/$s.metrics.csv"
done
rm -rf "$OUT" && mv "$OUT.tmp" "$OUT"
du -sh "$OUT"
