"""The report of a run: the summary over its records (per seed, mean and std over seeds, the reference row),
the markdown table (one row per run: a study's table), results.md and the two figures."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import soundfile

from .. import __version__
from ..config import Preset
from ..mel import wave_to_mel
from . import benchmark_metrics as bm
from .compare import interval_lines
from .fad import fad
from .set_metrics import pooled_metrics
from .settings import EvalSettings


def _fad(out: Path, records: Sequence[dict[str, Any]], refs: dict[str, dict[str, Any]]) -> float | None:
    a, b = [], []
    for r in records:
        ref = refs.get(r["clip_id"])
        if ref is None:
            continue
        ea, eb = np.load(out / r["embeddings"]), np.load(out / ref["embeddings"])
        if "fad" not in ea or "fad" not in eb:
            return None
        a.append(ea["fad"])
        b.append(eb["fad"])
    if not a or min(sum(len(x) for x in a), sum(len(x) for x in b)) < 2:
        return None
    return fad(np.concatenate(a), np.concatenate(b))


def _retrieval(out: Path, records: Sequence[dict[str, Any]], refs: dict[str, dict[str, Any]]) -> dict[str, float]:
    video, audio = [], []
    for r in records:
        ref = refs.get(r["clip_id"])
        if ref is None:
            continue
        audio.append(np.load(out / r["embeddings"])["av_audio"])
        video.append(np.load(out / ref["embeddings"])["video"])
    if len(video) < 2:
        return {}
    return bm.recall_at_k(np.stack(video), np.stack(audio))


def summarise(records: list[dict[str, Any]], out: Path, settings: EvalSettings,
              seconds: float) -> dict[str, Any]:
    """The summary of a run from its records: per seed, mean and std over seeds, and the reference row."""
    ok = [r for r in records if "error" not in r]
    refs = {r["clip_id"]: r for r in ok if r["seed"] is None}
    seeds = sorted({r["seed"] for r in ok if r["seed"] is not None})
    per_seed = {}
    for s in seeds:
        rs = [r for r in ok if r["seed"] == s]
        m = pooled_metrics(rs)
        m["fad"] = _fad(out, rs, refs)
        m.update({f"gen_{k}": v for k, v in _retrieval(out, rs, refs).items()})
        per_seed[str(s)] = m
    reference = pooled_metrics(list(refs.values()))
    reference["fad"] = _fad(out, list(refs.values()), refs)
    reference.update(_retrieval(out, list(refs.values()), refs))
    names = sorted({k for m in per_seed.values() for k, v in m.items() if isinstance(v, (int, float))})
    mean, std = {}, {}
    for k in names:
        vals = [m[k] for m in per_seed.values() if isinstance(m.get(k), (int, float))]
        mean[k] = float(np.mean(vals)) if vals else None
        std[k] = float(np.std(vals)) if vals else None
    return {
        "label": settings.row_label, "settings": asdict(settings), "clips": len(refs), "seeds": seeds,
        "failed": sum(1 for r in records if "error" in r),
        "fad_embedder": settings.fad_embedder, "sync_classifier": settings.sync,
        "mean": mean, "std": std, "per_seed": per_seed, "groundtruth": reference,
        "seconds_this_call": round(seconds, 2), "version": __version__,
    }


COLUMNS = (  # (summary key, header, format)
    ("fad", "FAD ↓", "{:.3f}"), ("av_sync", "AV-Sync % ↑", "{:.1f}"), ("av_sim", "AV-Sim ↑", "{:.3f}"),
    ("onset_f1", "onset F1 ↑", "{:.3f}"), ("onset_f1@50ms", "F1 ±50 ms ↑", "{:.3f}"),
    ("onset_f1@100ms", "F1 ±100 ms ↑", "{:.3f}"), ("onset_ap", "onset AP ↑", "{:.3f}"),
    ("off_centre_recall", "off-centre rec. ↑", "{:.3f}"),
    ("centre_impulse_f1@50ms", "centre impulse F1 ±50 ms", "{:.3f}"), ("desync_ms", "DeSync ms ↓", "{:.0f}"),
    ("shift_follow", "shift test ↑", "{:.2f}"),
    ("kind_accuracy", "kind acc ↑", "{:.3f}"),
    ("leakage", "leakage ↓", "{:.3f}"), ("hallucination_per_s", "halluc./s ↓", "{:.2f}"),
    ("controllability_r", "control r ↑", "{:.3f}"), ("ambient_db", "ambient dB", "{:.1f}"),
)


def _cell(mean: Any, std: Any, fmt: str, seeds: int) -> str:
    if mean is None:
        return "–"
    text = fmt.format(mean)
    if seeds > 1 and std is not None:
        text += " ± " + fmt.format(std)
    return text


def markdown_table(summaries: Sequence[dict[str, Any]], groundtruth: bool = True) -> str:
    """One markdown table over runs' summaries (a study's table); the first run's ground truth row last."""
    head = "| run | " + " | ".join(h for _, h, _ in COLUMNS) + " |"
    lines = [head, "|" + "---|" * (len(COLUMNS) + 1)]
    for s in summaries:
        n = len(s["seeds"])
        lines.append(f"| {s['label']} | " + " | ".join(_cell(s["mean"].get(k), s["std"].get(k), f, n)
                                                       for k, _, f in COLUMNS) + " |")
    if groundtruth and summaries:
        g = summaries[0]["groundtruth"]
        lines.append("| ground truth | " + " | ".join(_cell(g.get(k), None, f, 1) for k, _, f in COLUMNS) + " |")
    return "\n".join(lines) + "\n"


