"""`train(stage, ...)`: one stage of AV-LDM with Lightning, from the tiny preset on a CPU to many GPUs.

A run directory holds one folder per stage (`RUN/av`, `RUN/vae`, `RUN/vocoder`, `RUN/ldm`), each with
`config.json` (preset, seed, data), `checkpoints/` (`stepNNNNNNNN.ckpt`, `last.ckpt`), `logs/` (CSV, and
TensorBoard when it is installed), `weights.safetensors` (the inference weights; EMA for ldm) and
`summary.json` (steps, wall time, final metrics). `export RUN` collects the stages into a model directory.

Order: av and vae (and, for a preset with the sync stream, sync_encoder) train on decoded clips; `preencode`
then runs them once per clip into a store; ldm trains on the store. The vocoder is independent of the rest.

Precision is fp32 on a CPU and bf16-mixed on GPUs; several GPUs or nodes use DDP (see docs/TRAINING.md for
torchrun and SLURM). `resume=True` continues from `last.ckpt` exactly: step, optimiser and scheduler state,
EMA, and the position in the data stream.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import inspect
import json
import logging
import math
import os
import pickle
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from torch.utils.data import default_collate

from ..config import Preset, override, preset_from_dict
from ..config import preset as get_preset
from ..data.splits import load_clip_table, split_train_val
from ..data.store import ClipDataset, Store
from ..errors import Action2SoundError
from ..models.sync_classifier import data_preset
from ..weights import file_sha256, load_component, read_weights, save_weights
from .av import AVStage
from .callbacks import EMA, StepCheckpoint
from .data import StageData, StoreDataset
from .ldm import LDMStage
from .sync import SyncStage
from .sync_encoder import sync_clip_dataset, SyncEncoderStage
from .vae import VAEStage
from .vocoder import VocoderStage

STAGES = ("av", "vae", "vocoder", "ldm", "sync", "sync_encoder")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainResult:
    """What a finished `train` call left behind."""

    stage: str
    stage_dir: Path
    steps: int  # training batches done in total (over every resume)
    seconds: float  # wall time of this call
    metrics: dict[str, float]  # final validation metrics and the last logged training loss
    weights: Path
    rank: int = 0  # this process's global rank (DDP): only rank 0 writes weights and the summary


def _accelerator() -> str:
    return "gpu" if torch.cuda.is_available() else "cpu"


def _loggers(stage_dir: Path) -> list:
    # Each (re)start writes its own version folder: a resumed run never overwrites the earlier logs.
    loggers = [CSVLogger(stage_dir, name="logs")]
    if importlib.util.find_spec("tensorboard") or importlib.util.find_spec("tensorboardX"):
        loggers.append(TensorBoardLogger(stage_dir, name="tensorboard"))
    return loggers


def _resolve_config(stage: str, stage_dir: Path, preset: str | Preset, overrides: list[str], resume: bool,
                    seed: int, data: str | os.PathLike | None) -> tuple[Preset, int, str]:
    config_file = stage_dir / "config.json"
    last = stage_dir / "checkpoints" / "last.ckpt"
    if resume:
        if not _checkpoints(stage_dir) or not config_file.is_file():
            raise Action2SoundError(f"{stage_dir}: nothing to resume (no checkpoints/last.ckpt); start the stage "
                                    "without --resume")
        try:
            saved = json.loads(config_file.read_text())
            p = preset_from_dict(saved["preset"])
            seed, data = int(saved["seed"]), str(data) if data is not None else saved["data"]
        except (ValueError, TypeError, KeyError) as err:
            raise Action2SoundError(f"{config_file}: damaged or from another version ({err}); start the stage "
                                    "anew with a new --out") from None
        return override(p, overrides), seed, data
    if last.is_file():
        raise Action2SoundError(f"{stage_dir} already holds a {stage} run; pass --resume to continue it, or a new "
                                "--out")
    if data is None:
        raise Action2SoundError(f"train {stage} needs --data")
    p = get_preset(preset) if isinstance(preset, str) else preset
    return override(p, overrides), seed, str(data)


def _split_rows(table, val_clips: int) -> tuple[np.ndarray, np.ndarray]:
    """Row indices (train, val) of a store's table: its val split, else its last long video (see split_train_val)."""
    split = np.array([c.split for c in table])
    val = np.flatnonzero(split == "val")
    if len(val):
        return np.flatnonzero(split == "train"), val[:val_clips]
    videos = table.video_ids()
    if len(videos) < 2:
        return np.arange(len(table)), np.zeros(0, dtype=np.int64)
    vid = np.array([c.video_id for c in table])
    return np.flatnonzero(vid != videos[-1]), np.flatnonzero(vid == videos[-1])[:val_clips]


