"""Is one evaluated run better than another, or within the noise? Paired bootstrap over clips.

`evaluate` reports each metric's mean and spread over seeds; the seeds share the clips, so that spread leaves out
the larger uncertainty of a 42-clip test set (one clip more or less moves control r by a few hundredths). Two runs
on the same clips and seeds are compared here by resampling the clips with replacement, the same draw for every
run (paired), and recomputing each metric as `evaluate` does (pooled over a seed's clips, then the mean over
seeds). A difference whose 95 % interval excludes zero is called better or worse; otherwise it is within the noise
of this test set. (Percentile bootstrap: Efron & Tibshirani, An Introduction to the Bootstrap, 1993, ch. 13.)

FAD is left out: it is a distance between two sets' embedding statistics, biased on a resample with repeats.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import Action2SoundError
from .set_metrics import pooled_metrics

# (metric key in `evaluate`'s summary, label, +1 higher is better / -1 lower is better / 0 neither, format)
METRICS = (
    ("onset_f1@50ms", "onset F1 ±50 ms", 1, "{:.3f}"),
    ("onset_f1@100ms", "onset F1 ±100 ms", 1, "{:.3f}"),
    ("onset_ap", "onset AP", 1, "{:.3f}"),
    ("off_centre_recall", "off-centre recall", 1, "{:.3f}"),
    ("hallucination_per_s", "hallucinations / s", -1, "{:.2f}"),
    ("kind_accuracy", "kind accuracy", 1, "{:.3f}"),
    ("controllability_r", "control r", 1, "{:.3f}"),
    ("leakage_median", "leakage (median)", -1, "{:.4f}"),
    ("desync_ms", "DeSync ms", -1, "{:.0f}"),
    ("ambient_db", "ambient dB", 0, "{:.1f}"),
)
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Interval:
    """A point estimate with its percentile-bootstrap interval; None where the metric is undefined."""

    value: float | None
    low: float | None
    high: float | None


def _generated(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The generated outputs among an evaluate folder's records: not its references (seed None), not failures."""
    return [r for r in records if "error" not in r and r.get("seed") is not None]


def load_records(run: Path) -> list[dict[str, Any]]:
    """An `evaluate` folder's generated outputs (not its references, not its failures)."""
    path = Path(run) / "records.jsonl"
    if not path.is_file():
        raise Action2SoundError(f"{run}: no records.jsonl here; give the --out folder of an `action2sound "
                                f"evaluate` run")
    records = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                r = json.loads(line)
            except json.JSONDecodeError:
                raise Action2SoundError(f"{path}: line {n} is not JSON; rerun the `evaluate` command to repair "
                                        f"the folder") from None
            records.append(r)
    records = _generated(records)
    if not records:
        raise Action2SoundError(f"{path}: no generated outputs in it; finish the `evaluate` run first")
    return records


def _grid(runs: Sequence[list[dict[str, Any]]], names: Sequence[str]
          ) -> tuple[list[str], list[int], list[dict[tuple[str, int], dict[str, Any]]]]:
    """The clips and seeds every run has, and each run's records by (clip, seed)."""
    tables = [{(r["clip_id"], int(r["seed"])): r for r in rs} for rs in runs]
    common = set.intersection(*(set(t) for t in tables))
    by_seed: dict[int, set[str]] = {}
    for c, s in common:
        by_seed.setdefault(s, set()).add(c)
    # A full clips x seeds grid, so that every seed's metric is over the same clips in every run; a seed that a
    # run has not finished is left out rather than shrinking the clips.
    most = max((len(v) for v in by_seed.values()), default=0)
    seeds = sorted(s for s, v in by_seed.items() if len(v) == most)
    clips = sorted(set.intersection(*(by_seed[s] for s in seeds))) if seeds else []
    if len(clips) < 3:
        raise Action2SoundError(f"{', '.join(names)}: fewer than 3 clips with the same seeds in every run "
                                f"({len(clips)}); evaluate the runs on the same --data, --limit and --seeds")
    return clips, seeds, tables


