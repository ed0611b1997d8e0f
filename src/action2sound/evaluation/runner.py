"""`action2sound evaluate`: generate for a set of clips, measure everything, write a report; resumable.

One run is one row of a study: a model directory, an ambient condition (or a baseline), a vocoder, K seeds.
A study (docs/RESULTS.md) is a loop over runs and `markdown_table` over their summaries.

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
import math
import os
import time
import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import Action2SoundError
from . import benchmark_metrics as bm

BASELINES = ("none", "retrieval", "groundtruth")
AMBIENTS = ("retrieved", "quiet", "none", "random")  # or a file path
RECORDS = "records.jsonl"
SETTINGS = "settings.json"
# Settings that may change between a run and its resumption (they add keys or change nothing measured).
_RESUMABLE = ("limit", "seeds", "progress", "label", "device", "batch_size", "spectrograms", "kind_train_clips")


@dataclass(frozen=True)
class EvalSettings:
    """Everything one `evaluate` run depends on (saved as OUT/settings.json)."""

    model: str
    data: str
    out: str
    ambient: str = "retrieved"  # retrieved | quiet | none | random | an audio/video file
    baseline: str = "none"  # none (the model) | retrieval (the retrieved clip's audio) | groundtruth
    vocoder: str = "auto"  # auto | griffinlim
    seeds: int = 1
    limit: int | None = None
    split: str = "test"  # test | val | train | all
    steps: int | None = None
    index: str | None = None
    sync: str | None = None  # a `train sync` weights file
    fad_embedder: str = "aisfx"  # aisfx | av | vggish | panns | none
    fad_weights: str | None = None  # vggish / panns weight file
    device: str = "auto"
    batch_size: int = 8
    label: str | None = None
    spectrograms: int = 4
    kind_train_clips: int = 400
    progress: bool = True

    def check(self) -> None:
        if self.baseline not in BASELINES:
            raise Action2SoundError(f"--baseline must be one of {', '.join(BASELINES)}, got {self.baseline!r}")
        if self.vocoder not in ("auto", "model", "bridge", "griffinlim"):  # pipeline.VOCODERS
            raise Action2SoundError(f"--vocoder must be auto, model, bridge or griffinlim, got {self.vocoder!r}")
        if self.seeds < 1:
            raise Action2SoundError(f"--seeds must be at least 1, got {self.seeds}")
        if self.limit is not None and self.limit < 1:
            raise Action2SoundError(f"--limit must be at least 1, got {self.limit}")
        if self.split not in ("test", "val", "train", "all"):
            raise Action2SoundError(f"--split must be test, val, train or all, got {self.split!r}")
        if self.ambient not in AMBIENTS and not Path(self.ambient).is_file():
            raise Action2SoundError(f"--ambient {self.ambient}: not one of {', '.join(AMBIENTS)} and no such file")

    @property
    def row_label(self) -> str:
        if self.label:
            return self.label
        if self.baseline != "none":
            return f"{self.baseline} baseline"
        parts = [f"ambient {Path(self.ambient).name if self.ambient not in AMBIENTS else self.ambient}"]
        if self.vocoder in ("griffinlim", "bridge"):
            parts.append({"griffinlim": "Griffin-Lim", "bridge": "universal HiFi-GAN bridge"}[self.vocoder])
        return "model, " + ", ".join(parts)


# ================================================================================================ clips
@dataclass(frozen=True)
class EvalClip:
    """One clip to evaluate: its table row and its ground-truth folder (None outside the benchmark)."""

    clip: Any  # data.manifest.Clip
    groundtruth: Path | None


def _benchmark_root(path: Path, levels: int = 4) -> Path | None:
    for parent in list(path.parents)[:levels]:
        if (parent / "benchmark.json").is_file():
            return parent
    return None


def _with_groundtruth(clips, root: Path | None = None) -> list[EvalClip]:
    out = []
    for c in clips:
        r = root or _benchmark_root(Path(c.media_path))
        gt = r / "groundtruth" / c.clip_id if r is not None else None
        out.append(EvalClip(c, gt if gt is not None and (gt / "events.json").is_file() else None))
    return out


def load_eval_clips(data: str | os.PathLike, split: str = "test", limit: int | None = None) -> list[EvalClip]:
    """The clips of a benchmark folder, a store or a clip table / Ego4D-Sounds TSV, with their ground truth."""
    from ..data.manifest import ClipTable, read_ego4d_sounds

    path = Path(data)
    if path.is_dir() and (path / "benchmark.json").is_file():
        names = ("train", "test") if split == "all" else (split,)
        table = ClipTable()
        for name in names:
            tsv = path / f"{name}.tsv"
            if not tsv.is_file():
                raise Action2SoundError(f"{path}: benchmark has no {tsv.name}; pass --split test, train or all")
            part, _ = read_ego4d_sounds(tsv, path / "clips", split="val" if name == "val" else name)
            table = table + part
        clips = _with_groundtruth(table, path)
    else:
        if path.is_dir() and (path / "store.json").is_file():
            from ..data.store import Store

            table = Store(path).table
        else:
            from ..training.data import load_clip_table

            table = load_clip_table(path)
        if split != "all":
            chosen = table.split(split)
            # A table without that split (an Ego4D test TSV read as train/val, a folder) is used whole.
            table = chosen if len(chosen) else table
        clips = _with_groundtruth(table)
    if not clips:
        raise Action2SoundError(f"--data {path}: no clips for split {split!r}; pass --split all or other data")
    return clips[:limit] if limit else clips


def _clip_media(clip, cache: Path) -> Path:
    """A file holding exactly the clip: its media when that is the clip, else a cut copy under cache."""
    from .. import media

    info = media.probe(clip.media_path)
    if clip.media_start <= 1e-6 and abs(info.duration - clip.duration) < 0.05:
        return Path(clip.media_path)
    out = cache / f"{clip.clip_id}.mp4"
    if not out.is_file():
        fps = info.fps or 25.0
        n = max(1, int(round(clip.duration * fps)))
        frames = media.read_frames(clip.media_path, clip.media_start, clip.duration, n, size=None)
        rate = info.sample_rate or 48_000
        wave = media.read_audio(clip.media_path, clip.media_start, clip.duration, rate, required=False)
        cache.mkdir(parents=True, exist_ok=True)
        media.write_video(out, frames, fps, wave, rate)
    return out


# ================================================================================================ the context
@dataclass
class ClipContext:
    """What every output of a clip is measured against (computed once per clip and run)."""

    item: EvalClip
    path: Path  # the media file generate reads
    gt_wave: np.ndarray  # [num_samples] at the model's rate: the benchmark mix, else the clip's own audio
    gt_rate: int
    events: list[dict] | None
    action_stem: np.ndarray | None  # at gt_stem_rate
    gt_stem_rate: int
    video_emb: np.ndarray  # [E] unit
    sync_frames: np.ndarray | None  # uint8 [2T, S, S, 3] of the sync classifier's preset


@dataclass
class Measurer:
    """The networks and classifiers that score an output (built once per run)."""

    preset: Any
    av: torch.nn.Module
    device: torch.device
    sync: torch.nn.Module | None = None
    embedder: Any = None
    kinds: bm.KindClassifier | None = None
    stats: dict[str, float] = field(default_factory=dict)

    @property
    def rate(self) -> int:
        return self.preset.audio.sample_rate

    def context(self, item: EvalClip, cache: Path) -> ClipContext:
        from .. import media
        from ..data.benchmark import load_clip_groundtruth
        from ..data.store import decode_clip, frames_to_pixels
        from ..mel import fit_wave

        clip = item.clip
        path = _clip_media(clip, cache)
        events, stem, stem_rate = None, None, self.rate
        if item.groundtruth is not None:
            gt = load_clip_groundtruth(item.groundtruth)
            from .embedders import resample

            wave = fit_wave(resample(gt.mix, gt.sample_rate, self.rate), self.preset.audio)
            events, stem, stem_rate = gt.events, gt.action, gt.sample_rate
        else:
            wave = fit_wave(media.read_audio(clip.media_path, clip.media_start, clip.duration, self.rate,
                                             required=False), self.preset.audio)
        frames = decode_clip(clip, self.preset, frames=True, audio=False)["frames"]
        with torch.no_grad():
            pixels = frames_to_pixels(torch.from_numpy(frames)[None].to(self.device), self.preset)
            video_emb = self.av.embed_video(pixels).float().cpu().numpy()[0]
        sync_frames = None
        if self.sync is not None:
            from .sync import data_preset

            sync_frames = decode_clip(clip, data_preset(self.sync.preset), frames=True, audio=False)["frames"]
        return ClipContext(item, path, wave, self.rate, events, stem, stem_rate, video_emb, sync_frames)

    def measure(self, ctx: ClipContext, wave: np.ndarray) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """Metrics of one output wave [num_samples] at the model's rate -> (record fields, arrays to save)."""
        from ..levels import ambient_level_db
        from .embedders import audio_embedding, resample

        rec: dict[str, Any] = {}
        arrays: dict[str, np.ndarray] = {}
        duration = wave.size / self.rate
        rec["ambient_db"] = _r(ambient_level_db(wave, self.rate))
        a = audio_embedding(self.av, [wave], self.preset.audio, self.device).numpy()[0]
        arrays["av_audio"] = a
        arrays["video"] = ctx.video_emb
        rec["av_sim"] = _r(float(a @ ctx.video_emb))
        if self.sync is not None:
            from .sync import clip_in_sync, half_probabilities

            sp = self.sync.preset
            w = resample(wave, self.rate, sp.audio.sample_rate)
            w = np.pad(w, (0, max(0, sp.audio.num_samples - w.size)))[: sp.audio.num_samples]
            probs = half_probabilities(self.sync, torch.from_numpy(ctx.sync_frames)[None],
                                       torch.from_numpy(w)[None]).numpy()
            rec["sync_p"] = [_r(float(x)) for x in probs[0]]
            rec["in_sync"] = bool(clip_in_sync(probs)[0])
        if self.embedder is not None:
            from .embedders import embed_waves

            arrays["fad"] = embed_waves(self.embedder, [wave], self.rate)[0]
        if ctx.events is not None:
            onsets = bm.detect_onsets(wave, self.rate)
            score = bm.contact_onset_score(onsets, ctx.events, duration)
            rec["onset"] = {"precision": _r(score.precision), "recall": _r(score.recall), "f1": _r(score.f1),
                            "hits": score.hits, "n_reference": score.n_reference, "n_estimated": score.n_estimated}
            rec["onsets"] = [round(float(t), 4) for t in onsets]
            rec["hallucinated"] = bm.hallucinated_onsets(onsets, ctx.events)
            rec["seconds"] = round(duration, 4)
            stem_rate_wave = resample(wave, self.rate, ctx.gt_stem_rate)
            rec["leakage"] = _r(bm.ambient_leakage(stem_rate_wave, ctx.action_stem, ctx.gt_stem_rate))
            if self.kinds is not None:
                rec["kind"] = list(bm.kind_accuracy(self.kinds, stem_rate_wave, ctx.gt_stem_rate, ctx.events))
        return rec, arrays


