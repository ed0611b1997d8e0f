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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from tqdm import tqdm

from .errors import Action2SoundError
from .media import VIDEO_EXTENSIONS, plan_mux
from .conditions import ambient_mode
from .options import GenerateOptions
from .outputs import GenerationResult, output_paths, prepare_output_folder, record_is_complete, remove_leftovers
from .pipeline import Pipeline, load_pipeline

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
        paper-profile model without one, the bridge to the universal HiFi-GAN), "model", "bridge", "fast" (the
        light vocoder distilled from the universal HiFi-GAN, ~70x cheaper on a CPU; preview quality) or "griffinlim".
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
        options as GenerateOptions (ambient_offset, steps, sampler, video_guidance, audio_guidance,
        sync_guidance, overlap, batch_size, ...).
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
    """What one batch run did: generated, skipped (outputs exist) and failed inputs, and renamed outputs."""

    done: tuple[Path, ...]
    skipped: tuple[Path, ...]
    failed: tuple[tuple[Path, str], ...]
    seconds: float
    renamed: tuple[tuple[Path, str], ...] = ()  # inputs whose outputs are not named after their stem: (input, name)

    def summary(self) -> str:
        text = (f"generated {len(self.done)}, skipped {len(self.skipped)} (done before with these settings; "
                f"--overwrite redoes them), "
                f"failed {len(self.failed)}, in {self.seconds:.1f} s")
        for path, name in self.renamed:
            text += f"\n  {path} -> {name}.* (another input has the name {path.stem})"
        return text


@dataclass(frozen=True)
class OutputPlan:
    """Where each input's outputs go: out folder, inputs and their collision-free names, in input order."""

    out: Path
    inputs: tuple[Path, ...]
    names: tuple[str, ...]


def collect_inputs(inputs: Sequence[str | os.PathLike]) -> list[Path]:
    """Files as given, folders expanded to their video files (sorted, not recursive, hidden files left out).

    A file named twice (directly, or also through its folder) is kept once, where it first appears.
    """
    out: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in VIDEO_EXTENSIONS
                           and not f.name.startswith("."))  # hidden: AppleDouble files, staged outputs
            if not found:
                raise Action2SoundError(f"{p}: folder holds no video files ({', '.join(VIDEO_EXTENSIONS)})")
            out.extend(found)
        else:
            out.append(p)  # a missing or bad file is reported as that input's failure
    if not out:
        raise Action2SoundError("no inputs given; pass video files or folders")
    seen: set[Path] = set()
    unique = []
    for p in out:
        key = p.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(p)
    return unique


def output_names(paths: Sequence[Path]) -> list[str]:
    """Collision-free output name of each input (deterministic for one input list): its stem, or for the 2nd,
    3rd, ... input with that stem STEM-2, STEM-3, ..., skipping names another input has or was given.

    Names are compared ignoring case, so the outputs do not collide on case-insensitive file systems either.
    """
    first: dict[str, int] = {}
    for i, p in enumerate(paths):
        first.setdefault(p.stem.casefold(), i)
    taken = set(first)
    names = []
    for i, p in enumerate(paths):
        if first[p.stem.casefold()] == i:
            names.append(p.stem)
            continue
        n = 2
        while f"{p.stem}-{n}".casefold() in taken:
            n += 1
        names.append(f"{p.stem}-{n}")
        taken.add(names[-1].casefold())
    return names


def plan_outputs(inputs: Sequence[str | os.PathLike], out_dir: str | os.PathLike, format: str = "wav",
                 container: str = "mp4", ambient: str | None = None) -> OutputPlan:
    """Check the output folder and name the outputs, before any model work -> OutputPlan.

    The folder is made and must be writable; no output may replace an input (a video, or the --ambient value
    when it is a file): that is an error naming both, e.g. --out the inputs' own folder with mp4 inputs.
    """
    paths = collect_inputs(inputs)
    out = prepare_output_folder(out_dir)
    names = output_names(paths)
    protected = {}
    ambient_file = [Path(ambient)] if ambient is not None and ambient_mode(str(ambient)) == "file" else []
    for p in [*paths, *ambient_file]:
        try:
            st = p.stat()
            protected[(st.st_dev, st.st_ino)] = p
        except OSError:
            continue  # a missing input fails on its own later
    for name in names:
        for target in output_paths(out, name, format, container).values():
            try:
                st = target.stat()
            except OSError:
                continue
            source = protected.get((st.st_dev, st.st_ino))
            if source is not None:
                raise Action2SoundError(f"--out {out}: the output {target} would replace the input {source}; "
                                        "choose another --out folder")
    return OutputPlan(out, tuple(paths), tuple(names))