def _ldm_preset(p: Preset, store) -> Preset:
    """The ldm trains on what the store's networks produced: their video, audio, av and vae sections, and, when
    the store has the sync stream's features, what defines them (STREAM_FEATURE_FIELDS but `enabled`, and the
    appearance's size: a store pre-encoded with it widens the ldm's input without an override)."""
    from ..weights import STREAM_FEATURE_FIELDS

    s = store.preset
    if s.audio.name != p.audio.name:
        raise Action2SoundError(f"store {store.path} was encoded with audio profile {s.audio.name!r}, the preset "
                                f"{p.name!r} uses {p.audio.name!r}; pass the matching --preset")
    stream = p.sync_stream
    if "sync_features" in store.fields:
        carried = [f for f in STREAM_FEATURE_FIELDS if f != "enabled"] + ["appearance_size"]
        stream = dataclasses.replace(stream, **{f: getattr(s.sync_stream, f) for f in carried})
    return dataclasses.replace(p, video=s.video, audio=s.audio, av=s.av, vae=s.vae, sync_stream=stream)


def _sample_vae(out: Path, store) -> torch.nn.Module | None:
    """The run's VAE, if it is the one the store was encoded with (to draw the periodic samples as mels)."""
    f = out / "vae" / "weights.safetensors"
    if f.is_file() and file_sha256(f) == store.meta.get("source", {}).get("vae"):
        return load_component(f, "vae")[0]
    return None