def _r(x: float | None, nd: int = 6) -> float | None:
    """JSON-safe rounding: NaN / inf become None."""
    if x is None or not math.isfinite(x):
        return None
    return round(float(x), nd)


def fit_kind_classifier(items: Sequence[EvalClip], max_clips: int = 400) -> bm.KindClassifier | None:
    """The event-kind classifier, fitted on the clean action stems of the benchmark's train clips."""
    from ..data.benchmark import load_clip_groundtruth
    from ..data.manifest import read_ego4d_sounds

    roots = sorted({it.groundtruth.parent.parent for it in items if it.groundtruth is not None})
    segments: list[tuple[np.ndarray, str]] = []
    rate = 0
    for root in roots:
        tsv = root / "train.tsv"
        if not tsv.is_file():
            continue
        table, _ = read_ego4d_sounds(tsv, root / "clips", split="train", check_files=False)
        for c in list(table)[:max_clips]:
            folder = root / "groundtruth" / c.clip_id
            if not (folder / "events.json").is_file():
                continue
            gt = load_clip_groundtruth(folder)
            if rate and gt.sample_rate != rate:
                continue
            rate = gt.sample_rate
            segments += bm.event_segments(gt.action, gt.sample_rate, gt.events)
    if len({k for _, k in segments}) < 2:
        return None
    return bm.KindClassifier().fit(segments, rate)


