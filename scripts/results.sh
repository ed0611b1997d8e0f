#!/usr/bin/env bash
# `make results`: the study of docs/RESULTS.md on benchmark v2's held-out episodes. Needs the runs of
# scripts/default_model.sh (the benchmark, its windows store, av/vae/sync_encoder). Resumable: finished stages
# and evaluated clips are skipped when it is run again.
#
# Rows: our design (the sync stream; the shipped model) and the paper's (cross-attention only: the same v1 ldm,
# av, vae and store, fine-tuned as long on the same windows without the stream), each with the retrieved /
# quiet / none audio condition; the model without audio condition (video only: ours fine-tuned further without
# its audio condition); the retrieval baseline; the codec ceiling (the ground truth through our VAE + vocoder);
# the ground truth (every table's last row); a steps curve of our
# design. Every row is scored on the same clips and seeds, with one judge of the DeSync-like offset (the run's
# sync encoder, the one the default model ships), and the centre impulse's scores beside it.
set -euo pipefail
cd "$(dirname "$0")/.."
A2S=".venv/bin/action2sound"
RUN="${RUN:-runs/default}"
BENCH="$RUN/bench"
STUDY="${STUDY:-runs/results}"
DESYNC="${DESYNC:-$RUN}"  # whose sync encoder judges the DeSync-like offset: the run's (or the shipped model's)
LIMIT="${LIMIT:-42}"
SEEDS="${SEEDS:-3}"
PAPER_STEPS="${PAPER_STEPS:-5000}"  # the paper design's fine-tune: as many steps as the shipped model's
VO_STEPS="${VO_STEPS:-1500}"  # the video-only fine-tune
SYNC_CURVE="${SYNC_CURVE:-1 2 5}"  # sync guidance weights beside the model's own (seed 0)
MODEL="src/action2sound/default_model"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
mkdir -p "$STUDY"

ev() {  # ev LABEL ARGS...
  local label=$1; shift
  $A2S evaluate --data "$BENCH" --out "$STUDY/$label" --limit "$LIMIT" --desync "$DESYNC" --label "$label" \
    --quiet "$@"
}

# The comparison models: the same av, vae and store; only the ldm differs.
cmp_model() {  # cmp_model NAME STEPS LINKS SETTINGS...: train an ldm, export it with the linked stages
  local name=$1 steps=$2 links=$3; shift 3
  local run="$STUDY/runs/$name"
  mkdir -p "$run"
  for s in $links; do ln -sfn "$(realpath "$RUN/$s")" "$run/$s"; done  # (ldm: --init in SETTINGS)
  [ -f "$run/ldm/summary.json" ] || $A2S train ldm --preset small --data "$RUN/store" --out "$run" \
    --max-steps "$steps" --checkpoint-every 250 --quiet "$@" \
    $( [ -f "$run/ldm/checkpoints/last.ckpt" ] && echo --resume )
  [ -f "$STUDY/models/$name/model.json" ] || $A2S export "$run" --out "$STUDY/models/$name"
  [ -f "$STUDY/models/$name/index/index.json" ] || \
    $A2S index build --store "$RUN/store" --model "$STUDY/models/$name" --out "$STUDY/models/$name/index"
}

# Our design first (the shipped model): the rows the targets are read from.
ev "ours, retrieved" --model "$MODEL" --ambient retrieved --seeds "$SEEDS" --shift-test
ev "ours, quiet" --model "$MODEL" --ambient quiet --seeds "$SEEDS"
ev "ours, none" --model "$MODEL" --ambient none --seeds "$SEEDS"
ev "retrieval baseline" --model "$MODEL" --baseline retrieval --seeds 1
# The ceiling of every metric for this model: the ground truth through its own VAE and vocoder (deterministic).
ev "codec (ground truth through our VAE + vocoder)" --model "$MODEL" --baseline codec --seeds 1
for steps in 5 10 50; do
  ev "ours, retrieved, $steps steps" --model "$MODEL" --ambient retrieved --seeds 1 --steps "$steps"
done
for w in $SYNC_CURVE; do  # the sync guidance curve: the model's own weight is "ours, retrieved"
  ev "ours, retrieved, sync guidance $w" --model "$MODEL" --ambient retrieved --seeds 1 --sync-guidance "$w"
done

# The paper's design (no sync stream) and the model without audio condition (our design, video only).
cmp_model paper "$PAPER_STEPS" "av vae" --init "$RUN/v1/ldm/weights.safetensors" --set sync_stream.enabled=false \
  --set diffusion.audio_guidance_scale=3
