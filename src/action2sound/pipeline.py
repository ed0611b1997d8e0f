"""Generation: the sound of any video, window by window, with the ambient chosen by the audio condition.

`Pipeline.generate` is the inference path, in numbered steps:

1. probe each video and read the frames of every model window (any container, codec, variable frame rate,
   rotation; the timeline of `media`: t = 0 is the first frame);
2. run the video tower once per window: per-frame tokens (the video condition) and the video embedding
   (the retrieval query);
3. resolve the first window's audio condition (`ambient`, see `conditions`: retrieved, quiet, random, none
   or a file), skipping the input's own long video when the input is one of the indexed clips (matched by
   id); a caller may pass resolved conditions instead;
4. sample each window's latent with separate video and audio guidance (`sampling.guided`, the guided passes
   in one batched call); windows after the first take the previous window's generated latent as their audio
   condition, so the ambient carries across seams (not for ``none``, whose windows are independent);
5. VAE decode -> mel -> vocoder (the model directory's HiFi-GAN, or Griffin-Lim with a warning) -> waves;
6. assemble: overlapping windows joined by equal-power cross-fades, trimmed to the video's exact length.

The output has exactly round(duration * sample_rate) samples, where duration is the video stream's length
as `media.mux_audio` measures it, so the muxed track ends with the picture.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import re
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import __version__, media, sampling
from .conditions import AMBIENT_MODES, NULL, Condition, ConditionResolver, ambient_mode, unused
from .config import Preset
from .errors import Action2SoundError
from .indexing import INDEX_DIRNAME, Retrieval, load_retrieval
from . import mel_bridge
from .mel import fit_wave, mel_to_vocoder_input, mel_to_wave_griffinlim
from .models.sync_stream import sync_frame_times
from .models.vae import decode_latent
from .models.vocoder import load_universal_hifigan, vocode
from .plotting import render_png
from .weights import COMPONENTS, load_model_dir, read_model_json

SAMPLERS = ("dpm", "ddim", "release-dpm", "release-ddim")  # release-*: sampling.RELEASE_SAMPLERS
AUDIO_FORMATS = ("wav", "flac")
KEEP_AUDIO = ("replace", "mix", "add")
PRECISIONS = ("fp32", "bf16")
VOCODERS = ("auto", "model", "bridge", "griffinlim")  # load_pipeline's choices


# ============================================================================================== settings
@dataclass(frozen=True)
class GenerateOptions:
    """Every setting of one generation call (None: the model preset's default)."""

    ambient: str = "retrieved"  # one of conditions.AMBIENT_MODES, or the path of an audio or video file
    ambient_offset: float = 0.0  # seconds into the ambient file
    seed: int = 0
    steps: int | None = None
    sampler: str | None = None  # "dpm" (DPM-Solver++ 2M) | "ddim"
    # Guidance (sampling.guided): out = full + (w_v - 1)(full - null_video) + (w_a - 1)(full - null_audio).
    # The total w_v + w_a - 1 defaults to the preset's guidance scale, all of it on the video (the paper: w_a
    # = 1 keeps the audio condition unguided). w_a > 1 pushes the ambient towards the condition's.
    video_guidance: float | None = None
    audio_guidance: float | None = None
    overlap: float = 0.5  # seconds two consecutive windows share (the cross-fade lies inside it)
    batch_size: int = 8  # windows per network call
    quiet_quantile: float = 0.1  # `quiet` chooses among this fraction of the index, lowest ambient first
    exclude_own_video: bool = True  # retrieval skips the input's own long video when it is an indexed clip
    # "bf16" runs the video tower, UNet and vocoder under bfloat16 autocast (the VAE stays fp32): on a CPU with
    # AVX512-BF16 the universal HiFi-GAN takes half the time, at about -27 dB of added error.
    precision: str = "fp32"

    def __post_init__(self) -> None:
        """Check what needs no model: types, finiteness and ranges (one error naming the option)."""
        _check_int("seed", self.seed)
        _check_int("batch_size", self.batch_size, low=1)
        if self.steps is not None:
            _check_int("steps", self.steps, low=1)
        for name in ("ambient_offset", "overlap", "quiet_quantile", "video_guidance", "audio_guidance"):
            value = getattr(self, name)
            if value is not None:
                _check_number(name, value)
        if self.sampler is not None and self.sampler not in SAMPLERS:
            raise _option_error("sampler", self.sampler, f"one of {', '.join(SAMPLERS)}")
        if self.ambient_offset < 0:
            raise _option_error("ambient_offset", self.ambient_offset, "at least 0 (seconds into the --ambient file)")
        if self.overlap < 0:
            raise _option_error("overlap", self.overlap, "at least 0 seconds")
        if not 0.0 < self.quiet_quantile <= 1.0:
            raise _option_error("quiet_quantile", self.quiet_quantile, "in (0, 1]")
        if self.precision not in PRECISIONS:
            raise _option_error("precision", self.precision, f"one of {', '.join(PRECISIONS)}")
        if not str(self.ambient):
            raise Action2SoundError(f"ambient is empty; use {', '.join(AMBIENT_MODES)} or a file path (--ambient)")

    def resolved(self, preset: Preset) -> GenerateOptions:
        """These options with the preset's defaults filled in and the model-dependent limits checked.

        An --ambient file is checked here too, before any work: it must exist and hold sound past the offset
        (an offset past its end would condition on silence); less than one model window left is a warning.
        """
        d = preset.diffusion
        o = replace(
            self,
            steps=d.sample_steps if self.steps is None else self.steps,
            sampler=d.sampler if self.sampler is None else self.sampler,
            video_guidance=d.guidance_scale if self.video_guidance is None else float(self.video_guidance),
            audio_guidance=1.0 if self.audio_guidance is None else float(self.audio_guidance),
        )
        if o.steps > d.num_train_timesteps:
            raise _option_error("steps", o.steps, f"at most {d.num_train_timesteps} (the model's noise schedule "
                                "has that many steps)")
        window = preset.audio.num_samples / preset.audio.sample_rate
        if o.overlap > window / 3:
            raise _option_error("overlap", o.overlap, f"at most a third of the {window:.2f} s model window "
                                f"({window / 3:.2f} s)")
        if ambient_mode(str(o.ambient)) == "file":
            _check_ambient_file(Path(o.ambient), o.ambient_offset, window)
        return o


def _option_error(name: str, value: Any, need: str) -> Action2SoundError:
    return Action2SoundError(f"{name} must be {need}, got {value!r} (--{name.replace('_', '-')})")


def _check_int(name: str, value: Any, low: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise _option_error(name, value, "a whole number")
    if low is not None and value < low:
        raise _option_error(name, value, f"at least {low}")


def _check_number(name: str, value: Any) -> None:
    # NaN slips through every comparison (NaN < 0 is False) and ends as a wav of -32768 samples.
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not math.isfinite(value):
        raise _option_error(name, value, "a finite number")


def _check_ambient_file(path: Path, offset: float, window: float) -> None:
    """An --ambient FILE exists, has sound, and lasts past `offset`; a warning (once per file and offset) when
    less than `window` s is left."""
    try:
        st = path.stat()
    except OSError:
        raise Action2SoundError(f"--ambient {path}: no such file, and not one of {', '.join(AMBIENT_MODES)}; "
                                "pass an audio or video file") from None
    duration = _sound_duration(str(path.resolve()), st.st_mtime_ns, st.st_size)
    if duration is None:
        raise Action2SoundError(f"--ambient {path}: has no audio stream; pass a file with sound")
    if offset >= duration:
        raise Action2SoundError(f"--ambient-offset {offset:g} s is past the end of {path} ({duration:.2f} s), so "
                                f"the condition would be silence; use an offset below {duration:.2f}")
    key = (str(path.resolve()), st.st_mtime_ns, offset, window)
    if duration - offset < window and key not in _WARNED_SHORT:
        # Once: resolved() runs for every batch, and samplers reset the warnings registry.
        _WARNED_SHORT.add(key)
        warnings.warn(f"--ambient {path}: only {duration - offset:.2f} s of sound from {offset:g} s, shorter than "
                      f"one {window:.2f} s model window; the rest of the condition is silence", stacklevel=3)


_WARNED_SHORT: set[tuple] = set()


@functools.lru_cache(maxsize=64)
def _sound_duration(path: str, mtime_ns: int, size: int) -> float | None:
    """Seconds of a media file (None: it has no audio), cached per version of the file."""
    info = media.probe(path)
    if not info.has_audio:
        return None
    return info.duration or media.read_audio_file(path, 8000).size / 8000  # 0: the header does not say


# ============================================================================================== windows
def window_length(preset: Preset) -> int:
    """Output samples of one model window: the model's clip (3 s), whatever its vocoder yields.

    The universal22k vocoder yields 258 x 256 = 66,048 of the clip's 66,150 samples; the last 4.6 ms are
    zeros (inside the next window's cross-fade, or the end of a video). A 3 s video is one window.
    """
    return preset.audio.num_samples


def plan_windows(total: int, length: int, overlap: int) -> list[int]:
    """First output sample of each window covering [0, total) -> starts (increasing, last one ends at total).

    Windows of `length` samples step by length - overlap; the last is moved back to end exactly at `total`
    (overlapping its predecessor by more), so no window reaches past the video. A video shorter than one
    window gets one window (its frames past the end hold the last frame; the sound is trimmed).
    """
    if total <= length:
        return [0]
    hop = length - overlap
    n = math.ceil((total - length) / hop) + 1
    return [k * hop for k in range(n - 1)] + [total - length]


def window_gains(starts: Sequence[int], length: int, fade: int) -> list[np.ndarray]:
    """Gain of each window over its own samples (float64 [length] each), equal-power cross-faded.

    Consecutive windows cross-fade over `fade` samples (or their whole overlap, if shorter) centred in their
    overlap: the earlier one by cos, the later by sin of (pi/2)(j + 1/2)/fade, so the gains' squares sum to
    one at every sample and uncorrelated windows keep a constant total power across the seam.
    """
    n = len(starts)
    gains = [np.ones(length) for _ in range(n)]
    for k in range(n - 1):
        a, b = starts[k], starts[k + 1]
        ov = a + length - b
        if ov <= 0:
            raise Action2SoundError(f"windows {k} and {k + 1} do not overlap; internal planning error")
        f = max(1, min(fade, ov))
        seg = b + (ov - f) // 2  # first sample of the fade, absolute
        t = (np.arange(f) + 0.5) / f
        g_out, g_in = np.cos(0.5 * np.pi * t), np.sin(0.5 * np.pi * t)
        lo = seg - a  # position of the fade inside window k
        gains[k][lo : lo + f] *= g_out
        gains[k][lo + f :] = 0.0
        lo = seg - b  # inside window k + 1
        gains[k + 1][:lo] = 0.0
        gains[k + 1][lo : lo + f] *= g_in
    return gains


def assemble_windows(waves: Sequence[np.ndarray], starts: Sequence[int], total: int, fade: int) -> np.ndarray:
    """Place window waves [length] at their starts with equal-power cross-fades -> float32 [total]."""
    length = len(waves[0])
    out = np.zeros(max(total, starts[-1] + length), dtype=np.float64)
    for s, w, g in zip(starts, waves, window_gains(starts, length, fade)):
        out[s : s + length] += g * np.asarray(w, dtype=np.float64)
    return out[:total].astype(np.float32)


# ============================================================================================== media helpers
def _batched(items: Sequence, size: int) -> Iterator[Sequence]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


class _Clock:
    """Accumulated wall-clock seconds per named step."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t0

    def add(self, name: str, seconds: float) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds


# ============================================================================================== model steps
def sample_windows(
    ldm: torch.nn.Module, video_tokens: torch.Tensor, audio_latents: list[torch.Tensor | None],
    noise: torch.Tensor, options: GenerateOptions, preset: Preset, sync: torch.Tensor | None = None,
) -> torch.Tensor:
    """Sample scaled latents [B, C, F, W] for B windows: video tokens [B, T, D], audio condition per window.

    A None audio condition is the learned null. Separate video / audio guidance (`sampling.guided`); the
    audio pass is skipped when no window of the batch has an audio condition (it would equal the full one).
    sync [B, W, D_s]: the sync stream's column features of each window (None: a model without the stream, or
    none to give); guidance's null-video pass gets the zero stream (`LatentDiffusion.guided_model_fn`).
    """
    b, dev = video_tokens.shape[0], video_tokens.device
    has_audio = ldm.conditioner.audio is not None and any(a is not None for a in audio_latents)
    audio, missing = None, None
    if has_audio:
        zeros = torch.zeros(preset.latent_shape, device=dev)
        audio = torch.stack([a.to(dev) if a is not None else zeros for a in audio_latents])  # [B, C, F, W]
        missing = torch.tensor([a is None for a in audio_latents], device=dev)
    w_audio = options.audio_guidance if has_audio else 1.0
    full, null_video, null_audio = ldm.guidance_contexts(video_tokens, audio, missing, null_audio=w_audio != 1.0)
    if options.sampler in sampling.RELEASE_SAMPLERS:  # the release's own sampling: one weight, an all-zero null
        return sampling.sample_release(sampling.release_guided(ldm, full, options.video_guidance),
                                       (b, *preset.latent_shape), options.sampler, options.steps,
                                       noise=noise.to(dev), diffusion=preset.diffusion, device=dev)
    model_fn = ldm if sync is None else ldm.guided_model_fn(sync.to(dev), options.video_guidance, w_audio)
    denoiser = sampling.guided(model_fn, full, null_video, null_audio, options.video_guidance, w_audio)
    return sampling.sample(denoiser, (b, *preset.latent_shape), options.sampler, options.steps, noise=noise.to(dev),
                  diffusion=preset.diffusion, device=dev)


def latents_to_mels(vae: torch.nn.Module, z: torch.Tensor, preset: Preset) -> torch.Tensor:
    """Scaled latents [B, C, F, W] -> normalised mels [B, n_mels, num_frames] (real frames only)."""
    return decode_latent(vae, z, preset.audio.num_frames)


def mels_to_waves(vocoder: torch.nn.Module | None, mel: torch.Tensor, preset: Preset, seed: int = 0) -> np.ndarray:
    """Normalised mels [B, n_mels, num_frames] -> waves float32 [B, window_length] (HiFi-GAN, or Griffin-Lim)."""
    p, n = preset.audio, window_length(preset)
    if vocoder is None:
        if p.framing == "center":  # mel_bridge's Griffin-Lim: the floor rule (floor cells -> zero magnitude)
            waves = [mel_bridge.griffinlim(m, p, seed=seed) for m in mel.float().cpu().numpy()]
        else:
            waves = [fit_wave(mel_to_wave_griffinlim(m, p, seed=seed), p) for m in mel.float().cpu().numpy()]
        return np.stack(waves)[:, :n].astype(np.float32)
    param = next(vocoder.parameters())
    wave = vocode(vocoder, mel_to_vocoder_input(mel.to(param.device, param.dtype), p))  # [B, frames * hop]
    wave = wave.float().cpu().numpy()
    if wave.shape[-1] < n:
        wave = np.pad(wave, ((0, 0), (0, n - wave.shape[-1])))
    return wave[:, :n].astype(np.float32)


# ============================================================================================== results
@dataclass(frozen=True, eq=False)
class GenerationResult:
    """Generated audio for one video: float32 [samples] at sample_rate, and everything about how it was made."""

    audio: np.ndarray
    sample_rate: int
    metadata: dict[str, Any]
    video: Path | None = None  # the source video (for the muxed mp4 and the picture)

    @property
    def duration(self) -> float:
        return self.audio.size / self.sample_rate

    def save(self, out_dir: str | os.PathLike, name: str | None = None, format: str = "wav",
             keep_original_audio: str = "replace", image: bool = True, container: str = "mp4") -> dict[str, Path]:
        """Write the set NAME.wav|flac, NAME.mp4|mkv (the video with this track), NAME.png, NAME.json -> paths.

        The set is replaced as a whole: every file is written to a hidden temp name in out_dir first, then the
        old NAME.json is removed, the others renamed, and the new NAME.json (which records each file's size and
        sha256) renamed last. A failure while writing leaves the old set as it was; a kill while renaming
        leaves a set without its record, which `record_is_complete` (and so a rerun) treats as not done.
        The video stream is copied into `container` when it takes it, else re-encoded (`media.plan_mux`).
        """
        if format not in AUDIO_FORMATS:
            raise Action2SoundError(f"unknown audio format {format!r}; use one of {', '.join(AUDIO_FORMATS)}")
        if keep_original_audio not in KEEP_AUDIO:
            raise Action2SoundError(f"keep_original_audio must be one of {', '.join(KEEP_AUDIO)}, "
                                    f"got {keep_original_audio!r}")
        if f".{container}" not in media.MUX_CONTAINERS:
            raise Action2SoundError(f"unknown container {container!r}; use one of "
                                    f"{', '.join(e[1:] for e in media.MUX_CONTAINERS)}")
        out = prepare_output_folder(out_dir)
        name = name or (self.video.stem if self.video is not None else "generated")
        t0 = time.perf_counter()
        paths = output_paths(out, name, format, container if self.video is not None else None,
                             image and self.video is not None)
        media.check_finite(paths["audio"], self.audio)
        staged: dict[str, Path] = {}
        try:
            staged["audio"] = media.staging_path(paths["audio"])
            media.write_audio(staged["audio"], self.audio, self.sample_rate)
            if "video" in paths:
                staged["video"] = media.staging_path(paths["video"])
                mux = media.mux_audio(self.video, self.audio, self.sample_rate, staged["video"], keep_original_audio)
            if "image" in paths:
                staged["image"] = media.staging_path(paths["image"])
                render_png(staged["image"], self.video, self.audio, self.sample_rate,
                           profile=self.metadata.get("model", {}).get("profile", "universal22k"),
                           seams=[w["crossfade_centre"] for w in self.metadata.get("windows", [])[1:]],
                           title=f"{self.video.name}: ambient {self.metadata['settings']['ambient']}")
            meta = json.loads(json.dumps(self.metadata))  # a deep copy, JSON-clean
            meta["name"] = name
            meta["outputs"] = {k: p.name for k, p in paths.items()}
            meta["files"] = {paths[k].name: _file_record(tmp) for k, tmp in staged.items()}
            meta["settings"]["format"] = format
            meta["settings"]["keep_original_audio"] = keep_original_audio
            meta["settings"]["container"] = container
            if "video" in paths:
                meta["mux"] = mux.record()
            meta["timings"]["save"] = round(time.perf_counter() - t0, 4)
            staged["json"] = media.staging_path(paths["json"])
            staged["json"].write_text(json.dumps(meta, indent=1) + "\n")
            old = _recorded_outputs(paths["json"])
            # From here until the last rename the set has no record: a kill leaves it "not done", never mixed.
            paths["json"].unlink(missing_ok=True)
            for kind in ("audio", "video", "image", "json"):  # the record last
                if kind in staged:
                    os.replace(staged.pop(kind), paths[kind])
        except Action2SoundError as err:  # name the files the user will look for, not the temp names
            message = str(err)
            for kind, tmp in staged.items():
                message = message.replace(str(tmp), str(paths[kind]))
            raise Action2SoundError(message) from None
        finally:
            for tmp in staged.values():  # what was not renamed (a failure on the way)
                tmp.unlink(missing_ok=True)
        for stale in old - {p.name for p in paths.values()}:  # the old set's other files (another format)
            (out / stale).unlink(missing_ok=True)
        return paths


def output_paths(out: Path, name: str, format: str = "wav", container: str | None = "mp4",
                 image: bool = True) -> dict[str, Path]:
    """The files of one output set: audio, video (container None: none), image, json (the record)."""
    paths = {"audio": out / f"{name}.{format}"}
    if container is not None:
        paths["video"] = out / f"{name}.{container}"
        if image:
            paths["image"] = out / f"{name}.png"
    paths["json"] = out / f"{name}.json"
    return paths


def prepare_output_folder(out_dir: str | os.PathLike) -> Path:
    """Make the output folder (with its parents) and check that files can be created in it -> its path.

    Called before any model work, so a bad --out costs nothing (not a traceback after the compute).
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise Action2SoundError(f"--out {out}: is a file, not a folder; choose a folder (it is made when missing)")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = media.staging_path(out / "write-test")
        probe.unlink()
    except OSError as err:
        raise Action2SoundError(f"--out {out}: cannot write there ({err.strerror or err}); choose a folder you "
                                "can write to") from None
    return out


def record_is_complete(record: str | os.PathLike) -> dict[str, Any] | None:
    """The metadata of a NAME.json whose files are all present with the sizes and sha256 it records, else None.

    A record without the `files` table (older versions) is not trusted: its set is redone.
    """
    record = Path(record)
    try:
        meta = json.loads(record.read_text())
    except (OSError, ValueError):
        return None  # missing or unreadable
    files = meta.get("files") if isinstance(meta, dict) else None
    if not isinstance(files, dict) or not files:
        return None
    for fname, want in files.items():
        f = record.parent / fname
        try:
            if f.stat().st_size != want.get("size") or _file_record(f)["sha256"] != want.get("sha256"):
                return None
        except (OSError, AttributeError):
            return None
    return meta


def _file_record(path: Path) -> dict[str, Any]:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return {"size": path.stat().st_size, "sha256": h.hexdigest()}


def _recorded_outputs(record: Path) -> set[str]:
    """File names an existing NAME.json lists as its outputs (empty when there is none or it is unreadable)."""
    try:
        outputs = json.loads(record.read_text()).get("outputs", {})
        return {n for n in outputs.values() if isinstance(n, str) and n == Path(n).name}
    except (OSError, ValueError, AttributeError):
        return set()


def remove_leftovers(out: Path, names: Sequence[str]) -> list[Path]:
    """Delete the staged files a killed `save` of one of `names` left in `out` -> the files deleted.

    Staged names are .NAME.XXXXXXXX.partial.EXT (`media.staging_path`), or a stage of one of those.
    """
    mark = re.escape(media.STAGING_MARK)
    staged = re.compile(rf"\.+(.+?)\.[0-9a-f]{{8}}{mark}(?:\.[0-9a-f]{{8}}{mark})?\.[A-Za-z0-9]+")
    wanted, removed = set(names), []
    if not out.is_dir():
        return removed
    for entry in os.scandir(out):
        m = staged.fullmatch(entry.name)
        if m and m.group(1) in wanted and entry.is_file():
            Path(entry.path).unlink(missing_ok=True)
            removed.append(Path(entry.path))
    return removed


@dataclass
class _Job:
    """One input video on its way through generate()."""

    slot: int
    path: Path
    duration: float
    total: int  # output samples
    starts: list[int]
    info: dict[str, Any]
    tokens: torch.Tensor  # [n_windows, T, D] on the device
    query: np.ndarray  # [E] unit video embedding (mean over windows)
    noise: torch.Tensor  # [n_windows, C, F, W] on the CPU
    clock: _Clock
    sync: torch.Tensor | None = None  # [n_windows, W, D_s]: the sync stream's column features, when the model has it
    chained: bool = False
    conds: list[torch.Tensor | None] = field(default_factory=list)
    latents: list[torch.Tensor | None] = field(default_factory=list)
    condition: dict[str, Any] = field(default_factory=dict)


# ============================================================================================== the pipeline
class Pipeline:
    """The networks of a model directory on one device, plus an optional retrieval index; see `generate`."""

    def __init__(self, preset: Preset, av: torch.nn.Module, vae: torch.nn.Module, ldm: torch.nn.Module,
                 vocoder: torch.nn.Module | None, device: str | torch.device = "cpu",
                 retrieval: Retrieval | None = None, model_info: dict[str, Any] | None = None,
                 sync_encoder: torch.nn.Module | None = None):
        if av is None:
            raise Action2SoundError("the model has no AV model (video tower): generation needs one; export a run "
                                    "that trained the av stage")
        self.preset, self.device = preset, torch.device(device)
        self.av, self.vae, self.ldm = av.to(self.device).eval(), vae.to(self.device).eval(), ldm.to(self.device).eval()
        self.vocoder = vocoder.to(self.device).eval() if vocoder is not None else None
        # The sync stream's encoder (models/sync_stream.py), used only by an ldm that has the stream: without
        # one such an ldm gets the null stream, and a model without the stream computes exactly as before.
        self.sync_encoder = sync_encoder.to(self.device).eval() \
            if sync_encoder is not None and getattr(ldm, "sync", None) is not None else None
        self.retrieval = retrieval
        self.model_info = dict(model_info or {})

    @property
    def sample_rate(self) -> int:
        return self.preset.audio.sample_rate

    def _autocast(self, opts: GenerateOptions):
        if opts.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return nullcontext()

    # ------------------------------------------------------------------------------------------- generate
    @torch.no_grad()
    def generate(self, videos: Sequence[str | os.PathLike], options: GenerateOptions = GenerateOptions(),
                 conditions: Sequence[Condition] | None = None,
                 progress: Callable[[int, int], None] | None = None) -> list[GenerationResult | Action2SoundError]:
        """One result per video, in order: a GenerationResult, or the Action2SoundError that input raised.

        `conditions`: one resolved condition per video (`self.conditions`) to use instead of `options.ambient`
        (whose value then only labels the run), e.g. an evaluation's random clip keyed by the clip's id.
        progress(done, total) is called as windows are sampled (all videos' windows together).
        """
        opts = options.resolved(self.preset)
        if conditions is not None and len(conditions) != len(videos):
            raise Action2SoundError(f"generate got {len(conditions)} conditions for {len(videos)} videos; "
                                    "pass one per video or none")
        results: list[GenerationResult | Action2SoundError | None] = [None] * len(videos)

        # 1-2. Probe, read each window's frames, video tower -> tokens + embedding (a bad input fails alone).
        jobs: list[_Job] = []
        for slot, video in enumerate(videos):
            try:
                jobs.append(self._read_and_encode(slot, Path(video), opts))
            except Exception as err:  # noqa: BLE001 - one bad input must not stop the batch
                results[slot] = _as_user_error(video, err)

        # 3. The audio condition of each first window.
        for job, error in zip(list(jobs), self._choose_conditions(jobs, opts, conditions)):
            if error is not None:
                results[job.slot] = _as_user_error(job.path, error)
                jobs.remove(job)

        # 4. Sample every window; a chained window waits for its predecessor's latent.
        self._sample(jobs, opts, progress)

        # 5-6. Decode, vocode, assemble.
        for job in jobs:
            results[job.slot] = self._finish(job, opts)
        return results  # type: ignore[return-value]

    def _windows(self, duration: float, opts: GenerateOptions) -> tuple[int, list[int]]:
        """Output samples of a video of `duration` s and the first sample of each model window."""
        p = self.preset.audio
        total = int(round(duration * p.sample_rate))
        return total, plan_windows(total, window_length(self.preset), int(round(opts.overlap * p.sample_rate)))

    def count_windows(self, video: str | os.PathLike, options: GenerateOptions = GenerateOptions()) -> int:
        """How many model windows generate() samples for `video` (what its progress counts)."""
        return len(self._windows(media.video_duration(video), options)[1])

    # ------------------------------------------------------------------------------------------- step 1-2
    @torch.no_grad()
    def _read_and_encode(self, slot: int, path: Path, opts: GenerateOptions) -> _Job:
        clock = _Clock()
        p, v = self.preset.audio, self.preset.video
        with clock("read"):
            info = media.probe(path)
            if not info.has_video:
                raise Action2SoundError(f"{path}: has no video stream; generate needs a video (for an audio file, "
                                        "use it as --ambient instead)")
            duration = media.video_duration(path)
            if duration <= 0:
                raise Action2SoundError(f"{path}: its video stream has no duration; re-export the video")
        total, starts = self._windows(duration, opts)
        tokens, embs, syncs = [], [], []
        for chunk in _batched(starts, opts.batch_size):
            # Each window's frames spread over the model's clip length from its first output sample, as training
            # saw them (media.clip_frame_times); frames past the video's end hold its last frame.
            times = np.concatenate([media.clip_frame_times(s / p.sample_rate, p.duration, v.num_frames)
                                    for s in chunk])
            with clock("read"):
                frames = media.read_frames_at(path, times, size=v.size, resize=v.resize)  # [B*T, S, S, 3]
            with clock("video_tower"), self._autocast(opts):
                frames = torch.from_numpy(frames).view(len(chunk), v.num_frames, v.size, v.size, 3).to(self.device)
                tok, emb = self.av.encode_frames(frames)  # [B, T, D], [B, E]
                tokens.append(tok.float())
                embs.append(emb.cpu())
            if self.sync_encoder is not None:
                syncs.append(self._sync_features(path, chunk, clock, opts))
        # The query of a long video is its windows' mean direction: its ambient is the whole video's.
        query = torch.nn.functional.normalize(torch.cat(embs).mean(0), dim=0).numpy()
        g = torch.Generator("cpu").manual_seed(int(opts.seed))
        # Noise drawn on the CPU in window order: a seed gives the same noise on any device and in any batch.
        noise = torch.randn((len(starts), *self.preset.latent_shape), generator=g)
        job_info = {"fps": info.fps, "width": info.width, "height": info.height, "rotation": info.rotation,
                    "has_audio": info.has_audio}
        return _Job(slot, path, duration, total, starts, job_info, torch.cat(tokens), query, noise, clock,
                    latents=[None] * len(starts), conds=[None] * len(starts),
                    sync=torch.cat(syncs) if syncs else None)

    def _sync_features(self, path: Path, chunk: Sequence[int], clock: _Clock, opts: GenerateOptions
                       ) -> torch.Tensor:
        """The sync stream of windows starting at output samples `chunk` -> column features [B, W, D_s].

        Frames at each window's start + sync_frame_times, as the store read them for training; a video slower
        than the stream's rate gives its nearest frames (media.read_frames_at), so the stream carries the
        video's own rate; frames past its end hold its last frame.
        """
        p, size = self.preset, self.preset.sync_stream.size
        rel = sync_frame_times(p)
        times = np.concatenate([s / p.audio.sample_rate + rel for s in chunk])
        with clock("read"):
            frames = media.read_frames_at(path, times, size=size, resize=p.video.resize)  # [B*N, s, s, 3]
        with clock("video_tower"), self._autocast(opts):
            frames = torch.from_numpy(frames).view(len(chunk), len(rel), size, size, 3).to(self.device)
            return self.sync_encoder.video_features(frames).float()

    # ------------------------------------------------------------------------------------------- step 3
    @property
    def conditions(self) -> ConditionResolver:
        """The resolver of ambient conditions for this model and its index (`conditions`)."""
        return ConditionResolver(self.preset, self.vae, self.device, self.retrieval)

    def _choose_conditions(self, jobs: list[_Job], opts: GenerateOptions,
                           given: Sequence[Condition] | None = None) -> list[Exception | None]:
        """Set each job's first audio condition and its record; per-job errors come back (None: fine).

        `given`: conditions resolved by the caller, one per input slot, instead of resolving `opts.ambient`.
        """
        errors: list[Exception | None] = [None] * len(jobs)
        if not jobs:
            return errors
        mode = ambient_mode(opts.ambient)
        if self.ldm.conditioner.audio is None:
            for job in jobs:
                job.condition = unused(mode).record()
            return errors
        t0 = time.perf_counter()
        resolver = self.conditions
        if opts.sampler in sampling.RELEASE_SAMPLERS:  # the release conditions on a posterior sample, not the mean
            resolver = ConditionResolver(self.preset, self.vae, self.device, self.retrieval, posterior_seed=opts.seed)
        conds: list[Condition | Exception]
        if given is not None:
            conds = [given[job.slot] for job in jobs]
        elif mode == "none":
            conds = [NULL] * len(jobs)
        elif mode == "file":
            conds = [resolver.file(opts.ambient, opts.ambient_offset)] * len(jobs)
        else:
            r = resolver.need_index(f"--ambient {mode}")
            own = [r.own_video(j.path) if opts.exclude_own_video else None for j in jobs]
            conds = resolver.from_index(mode, np.stack([j.query for j in jobs]), own, opts.quiet_quantile,
                                        keys=[j.path.stem for j in jobs], seed=opts.seed)
        for i, (job, cond) in enumerate(zip(jobs, conds)):
            if isinstance(cond, Exception):
                errors[i] = cond
                continue
            # A window conditioned on a latent hands its own latent to the next one (step 4): the ambient
            # carries across seams. Under the learned null, windows are independent.
            job.conds[0], job.chained, job.condition = cond.latent, cond.latent is not None, cond.record()
        share = (time.perf_counter() - t0) / len(jobs)
        for job in jobs:
            job.clock.add("condition", share)
        return errors

    # ------------------------------------------------------------------------------------------- step 4
    def _sample(self, jobs: list[_Job], opts: GenerateOptions, progress: Callable[[int, int], None] | None = None
                ) -> None:
        total = sum(len(job.starts) for job in jobs)
        done = 0
        if progress is not None:
            progress(done, total)
        while True:
            ready: list[tuple[_Job, int]] = []
            for job in jobs:
                todo = [k for k, z in enumerate(job.latents) if z is None]
                if not todo:
                    continue
                # A chained window needs its predecessor's latent; independent windows are all ready at once.
                ready += [(job, todo[0])] if job.chained else [(job, k) for k in todo]
            if not ready:
                return
            for chunk in _batched(ready, opts.batch_size):
                t0 = time.perf_counter()
                tokens = torch.stack([job.tokens[k] for job, k in chunk])
                noise = torch.stack([job.noise[k] for job, k in chunk])
                # Only a model with the stream gets the keyword: without it the call is the one it always was.
                stream = {"sync": torch.stack([job.sync[k] for job, k in chunk])} \
                    if chunk[0][0].sync is not None else {}
                with self._autocast(opts):
                    z = sample_windows(self.ldm, tokens, [job.conds[k] for job, k in chunk], noise, opts,
                                       self.preset, **stream).float()
                for (job, k), zk in zip(chunk, z):
                    job.latents[k] = zk
                    if job.chained and k + 1 < len(job.starts):
                        job.conds[k + 1] = zk  # the ambient carries over the seam
                share = (time.perf_counter() - t0) / len(chunk)
                for job, _ in chunk:
                    job.clock.add("sample", share)
                done += len(chunk)
                if progress is not None:
                    progress(done, total)

    # ------------------------------------------------------------------------------------------- step 5-6
    def _finish(self, job: _Job, opts: GenerateOptions) -> GenerationResult:
        p = self.preset.audio
        waves = []
        for chunk in _batched(list(range(len(job.starts))), opts.batch_size):
            z = torch.stack([job.latents[k] for k in chunk])
            with job.clock("decode"):
                mel = latents_to_mels(self.vae, z, self.preset)  # [B, n_mels, num_frames]
            with job.clock("vocode"), self._autocast(opts):
                waves.extend(mels_to_waves(self.vocoder, mel, self.preset, seed=opts.seed))
        fade = int(round(opts.overlap * p.sample_rate))
        with job.clock("assemble"):
            audio = assemble_windows(waves, job.starts, job.total, fade)
        length = window_length(self.preset)
        windows = []
        for k, s in enumerate(job.starts):
            w = {"start": round(s / p.sample_rate, 6), "end": round(min(s + length, job.total) / p.sample_rate, 6),
                 "condition": ("previous window" if k and job.chained else
                               job.condition.get("mode") if k == 0 else "learned null")}
            if k:
                ov = job.starts[k - 1] + length - s
                w["crossfade_centre"] = round((s + ov / 2) / p.sample_rate, 6)
            windows.append(w)
        timings = {k: round(v, 4) for k, v in job.clock.seconds.items()}
        timings["total"] = round(sum(job.clock.seconds.values()), 4)
        settings = {k: v for k, v in vars(opts).items()}
        settings["ambient"] = str(opts.ambient)
        settings["device"] = str(self.device)
        settings["total_guidance"] = opts.video_guidance + opts.audio_guidance - 1.0
        metadata = {
            "input": str(job.path), "duration": job.duration, "num_samples": int(audio.size),
            "sample_rate": p.sample_rate, "video": job.info, "settings": settings, "model": self.model_info,
            "index": self._index_info(), "condition": job.condition, "windows": windows,
            "crossfade_seconds": opts.overlap, "peak": round(float(np.max(np.abs(audio))) if audio.size else 0.0, 6),
            "timings": timings, "versions": {"action2sound": __version__, "torch": torch.__version__},
        }
        if getattr(self.ldm, "sync", None) is not None:
            # "encoder": the video's sync stream was fed; "null": the model has the stream but no encoder for it.
            metadata["sync_stream"] = "encoder" if job.sync is not None else "null"
        return GenerationResult(audio, p.sample_rate, metadata, job.path)

    def _index_info(self) -> dict[str, Any] | None:
        r = self.retrieval
        if r is None:
            return None
        return {"path": str(r.folder), "kind": r.index.kind, "clips": len(r.index),
                "store": str(r.store.path) if r.store is not None else None}


def _as_user_error(path: str | os.PathLike, err: Exception) -> Action2SoundError:
    if isinstance(err, Action2SoundError):
        return err
    return Action2SoundError(f"{os.fspath(path)}: failed ({type(err).__name__}: {err})")


# ============================================================================================== loading
def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """'auto' -> cuda when available, else cpu; 'cuda' without a GPU is an error."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise Action2SoundError("--device cuda: no CUDA device is available here; use --device cpu or auto")
    return dev


def load_pipeline(model_dir: str | os.PathLike, device: str | torch.device = "auto",
                  index: str | os.PathLike | None = None, vocoder: str = "auto") -> Pipeline:
    """A Pipeline from a model directory; `index` defaults to MODEL_DIR/index when that exists.

    vocoder: "auto" (the model directory's: a trained HiFi-GAN, the universal one; without one, the bridge to
    the universal HiFi-GAN for another profile, else Griffin-Lim with a warning), "model" (the model
    directory's own, or an error), "bridge" (`mel_bridge.BridgeVocoder`) or "griffinlim" (force it, no warning).
    """
    if vocoder not in VOCODERS:
        raise Action2SoundError(f"vocoder must be one of {', '.join(VOCODERS)}, got {vocoder!r}")
    model_dir = Path(model_dir)
    dev = resolve_device(device)
    manifest = read_model_json(model_dir)
    components = tuple(c for c in COMPONENTS if not (c == "vocoder" and vocoder in ("griffinlim", "bridge")))
    md = load_model_dir(model_dir, dev, components=components)
    chosen_vocoder, kind = _choose_vocoder(model_dir, md, vocoder, dev)
    preset, release_sampler = md.preset, sampling.default_sampling_for(manifest)
    if release_sampler is not None:  # the release's model samples the release's way by default
        preset = replace(preset, diffusion=replace(preset.diffusion, sampler=release_sampler))
    av_hash = manifest.get("files", {}).get("av", {}).get("sha256", "")
    info = {
        "dir": str(model_dir), "hash": hashlib.sha256((model_dir / "model.json").read_bytes()).hexdigest()[:16],
        "av_sha256": av_hash, "preset": md.preset.name, "profile": md.preset.audio.name, "vocoder": kind,
    }
    folder = Path(index) if index is not None else model_dir / INDEX_DIRNAME
    retrieval = None
    if index is not None or folder.is_dir():
        retrieval = load_retrieval(folder, av_hash, md.preset)
    return Pipeline(preset, md.av, md.vae, md.ldm, chosen_vocoder, dev, retrieval, info,
                    sync_encoder=md.sync_encoder)


def _choose_vocoder(model_dir: Path, md: Any, vocoder: str, dev: torch.device) -> tuple[torch.nn.Module | None, str]:
    """(the vocoder module or None for Griffin-Lim, its kind for the metadata) for a `load_pipeline` choice."""
    profile = md.preset.audio
    if vocoder == "griffinlim":
        return None, "griffinlim"
    if vocoder == "model":
        if md.vocoder is None:
            raise Action2SoundError(f"{model_dir}: has no vocoder of its own; use --vocoder bridge or griffinlim, "
                                    "or train one with `action2sound train vocoder`")
        return md.vocoder, md.vocoder_kind
    if vocoder == "auto" and md.vocoder is not None:
        return md.vocoder, md.vocoder_kind
    if not mel_bridge.bridge_applies(profile):
        if vocoder == "bridge":
            raise Action2SoundError(f"{model_dir}: its {profile.name} mel is the universal HiFi-GAN's own; there is "
                                    "nothing to bridge (use --vocoder model or griffinlim)")
    else:
        try:
            return mel_bridge.BridgeVocoder(load_universal_hifigan().to(dev).eval(), profile), "bridge"
        except Action2SoundError:
            if vocoder == "bridge":
                raise
    warnings.warn(f"{model_dir}: no HiFi-GAN for the {profile.name} profile, so the sound is made with Griffin-Lim "
                  "(far lower quality); train one with `action2sound train vocoder` and re-export the model "
                  "directory", stacklevel=3)
    return None, "griffinlim"
