"""The metrics of one set of outputs (one seed of a run, or its references), pooled over the set's records as
`evaluate` reports them; `compare` recomputes them on resampled clips."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from . import benchmark_metrics as bm
from .settings import rounded


def mean_of(values: Sequence[float | None]) -> float | None:
    v = [x for x in values if x is not None and math.isfinite(x)]
    return float(np.mean(v)) if v else None


def pooled_metrics(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The metrics of one set of outputs (one seed, or the references)."""
    m: dict[str, Any] = {"clips": len(records)}
    m["av_sim"] = mean_of([r.get("av_sim") for r in records])
    m["ambient_db"] = mean_of([r.get("ambient_db") for r in records])
    sync = [r["in_sync"] for r in records if "in_sync" in r]
    m["av_sync"] = 100.0 * float(np.mean(sync)) if sync else None
    onset = [r["onset"] for r in records if "onset" in r]
    if onset:
        hits = sum(o["hits"] for o in onset)
        n = sum(o["n_reference"] + o["n_estimated"] for o in onset)
        # Pooled over clips (micro F1): a clip with one contact weighs as much as each contact elsewhere.
        m["onset_f1"] = 2.0 * hits / n if n else None
        secs = sum(r.get("seconds", 0.0) for r in records if "onset" in r)
        m["hallucination_per_s"] = sum(r.get("hallucinated", 0) for r in records) / secs if secs else None
        m["leakage"] = mean_of([r.get("leakage") for r in records])
        m["leakage_median"] = (float(np.median([r["leakage"] for r in records if r.get("leakage") is not None]))
                               if any(r.get("leakage") is not None for r in records) else None)
    m.update(_sync_metrics(records))
    offsets = [abs(r["sync_offset_ms"]) for r in records if r.get("sync_offset_ms") is not None]
    if offsets:  # DeSync-like: the median |offset| by the run's sync encoder
        m["desync_ms"] = float(np.median(offsets))
    kinds = [r["kind"] for r in records if "kind" in r]
    if kinds and sum(k[1] for k in kinds):
        m["kind_accuracy"] = sum(k[0] for k in kinds) / sum(k[1] for k in kinds)
    pairs = [(r["condition"].get("ambient_db"), r.get("ambient_db")) for r in records
             if r.get("condition", {}).get("ambient_db") is not None and r.get("ambient_db") is not None]
    if pairs:
        c = bm.controllability([p[0] for p in pairs], [p[1] for p in pairs])
        m["controllability_r"] = rounded(c.r)
        m["controllability_slope"] = rounded(c.slope)
        m["condition_ambient_db"] = mean_of([p[0] for p in pairs])
        m["ambient_error_db"] = mean_of([abs(p[1] - p[0]) for p in pairs])
    return m


def _sync_metrics(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Issue 10's onset metrics, pooled as onset_f1 is, with the centre-impulse baseline on the same clips.

    onset_f1@50ms / @100ms (micro F1), onset_ap (mean over clips with contacts), off_centre_recall (found /
    total contacts > 0.5 s from the window centre), and centre_impulse_* the same for the centre impulse.
    Records written before these existed contribute nothing.
    """
    m: dict[str, Any] = {}
    tol = [r["onset_tol"] for r in records if "onset_tol" in r]
    if not tol:
        return m
    for key in tol[0]:
        hits = sum(t[key][0] for t in tol)
        n = sum(t[key][1] + t[key][2] for t in tol)
        m[f"onset_f1@{key}"] = 2.0 * hits / n if n else None
    m["onset_ap"] = mean_of([r.get("onset_ap") for r in records if "onset_tol" in r])
    off = [r["off_centre"] for r in records if "off_centre" in r]
    total = sum(o[1] for o in off)
    m["off_centre_recall"] = sum(o[0] for o in off) / total if total else None
    m["off_centre_contacts"] = total
    centre = [r["centre_impulse"] for r in records if "centre_impulse" in r]
    for key in ("f1@50ms", "f1@100ms", "ap"):
        m[f"centre_impulse_{key}"] = mean_of([c.get(key) for c in centre])
    c_total = sum(c.get("off_centre_total") or 0.0 for c in centre)
    m["centre_impulse_off_centre_recall"] = (sum(c.get("off_centre_found") or 0.0 for c in centre) / c_total
                                             if c_total else None)
    return m
