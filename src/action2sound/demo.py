"""`make demo`: generate the sound of held-out benchmark clips in every ambient mode, on one HTML page.

1. build two episodes of the ambient-aware benchmark with a seed no training run used (held out);
2. load the embedded default model (`src/action2sound/default_model`, made by `make default-model`);
3. for a few clips, generate with ambient `retrieved`, `quiet`, `none` and another episode's recording;
4. generate one whole episode (tens of seconds: windows, cross-fades, the ambient carried across seams);
5. measure each output against the ground-truth stems and write `index.html` with the videos, the ground
   truth, the pictures and a metrics table.
Without the default model the page shows the benchmark clips and their contact sheets only.
"""

from __future__ import annotations

import csv
import html
import json
import time
from pathlib import Path

import numpy as np

from .api import Action2Sound
from .benchmark import build_benchmark
from .benchmark.contact_sheet import contact_sheet
from .data.readers import clean_narration
from .evaluation import benchmark_metrics as bm
from .levels import ambient_level_db
from .media import read_audio_file
from .mel import wave_to_mel

# A seed that no training run of the embedded default uses, so the demo's episodes are held out.
DEMO_SEED = 90210
DEFAULT_MODEL = Path(__file__).parent / "default_model"
MODES = ("retrieved", "quiet", "none", "file")


def run_demo(out: Path, episodes: int = 2, clips: int = 3, size: int = 128, seed: int = 0) -> Path:
    """Build held-out episodes under `out`, generate their sound, write `out/index.html`; return its path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    bench = out / "benchmark"
    if not (bench / "benchmark.json").is_file():
        # Episodes of 20-30 s keep the demo quick; the benchmark command defaults to longer ones.
        build_benchmark(bench, episodes=episodes, seed=DEMO_SEED, size=size, episode_seconds=(20.0, 30.0))
    with open(bench / "all.tsv", newline="") as f:
        rows = _spread(list(csv.DictReader(f, delimiter="\t")), clips)

    model = _load_default_model()
    cards, table = [], []
    for i, row in enumerate(rows):
        clip = bench / "clips" / row["clip_file"]
        clip_id = Path(row["clip_file"]).stem
        gt = bench / "groundtruth" / clip_id
        sheet = out / "sheets" / f"{clip_id}.png"
        sheet.parent.mkdir(exist_ok=True)
        contact_sheet(clip, sheet, events=gt / "events.json")
        generated = {}
        if model is not None:
            # The "file" mode takes its ambient from a clip of another episode.
            other = next(r for r in rows[i + 1:] + rows[:i] if r["video_uid"] != row["video_uid"]) \
                if len({r["video_uid"] for r in rows}) > 1 else row
            ambient_file = bench / "clips" / other["clip_file"]
            for mode in MODES:
                ambient = str(ambient_file) if mode == "file" else mode
                res = model.generate(clip, ambient=ambient, seed=seed)
                paths = res.save(out / "generated" / mode, name=clip_id)
                metrics = _metrics(res.audio, res.sample_rate, gt)
                generated[mode] = (paths, metrics, res.metadata)
                table.append((clip_id, mode, metrics))
        cards.append(_card(out, row, clip, gt, sheet, generated))

    episode_card = ""
    if model is not None:
        episode = sorted((bench / "episodes").glob("*.mp4"))[0]
        res = model.generate(episode, ambient="retrieved", seed=seed)
        paths = res.save(out / "generated" / "episode", name=episode.stem)
        episode_card = _episode_card(out, episode, paths, res.metadata)

    page = out / "index.html"
    page.write_text(_PAGE.format(
        n=len(cards), seed=DEMO_SEED, seconds=time.perf_counter() - t0,
        model=html.escape(str(DEFAULT_MODEL.name)) if model is not None else "none (run make default-model)",
        metrics=_metrics_table(table), cards="\n".join(cards), episode=episode_card))
    return page.resolve()


def _load_default_model():
    if not (DEFAULT_MODEL / "model.json").is_file():
        return None
    return Action2Sound.from_pretrained(DEFAULT_MODEL, device="cpu")


def _metrics(audio: np.ndarray, rate: int, gt: Path) -> dict[str, float]:
    """Generated audio against the clip's ground truth: ambient level, log-mel distances (lower = closer), and
    the onsets found within +-50 ms of a visible contact (hits, contacts, onsets: a micro F1 over clips)."""
    def mel(wave):
        return wave_to_mel(wave, "universal22k")

    gen = mel(audio)
    stems = {name: read_audio_file(gt / f"{name}.wav", rate) for name in ("mix", "action", "ambient")}
    events = json.loads((gt / "events.json").read_text())
    onset = bm.contact_onset_score(bm.detect_onsets(audio, rate), events, audio.size / rate, 0.05)
    return {
        "onset_hits": onset.hits, "onset_reference": onset.n_reference, "onset_estimated": onset.n_estimated,
        "ambient_db": ambient_level_db(audio, rate),
        "gt_ambient_db": ambient_level_db(stems["ambient"], rate),
        "mel_l1_mix": float(np.abs(gen - mel(stems["mix"])).mean()),
        "mel_l1_action": float(np.abs(gen - mel(stems["action"])).mean()),
    }


def _metrics_table(table: list[tuple[str, str, dict[str, float]]]) -> str:
    if not table:
        return "<p>No default model is installed, so nothing was generated.</p>"
    by_mode: dict[str, list[dict[str, float]]] = {}
    for _, mode, m in table:
        by_mode.setdefault(mode, []).append(m)
    rows = "".join(
        f"<tr><td>{mode}</td><td>{np.mean([m['ambient_db'] for m in ms]):.1f}</td>"
        f"<td>{np.mean([m['gt_ambient_db'] for m in ms]):.1f}</td>"
        f"<td>{np.mean([m['mel_l1_mix'] for m in ms]):.3f}</td>"
        f"<td>{np.mean([m['mel_l1_action'] for m in ms]):.3f}</td><td>{_f1(ms)}</td></tr>"
        for mode, ms in by_mode.items())
    return ("<table><tr><th>ambient mode</th><th>generated ambient (dB)</th><th>true ambient (dB)</th>"
            "<th>mel L1 to the true mix</th><th>mel L1 to the true action stem</th>"
            "<th>onset F1 (±50 ms)</th></tr>" + rows + "</table>"
            "<p class='note'>Means over the clips above. Ambient level: energy of the quietest 0.5 s window. "
            "Mel L1: mean absolute difference of the normalised mels (0 = identical). Onset F1: onsets of the "
            "generated sound within ±50 ms of a visible contact, pooled over the clips.</p>")


def _f1(ms: list[dict[str, float]]) -> str:
    hits = sum(m["onset_hits"] for m in ms)
    n = sum(m["onset_reference"] + m["onset_estimated"] for m in ms)
    return f"{2.0 * hits / n:.2f}" if n else "–"


def _spread(rows: list[dict], n: int) -> list[dict]:
    """Up to n rows, taken from different episodes first."""
    by_video: dict[str, list[dict]] = {}
    for row in rows:
        by_video.setdefault(row["video_uid"], []).append(row)
    picked: list[dict] = []
    while len(picked) < n and any(by_video.values()):
        for group in by_video.values():
            if group and len(picked) < n:
                picked.append(group.pop(len(group) // 2))
    return picked


def _rel(out: Path, path: Path) -> str:
    return html.escape(Path(path).resolve().relative_to(out.resolve()).as_posix())


def _card(out: Path, row: dict, clip: Path, gt: Path, sheet: Path, generated: dict) -> str:
    stems = "".join(
        f'<div><span>{name}</span><audio controls preload="none" src="{_rel(out, gt / f"{name}.wav")}"></audio></div>'
        for name in ("action", "ambient", "offscreen") if (gt / f"{name}.wav").exists()
    )
    gens = ""
    for mode, (paths, metrics, meta) in generated.items():
        cond = meta.get("condition", {})
        source = ", ".join(c["clip_id"] for c in cond.get("clips", [])) or Path(cond.get("file", "")).name or "null"
        gens += f"""<div class="gen"><h3>ambient: {mode} <small>condition: {html.escape(source)}</small></h3>
  <video controls preload="metadata" width="256" src="{_rel(out, paths['video'])}"></video>
  <img src="{_rel(out, paths['image'])}" alt="generated spectrogram, ambient {mode}">
  <p class="note">ambient {metrics['ambient_db']:.1f} dB (true {metrics['gt_ambient_db']:.1f} dB)</p></div>"""
    return f"""<section>
  <h2>{html.escape(clean_narration(row['clip_text']))} <small>{html.escape(Path(row['clip_file']).stem)}</small></h2>
  <div class="row">
    <div><b>ground truth</b><br><video controls preload="metadata" width="256" src="{_rel(out, clip)}"></video></div>
    <div class="stems"><b>ground-truth stems</b>{stems}</div>
  </div>
  <img src="{_rel(out, sheet)}" alt="frames, waveform and spectrogram of {html.escape(row['clip_file'])}">
  <div class="gens">{gens}</div>
