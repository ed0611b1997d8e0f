#!/usr/bin/env bash
# `make results`: the reproduction study on the benchmark (docs/RESULTS.md). Needs the runs of
# scripts/default_model.sh (the benchmark, its store, av/vae). Resumable: finished stages and evaluated clips
# are skipped when it is run again.
set -euo pipefail
cd "$(dirname "$0")/.."
A2S=".venv/bin/action2sound"
RUN="${RUN:-runs/default}"
BENCH="$RUN/bench"
STUDY="${STUDY:-runs/results}"
LIMIT="${LIMIT:-20}"
SEEDS="${SEEDS:-2}"
MODEL="src/action2sound/default_model"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
mkdir -p "$STUDY"

# The AV-Sync classifier.
[ -f "$STUDY/sync/sync/summary.json" ] || \
  $A2S train sync --preset small --data "$BENCH" --out "$STUDY/sync" --max-steps "${SYNC_STEPS:-600}" --quiet
SYNC="$STUDY/sync/sync/weights.safetensors"

ev() {  # ev LABEL ARGS...
  local label=$1; shift
  $A2S evaluate --data "$BENCH" --out "$STUDY/$label" --limit "$LIMIT" --seeds "$SEEDS" --sync "$SYNC" \
    --label "$label" "$@"
}
ev "AV-LDM, retrieved" --model "$MODEL" --ambient retrieved
ev "AV-LDM, quiet" --model "$MODEL" --ambient quiet
ev "random condition" --model "$MODEL" --ambient random
ev "retrieval baseline" --model "$MODEL" --baseline retrieval
ev "Griffin-Lim vocoder" --model "$MODEL" --ambient retrieved --vocoder griffinlim

# SKIP_VO=1 stops here (the rows above need only the default model); a later full run resumes.
[ -n "${SKIP_VO:-}" ] && exit 0

# The "without audio condition" model: the same av/vae/store, an ldm trained with video tokens only.
VO="${VO_RUN:-runs/videoonly}"
mkdir -p "$VO" && ln -sfn "$(realpath "$RUN/av")" "$VO/av" && ln -sfn "$(realpath "$RUN/vae")" "$VO/vae"
[ -f "$VO/ldm/summary.json" ] || $A2S train ldm --preset small --data "$RUN/store" --out "$VO" --max-steps 1500 \
  --checkpoint-every 250 --set cond.use_audio=false --quiet $( [ -f "$VO/ldm/checkpoints/last.ckpt" ] && echo --resume )
[ -f "$STUDY/videoonly_model/model.json" ] || $A2S export "$VO" --out "$STUDY/videoonly_model"
[ -f "$STUDY/videoonly_model/index/index.json" ] || \
  $A2S index build --store "$RUN/store" --model "$STUDY/videoonly_model" --out "$STUDY/videoonly_model/index"

ev "without audio condition" --model "$STUDY/videoonly_model" --ambient none

.venv/bin/python - "$STUDY" <<'PY'
import json, sys
from pathlib import Path
from action2sound.evaluation.runner import markdown_table
study = Path(sys.argv[1])
order = ["AV-LDM, retrieved", "AV-LDM, quiet", "without audio condition", "random condition",
         "retrieval baseline", "Griffin-Lim vocoder"]
summaries = [json.loads((study / name / "summary.json").read_text()) for name in order]
(study / "table.md").write_text(markdown_table(summaries))
print(study / "table.md")
PY