def generate_files(model: Action2Sound, inputs: Sequence[str | os.PathLike], out_dir: str | os.PathLike,
                   format: str = "wav", keep_original_audio: str = "replace", overwrite: bool = False,
                   progress: bool | Callable[[int, int], None] = True, report_error=None, container: str = "mp4",
                   **options: Any) -> BatchReport:
    """Generate NAME.{wav,mp4|mkv,png,json} in out_dir for every input; a bad input is reported, the rest go on.

    Before any model work the options are checked, the output folder is made and checked (`plan_outputs`)
    and each input gets a collision-free NAME (`output_names`; the record and the summary say which). An
    input whose NAME.json records this input, the same settings and model, and files that still match it is
    skipped unless `overwrite` (other settings redo it). How each video is muxed (`media.plan_mux`) is
    decided before any generation. `report_error(path, message)` is called for each failure as it happens.
    progress: True shows a bar counting model windows (a long video has many) with rate and ETA; a function
    is called with (windows done, windows in all) instead. Inputs go through the model `batch_size` at a time.
    """
    t0 = time.perf_counter()
    opts = make_options(**options)
    plan = plan_outputs(inputs, out_dir, format=format, container=container, ambient=opts.ambient)
    wanted = _record_settings(model, opts, format=format, keep_original_audio=keep_original_audio,
                              container=container)  # checks the options against the model, before the work
    out = plan.out
    done: list[Path] = []
    failed: list[tuple[Path, str]] = []

    def fail(path: Path, err: Exception) -> None:
        msg = str(err) if isinstance(err, Action2SoundError) else f"{path}: {type(err).__name__}: {err}"
        failed.append((path, msg))
        if report_error is not None:
            report_error(path, msg)

    remove_leftovers(out, plan.names)  # staged files of a killed run
    todo, skipped = [], []
    for path, name in zip(plan.inputs, plan.names):
        if not overwrite and _done_with(out / f"{name}.json", wanted, path):
            skipped.append(path)
            continue
        try:
            plan_mux(path, container, keep_original_audio)  # a video that cannot be written fails before the work
        except Action2SoundError as err:
            fail(path, err)
            continue
        todo.append((path, name, _count_windows(model, path, opts)))

    total = sum(n for _, _, n in todo)
    bar = tqdm(total=total, unit="window", desc="generate", disable=progress is not True, dynamic_ncols=True)

    def windows_done(k: int) -> None:
        bar.update(k - bar.n)
        if callable(progress):
            progress(k, total)

    finished = 0  # windows of the groups before this one
    with bar:
        for i in range(0, len(todo), opts.batch_size):
            group = todo[i : i + opts.batch_size]
            size = sum(n for _, _, n in group)
            bar.set_postfix_str(f"videos {i + 1}-{i + len(group)} of {len(todo)}")
            results = model.pipeline.generate(
                [p for p, _, _ in group], opts,
                progress=lambda k, _n, base=finished, size=size: windows_done(base + min(k, size)))
            for (path, name, _), result in zip(group, results):
                if isinstance(result, Exception):
                    fail(path, result)
                else:
                    try:
                        result.save(out, name, format=format, keep_original_audio=keep_original_audio,
                                    container=container)
                        done.append(path)
                    except Exception as err:  # noqa: BLE001 - one bad input must not stop the batch
                        fail(path, err)
            finished += size
            windows_done(finished)  # a failed input's windows count as gone through
    renamed = tuple((p, n) for p, n in zip(plan.inputs, plan.names) if n != p.stem)
    return BatchReport(tuple(done), tuple(skipped), tuple(failed), time.perf_counter() - t0, renamed)


def _count_windows(model: Action2Sound, path: Path, opts: GenerateOptions) -> int:
    """Model windows of one input (for the progress bar); 1 when its length cannot be read (it fails later)."""
    try:
        return model.pipeline.count_windows(path, opts)
    except Exception:  # noqa: BLE001 - the input's own error is reported by generate
        return 1


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


def _done_with(record: Path, wanted: dict[str, Any], source: Path) -> bool:
    """True when `record` (a NAME.json) is complete (`record_is_complete`: its files match it) and was written
    for `source` with the wanted settings, model and index."""
    meta = record_is_complete(record)
    if meta is None:
        return False
    got = meta.get("settings", {})
    try:
        same_input = Path(meta.get("input", "")).resolve() == source.resolve()
    except (OSError, TypeError):
        same_input = False
    return (same_input and all(got.get(k) == v for k, v in wanted["settings"].items())
            and (meta.get("model") or {}).get("hash") == wanted["model"]
            and (meta.get("index") or {}).get("path") == wanted["index"])