CURVE_METRICS = (("onset_f1@50ms", "onset F1 ±50 ms ↑"), ("onset_ap", "onset AP ↑"), ("fad", "FAD ↓"),
                 ("desync_ms", "DeSync ms ↓"), ("controllability_r", "control r ↑"))


def curve_points(summaries: Sequence[dict[str, Any]], setting: str, default: float
                 ) -> dict[str, list[tuple[float, float]]]:
    """Runs that differ only in one setting (e.g. "steps") -> {metric: [(value, seed 0's figure), ...] by value}.

    Seed 0 for every run, so a run evaluated with more seeds is compared on the same noise as one with a single
    seed; a run whose settings leave the setting unset used the model's default (`default`)."""
    points: dict[str, list[tuple[float, float]]] = {k: [] for k, _ in CURVE_METRICS}
    for s in summaries:
        value = s["settings"].get(setting)
        value = default if value is None else value
        seed0 = s.get("per_seed", {}).get("0", {})
        for k, _ in CURVE_METRICS:
            if seed0.get(k) is not None:
                points[k].append((value, float(seed0[k])))
    return {k: sorted(v) for k, v in points.items()}


def plot_curve(path: Path, summaries: Sequence[dict[str, Any]], setting: str, default: float, xlabel: str,
               log: bool = False) -> None:
    """One panel per metric of `CURVE_METRICS` against a setting (`curve_points`), the ground truth dashed."""
    from ..plotting import figure, save_png

    points = curve_points(summaries, setting, default)
    truth = summaries[0]["groundtruth"] if summaries else {}
    fig = figure(2.8)
    axes = fig.subplots(1, len(CURVE_METRICS))
    for ax, (k, title) in zip(axes, CURVE_METRICS):
        if points[k]:
            x, y = zip(*points[k])
            ax.plot(x, y, "o-")
            if log:
                ax.set_xscale("log")
                ax.minorticks_off()
            ax.set_xticks(x, [f"{v:g}" for v in x])
        if truth.get(k) is not None and k != "fad":
            ax.axhline(truth[k], ls="--", c="k", lw=0.8, label="ground truth")
            ax.legend(fontsize=7)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel(xlabel)
    fig.tight_layout()
    save_png(fig, path)


def write_report(out: Path, summary: dict[str, Any], records: list[dict[str, Any]], settings: EvalSettings,
                 preset: Preset) -> None:
    """summary.json, results.md and the two figures."""
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    g = summary["groundtruth"]
    recall = ", ".join(f"{k} {g[k]:.3f}" for k in ("R@1", "R@5", "R@10") if g.get(k) is not None)
    text = [f"# Evaluation: {summary['label']}", "",
            f"{summary['clips']} clips of `{settings.data}` (split {settings.split}), seeds {summary['seeds']}, "
            f"model `{settings.model}`, FAD embedder `{settings.fad_embedder}`"
            + (f", sync classifier `{settings.sync}`" if settings.sync else ", no sync classifier (--sync)") + ".",
            "", markdown_table([summary]), ""]
    text += interval_lines(records)
    if recall:
        text.append(f"Video→audio retrieval of the AV model on these clips: {recall}.")
    text += ["", "![controllability](controllability.png)", "", "![spectrograms](spectrograms.png)", ""]
    (out / "results.md").write_text("\n".join(text))
    _plot_controllability(out / "controllability.png", records, summary["label"])
    _plot_spectrograms(out / "spectrograms.png", out, records, preset, settings.spectrograms)


def _plot_controllability(path: Path, records: list[dict[str, Any]], label: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = [(r["condition"]["ambient_db"], r["ambient_db"]) for r in records
           if r.get("seed") is not None and "error" not in r and r.get("condition", {}).get("ambient_db") is not None
           and r.get("ambient_db") is not None]
    fig, ax = plt.subplots(figsize=(4.5, 4.5), dpi=110)
    if pts:
        c, g = np.array(pts).T
        ax.scatter(c, g, s=14, alpha=0.7, label=label)
        lo, hi = float(min(c.min(), g.min())) - 3, float(max(c.max(), g.max())) + 3
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8, label="generated = condition")
        ax.legend(fontsize=7)
    else:
        ax.text(0.5, 0.5, "no conditioned outputs", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("condition ambient level (dB)")
    ax.set_ylabel("generated ambient level (dB)")
    ax.set_title("ambient controllability", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _plot_spectrograms(path: Path, out: Path, records: list[dict[str, Any]], preset: Preset, count: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    refs = {r["clip_id"]: r for r in records if r.get("seed") is None and "error" not in r}
    outs = [r for r in records if r.get("seed") == 0 and "error" not in r and r["clip_id"] in refs][:count]
    rows = max(1, len(outs))
    fig, axes = plt.subplots(rows, 2, figsize=(8, 1.8 * rows), dpi=100, squeeze=False)
    for ax_row, r in zip(axes, outs):
        for ax, rec, title in ((ax_row[0], refs[r["clip_id"]], "ground truth"), (ax_row[1], r, r["output"])):
            wave, _ = soundfile.read(str(out / rec["audio"]), dtype="float32")
            ax.imshow(wave_to_mel(wave, preset.audio)[:, : preset.audio.num_frames], origin="lower", aspect="auto",
                      cmap="magma", vmin=0, vmax=1)
            ax.set_title(f"{r['clip_id']}: {title}", fontsize=7)
            ax.set_xticks([])
            ax.set_yticks([])
    if not outs:
        axes[0][0].text(0.5, 0.5, "no outputs", ha="center", va="center")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