def _metrics(table: dict[tuple[str, int], dict[str, Any]], clips: Sequence[str], seeds: Sequence[int]
             ) -> dict[str, float | None]:
    """Each metric pooled over the clips (repeats allowed) per seed, then the mean over the seeds."""
    per_seed = [pooled_metrics([table[(c, s)] for c in clips]) for s in seeds]
    out: dict[str, float | None] = {}
    for key, *_ in METRICS:
        vals = [m.get(key) for m in per_seed]
        vals = [float(v) for v in vals if isinstance(v, (int, float)) and math.isfinite(v)]
        out[key] = float(np.mean(vals)) if vals else None
    return out


def _interval(point: float | None, draws: list[float]) -> Interval:
    if point is None or not draws:
        return Interval(point, None, None)
    tail = 100.0 * (1.0 - CONFIDENCE) / 2.0
    low, high = np.percentile(draws, [tail, 100.0 - tail])
    return Interval(point, float(low), float(high))


def compare_runs(runs: Sequence[Path], boot: int = 2000, seed: int = 0,
                 labels: Sequence[str] | None = None) -> dict[str, Any]:
    """Each run's metrics and each later run's difference from the first, with paired-bootstrap intervals.

    -> {"labels", "runs", "clips", "seeds", "boot", "confidence", "values": {label: {metric: Interval}},
        "differences": {label: {metric: Interval}} (run minus the first run; not for the first),
        "verdicts": {label: {metric: "better" | "worse" | "within noise" | "–"}}}
    """
    if len(runs) < 2:
        raise Action2SoundError("compare needs two or more evaluate folders: the first is the baseline")
    if labels and len(labels) != len(runs):
        raise Action2SoundError(f"--label given {len(labels)} times for {len(runs)} runs; give one per run, in "
                                f"order, or none")
    labels = list(labels) if labels else [Path(r).name or str(r) for r in runs]
    if len(set(labels)) != len(labels):
        labels = [str(r) for r in runs]
    result = bootstrap([load_records(Path(r)) for r in runs], labels, boot, seed)
    result["runs"] = [str(r) for r in runs]
    return result


def bootstrap(runs: Sequence[list[dict[str, Any]]], labels: Sequence[str], boot: int = 2000, seed: int = 0
              ) -> dict[str, Any]:
    """`compare_runs` on records in memory; with one run, its metrics' intervals alone."""
    if boot < 100:
        raise Action2SoundError(f"--boot {boot}: use 100 or more resamples (default 2000)")
    clips, seeds, tables = _grid(runs, labels)
    points = [_metrics(t, clips, seeds) for t in tables]
    rng = np.random.default_rng(seed)
    draws: list[dict[str, list[float]]] = [{k: [] for k, *_ in METRICS} for _ in runs]
    diffs: list[dict[str, list[float]]] = [{k: [] for k, *_ in METRICS} for _ in runs]
    for _ in range(boot):
        sample = [clips[i] for i in rng.integers(0, len(clips), len(clips))]
        ms = [_metrics(t, sample, seeds) for t in tables]
        for i, m in enumerate(ms):
            for k, v in m.items():
                if v is None:
                    continue
                draws[i][k].append(v)
                if i and ms[0][k] is not None:
                    diffs[i][k].append(v - ms[0][k])
    values, differences, verdicts = {}, {}, {}
    for i, name in enumerate(labels):
        values[name] = {k: _interval(points[i][k], draws[i][k]) for k, *_ in METRICS}
        if not i:
            continue
        differences[name] = {}
        verdicts[name] = {}
        for k, _, sign, _ in METRICS:
            a, b = points[0][k], points[i][k]
            d = _interval(None if a is None or b is None else b - a, diffs[i][k])
            differences[name][k] = d
            verdicts[name][k] = _verdict(d, sign)
    return {"labels": list(labels), "clips": len(clips), "seeds": seeds, "boot": boot, "confidence": CONFIDENCE,
            "values": values, "differences": differences, "verdicts": verdicts}


def interval_lines(records: list[dict[str, Any]], boot: int = 1000) -> list[str]:
    """A run's own intervals over its clips, as markdown lines for its report (none under 3 clips)."""
    outputs = _generated(records)
    if len({r["clip_id"] for r in outputs}) < 3:
        return []
    res = bootstrap([outputs], ["run"], boot)
    cells = [f"{label} {_fmt(res['values']['run'][k], fmt)}" for k, label, _, fmt in METRICS
             if res["values"]["run"][k].value is not None]
    pct = round(100 * res["confidence"])
    return [f"{pct} % intervals over the {res['clips']} clips (bootstrap, {boot} resamples; the ± above is the "
            f"spread over seeds on the same clips; `action2sound compare` tells two runs apart): "
            + "; ".join(cells) + "."]


