"""`make demo`: build a few held-out benchmark episodes and show them on one HTML page.

The page shows each clip's video (with its sound), its ground-truth stems and its contact sheet (frames over
waveform and spectrogram). Generation joins the page once a trained default model ships.
"""

from __future__ import annotations

import csv
import html
import time
from pathlib import Path

# A seed that no training run of the embedded default uses, so the demo's episodes are held out.
DEMO_SEED = 90210


def run_demo(out: Path, episodes: int = 2, clips_per_page: int = 4, size: int = 128) -> Path:
    """Build a small benchmark under `out`, draw contact sheets, write `out/index.html`; return its path."""
    from .data.benchmark import build_benchmark
    from .data.contact_sheet import contact_sheet

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    bench = out / "benchmark"
    # Episodes of 20-30 s keep the demo quick; the benchmark command defaults to longer ones.
    build_benchmark(bench, episodes=episodes, seed=DEMO_SEED, size=size, episode_seconds=(20.0, 30.0))
    with open(bench / "all.tsv", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    rows = _spread(rows, clips_per_page)

    cards = []
    for row in rows:
        clip = bench / "clips" / row["clip_file"]
        clip_id = Path(row["clip_file"]).stem
        gt = bench / "groundtruth" / clip_id
        sheet = out / "sheets" / f"{clip_id}.png"
        sheet.parent.mkdir(exist_ok=True)
        contact_sheet(clip, sheet, events=gt / "events.json")
        cards.append(_card(out, row, clip, gt, sheet))

    page = out / "index.html"
    page.write_text(_PAGE.format(
        n=len(cards), seed=DEMO_SEED, seconds=time.perf_counter() - t0, cards="\n".join(cards)))
    return page.resolve()


def _spread(rows: list[dict], n: int) -> list[dict]:
    """Up to n rows, taken from different episodes first."""
    by_video: dict[str, list[dict]] = {}
    for row in rows:
        by_video.setdefault(row["video_uid"], []).append(row)
    picked: list[dict] = []
    while len(picked) < n and any(by_video.values()):
        for clips in by_video.values():
            if clips and len(picked) < n:
                picked.append(clips.pop(len(clips) // 2))
    return picked


def _rel(out: Path, path: Path) -> str:
    return html.escape(Path(path).resolve().relative_to(out.resolve()).as_posix())


def _card(out: Path, row: dict, clip: Path, gt: Path, sheet: Path) -> str:
    from .data.manifest import clean_narration

    stems = "".join(
        f'<div><span>{name}</span><audio controls preload="none" src="{_rel(out, gt / f"{name}.wav")}"></audio></div>'
        for name in ("action", "ambient", "offscreen") if (gt / f"{name}.wav").exists()
    )
    return f"""<section>
  <h2>{html.escape(clean_narration(row['clip_text']))} <small>{html.escape(Path(row['clip_file']).stem)}</small></h2>
  <div class="row">
    <video controls preload="metadata" width="256" src="{_rel(out, clip)}"></video>
    <div class="stems"><b>ground-truth stems</b>{stems}</div>
  </div>
  <img src="{_rel(out, sheet)}" alt="frames, waveform and spectrogram of {html.escape(row['clip_file'])}">
</section>"""


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Action2Sound demo</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; color: #222; }}
section {{ border-top: 1px solid #ddd; padding: 1em 0; }}
.row {{ display: flex; gap: 2em; align-items: flex-start; }}
.stems div {{ display: flex; align-items: center; gap: .5em; margin: .3em 0; }}
.stems span {{ width: 6em; }}
img {{ max-width: 100%; margin-top: .8em; }}
small {{ color: #888; font-weight: normal; }}
</style></head>
<body>
<h1>Action2Sound demo: the ambient-aware benchmark</h1>
<p>{n} clips from held-out episodes (seed {seed}), built in {seconds:.0f} s. Each clip shows its video with the
mixed sound, the separate ground-truth stems (action, ambient, off-screen) and a contact sheet with the
frames over the waveform and the mel spectrogram; ticks mark the visible contacts.</p>
{cards}
</body></html>
"""
