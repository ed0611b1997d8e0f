"""`action2sound evaluate`: generate for a set of clips, measure everything, write a report; resumable.

One run is one row of a study: a model directory, an ambient condition (or a baseline), a vocoder, K seeds.
A study (docs/RESULTS.md) is a loop over runs and `markdown_table` over their summaries.

This module is the loop; its parts live beside it: `settings` (EvalSettings), `clips` (which clips, their
ground truth), `measure` (ClipContext, Measurer), `baselines` (the outputs: model or baseline), `report`
(summary, markdown table, plots).

The run, in steps:
1. the clips: a benchmark folder (its `<split>.tsv`), a store, or a clip table / Ego4D-Sounds TSV; their
   ground truth (stems + events) when they are benchmark clips;
2. per batch of clips, once: the reference record (the clip's own audio, the ground truth: the table's
   ceiling row), the video embedding, the sync classifier's frames;
3. per seed: the output of each clip (the model through `Pipeline.generate`, or a baseline), then its
   metrics; each record is one JSON line of OUT/records.jsonl, written after its audio and embeddings, so a
   killed run resumes where it stopped (keys already there are skipped);
4. at the end: FAD per seed against the references, AV-Sync, the means over clips and over seeds, ambient
   controllability, retrieval R@k; OUT/summary.json, OUT/results.md, OUT/controllability.png,
   OUT/spectrograms.png.

OUT layout: settings.json, records.jsonl, audio/<key>.wav, embeddings/<key>.npz (fad [frames, D], av_audio
[E]), plus the files above. A key is `<clip_id>#gt` (reference) or `<clip_id>#s<seed>`.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from .. import media
from ..data.store import write_json_atomic
from ..errors import Action2SoundError
from ..pipeline import load_pipeline
from .baselines import Generator, Output
from .clips import load_eval_clips
from .measure import ClipContext, Measurer, build_measurer
from .report import markdown_table, summarise, write_report
from .settings import EvalSettings
from .shift import shift_test

__all__ = ["EvalReport", "EvalSettings", "evaluate", "markdown_table"]

RECORDS = "records.jsonl"
SETTINGS = "settings.json"
# Settings that may change between a run and its resumption (they add keys or change nothing measured).
_RESUMABLE = ("limit", "seeds", "progress", "label", "device", "batch_size", "spectrograms", "kind_train_clips")


@dataclass(frozen=True)
class EvalReport:
    """Where a run's report is and what it says."""

    out: Path
    summary: dict[str, Any]
    done: int  # records written by this call
    skipped: int  # records found from an earlier call
    failed: int


