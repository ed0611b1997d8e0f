"""The Python API: `Action2Sound.from_pretrained(model_dir).generate(video, ambient=..., seed=...)`.

It is the same code path as `action2sound generate` (both call `pipeline.Pipeline.generate` and
`GenerationResult.save`), so one seed gives the same audio from either.

    from action2sound import Action2Sound

    a2s = Action2Sound.from_pretrained("path/to/model_dir")
    result = a2s.generate("video.mp4", ambient="quiet", seed=0)
    result.audio, result.sample_rate, result.metadata
    result.save("out/")  # video.wav, video.mp4, video.png, video.json
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from tqdm import tqdm

from .errors import Action2SoundError
from .media import VIDEO_EXTENSIONS, plan_mux
from .pipeline import GenerateOptions, GenerationResult, Pipeline, load_pipeline

__all__ = ["Action2Sound", "GenerateOptions", "GenerationResult"]

_OPTION_NAMES = tuple(f.name for f in fields(GenerateOptions))


class Action2Sound:
    """A loaded model (and optional retrieval index) that generates the sound of videos."""

    def __init__(self, pipeline: Pipeline):
        self.pipeline = pipeline

    @classmethod
    def from_pretrained(cls, model_dir: str | os.PathLike | None = None, device: str = "auto",
                        index: str | os.PathLike | None = None, vocoder: str = "auto") -> Action2Sound:
        """Load a model directory (`action2sound export`; None: the packaged default model); `index` defaults
        to MODEL_DIR/index when present.

        device: "auto" (cuda when available), "cpu" or "cuda". vocoder: "auto" (the model's; for a
        paper-profile model without one, the bridge to the universal HiFi-GAN), "model", "bridge" or "griffinlim".
        """
        if model_dir is None:
            from .weights import default_model_dir

            model_dir = default_model_dir()
        return cls(load_pipeline(model_dir, device=device, index=index, vocoder=vocoder))

    @property
    def sample_rate(self) -> int:
        return self.pipeline.sample_rate

    def generate(self, video: str | os.PathLike, ambient: str | os.PathLike = "retrieved", seed: int = 0,
                 **options: Any) -> GenerationResult:
        """Sound for one video -> GenerationResult (.audio float32 [samples], .sample_rate, .metadata, .save()).

        ambient: one of conditions.AMBIENT_MODES (retrieved, quiet, random, none) or an audio/video file; other
        options as GenerateOptions (ambient_offset, steps, sampler, video_guidance, audio_guidance, overlap,
        batch_size, ...).
        """
        (result,) = self.generate_many([video], ambient=ambient, seed=seed, **options)
        if isinstance(result, Exception):
            raise result
        return result

    def generate_many(self, videos: Sequence[str | os.PathLike], ambient: str | os.PathLike = "retrieved",
                      seed: int = 0, **options: Any) -> list[GenerationResult | Action2SoundError]:
        """Sound for several videos, windows batched together -> per video a result or the error it raised."""
        return self.pipeline.generate([Path(v) for v in videos], make_options(ambient=ambient, seed=seed, **options))


def make_options(**options: Any) -> GenerateOptions:
    """GenerateOptions from keyword arguments; an unknown name is an error listing the known ones."""
    unknown = sorted(set(options) - set(_OPTION_NAMES))
    if unknown:
        raise Action2SoundError(f"unknown generate option(s) {', '.join(unknown)}; known: {', '.join(_OPTION_NAMES)}")
    if "ambient" in options:
        options["ambient"] = os.fspath(options["ambient"])
    return GenerateOptions(**options)


# ================================================================================================ batches
@dataclass(frozen=True)
class BatchReport:
    """What one batch run did: generated, skipped (outputs exist) and failed inputs."""

    done: tuple[Path, ...]
    skipped: tuple[Path, ...]
    failed: tuple[tuple[Path, str], ...]
    seconds: float

    def summary(self) -> str:
        return (f"generated {len(self.done)}, skipped {len(self.skipped)} (done before with these settings; "
                f"--overwrite redoes them), "
                f"failed {len(self.failed)}, in {self.seconds:.1f} s")


def collect_inputs(inputs: Sequence[str | os.PathLike]) -> list[Path]:
    """Files as given, folders expanded to their video files (sorted, not recursive)."""
    out: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in VIDEO_EXTENSIONS)
            if not found:
                raise Action2SoundError(f"{p}: folder holds no video files ({', '.join(VIDEO_EXTENSIONS)})")
            out.extend(found)
        else:
            out.append(p)  # a missing or bad file is reported as that input's failure
    if not out:
        raise Action2SoundError("no inputs given; pass video files or folders")
    return out


def output_names(paths: Sequence[Path]) -> list[str]:
    """Output name of each input: its stem, with -2, -3, ... for repeated stems."""
    seen: dict[str, int] = {}
    names = []
    for p in paths:
        n = seen.get(p.stem, 0) + 1
        seen[p.stem] = n
        names.append(p.stem if n == 1 else f"{p.stem}-{n}")
    return names


def generate_files(model: Action2Sound, inputs: Sequence[str | os.PathLike], out_dir: str | os.PathLike,
                   format: str = "wav", keep_original_audio: str = "replace", overwrite: bool = False,
                   progress: bool = True, report_error=None, container: str = "mp4", **options: Any) -> BatchReport:
    """Generate NAME.{wav,mp4|mkv,png,json} in out_dir for every input; a bad input is reported, the rest go on.

    An input whose NAME.json records the same settings and model is skipped unless `overwrite` (other
    settings redo it). How each video is muxed (stream copy or re-encode, `media.plan_mux`) is decided before
    any generation. `report_error(path, message)` is called for each failure as it happens. Inputs go
    through the model `batch_size` at a time.
    """
    t0 = time.perf_counter()
    opts = make_options(**options)
    wanted = _record_settings(model, opts, format=format, keep_original_audio=keep_original_audio,
                              container=container)
    paths = collect_inputs(inputs)
    out = Path(out_dir)
    done: list[Path] = []
    failed: list[tuple[Path, str]] = []

    def fail(path: Path, err: Exception) -> None:
        msg = str(err) if isinstance(err, Action2SoundError) else f"{path}: {type(err).__name__}: {err}"
        failed.append((path, msg))
        if report_error is not None:
            report_error(path, msg)

    todo, skipped = [], []
    for path, name in zip(paths, output_names(paths)):
        if not overwrite and _done_with(out / f"{name}.json", wanted):
            skipped.append(path)
            continue
        try:
            plan_mux(path, container, keep_original_audio)  # a video that cannot be written fails before the work
        except Action2SoundError as err:
            fail(path, err)
            continue
        todo.append((path, name))

    with tqdm(total=len(todo), unit="video", desc="generate", disable=not progress, dynamic_ncols=True) as bar:
        for i in range(0, len(todo), opts.batch_size):
            group = todo[i : i + opts.batch_size]
            results = model.pipeline.generate([p for p, _ in group], opts)
            for (path, name), result in zip(group, results):
                if isinstance(result, Exception):
                    fail(path, result)
                else:
                    try:
                        result.save(out, name, format=format, keep_original_audio=keep_original_audio,
                                    container=container)
                        done.append(path)
                    except Exception as err:  # noqa: BLE001 - one bad input must not stop the batch
                        fail(path, err)
                bar.update(1)
    return BatchReport(tuple(done), tuple(skipped), tuple(failed), time.perf_counter() - t0)


# Options that change how the work is batched, not the outputs.
_RUN_ONLY = ("batch_size",)


def _record_settings(model: Action2Sound, opts: GenerateOptions, **output: str) -> dict[str, Any]:
    """What a NAME.json must record for its outputs to be these settings' (the model's defaults filled in)."""
    resolved = opts.resolved(model.pipeline.preset)
    settings = {k: v for k, v in vars(resolved).items() if k not in _RUN_ONLY}
    settings["ambient"] = str(resolved.ambient)
    r = model.pipeline.retrieval
    return {"settings": {**settings, **output}, "model": model.pipeline.model_info.get("hash"),
            "index": str(r.folder) if r is not None else None}


def _done_with(record: Path, wanted: dict[str, Any]) -> bool:
    """True when `record` (a NAME.json) exists and was written with the wanted settings, model and index."""
    import json

    try:
        meta = json.loads(record.read_text())
    except (OSError, ValueError):
        return False  # missing or unreadable: not done
    got = meta.get("settings", {})
    return (all(got.get(k) == v for k, v in wanted["settings"].items())
            and (meta.get("model") or {}).get("hash") == wanted["model"]
            and (meta.get("index") or {}).get("path") == wanted["index"])