def train(
    stage: str, preset: str | Preset = "tiny", data: str | os.PathLike | None = None,
    out: str | os.PathLike = "runs/default", resume: bool = False, overrides: list[str] | tuple = (),
    devices: int | None = None, nodes: int = 1, max_steps: int | None = None, seed: int = 0, workers: int = 0,
    init: str | os.PathLike | None = None, checkpoint_every: int | None = None, val_every: int | None = None,
    sample_every: int | None = None, log_every: int = 10, val_clips: int = 64, neighbours_k: int = 10,
    same_video: int = 2, progress: bool = True, keep_checkpoints: int = 3, cache_mb: int = 512,
) -> TrainResult:
    """Train one stage ("av", "vae", "vocoder", "ldm", "sync" or "sync_encoder") into `out/<stage>`.

    Returns a TrainResult.

    sync (the AV-Sync classifier, models/sync_classifier.py) uses the preset's av optimiser section (`train.av.*`).
    sync_encoder (the sync stream's encoder, training/sync_encoder.py) trains on dense frames and mels of clips.
    data: av / vae / vocoder / sync / sync_encoder: a clip table, an Ego4D-Sounds TSV or a benchmark folder;
        ldm: a store folder.
    overrides: "key.sub=value" strings on the Preset, e.g. "train.ldm.lr=3e-4", "diffusion.p_drop_audio=0.2".
    devices, nodes: GPUs per node and nodes (DDP when more than one in all; on a CPU, processes, for debugging).
    max_steps: training batches in total (overrides the preset's max_steps / epochs).
    init: a weights file to start the stage's network from (strict), e.g. a converted SD v1 VAE.
    checkpoint_every / val_every / sample_every: in batches (defaults: the preset's checkpoint_every).
    same_video: av batches are made of runs of this many clips of one long video (hard negatives).
    cache_mb: decoded clips kept in memory per data process (av / vae / vocoder), so that a small training
        set is decoded once; 0 decodes every time.
    """
    t0 = time.perf_counter()
    if stage not in STAGES:
        raise Action2SoundError(f"unknown stage {stage!r}; choose one of {', '.join(STAGES)}")
    out = Path(out)
    stage_dir = out / stage
    try:
        p, seed, data = _resolve_config(stage, stage_dir, preset, list(overrides), resume, seed, data)
    except Action2SoundError:
        raise
    except ValueError as err:  # a bad --set
        raise Action2SoundError(str(err)) from None
    # Before any data is read: the checkpoint to continue from, checked (and the batches it holds).
    resume_from, start = _resume_checkpoint(stage_dir) if resume else (None, 0)

    # ---- 1. data
    groups, group_size = None, 1
    if stage == "ldm":
        store = Store(data)
        p = _ldm_preset(p, store)
        train_rows, val_rows = _split_rows(store.table, val_clips)
        use_audio = p.cond.use_audio
        train_set = StoreDataset(store, train_rows, neighbours_k, seed, audio=use_audio)
        val_set = StoreDataset(store, val_rows, neighbours_k, seed, audio=use_audio) if len(val_rows) else None
    else:
        table = load_clip_table(data)
        train_table, val_table = split_train_val(table, val_clips)
    if stage == "sync_encoder":
        train_set = sync_clip_dataset(train_table, p, cache_bytes=cache_mb << 20)
        val_set = sync_clip_dataset(val_table, p, cache_bytes=cache_mb << 20) if len(val_table) else None
    elif stage != "ldm":
        frames = stage in ("av", "sync")
        decode = p
        if stage == "sync":
            decode = data_preset(p)  # twice the frames: T for each half clip
        train_set = ClipDataset(train_table, decode, frames=frames, audio=True, cache_bytes=cache_mb << 20)
        val_set = ClipDataset(val_table, decode, frames=frames, audio=True, cache_bytes=cache_mb << 20) \
            if len(val_table) else None
        if stage in ("av", "sync"):
            groups, group_size = train_set.video_codes, same_video
    cfg = p.train.av if stage == "sync" else getattr(p.train, stage)
    n_train = len(train_set)
    if n_train == 0:
        raise Action2SoundError(f"--data {data}: no training clips")

    # ---- 2. schedule and devices
    steps = max_steps or cfg.max_steps or cfg.epochs * math.ceil(n_train / cfg.batch_size)
    accelerator = _accelerator()
    devices = devices or 1
    world = devices * nodes
    if cfg.batch_size % world:
        raise Action2SoundError(f"batch size {cfg.batch_size} does not split over {world} devices; set "
                                f"--set train.{stage}.batch_size=<a multiple of {world}>")
    per_device = cfg.batch_size // world
    every = checkpoint_every or cfg.checkpoint_every

    # ---- 3. the module (initialised from the seed without touching the global RNG)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = _make_module(stage, p, cfg, seed, n_train, out, sample_every or every, stage_dir, train_set,
                              val_set)
    if init is not None and stage == "vocoder" and str(init) == "universal":
        from .vocoder import INIT_UNIVERSAL, universal_init  # noqa: F401 - "universal" is INIT_UNIVERSAL

        module.init_from(universal_init(p), "the universal HiFi-GAN (--init universal)")
    elif init is not None:
        module.init_from(read_weights(init, stage)[0], str(init))

    stage_dir.mkdir(parents=True, exist_ok=True)
    weights_path = stage_dir / "weights.safetensors"
    if not resume and _launcher_rank() == 0:
        (stage_dir / "config.json").write_text(json.dumps(
            {"stage": stage, "preset": p.to_dict(), "seed": seed, "data": str(data),
             "overrides": list(overrides)}, indent=1, sort_keys=True) + "\n")

    if stage == "vae" and not p.vae.trainable:
        # The paper's VAE is Stable Diffusion's, frozen: this stage only stores the weights given by --init.
        if init is None:
            raise Action2SoundError("this preset's VAE is frozen (vae.trainable=false): pass --init with its "
                                    "converted weights, or --set vae.trainable=true to train one")
        save_weights(weights_path, module.export_tensors(), "vae", module.export_preset())
        return TrainResult(stage, stage_dir, 0, time.perf_counter() - t0, {}, weights_path)

    # ---- 4. the trainer
    if start >= steps:
        raise Action2SoundError(f"{stage_dir}: already trained {start} of {steps} steps; raise --max-steps to "
                                "train further")
    remaining = steps - start
    callbacks: list[Any] = []
    if stage == "ldm" and cfg.ema_decay > 0:
        callbacks.append(EMA(cfg.ema_decay, attr="model"))
    callbacks.append(StepCheckpoint(stage_dir / "checkpoints", weights_path, every, keep_checkpoints))
    has_val = val_set is not None and len(val_set) > 0
    trainer = L.Trainer(
        accelerator=accelerator, devices=devices, num_nodes=nodes,
        strategy=_strategy(stage, world), precision="bf16-mixed" if accelerator == "gpu" else "32-true",
        max_steps=steps * module.optimizer_steps_per_batch, max_epochs=-1, logger=_loggers(stage_dir),
        callbacks=callbacks, enable_checkpointing=False, enable_progress_bar=progress,
        enable_model_summary=progress, log_every_n_steps=max(1, min(log_every, remaining)),
        val_check_interval=max(1, min(val_every or every, remaining)) if has_val else None,
        check_val_every_n_epoch=None, limit_val_batches=None if has_val else 0, num_sanity_val_steps=0,
        gradient_clip_val=(cfg.grad_clip or None) if module.automatic_optimization else None,
        use_distributed_sampler=False, default_root_dir=stage_dir,
    )
    dm = StageData(train_set, val_set, per_device, steps, seed, workers, groups, group_size)
    # Lightning reads the checkpoint again: with the same restricted unpickler as _read_checkpoint where it
    # takes `weights_only` (2.6 on); older ones leave it to torch.load, after _read_checkpoint has vetted the file.
    safe = {"weights_only": True} if "weights_only" in inspect.signature(trainer.fit).parameters else {}
    trainer.fit(module, datamodule=dm, ckpt_path=resume_from, **safe)

    # ---- 5. final numbers and weights
    metrics: dict[str, float] = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("train/")}
    if stage == "vae":
        module.fit_scaling_factor(dm._loader(train_set, None, per_device))
    if has_val:
        for d in trainer.validate(module, datamodule=dm, verbose=False):
            metrics.update({k: float(v) for k, v in d.items()})
    if trainer.is_global_zero:
        save_weights(weights_path, module.export_tensors(), module.component, module.export_preset())
        summary = {"stage": stage, "steps": module.batches_seen, "seconds_this_call": time.perf_counter() - t0,
                   "train_clips": n_train, "val_clips": len(val_set) if has_val else 0, "metrics": metrics}
        if stage == "vae":
            summary["scaling_factor"] = module.scaling_factor
        (stage_dir / "summary.json").write_text(json.dumps(summary, indent=1, sort_keys=True) + "\n")
    return TrainResult(stage, stage_dir, module.batches_seen, time.perf_counter() - t0, metrics, weights_path,
                       trainer.global_rank)