ev "paper design, retrieved" --model "$STUDY/models/paper" --ambient retrieved --seeds "$SEEDS" --shift-test
ev "paper design, quiet" --model "$STUDY/models/paper" --ambient quiet --seeds "$SEEDS"
ev "paper design, none" --model "$STUDY/models/paper" --ambient none --seeds "$SEEDS"
cmp_model videoonly "$VO_STEPS" "av vae sync_encoder" --init "$RUN/ldm/weights.safetensors" --set cond.use_audio=false
# The video-only model samples with the shipped model's sync guidance (its own manifest leaves it at 1).
SG=$(.venv/bin/python -c "import json, sys; print(json.load(open(sys.argv[1]))['preset']['diffusion'].get(
  'sync_guidance_scale', 1.0))" "$MODEL/model.json")
ev "video only (no audio condition)" --model "$STUDY/models/videoonly" --ambient none --seeds "$SEEDS" \
  --sync-guidance "$SG"

.venv/bin/python - "$STUDY" "$MODEL" <<'PY'
import json, sys
from pathlib import Path
from action2sound.evaluation.report import markdown_table, plot_curve
from action2sound.weights import read_model_json
study = Path(sys.argv[1])
main = ["ours, retrieved", "ours, quiet", "ours, none", "paper design, retrieved", "paper design, quiet",
        "paper design, none", "video only (no audio condition)", "retrieval baseline",
        "codec (ground truth through our VAE + vocoder)"]
curve = ["ours, retrieved, 5 steps", "ours, retrieved, 10 steps", "ours, retrieved", "ours, retrieved, 50 steps"]
load = lambda name: json.loads((study / name / "summary.json").read_text())
text = "## Main table\n\n" + markdown_table([load(n) for n in main if (study / n / "summary.json").is_file()])
curve_runs = [load(n) for n in curve if (study / n / "summary.json").is_file()]
text += "\n## Steps curve (ours, retrieved; 5, 10, 25, 50 steps)\n\n" + markdown_table(curve_runs, groundtruth=False)
diffusion = read_model_json(sys.argv[2])["preset"]["diffusion"]
if curve_runs:  # seed 0 of each run: the curve's rows have one seed
    plot_curve(study / "steps_curve.png", curve_runs, "steps", diffusion["sample_steps"], "sampler steps", log=True)
    text += "\n![the steps curve, seed 0](steps_curve.png)\n"
guided = [load(p.parent.name) for p in sorted(study.glob("ours, retrieved, sync guidance */summary.json"))]
if guided:  # the sync guidance curve, seed 0, with the model's own weight from "ours, retrieved"
    guided += [load("ours, retrieved")] if (study / "ours, retrieved" / "summary.json").is_file() else []
    own = diffusion.get("sync_guidance_scale", 1.0)
    guided.sort(key=lambda s: own if s["settings"].get("sync_guidance") is None else s["settings"]["sync_guidance"])
    text += "\n## Sync guidance curve (ours, retrieved, seed 0)\n\n" + markdown_table(guided, groundtruth=False)
    plot_curve(study / "sync_guidance_curve.png", guided, "sync_guidance", own, "sync guidance")
    text += "\n![the sync guidance curve, seed 0](sync_guidance_curve.png)\n"
for name in ("ours, retrieved", "paper design, retrieved"):
    if (study / name / "shift.json").is_file():
        s = json.loads((study / name / "shift.json").read_text())
        rows = ", ".join(f"{d} s: {v['followed']}/{v['eligible']}" for d, v in s["delays"].items())
        stayed = f"; {s['stayed']} stayed at their time" if "stayed" in s else ""
        text += f"\nShift test, {name}: {s['followed']}/{s['eligible']} onsets follow ({rows}){stayed}.\n"
# Which differences are more than the test set's noise (paired bootstrap over the clips; `action2sound compare`).
from action2sound.evaluation.compare import compare_runs, markdown as compare_markdown, plot as plot_compare
for title, runs, png in (("the paper's design against ours (retrieved)",
                          ["ours, retrieved", "paper design, retrieved"], "compare_paper.png"),
                         ("the quiet condition against the video-only model (leakage)",
                          ["video only (no audio condition)", "ours, quiet", "paper design, quiet"],
                          "compare_quiet.png")):
    runs = [n for n in runs if (study / n / "records.jsonl").is_file()]
    if len(runs) > 1:
        result = compare_runs([study / n for n in runs], labels=runs)
        plot_compare(study / png, result)
        text += f"\n## Within the noise? {title}\n\n" + compare_markdown(result) + f"\n![{title}]({png})\n"
(study / "table.md").write_text(text)
print(study / "table.md")
PY