def _read_records(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    records = []
    for line in path.read_text().splitlines():
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line cut by a kill: its key is redone
    return records


def _check_settings(out: Path, settings: EvalSettings) -> None:
    f = out / SETTINGS
    mine = {k: v for k, v in asdict(settings).items() if k not in _RESUMABLE}
    if f.is_file():
        old = {k: v for k, v in json.loads(f.read_text()).items() if k not in _RESUMABLE}
        diff = sorted(k for k in set(old) | set(mine) if old.get(k) != mine.get(k))
        if diff:
            raise Action2SoundError(f"{out} holds an evaluation with other settings ({', '.join(diff)}); pass a new "
                                    "--out, or the same settings to resume it")
    out.mkdir(parents=True, exist_ok=True)
    f.write_text(json.dumps(asdict(settings), indent=1) + "\n")


def _save_record(out: Path, key: str, record: dict[str, Any], wave: np.ndarray, rate: int,
                 arrays: dict[str, np.ndarray]) -> None:
    safe = key.replace("#", "_")
    (out / "audio").mkdir(exist_ok=True)
    (out / "embeddings").mkdir(exist_ok=True)
    media.write_audio(out / "audio" / f"{safe}.wav", wave, rate)
    tmp = out / "embeddings" / f".{safe}.partial.npz"
    np.savez(tmp, **arrays)
    tmp.replace(out / "embeddings" / f"{safe}.npz")
    record = {**record, "audio": f"audio/{safe}.wav", "embeddings": f"embeddings/{safe}.npz"}
    with open(out / RECORDS, "a") as f:  # last: a key in records.jsonl means its files are whole
        f.write(json.dumps(record) + "\n")


def evaluate(settings: EvalSettings) -> EvalReport:
    """Run (or resume) one evaluation (module docstring) -> EvalReport."""
    settings.check()
    t0 = time.perf_counter()
    out = Path(settings.out)
    clips = load_eval_clips(settings.data, settings.split, settings.limit)
    _check_settings(out, settings)
    pipe = load_pipeline(settings.model, device=settings.device, index=settings.index, vocoder=settings.vocoder)
    measurer = build_measurer(settings, pipe, clips)
    generator = Generator(settings, pipe)

    done_keys = {r["key"] for r in _read_records(out / RECORDS) if "error" not in r}
    seeds = list(range(settings.seeds))
    todo = sum((f"{it.clip.clip_id}#gt" not in done_keys)
               + sum(f"{it.clip.clip_id}#s{s}" not in done_keys for s in seeds) for it in clips)
    skipped = len(clips) * (1 + len(seeds)) - todo
    done = failed = attempted = 0
    cache = out / "clips"
    bar = tqdm(total=todo, unit="output", desc="evaluate", disable=not settings.progress, dynamic_ncols=True)
    for i in range(0, len(clips), settings.batch_size):
        batch = clips[i : i + settings.batch_size]
        keys = [[f"{it.clip.clip_id}#gt"] + [f"{it.clip.clip_id}#s{s}" for s in seeds] for it in batch]
        if all(k in done_keys for ks in keys for k in ks):
            continue
        ctxs = [measurer.context(it, cache) for it in batch]
        # The reference: the clip's own audio, measured exactly like an output.
        for ctx in ctxs:
            key = f"{ctx.item.clip.clip_id}#gt"
            if key in done_keys:
                continue
            _write(out, measurer, ctx, key, None, "groundtruth", Output(ctx.gt_wave, {"mode": "groundtruth"}))
            done += 1
            bar.update(1)
        for seed in seeds:
            pending = [c for c in ctxs if f"{c.item.clip.clip_id}#s{seed}" not in done_keys]
            if not pending:
                continue
            try:
                outputs = generator.outputs(pending, seed)
            except Action2SoundError as err:
                outputs = [err] * len(pending)
            for ctx, o in zip(pending, outputs):
                key = f"{ctx.item.clip.clip_id}#s{seed}"
                attempted += 1
                if isinstance(o, Exception):
                    failed += 1
                    with open(out / RECORDS, "a") as f:
                        f.write(json.dumps({"key": key, "clip_id": ctx.item.clip.clip_id, "seed": seed,
                                            "error": str(o)}) + "\n")
                else:
                    _write(out, measurer, ctx, key, seed, settings.baseline if settings.baseline != "none"
                           else "model", o)
                    done += 1
                bar.update(1)
    bar.close()
    if failed and failed == attempted:
        raise Action2SoundError(f"every output failed (see {out / RECORDS}); first: "
                                f"{next(r['error'] for r in _read_records(out / RECORDS) if 'error' in r)}")
    records = _latest(_read_records(out / RECORDS))
    wanted = {f"{it.clip.clip_id}#{tag}" for it in clips for tag in ["gt"] + [f"s{s}" for s in seeds]}
    records = [r for r in records if r["key"] in wanted]
    summary = summarise(records, out, settings, time.perf_counter() - t0)
    if settings.shift_test and settings.baseline == "none":
        shift = _shift_test(out, settings, pipe, clips)
        summary["shift_test"] = shift
        summary["mean"]["shift_follow"] = shift["share"]
        summary["mean"]["shift_stay"] = shift.get("stay_share")  # a shift.json from before it has none
    write_report(out, summary, records, settings, pipe.preset)
    return EvalReport(out, summary, done, skipped, failed)


def _shift_test(out: Path, settings: EvalSettings, pipe, clips: list) -> dict[str, Any]:
    """The shift test of the run (evaluation/shift.py), kept in OUT/shift.json so that a rerun reuses it."""
    path = out / "shift.json"
    if path.is_file():
        return json.loads(path.read_text())
    bench = Path(settings.data)
    if not (bench / "benchmark.json").is_file():
        raise Action2SoundError(f"--shift-test needs a benchmark folder as --data (its long episodes); got {bench}")
    bar = tqdm(total=len(clips), unit="clip", desc="shift test", disable=not settings.progress, dynamic_ncols=True)
    result = shift_test(pipe, clips, bench, out / "clips", seed=0, options=settings.generate_options(),
                        progress=lambda done, total: bar.update(done - bar.n))
    bar.close()
    write_json_atomic(path, result)
    return result


def _latest(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One record per key: the last successful one (an error followed by a retry keeps the retry)."""
    by_key: dict[str, dict[str, Any]] = {}
    for r in records:
        if "error" in r and r["key"] in by_key and "error" not in by_key[r["key"]]:
            continue
        by_key[r["key"]] = r
    return list(by_key.values())


def _write(out: Path, measurer: Measurer, ctx: ClipContext, key: str, seed: int | None, kind: str,
           output: Output) -> None:
    t = time.perf_counter()
    rec, arrays = measurer.measure(ctx, output.wave)
    clip = ctx.item.clip
    record = {"key": key, "clip_id": clip.clip_id, "video_id": clip.video_id, "seed": seed, "output": kind,
              "condition": output.condition, **rec, "measure_seconds": round(time.perf_counter() - t, 3)}
    _save_record(out, key, record, output.wave, measurer.rate, arrays)