def _launcher_rank() -> int:
    """This process's rank as torchrun, SLURM or Lightning's own launcher set it (0 when run alone)."""
    for var in ("RANK", "SLURM_PROCID", "LOCAL_RANK"):
        if var in os.environ:
            return int(os.environ[var])
    return 0


def _strategy(stage: str, world: int) -> str:
    if world == 1:
        return "auto"
    # The GAN's discriminator step leaves the generator without gradients: DDP must expect unused parameters.
    return "ddp_find_unused_parameters_true" if stage == "vocoder" else "ddp"


def _checkpoints(stage_dir: Path) -> list[Path]:
    """The stage's checkpoints, in the order a resume tries them: last.ckpt, then stepN.ckpt newest first."""
    folder = stage_dir / "checkpoints"
    steps = sorted(folder.glob("step*.ckpt"), reverse=True)  # zero-padded step numbers sort as numbers
    return [p for p in [folder / "last.ckpt", *steps] if p.is_file()]


class _DamagedCheckpoint(Exception):
    """A checkpoint file that is not a whole checkpoint (empty, truncated): a resume skips it."""


def _read_checkpoint(path: Path) -> dict:
    """A checkpoint's contents, read without running code: torch's weights-only unpickler, memory-mapped.

    Raises _DamagedCheckpoint for an unreadable file and Action2SoundError for one the unpickler refuses.
    """
    # torch.save (and so Lightning) writes zip archives: anything else is a cut-off or foreign file, and is
    # never unpickled at all.
    if path.stat().st_size == 0:
        raise _DamagedCheckpoint("empty")
    if not zipfile.is_zipfile(path):
        raise _DamagedCheckpoint("cut off: not a whole zip archive")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError as err:
        # A checkpoint that train wrote holds only tensors, containers and numbers; this one names other
        # objects (code to run, perhaps). Stop: falling back would hide that someone replaced the file.
        raise Action2SoundError(
            f"{path}: refused: the safe loader found objects a training checkpoint never holds "
            f"({_refusal_reason(err)}); if you did not make this file, delete it and resume from an older "
            "stepN.ckpt") from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as err:
        raise _DamagedCheckpoint(str(err).splitlines()[0] if str(err) else type(err).__name__) from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise _DamagedCheckpoint("no state_dict in it")
    if not isinstance(ckpt.get("a2s_batches_seen", 0), int):
        raise _DamagedCheckpoint("its a2s_batches_seen is not a count")
    return ckpt


