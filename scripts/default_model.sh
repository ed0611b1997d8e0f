#!/usr/bin/env bash
# Reproduce the embedded default model (`make default-model`) by its own recipe, in two steps, with the project's
# own commands; exported into src/action2sound/default_model/.
#
# 1. v1: benchmark v1 (every clip centred on a contact; procedural sounds): av, vae and an ldm *without* the
#    sync stream on its narrated clips. Trained from scratch on v2's windows instead, the ldm learns near-silence
#    (most windows are quiet: docs/RESULTS.md), so the sound is learned here first.
# 2. v2: benchmark v2 (contacts anywhere in a clip; real recordings from Debian packages via `data soundbank`,
#    the procedural bank when apt-get cannot fetch them): the sync encoder on its 1 s-hop windows, `preencode`
#    of the windows with it, and the v1 ldm fine-tuned there with the stream (its input channels start at zero)
#    and a stored audio guidance of 3 (without it the fine-tuned model takes the ambient from the video).
# 3. ambient swaps: every training episode's picture and action with two other training episodes' ambients
#    (`data ambient-swaps`), so that only the audio condition tells the ambient; the v2 ldm fine-tuned on the
#    windows plus the swaps' windows, stored audio guidance 8 and sync guidance 3 (docs/RESULTS.md, session 9).
#
# Resumable: run it again after a kill and every finished stage is skipped, an unfinished one resumes. About
# 2.5 h on 2 CPU cores (av and vae run side by side, one thread each). Step counts are variables (e.g. for a
# smoke run: EPISODES=4 AV_STEPS=2 ... RUN=runs/smoke OUT=runs/smoke/model scripts/default_model.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
A2S=".venv/bin/action2sound"
RUN="${RUN:-runs/default}"
V1="$RUN/v1"
BENCH="$RUN/bench"
OUT="${OUT:-src/action2sound/default_model}"
BANK="${BANK:-$RUN/bank}"
EPISODES="${EPISODES:-32}"
AV_STEPS="${AV_STEPS:-150}"
VAE_STEPS="${VAE_STEPS:-600}"
V1_LDM_STEPS="${V1_LDM_STEPS:-1500}"
SYNC_STEPS="${SYNC_STEPS:-2000}"
LDM_STEPS="${LDM_STEPS:-5000}"
SWAP_STEPS="${SWAP_STEPS:-3000}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
mkdir -p "$RUN" "$V1"

stage() {  # stage RUN_DIR NAME STEPS ARGS... : train unless finished, resuming a killed run
  local run=$1 name=$2 steps=$3; shift 3
  if [ -f "$run/$name/summary.json" ]; then echo "== $run/$name: done"; return; fi
  local resume=()
  [ -f "$run/$name/checkpoints/last.ckpt" ] && resume=(--resume)
  echo "== $run/$name: training ($steps steps)"
  $A2S train "$name" --preset small --out "$run" --max-steps "$steps" --checkpoint-every 200 "${resume[@]}" "$@"
}

windows() {  # windows DIR VIDEO...: DIR/clips.tsv, every 3 s window one per second of the videos (linked)
  local dir=$1; shift
  [ -f "$dir/clips.tsv" ] && return
  mkdir -p "$dir/videos"
  for f in "$@"; do ln -sfn "$(realpath "$f")" "$dir/videos/"; done
  $A2S data manifest folder "$dir/videos" --hop 1 --out "$dir/clips.tsv"  # written atomically
}

# ---- 1. v1: learn to make the benchmark's sounds (training episodes use seed 0; the demo's held-out episodes
# another, action2sound.demo.DEMO_SEED).
[ -f "$V1/bench/benchmark.json" ] || \
  $A2S data benchmark "$V1/bench" --episodes "$EPISODES" --seed 0 --size 128 --layout centred