# ================================================================================================ outputs
@dataclass(frozen=True)
class Output:
    """One output wave and what conditioned it."""

    wave: np.ndarray
    condition: dict[str, Any]


def _condition_record(meta: dict[str, Any], ambient_db: float | None = None) -> dict[str, Any]:
    cond = meta.get("condition", {}) or {}
    rec = {"mode": cond.get("mode")}
    clips = cond.get("clips") or []
    if clips:
        rec["clip_id"] = clips[0].get("clip_id")
        rec["ambient_db"] = clips[0].get("ambient_db")
    if ambient_db is not None:
        rec["ambient_db"] = _r(ambient_db)
    if cond.get("file"):
        rec["file"] = cond["file"]
    return rec


class Generator:
    """Makes the outputs of a run: the model through the pipeline, or a baseline."""

    def __init__(self, settings: EvalSettings, pipeline):
        self.s, self.pipe = settings, pipeline
        self.preset = pipeline.preset

    def _fit(self, wave: np.ndarray) -> np.ndarray:
        from ..mel import fit_wave

        return fit_wave(np.asarray(wave, dtype=np.float32), self.preset.audio)

    def outputs(self, ctxs: Sequence[ClipContext], seed: int) -> list[Output | Exception]:
        s = self.s
        if s.baseline == "groundtruth":
            return [Output(c.gt_wave, {"mode": "groundtruth"}) for c in ctxs]
        if s.baseline == "retrieval":
            return [self._retrieval(c) for c in ctxs]
        if s.ambient == "random":
            return [self._random(c, seed) for c in ctxs]
        return self._generate(ctxs, seed, s.ambient)

    def _options(self, seed: int, ambient: str, offset: float = 0.0):
        from ..api import make_options

        opts = {"ambient": ambient, "ambient_offset": offset, "seed": seed, "batch_size": self.s.batch_size}
        if self.s.steps is not None:
            opts["steps"] = self.s.steps
        return make_options(**opts)

    def _generate(self, ctxs: Sequence[ClipContext], seed: int, ambient: str,
                  offset: float = 0.0, condition_db: float | None = None) -> list[Output | Exception]:
        results = self.pipe.generate([c.path for c in ctxs], self._options(seed, ambient, offset))
        out: list[Output | Exception] = []
        for r in results:
            if isinstance(r, Exception):
                out.append(r)
            else:
                out.append(Output(self._fit(r.audio), _condition_record(r.metadata, condition_db)))
        if ambient not in AMBIENTS and condition_db is None:
            level = self._file_level(Path(ambient), offset)
            out = [Output(o.wave, {**o.condition, "ambient_db": _r(level)}) if isinstance(o, Output) else o
                   for o in out]
        return out

    def _file_level(self, path: Path, offset: float) -> float:
        from .. import media
        from ..levels import ambient_level_db

        p = self.preset.audio
        return ambient_level_db(media.read_audio(path, offset, p.duration, p.sample_rate), p.sample_rate)

    def _need_index(self):
        if self.pipe.retrieval is None:
            raise Action2SoundError("this run needs a retrieval index (--ambient retrieved / quiet / random or "
                                    "--baseline retrieval): pass --index INDEX or use a model directory with index/")
        return self.pipe.retrieval

    def _random(self, ctx: ClipContext, seed: int) -> Output | Exception:
        """The model conditioned on a random indexed clip of another long video (the paper's ablation)."""
        r = self._need_index()
        meta = r.index.meta
        own = ctx.item.clip.video_id
        rows = np.flatnonzero(meta.video_id != own)
        if rows.size == 0:
            return Action2SoundError(f"{ctx.item.clip.clip_id}: the index holds no clip of another long video")
        rng = np.random.default_rng([seed, zlib.crc32(ctx.item.clip.clip_id.encode())])
        row = int(rows[rng.integers(rows.size)])
        (out,) = self._generate([ctx], seed, str(r.media_path(row)), float(meta.media_start[row]),
                                float(meta.ambient_db[row]))
        if isinstance(out, Output):
            out = Output(out.wave, {"mode": "random", "clip_id": str(meta.clip_id[row]),
                                    "ambient_db": _r(float(meta.ambient_db[row]))})
        return out

    def _retrieval(self, ctx: ClipContext) -> Output | Exception:
        """The audio of the clip the index retrieves for this video (own long video excluded)."""
        from .. import media

        r = self._need_index()
        try:
            own = r.own_video(ctx.path) or ctx.item.clip.video_id
            (hits,) = r.index.query(ctx.video_emb[None].astype(np.float32), k=1, exclude_video_ids=[own])
            hit = hits[0]
            meta, p = r.index.meta, self.preset.audio
            start, end = float(meta.media_start[hit.index]), float(meta.media_end[hit.index])
            wave = media.read_audio(r.media_path(hit.index), start, min(end - start, p.duration), p.sample_rate)
        except Action2SoundError as err:
            return err
        return Output(self._fit(wave), {"mode": "retrieval", "clip_id": hit.clip_id,
                                        "ambient_db": _r(float(meta.ambient_db[hit.index]))})


