"""Generation settings: `GenerateOptions`, checked as they are made (CLI, API and UI share the checks)."""

from __future__ import annotations

import functools
import math
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from . import media
from .conditions import AMBIENT_MODES, ambient_mode
from .config import Preset
from .errors import Action2SoundError


SAMPLERS = ("dpm", "ddim", "release-dpm", "release-ddim")  # release-*: sampling.RELEASE_SAMPLERS
AUDIO_FORMATS = ("wav", "flac")
KEEP_AUDIO = ("replace", "mix", "add")
PRECISIONS = ("auto", "fp32", "bf16")  # Pipeline._precision says what each does
VOCODERS = ("auto", "model", "bridge", "fast", "griffinlim")  # load_pipeline's choices


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
    # w_s > 1 adds (w_s - 1)(full - full with the null sync stream): pushes the sound's timing towards what the
    # sync stream shows (a model with the stream only; others ignore it).
    sync_guidance: float | None = None
    overlap: float = 0.5  # seconds two consecutive windows share (the cross-fade lies inside it)
    batch_size: int = 8  # windows per network call
    quiet_quantile: float = 0.1  # `quiet` chooses among this fraction of the index, lowest ambient first
    exclude_own_video: bool = True  # retrieval skips the input's own long video when it is an indexed clip
    # "auto": fp32, but a HiFi-GAN vocoder on a CPU with AMX runs its middle stages in bf16 (models.vocoder.
    # HifiGanRunner: 2.5x faster, MR-STFT 0.041 from fp32 on real recordings); "fp32": every network in fp32;
    # "bf16": the video tower, UNet and vocoder under bfloat16 autocast (the VAE stays fp32; MR-STFT 0.618).
    precision: str = "auto"

    def __post_init__(self) -> None:
        """Check what needs no model: types, finiteness and ranges (one error naming the option)."""
        _check_int("seed", self.seed)
        _check_int("batch_size", self.batch_size, low=1)
        if self.steps is not None:
            _check_int("steps", self.steps, low=1)
        for name in ("ambient_offset", "overlap", "quiet_quantile", "video_guidance", "audio_guidance",
                     "sync_guidance"):
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
            audio_guidance=d.audio_guidance_scale if self.audio_guidance is None else float(self.audio_guidance),
            sync_guidance=d.sync_guidance_scale if self.sync_guidance is None else float(self.sync_guidance),
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