def _refusal_reason(err: Exception) -> str:
    # torch's message is a page long; the line naming the refused global is the one that says why.
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    named = [line for line in lines if "GLOBAL" in line]
    return (named or lines or ["refused"])[0].split(" was not")[0][:160]


def _resume_checkpoint(stage_dir: Path) -> tuple[Path, int]:
    """The checkpoint a resume continues from and the training batches it holds.

    last.ckpt when it is whole; else, with a warning, the newest whole stepN.ckpt (a kill or a full disk can
    leave last.ckpt empty or cut off).
    """
    skipped = []
    for path in _checkpoints(stage_dir):
        try:
            ckpt = _read_checkpoint(path)
        except _DamagedCheckpoint as err:
            skipped.append(f"{path.name} ({err})")
            log.warning("%s is damaged (%s); trying an older checkpoint", path, err)
            continue
        if skipped:
            log.warning("resuming from %s: the newer %s could not be read", path, ", ".join(skipped))
        return path, ckpt.get("a2s_batches_seen", 0)
    raise Action2SoundError(f"{stage_dir / 'checkpoints'}: no intact checkpoint to resume from (damaged: "
                            f"{', '.join(skipped) or 'none found'}); start the stage again "
                            "without --resume and a new --out")


def _make_module(stage: str, p: Preset, cfg, seed: int, n_train: int, out: Path, sample_every: int,
                 stage_dir: Path, train_set, val_set):
    if stage == "av":
        return AVStage(p, cfg, seed, n_train)
    if stage == "vae":
        return VAEStage(p, cfg, seed, n_train)
    if stage == "vocoder":
        return VocoderStage(p, cfg, seed, n_train)
    if stage == "sync":
        return SyncStage(p, cfg, seed, n_train)
    if stage == "sync_encoder":
        return SyncEncoderStage(p, cfg, seed, n_train)
    source = val_set if val_set is not None and len(val_set) else train_set
    sample_batch = default_collate([source[(k, 0)] for k in range(min(4, len(source)))])
    return LDMStage(p, cfg, seed, n_train, vae=_sample_vae(out, train_set.store), sample_every=sample_every,
                    sample_dir=stage_dir / "samples", sample_batch=sample_batch)
