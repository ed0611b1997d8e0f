"""Weights on disk: safetensors with their config in the metadata, strict loading, and the model directory.

A weights file is a safetensors file whose metadata holds ``format`` (FORMAT), ``component`` (av / vae / ldm /
vocoder) and ``config`` (the JSON of the Preset it was built with). Loading is strict: a key the module has and
the file lacks, a key the file has and the module lacks, or a shape that differs is an error naming the key.

A MODEL DIRECTORY is what `export` writes and the pipeline reads::

    model.json           {"format", "preset": Preset.to_dict(), "files": {name: {"file", "sha256"}}, "vocoder"}
    av.safetensors       the audio-visual model: both towers and projections (retrieval + video tokens)
    vae.safetensors      the mel AutoencoderKL (its trained scaling factor is in the preset)
    ldm.safetensors      UNet + conditioning tokens + learned nulls (EMA weights when the run kept them)
    vocoder.json         {"kind": "universal-hifigan"} | {"kind": "file", "file": "vocoder.safetensors"}
                         | {"kind": "griffinlim"}
    vocoder.safetensors  a trained HiFi-GAN generator, when there is one
    sync_encoder.safetensors  the sync stream's encoder (models/sync_stream.py), when the preset's stream is
                         enabled and the run trained one; without it the pipeline feeds the null (zero) stream
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from .config import Preset, preset_from_dict
from .errors import Action2SoundError

FORMAT = "action2sound/1"
COMPONENTS = ("av", "vae", "ldm", "vocoder", "sync_encoder")
# Weights files that are not part of a model directory: the AV-Sync classifier of evaluation (`train sync`).
EXTRA_COMPONENTS = ("sync",)
MODEL_JSON = "model.json"
DEFAULT_MODEL = "default_model"  # the package's embedded model directory (`make default-model`)
VOCODER_JSON = "vocoder.json"
# Kinds of vocoder reference a model directory may hold.
VOCODER_KINDS = ("universal-hifigan", "file", "griffinlim")


# ------------------------------------------------------------------------------------------ one weights file
def save_weights(path: str | os.PathLike, tensors: Mapping[str, torch.Tensor], component: str, preset: Preset,
                 dtype: torch.dtype | None = None) -> Path:
    """Write `tensors` to a safetensors file with the preset's JSON in the metadata; returns the path.

    Floating tensors are cast to `dtype` when given (fp16 for export). The write is atomic (temp + rename).
    """
    if component not in COMPONENTS + EXTRA_COMPONENTS:
        raise ValueError(f"unknown component {component!r}; one of {COMPONENTS + EXTRA_COMPONENTS}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    out: dict[str, torch.Tensor] = {}
    storages: set[int] = set()
    for name, t in tensors.items():
        t = t.detach().to("cpu")
        if dtype is not None and t.is_floating_point():
            t = t.to(dtype)
        t = t.contiguous()
        # safetensors refuses tensors that share storage (tied weights, views): those get their own copy; the
        # rest are written as they are (a copy of every tensor would double the memory of a large model).
        storage = t.untyped_storage()
        if storage.data_ptr() in storages or storage.nbytes() != t.numel() * t.element_size():
            t = t.clone()
        storages.add(t.untyped_storage().data_ptr())
        out[name] = t
    meta = {"format": FORMAT, "component": component, "config": json.dumps(preset.to_dict(), sort_keys=True)}
    tmp = path.with_name(path.name + ".partial")
    save_file(out, str(tmp), metadata=meta)
    os.chmod(tmp, 0o644)  # safetensors writes owner-only files; weights are meant to be shared
    tmp.replace(path)
    return path


def read_weights(path: str | os.PathLike, component: str | None = None,
                 device: str | torch.device = "cpu") -> tuple[dict[str, torch.Tensor], Preset]:
    """Read a weights file written by `save_weights` -> (tensors by name, the preset it was built with)."""
    return _read(path, component, device, tensors=True)


def read_weights_preset(path: str | os.PathLike, component: str | None = None) -> Preset:
    """The preset a weights file was built with, from its metadata alone (no tensor is read)."""
    return _read(path, component, "cpu", tensors=False)[1]


def _read(path: str | os.PathLike, component: str | None, device: str | torch.device,
          tensors: bool) -> tuple[dict[str, torch.Tensor], Preset]:
    path = Path(path)
    if not path.is_file():
        raise Action2SoundError(f"weights file {path} not found; train or export the model first")
    try:
        with safe_open(str(path), framework="pt", device=str(device)) as f:
            meta = f.metadata() or {}
            out = {k: f.get_tensor(k) for k in f.keys()} if tensors else {}
    except (SafetensorError, OSError) as err:
        raise Action2SoundError(f"{path}: not a readable safetensors file ({err}); re-export it") from None
    if meta.get("format") != FORMAT or "config" not in meta:
        raise Action2SoundError(f"{path}: not an action2sound weights file (no '{FORMAT}' metadata); "
                                "convert foreign checkpoints first")
    if component is not None and meta.get("component") != component:
        raise Action2SoundError(f"{path}: holds the {meta.get('component')!r} component, expected {component!r}")
    try:
        preset = preset_from_dict(json.loads(meta["config"]))
    except (ValueError, TypeError) as err:
        raise Action2SoundError(f"{path}: its config metadata does not match this version ({err})") from None
    return out, preset


def _check_keys(module: torch.nn.Module, own: Mapping[str, torch.Tensor], tensors: Mapping[str, torch.Tensor],
                source: str) -> None:
    missing = sorted(set(own) - set(tensors))
    extra = sorted(set(tensors) - set(own))
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} key(s), first {missing[:3]}")
        if extra:
            parts.append(f"unexpected {len(extra)} key(s), first {extra[:3]}")
        raise Action2SoundError(f"{source}: does not match the {type(module).__name__} it is loaded into "
                                f"({'; '.join(parts)}); was it written for another preset or version?")
    for name, t in tensors.items():
        if tuple(t.shape) != tuple(own[name].shape):
            raise Action2SoundError(f"{source}: key {name!r} has shape {list(t.shape)}, the model expects "
                                    f"{list(own[name].shape)}; was it written for another preset?")


def load_state_strict(module: torch.nn.Module, tensors: Mapping[str, torch.Tensor], source: str) -> None:
    """Copy `tensors` into `module` (cast to each parameter's dtype); any key or shape mismatch is an error.

    A module built by `build_component(..., meta=True)` has no parameter memory yet: the tensors become its
    parameters (assigned, cast only where the dtype differs), so loading costs no second copy of the weights.
    """
    own = module.state_dict()
    _check_keys(module, own, tensors, source)
    if any(t.is_meta for t in own.values()):
        module.load_state_dict({k: t.to(own[k].dtype) for k, t in tensors.items()}, strict=True, assign=True)
        _check_materialised(module, source)
        return
    module.load_state_dict({k: t.to(own[k].dtype) for k, t in tensors.items()}, strict=True)


def _check_materialised(module: torch.nn.Module, source: str) -> None:
    left = [n for n, t in [*module.named_parameters(), *module.named_buffers()] if t.is_meta]
    if left:
        raise Action2SoundError(f"{source}: loading left {len(left)} tensor(s) of {type(module).__name__} "
                                f"unset, first {left[:3]}; a module built on the meta device needs all its weights")


def _assign_owned(module: torch.nn.Module, tensors: dict[str, torch.Tensor], source: str) -> None:
    """`load_state_strict` into a meta-built module, consuming `tensors`: each one is cast (where its dtype
    differs) and dropped from the dict as it goes, so an fp16 file never coexists whole with its fp32 copy."""
    own = module.state_dict()
    _check_keys(module, own, tensors, source)
    state = {}
    for name in list(tensors):
        state[name] = tensors.pop(name).to(own[name].dtype)
    module.load_state_dict(state, strict=True, assign=True)
    _check_materialised(module, source)


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file, read in 4 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


# ------------------------------------------------------------------------------------------- building modules
@contextmanager
def parameters_on_meta() -> Iterator[None]:
    """Modules built inside get their parameters on the meta device: no memory, no initialisation work.

    Buffers stay real, so those computed at construction and never saved (the ldm's noise schedule) keep their
    values; the parameters come later from a weights file (`load_state_strict` assigns them). Plain
    `torch.device("meta")` would also put those computed buffers on meta, with no file to restore them from.
    """
    register = torch.nn.Module.register_parameter

    def on_meta(module: torch.nn.Module, name: str, param: torch.nn.Parameter | None) -> None:
        register(module, name, param)
        if param is not None and not param.is_meta:
            module._parameters[name] = type(param)(param.to("meta"), requires_grad=param.requires_grad)

    torch.nn.Module.register_parameter = on_meta
    try:
        yield
    finally:
        torch.nn.Module.register_parameter = register


def build_component(component: str, preset: Preset, meta: bool = False) -> torch.nn.Module:
    """A freshly initialised module of one component for a preset (the shapes a weights file must match).

    meta: parameters on the meta device (see `parameters_on_meta`), to be loaded with `load_state_strict`.
    """
    if meta:
        with parameters_on_meta():
            return build_component(component, preset)
    if component == "av":
        from .models.av import AVModel

        return AVModel.from_preset(preset)
    if component == "vae":
        from .models.vae import build_vae_from_preset

        return build_vae_from_preset(preset)
    if component == "ldm":
        from .models.ldm import LatentDiffusion

        return LatentDiffusion.from_preset(preset)
    if component == "vocoder":
        from .models.vocoder import build_hifigan

        return build_hifigan(preset.audio, preset.vocoder)
    if component == "sync_encoder":
        from .models.sync_stream import SyncEncoder

        return SyncEncoder(preset)
    raise ValueError(f"unknown component {component!r}; one of {COMPONENTS}")


def load_component(path: str | os.PathLike, component: str, device: str | torch.device = "cpu",
                   preset: Preset | None = None) -> tuple[torch.nn.Module, Preset]:
    """Build a component from a weights file's own config and load it strictly -> (module in eval mode, preset)."""
    tensors, stored = read_weights(path, component)
    # Built on the meta device and given the file's tensors as its parameters: the peak is one copy of the
    # weights (plus the buffers), not the random init + the file + a cast copy.
    module = build_component(component, preset or stored, meta=True)
    _assign_owned(module, tensors, str(path))
    return module.to(device).eval(), stored


def load_encoders(path: str | os.PathLike, device: str | torch.device = "cpu"
                  ) -> tuple[torch.nn.Module, torch.nn.Module, Preset, dict[str, str]]:
    """The frozen networks of pre-encoding from a model directory or a training run.

    -> (AV model, VAE, the preset (video + av sections of the AV model, the rest of the VAE's), SHA-256 of the
    two weights files). A run directory needs `av/weights.safetensors` and `vae/weights.safetensors`.
    """
    path = Path(path)
    if (path / MODEL_JSON).is_file():
        manifest = read_model_json(path)
        files = manifest["files"]
        if "av" not in files:
            raise Action2SoundError(f"{path}: this model directory has no AV model; pre-encoding needs one "
                                    "(export a run that trained the av stage)")
        preset = preset_from_dict(manifest["preset"])
        av, _ = load_component(path / files["av"]["file"], "av", device, preset)
        vae, _ = load_component(path / files["vae"]["file"], "vae", device, preset)
        return av, vae, preset, {"av": files["av"]["sha256"], "vae": files["vae"]["sha256"]}
    if not path.is_dir():
        raise Action2SoundError(f"{path}: neither a model directory nor a training run folder; pass one")
    av_file, vae_file = _stage_weights(path, "av"), _stage_weights(path, "vae")
    for stage, f in (("av", av_file), ("vae", vae_file)):
        if f is None:
            raise Action2SoundError(f"{path}: no {stage}/weights.safetensors; run `action2sound train {stage} "
                                    f"--out {path}` first (pre-encoding needs the AV model and the VAE)")
    av, av_preset = load_component(av_file, "av", device)
    vae, vae_preset = load_component(vae_file, "vae", device)
    if av_preset.audio != vae_preset.audio:
        raise Action2SoundError(f"{path}: the av stage used audio profile {av_preset.audio.name!r}, the vae stage "
                                f"{vae_preset.audio.name!r}; train both with the same preset")
    preset = dataclasses.replace(vae_preset, video=av_preset.video, av=av_preset.av)
    sync_file = _stage_weights(path, "sync_encoder")
    if sync_file is not None:
        # The run's sync encoder decides the stream, so that av and vae weights trained (or exported) without
        # it can pre-encode a store for an ldm with it (`train ldm --init` then widens the old ldm).
        preset = dataclasses.replace(preset, sync_stream=read_weights_preset(sync_file, "sync_encoder").sync_stream)
    return av, vae, preset, {"av": file_sha256(av_file), "vae": file_sha256(vae_file)}


def load_sync_encoder(path: str | os.PathLike, device: str | torch.device = "cpu",
                      appearance_size: int | None = None) -> tuple[torch.nn.Module | None, str | None]:
    """The sync stream's encoder of a model directory or a training run for pre-encoding -> (module, SHA-256).

    (None, None) when there is none, or when the preset's stream is off: the store then has no sync features.
    appearance_size: the stream's appearance (SyncStreamConfig.appearance_size) instead of the stored one.
    """
    path = Path(path)
    if (path / MODEL_JSON).is_file():
        manifest = read_model_json(path)
        entry = manifest["files"].get("sync_encoder")
        preset = preset_from_dict(manifest["preset"])
        f, sha = (path / entry["file"], entry["sha256"]) if entry is not None else (None, None)
    else:
        f = _stage_weights(path, "sync_encoder") if path.is_dir() else None
        if f is None:
            return None, None
        preset, sha = read_weights_preset(f, "sync_encoder"), file_sha256(f)
    if f is None or not preset.sync_stream.enabled:
        return None, None
    if appearance_size is not None:
        from .models.sync_stream import MIN_APPEARANCE_SIZE

        if appearance_size != 0 and not MIN_APPEARANCE_SIZE <= appearance_size <= 4096:
            raise Action2SoundError(f"appearance size {appearance_size}: pass 0 (none) or a frame size of "
                                    f"{MIN_APPEARANCE_SIZE} to 4096 px (e.g. 128)")
        preset = dataclasses.replace(preset, sync_stream=dataclasses.replace(preset.sync_stream,
                                                                             appearance_size=appearance_size))
    return load_component(f, "sync_encoder", device, preset)[0], sha


# ---------------------------------------------------------------------------------------- the model directory
@dataclass(frozen=True)
class ModelDir:
    """The modules of an exported model directory, ready for inference (eval mode, on one device)."""

    path: Path
    preset: Preset
    av: torch.nn.Module | None
    vae: torch.nn.Module
    ldm: torch.nn.Module
    vocoder: torch.nn.Module | None  # None: Griffin-Lim
    vocoder_kind: str
    sync_encoder: torch.nn.Module | None = None  # the sync stream's encoder, when the model has one


def _stage_weights(run_dir: Path, stage: str) -> Path | None:
    p = run_dir / stage / "weights.safetensors"
    return p if p.is_file() else None


# sync_stream fields that define the features the ldm reads (the encoder and the ldm must agree on them), and
# those that say how the ldm takes them in (the ldm stage's to set); the rest belong to the encoder's training.
STREAM_FEATURE_FIELDS = ("enabled", "fps", "size", "width", "feature_dim", "temporal_kernel")
# appearance_size: the appearance has no weights of the encoder's; a store pre-encoded with it (`preencode
# --appearance`) decides it for the ldm trained on that store.
STREAM_LDM_FIELDS = ("injection", "deep", "appearance_size")


def merge_presets(parts: Mapping[str, Preset]) -> Preset:
    """One preset for a model directory from the stages' own presets; incompatible stages are an error.

    The ldm stage's preset is the base; the av, vae and vocoder sections come from their own stages (the vae
    stage sets its trained scaling factor, for instance).
    """
    base = parts["ldm"]
    for name, p in parts.items():
        if p.audio != base.audio:
            raise Action2SoundError(f"the {name} stage used audio profile {p.audio.name!r} and the ldm stage "
                                    f"{base.audio.name!r}; train every stage with the same preset")
    if "av" in parts:
        if parts["av"].video != base.video or parts["av"].av != base.av:
            raise Action2SoundError("the av stage's video/AV config differs from the one the ldm was trained on "
                                    "(its store was encoded by another AV model); re-run preencode and ldm")
        base = dataclasses.replace(base, av=parts["av"].av)
    if "vae" in parts:
        if parts["vae"].vae != base.vae:
            raise Action2SoundError("the vae stage's VAE config (or scaling factor) differs from the one the ldm "
                                    "was trained on; re-run preencode and ldm with this VAE")
    if "vocoder" in parts:
        base = dataclasses.replace(base, vocoder=parts["vocoder"].vocoder)
    if "sync_encoder" in parts and base.sync_stream.enabled:
        enc, ldm = parts["sync_encoder"].sync_stream, base.sync_stream
        differ = [f for f in STREAM_FEATURE_FIELDS if getattr(enc, f) != getattr(ldm, f)]
        if differ:
            raise Action2SoundError(f"the sync_encoder stage's sync_stream ({', '.join(differ)}) differs from the "
                                    "ldm's; train both with the same preset (and pre-encode with this sync encoder)")
        # The encoder's own section (its heads and training settings), with how the ldm takes the stream in.
        base = dataclasses.replace(base, sync_stream=dataclasses.replace(
            enc, **{f: getattr(ldm, f) for f in STREAM_LDM_FIELDS}))
    return base


def export(run_dir: str | os.PathLike, out_dir: str | os.PathLike, fp16: bool = True) -> Path:
    """Collect a training run's stages into a model directory (see the module docstring); returns its path.

    Needs `RUN/vae` and `RUN/ldm`; `RUN/av` (retrieval), `RUN/vocoder` and `RUN/sync_encoder` (shipped only when
    the ldm has the sync stream) are optional. Without a trained
    vocoder the reference is the universal HiFi-GAN when the profile is `universal22k`, else Griffin-Lim.
    """
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    if not run_dir.is_dir():
        raise Action2SoundError(f"run directory {run_dir} not found; pass the --out folder of `train`")
    found = {s: _stage_weights(run_dir, s) for s in COMPONENTS}
    for need in ("vae", "ldm"):
        if found[need] is None:
            raise Action2SoundError(f"{run_dir}: no {need}/weights.safetensors; run `action2sound train {need}` "
                                    f"with --out {run_dir} first")
    # One component in memory at a time: the presets come from the files' metadata alone.
    loaded = {s: p for s, p in found.items() if p is not None}
    if "sync_encoder" in loaded and not read_weights_preset(found["ldm"], "ldm").sync_stream.enabled:
        del loaded["sync_encoder"]  # an ldm without the stream never reads it: not part of this model
    preset = merge_presets({s: read_weights_preset(p, s) for s, p in loaded.items()})
    out_dir.mkdir(parents=True, exist_ok=True)
    dtype = torch.float16 if fp16 else None
    files: dict[str, dict[str, str]] = {}
    for name in ("av", "vae", "ldm", "vocoder", "sync_encoder"):
        if name not in loaded:
            continue
        tensors, _ = read_weights(loaded[name], name)
        # Check the weights against the merged preset before writing them: export never writes a model
        # directory that would not load.
        load_state_strict(build_component(name, preset, meta=True), tensors, str(found[name]))
        target = out_dir / f"{name}.safetensors"
        save_weights(target, tensors, name, preset, dtype=dtype)
        del tensors
        files[name] = {"file": target.name, "sha256": file_sha256(target)}
    if "vocoder" in loaded:
        vocoder = {"kind": "file", "file": "vocoder.safetensors"}
    elif preset.audio.name == "universal22k":
        vocoder = {"kind": "universal-hifigan"}
    else:
        vocoder = {"kind": "griffinlim"}
    (out_dir / VOCODER_JSON).write_text(json.dumps(vocoder, indent=1) + "\n")
    files["vocoder.json"] = {"file": VOCODER_JSON, "sha256": file_sha256(out_dir / VOCODER_JSON)}
    for name in ("vocoder", "sync_encoder"):
        stale = out_dir / f"{name}.safetensors"
        if name not in loaded and stale.exists():
            stale.unlink()  # a re-export without this network must not leave an old one behind
    manifest = {"format": FORMAT, "preset": preset.to_dict(), "files": files, "vocoder": vocoder,
                "source_run": run_dir.name}
    tmp = out_dir / (MODEL_JSON + ".partial")
    tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    tmp.replace(out_dir / MODEL_JSON)
    return out_dir


def default_model_dir() -> Path:
    """The model directory a command or `from_pretrained` uses when no model is named: the packaged default."""
    from importlib.resources import files

    # An installed package (wheel or editable) keeps its data as plain files, so the resource is a directory.
    path = Path(str(files("action2sound") / DEFAULT_MODEL))
    if not (path / MODEL_JSON).is_file():
        raise Action2SoundError(f"no model was named and the packaged default model is missing ({path}); pass "
                                "--model DIR (a model directory), or rebuild the default with `make default-model`")
    return path


def read_model_json(path: str | os.PathLike) -> dict[str, Any]:
    """The parsed model.json of a model directory (errors name the directory and the fix)."""
    path = Path(path)
    mj = path / MODEL_JSON
    if not mj.is_file():
        raise Action2SoundError(f"{path}: not a model directory (no {MODEL_JSON}); make one with "
                                "`action2sound export RUN --out DIR`")
    text = mj.read_text()
    try:
        manifest = json.loads(text)
    except json.JSONDecodeError as err:
        raise Action2SoundError(f"{mj}: not valid JSON ({err}); re-export the model") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else manifest
        raise Action2SoundError(f"{mj}: format {found!r}, expected {FORMAT!r}; re-export")
    digest = hashlib.sha256(text.encode()).hexdigest()
    if digest not in _CHECKED_MODEL_JSON:  # loading a model reads its model.json more than once
        check_model_json(mj, manifest)
        _CHECKED_MODEL_JSON.add(digest)
    return manifest


_CHECKED_MODEL_JSON: set[str] = set()  # SHA-256 of model.json texts that passed check_model_json


# A model.json whose networks would hold more parameters than this is refused before any is built: about
# 20 GB in fp32, four times the paper's four networks together (1.16 B).
MAX_MODEL_PARAMETERS = 5_000_000_000


def check_model_json(mj: Path, manifest: dict[str, Any]) -> None:
    """Types, names and sizes in a model.json, checked before anything is allocated; errors name the field.

    The preset's fields are type- and range-checked (config.preset_from_dict); then its networks are built on
    torch's meta device (shapes only, no memory) and their parameters counted against MAX_MODEL_PARAMETERS.
    """
    fix = "re-export the model directory (or correct the field)"
    try:
        preset = preset_from_dict(manifest.get("preset"), where="preset")
    except ValueError as err:
        raise Action2SoundError(f"{mj}: {err}; {fix}") from None
    files = manifest.get("files", {})
    if not isinstance(files, dict):
        raise Action2SoundError(f"{mj}: files: expected a {{name: {{file, sha256}}}} section; {fix}")
    for name, entry in files.items():
        if not (isinstance(entry, dict) and _plain_name(entry.get("file")) and isinstance(entry.get("sha256"), str)):
            raise Action2SoundError(f"{mj}: files.{name}: expected {{\"file\": a file name in the directory, "
                                    f"\"sha256\": a string}}, got {str(entry)[:60]}; {fix}")
    vocoder = manifest.get("vocoder", {"kind": "griffinlim"})
    if not isinstance(vocoder, dict) or (vocoder.get("kind") == "file" and not _plain_name(vocoder.get("file"))):
        raise Action2SoundError(f"{mj}: vocoder: expected {{\"kind\", \"file\"}} naming a file in the directory, "
                                f"got {str(vocoder)[:60]}; {fix}")
    built = [c for c in COMPONENTS if c in files] + (["vocoder"] if vocoder.get("kind") == "file" else [])
    total = 0
    for name in dict.fromkeys(built):
        try:
            with torch.random.fork_rng(devices=[]), torch.device("meta"):
                total += sum(p.numel() for p in build_component(name, preset).parameters())
        except Exception as err:  # any failure to build is a preset that does not describe this network
            reason = (str(err).splitlines() or [type(err).__name__])[0][:160]
            raise Action2SoundError(f"{mj}: its preset does not describe a {name} network ({reason}); {fix}") \
                from None
    if total > MAX_MODEL_PARAMETERS:
        raise Action2SoundError(f"{mj}: its preset's networks would hold {total:,} parameters, more than the "
                                f"{MAX_MODEL_PARAMETERS:,} this loader accepts; {fix}")


def _plain_name(name: Any) -> bool:
    # A model directory's files live in it: no absolute paths, no "..", no sub-folders.
    return isinstance(name, str) and name not in ("", ".", "..") and Path(name).name == name


def load_model_dir(path: str | os.PathLike, device: str | torch.device = "cpu", verify: bool = True,
                   components: tuple[str, ...] = COMPONENTS) -> ModelDir:
    """Load an exported model directory strictly (file hashes checked when `verify`) -> ModelDir.

    `components` limits what is built (e.g. ("av", "vae") for pre-encoding); vae and ldm are always loaded.
    """
    path = Path(path)
    manifest = read_model_json(path)
    preset = preset_from_dict(manifest["preset"])
    files = manifest.get("files", {})
    if verify:
        for name, entry in files.items():
            f = path / entry["file"]
            if not f.is_file():
                raise Action2SoundError(f"{path}: {entry['file']} is missing; re-export the model directory")
            if file_sha256(f) != entry["sha256"]:
                raise Action2SoundError(f"{f}: its SHA-256 differs from {MODEL_JSON}; the file was changed or "
                                        "damaged, re-export the model directory")
    modules: dict[str, torch.nn.Module | None] = {}
    for name in ("av", "vae", "ldm", "sync_encoder"):
        if name not in files:
            if name in ("vae", "ldm"):
                raise Action2SoundError(f"{path}: {MODEL_JSON} lists no {name}; re-export the model directory")
            modules[name] = None
            continue
        if name not in components and name not in ("vae", "ldm"):
            modules[name] = None
            continue
        modules[name], _ = load_component(path / files[name]["file"], name, device, preset=preset)
    vocoder_ref = manifest.get("vocoder", {"kind": "griffinlim"})
    kind = vocoder_ref.get("kind")
    if kind not in VOCODER_KINDS:
        raise Action2SoundError(f"{path}: unknown vocoder kind {kind!r}; one of {VOCODER_KINDS}")
    vocoder = None
    if "vocoder" in components:
        if kind == "file":
            vocoder, _ = load_component(path / vocoder_ref["file"], "vocoder", device, preset=preset)
        elif kind == "universal-hifigan":
            from .models.vocoder import load_universal_hifigan

            vocoder = load_universal_hifigan().to(device).eval()
    return ModelDir(path=path, preset=preset, av=modules["av"], vae=modules["vae"], ldm=modules["ldm"],
                    vocoder=vocoder, vocoder_kind=kind, sync_encoder=modules["sync_encoder"])