# ================================================================================================ the run
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
    from .. import media

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
    from tqdm import tqdm

    from ..pipeline import load_pipeline

    settings.check()
    t0 = time.perf_counter()
    out = Path(settings.out)
    clips = load_eval_clips(settings.data, settings.split, settings.limit)
    _check_settings(out, settings)
    pipe = load_pipeline(settings.model, device=settings.device, index=settings.index, vocoder=settings.vocoder)
    measurer = _measurer(settings, pipe, clips)
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
    summary = summarise(records, out, settings, measurer, time.perf_counter() - t0)
    write_report(out, summary, records, settings, pipe.preset)
    return EvalReport(out, summary, done, skipped, failed)


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


def _measurer(settings: EvalSettings, pipe, clips: list[EvalClip]) -> Measurer:
    from .embedders import EmbedderSpec, build_embedder

    m = Measurer(pipe.preset, pipe.av, pipe.device)
    if settings.sync:
        from .sync import load_sync

        m.sync = load_sync(settings.sync, pipe.device)
    if settings.fad_embedder != "none":
        m.embedder = build_embedder(EmbedderSpec(settings.fad_embedder, settings.fad_weights), pipe.av,
                                    pipe.preset.audio, pipe.device)
    if any(it.groundtruth is not None for it in clips):
        m.kinds = fit_kind_classifier(clips, settings.kind_train_clips)
    return m