def _verdict(d: Interval, sign: int) -> str:
    if d.value is None or d.low is None or sign == 0:
        return "–"
    if d.low > 0 or d.high < 0:
        return "better" if (d.low > 0) == (sign > 0) else "worse"
    return "within noise"


def _fmt(iv: Interval, fmt: str, signed: bool = False) -> str:
    if iv.value is None:
        return "–"
    f = fmt.replace("{:", "{:+") if signed else fmt
    if iv.low is None:
        return f.format(iv.value)
    return f"{f.format(iv.value)} [{f.format(iv.low)}, {f.format(iv.high)}]"


def markdown(result: dict[str, Any]) -> str:
    """One table per later run: the baseline's value, the run's, the difference, each with its interval."""
    base = result["labels"][0]
    pct = round(100 * result["confidence"])
    text = [f"Paired bootstrap over {result['clips']} clips ({result['boot']} resamples; seeds "
            f"{', '.join(map(str, result['seeds']))}); [{pct} % interval].", ""]
    for name in result["labels"][1:]:
        text += [f"**{name}** against **{base}**", "",
                 f"| metric | {base} | {name} | difference | verdict |", "|---|---|---|---|---|"]
        for k, label, _, fmt in METRICS:
            a, b, d = result["values"][base][k], result["values"][name][k], result["differences"][name][k]
            if a.value is None and b.value is None:
                continue
            text.append(f"| {label} | {_fmt(a, fmt)} | {_fmt(b, fmt)} | {_fmt(d, fmt, True)} | "
                        f"{result['verdicts'][name][k]} |")
        text.append("")
    return "\n".join(text)


def to_json(result: dict[str, Any]) -> dict[str, Any]:
    def iv(x: Interval) -> list[float | None]:
        return [x.value, x.low, x.high]

    out = {k: v for k, v in result.items() if k not in ("values", "differences")}
    out["values"] = {n: {k: iv(x) for k, x in m.items()} for n, m in result["values"].items()}
    out["differences"] = {n: {k: iv(x) for k, x in m.items()} for n, m in result["differences"].items()}
    return out


def plot(path: Path, result: dict[str, Any]) -> None:
    """Each later run's differences from the baseline with their intervals, one panel per metric."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = result["labels"][1:]
    keys = [(k, label, sign) for k, label, sign, _ in METRICS
            if any(result["differences"][n][k].value is not None for n in names)]
    cols = min(3, len(keys))
    rows = math.ceil(len(keys) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 0.5 + (0.35 * len(names) + 0.9) * rows),
                             squeeze=False)
    colours = {"better": "tab:green", "worse": "tab:red"}
    for ax, (k, label, sign) in zip(axes.flat, keys):
        for y, n in enumerate(names):
            d = result["differences"][n][k]
            if d.value is None:
                continue
            c = colours.get(result["verdicts"][n][k], "0.4")
            if d.low is not None:
                ax.plot([d.low, d.high], [y, y], color=c, lw=2)
            ax.plot([d.value], [y], "o", color=c)
        ax.axvline(0.0, color="k", lw=0.8)
        arrow = {1: " (higher is better)", -1: " (lower is better)"}.get(sign, "")
        ax.set_title(label + arrow, fontsize=8)
        ax.set_yticks(range(len(names)), names, fontsize=7)
        ax.set_ylim(len(names) - 0.3, -0.7)  # the first run on top, as in the tables
        ax.tick_params(axis="x", labelsize=7)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    fig.suptitle(f"difference from {result['labels'][0]} ({round(100 * result['confidence'])} % paired bootstrap "
                 f"over {result['clips']} clips)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_comparison(out: Path, result: dict[str, Any]) -> Path:
    """OUT/compare.md, OUT/compare.json and OUT/compare.png; -> the markdown file."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "compare.json").write_text(json.dumps(to_json(result), indent=1) + "\n")
    plot(out / "compare.png", result)
    md = out / "compare.md"
    md.write_text("# Comparison\n\n" + markdown(result) + "\n![differences](compare.png)\n")
    return md
