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
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from .errors import Action2SoundError
from .pipeline import GenerateOptions, GenerationResult, Pipeline, load_pipeline

__all__ = ["Action2Sound", "GenerateOptions", "GenerationResult"]

_OPTION_NAMES = tuple(f.name for f in fields(GenerateOptions))


class Action2Sound:
    """A loaded model (and optional retrieval index) that generates the sound of videos."""

    def __init__(self, pipeline: Pipeline):
        self.pipeline = pipeline

    @classmethod
    def from_pretrained(cls, model_dir: str | os.PathLike, device: str = "auto",
                        index: str | os.PathLike | None = None, vocoder: str = "auto") -> Action2Sound:
        """Load a model directory (`action2sound export`); `index` defaults to MODEL_DIR/index when present.

        device: "auto" (cuda when available), "cpu" or "cuda". vocoder: "auto" (the model's; for a
        paper-profile model without one, the bridge to the universal HiFi-GAN), "model", "bridge" or "griffinlim".
        """
        return cls(load_pipeline(model_dir, device=device, index=index, vocoder=vocoder))

    @property
    def sample_rate(self) -> int:
        return self.pipeline.sample_rate

    def generate(self, video: str | os.PathLike, ambient: str | os.PathLike = "retrieved", seed: int = 0,
                 **options: Any) -> GenerationResult:
        """Sound for one video -> GenerationResult (.audio float32 [samples], .sample_rate, .metadata, .save()).

        ambient: "retrieved", "quiet", "none" or an audio/video file; other options as GenerateOptions
        (ambient_offset, steps, sampler, video_guidance, audio_guidance, overlap, batch_size, ...).
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
VIDEO_EXTENSIONS = (".mp4", ".mkv", ".mov", ".webm", ".avi", ".m4v", ".mpg", ".mpeg", ".ts", ".flv", ".wmv")


@dataclass(frozen=True)
class BatchReport:
    """What one batch run did: generated, skipped (outputs exist) and failed inputs."""

    done: tuple[Path, ...]
    skipped: tuple[Path, ...]
    failed: tuple[tuple[Path, str], ...]
    seconds: float

    def summary(self) -> str:
        return (f"generated {len(self.done)}, skipped {len(self.skipped)} (outputs exist; --overwrite redoes them), "
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
                   progress: bool = True, report_error=None, **options: Any) -> BatchReport:
    """Generate NAME.{wav,mp4,png,json} in out_dir for every input; a bad input is reported, the rest go on.

    An input whose NAME.json exists is skipped unless `overwrite`. `report_error(path, message)` is called
    for each failure as it happens. Inputs go through the model `batch_size` at a time.
    """
    import time

    from tqdm import tqdm

    t0 = time.perf_counter()
    opts = make_options(**options)
    paths = collect_inputs(inputs)
    out = Path(out_dir)
    todo, skipped = [], []
    for path, name in zip(paths, output_names(paths)):
        if not overwrite and (out / f"{name}.json").is_file():
            skipped.append(path)
        else:
            todo.append((path, name))
    done: list[Path] = []
    failed: list[tuple[Path, str]] = []

    def fail(path: Path, err: Exception) -> None:
        msg = str(err) if isinstance(err, Action2SoundError) else f"{path}: {type(err).__name__}: {err}"
        failed.append((path, msg))
        if report_error is not None:
            report_error(path, msg)

    with tqdm(total=len(todo), unit="video", desc="generate", disable=not progress, dynamic_ncols=True) as bar:
        for i in range(0, len(todo), opts.batch_size):
            group = todo[i : i + opts.batch_size]
            results = model.pipeline.generate([p for p, _ in group], opts)
            for (path, name), result in zip(group, results):
                if isinstance(result, Exception):
                    fail(path, result)
                else:
                    try:
                        result.save(out, name, format=format, keep_original_audio=keep_original_audio)
                        done.append(path)
                    except Exception as err:  # noqa: BLE001 - one bad input must not stop the batch
                        fail(path, err)
                bar.update(1)
    return BatchReport(tuple(done), tuple(skipped), tuple(failed), time.perf_counter() - t0)