# ================================================================================================ summary
def _mean(values: Sequence[float | None]) -> float | None:
    v = [x for x in values if x is not None and math.isfinite(x)]
    return float(np.mean(v)) if v else None


def _pooled(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The metrics of one set of outputs (one seed, or the references)."""
    m: dict[str, Any] = {"clips": len(records)}
    m["av_sim"] = _mean([r.get("av_sim") for r in records])
    m["ambient_db"] = _mean([r.get("ambient_db") for r in records])
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
        m["leakage"] = _mean([r.get("leakage") for r in records])
        m["leakage_median"] = (float(np.median([r["leakage"] for r in records if r.get("leakage") is not None]))
                               if any(r.get("leakage") is not None for r in records) else None)
    kinds = [r["kind"] for r in records if "kind" in r]
    if kinds and sum(k[1] for k in kinds):
        m["kind_accuracy"] = sum(k[0] for k in kinds) / sum(k[1] for k in kinds)
    pairs = [(r["condition"].get("ambient_db"), r.get("ambient_db")) for r in records
             if r.get("condition", {}).get("ambient_db") is not None and r.get("ambient_db") is not None]
    if pairs:
        c = bm.controllability([p[0] for p in pairs], [p[1] for p in pairs])
        m["controllability_r"] = _r(c.r)
        m["controllability_slope"] = _r(c.slope)
        m["condition_ambient_db"] = _mean([p[0] for p in pairs])
        m["ambient_error_db"] = _mean([abs(p[1] - p[0]) for p in pairs])
    return m


def _fad(out: Path, records: Sequence[dict[str, Any]], refs: dict[str, dict[str, Any]]) -> float | None:
    from .fad import fad

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


def summarise(records: list[dict[str, Any]], out: Path, settings: EvalSettings, measurer: Measurer | None,
              seconds: float) -> dict[str, Any]:
    """The summary of a run from its records: per seed, mean and std over seeds, and the reference row."""
    ok = [r for r in records if "error" not in r]
    refs = {r["clip_id"]: r for r in ok if r["seed"] is None}
    seeds = sorted({r["seed"] for r in ok if r["seed"] is not None})
    per_seed = {}
    for s in seeds:
        rs = [r for r in ok if r["seed"] == s]
        m = _pooled(rs)
        m["fad"] = _fad(out, rs, refs)
        m.update({f"gen_{k}": v for k, v in _retrieval(out, rs, refs).items()})
        per_seed[str(s)] = m
    reference = _pooled(list(refs.values()))
    reference["fad"] = _fad(out, list(refs.values()), refs)
    reference.update(_retrieval(out, list(refs.values()), refs))
    names = sorted({k for m in per_seed.values() for k, v in m.items() if isinstance(v, (int, float))})
    mean, std = {}, {}
    for k in names:
        vals = [m[k] for m in per_seed.values() if isinstance(m.get(k), (int, float))]
        mean[k] = float(np.mean(vals)) if vals else None
        std[k] = float(np.std(vals)) if vals else None
    from .. import __version__

    return {
        "label": settings.row_label, "settings": asdict(settings), "clips": len(refs), "seeds": seeds,
        "failed": sum(1 for r in records if "error" in r),
        "fad_embedder": settings.fad_embedder, "sync_classifier": settings.sync,
        "mean": mean, "std": std, "per_seed": per_seed, "groundtruth": reference,
        "seconds_this_call": round(seconds, 2), "version": __version__,
    }


# ================================================================================================ the report
COLUMNS = (  # (summary key, header, format)
    ("fad", "FAD ↓", "{:.3f}"), ("av_sync", "AV-Sync % ↑", "{:.1f}"), ("av_sim", "AV-Sim ↑", "{:.3f}"),
    ("onset_f1", "onset F1 ↑", "{:.3f}"), ("kind_accuracy", "kind acc ↑", "{:.3f}"),
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


def write_report(out: Path, summary: dict[str, Any], records: list[dict[str, Any]], settings: EvalSettings,
                 preset) -> None:
    """summary.json, results.md and the two figures."""
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    g = summary["groundtruth"]
    recall = ", ".join(f"{k} {g[k]:.3f}" for k in ("R@1", "R@5", "R@10") if g.get(k) is not None)
    text = [f"# Evaluation: {summary['label']}", "",
            f"{summary['clips']} clips of `{settings.data}` (split {settings.split}), seeds {summary['seeds']}, "
            f"model `{settings.model}`, FAD embedder `{settings.fad_embedder}`"
            + (f", sync classifier `{settings.sync}`" if settings.sync else ", no sync classifier (--sync)") + ".",
            "", markdown_table([summary]), ""]
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


def _plot_spectrograms(path: Path, out: Path, records: list[dict[str, Any]], preset, count: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import soundfile

    from ..mel import wave_to_mel

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