</section>"""


def _episode_card(out: Path, episode: Path, paths: dict, meta: dict) -> str:
    windows = len(meta.get("windows", []))
    return f"""<section><h2>A whole episode <small>{html.escape(episode.name)}</small></h2>
<p>{meta.get('duration', 0):.1f} s generated in {windows} windows with equal-power cross-fades; each window after the
first is conditioned on the previous window's audio, so the ambient runs on across the seams (dashed lines).</p>
<video controls preload="metadata" width="384" src="{_rel(out, paths['video'])}"></video>
<img src="{_rel(out, paths['image'])}" alt="generated spectrogram of the whole episode"></section>"""


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Action2Sound demo</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 1150px; margin: 2em auto; color: #222; }}
section {{ border-top: 1px solid #ddd; padding: 1em 0; }}
.row {{ display: flex; gap: 2em; align-items: flex-start; }}
.stems div {{ display: flex; align-items: center; gap: .5em; margin: .3em 0; }}
.stems span {{ width: 6em; }}
.gens {{ display: grid; grid-template-columns: 1fr 1fr; gap: 1em; }}
.gen img {{ width: 100%; }}
img {{ max-width: 100%; margin-top: .8em; }}
small, .note {{ color: #777; font-weight: normal; }}
table {{ border-collapse: collapse; }} td, th {{ border: 1px solid #ccc; padding: .3em .7em; text-align: right; }}
</style></head>
<body>
<h1>Action2Sound demo</h1>
<p>{n} clips from held-out episodes of the ambient-aware benchmark (seed {seed}); model: {model}; page built in
{seconds:.0f} s. For each clip: the ground truth (video with its sound, the separate stems, a contact sheet with
ticks at the visible contacts), then the sound the model generated from the silent frames with each ambient
condition: <b>retrieved</b> (the audio of the training clip that looks most alike), <b>quiet</b> (a low-ambient
training clip: the action alone), <b>none</b> (the learned null condition), and <b>file</b> (the recording of a clip
from another episode).</p>
<h2>Metrics</h2>
{metrics}
{cards}
{episode}
</body></html>
"""