stage "$V1" av "$AV_STEPS" --data "$V1/bench" --quiet & av=$!
stage "$V1" vae "$VAE_STEPS" --data "$V1/bench" --quiet & vae=$!
wait $av && wait $vae
$A2S preencode --data "$V1/bench" --model "$V1" --out "$V1/store" --quiet
stage "$V1" ldm "$V1_LDM_STEPS" --data "$V1/store" --set sync_stream.enabled=false

# ---- 2. v2: the sync stream, on windows where contacts fall anywhere.
if [ ! -f "$BENCH/benchmark.json" ]; then
  [ -f "$BANK/LICENSES.md" ] || $A2S data soundbank "$BANK" || { echo "== no sound bank: procedural sounds"; BANK=procedural; }
  $A2S data benchmark "$BENCH" --episodes "$EPISODES" --seed 0 --size 128 --bank "$BANK"
fi
# Training windows: every 3 s window, one per second, of the benchmark's train episodes (quiet stretches and
# off-screen sounds too). The benchmark's test episodes stay out; its test.tsv is what `evaluate` scores.
WIN="$RUN/windows"
windows "$WIN" $(tail -n +2 "$BENCH/train.tsv" | cut -f1 | sort -u | sed "s#.*#$BENCH/episodes/&.mp4#")
for s in av vae; do ln -sfn "$(realpath "$V1/$s")" "$RUN/$s"; done  # the v1 encoders, as the shipped model has
stage "$RUN" sync_encoder "$SYNC_STEPS" --data "$WIN/clips.tsv" --quiet --cache-mb 2048
$A2S preencode --data "$WIN/clips.tsv" --model "$RUN" --out "$RUN/store" --workers 2 --quiet
stage "$RUN" ldm "$LDM_STEPS" --data "$RUN/store" --init "$V1/ldm/weights.safetensors" \
  --set diffusion.audio_guidance_scale=3

# ---- 3. ambient swaps: the windows of the training episodes and of their swaps, in one store.
SWAPS="$RUN/swaps"
FINAL="$RUN/final"  # the exported run: the v2 encoders and the fine-tuned ldm
[ -f "$SWAPS/swaps.json" ] || $A2S data ambient-swaps "$BENCH" --out "$SWAPS" --partners 2 --quiet
windows "$FINAL/windows" "$WIN"/videos/*.mp4 "$SWAPS"/*.mp4
for s in av vae sync_encoder; do ln -sfn "$(realpath "$RUN/$s")" "$FINAL/$s"; done
$A2S preencode --data "$FINAL/windows/clips.tsv" --model "$RUN" --out "$FINAL/store" --workers 2 --quiet
stage "$FINAL" ldm "$SWAP_STEPS" --data "$FINAL/store" --init "$RUN/ldm/weights.safetensors" \
  --set diffusion.audio_guidance_scale=8 --set diffusion.sync_guidance_scale=3

# The index holds the training episodes' own windows (real sound, one entry per window), not the swaps.
rm -rf "$OUT.tmp" && $A2S export "$FINAL" --out "$OUT.tmp"
$A2S index build --store "$RUN/store" --model "$OUT.tmp" --out "$OUT.tmp/index"
rm -f "$OUT.tmp/index/source.json"  # the shipped index carries its latents; the training store stays behind
mkdir -p "$OUT.tmp/training"
copy_logs() {  # copy_logs RUN_DIR STAGE NAME
  cp "$1/$2/summary.json" "$OUT.tmp/training/$3.summary.json"
  cp "$(ls -d "$1/$2"/logs/version_* | tail -n 1)/metrics.csv" "$OUT.tmp/training/$3.metrics.csv"
}
copy_logs "$V1" av av && copy_logs "$V1" vae vae && copy_logs "$V1" ldm ldm_v1
copy_logs "$RUN" sync_encoder sync_encoder && copy_logs "$RUN" ldm ldm_v2 && copy_logs "$FINAL" ldm ldm
rm -rf "$OUT" && mv "$OUT.tmp" "$OUT"
du -sh "$OUT"
