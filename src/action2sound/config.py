"""Frozen configuration: audio profiles, video input, and the tiny / small / paper presets.

Every length (samples, mel frames, padded frames, latent grid) is derived here from rates and durations,
once; nothing downstream types a shape in.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, replace
from typing import Any

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class AudioProfile:
    """How a waveform becomes the normalised mel image the VAE sees, and back."""

    name: str
    sample_rate: int
    n_fft: int
    hop: int
    win: int
    n_mels: int
    fmin: float
    fmax: float
    # "paper": v = clip((20 log10(max(m, 1e-5)) + 80) / 100, 0, 1)   (SPEC §2)
    # "hifigan": v = clip((ln(max(m, 1e-5)) - log_min) / (log_max - log_min), 0, 1), the universal HiFi-GAN's
    #            own natural-log mel mapped linearly into [0, 1]
    normalisation: str
    # "center": STFT frames centred on i*hop with n_fft/2 reflect padding (the paper);
    # "hifigan": (n_fft - hop)/2 reflect padding, no centring (HiFi-GAN's own mel; frame i covers hop i).
    framing: str = "center"
    duration: float = 3.0
    # The release pads the 188 real frames with 8 zero frames on the right (-> 196); we keep that rule for
    # every profile so the VAE's floor(n / 8) grid always covers every real frame.
    right_pad_frames: int = 8
    log_min: float = -11.5129  # ln(1e-5)
    log_max: float = 2.5

    @property
    def num_samples(self) -> int:
        """Samples in one model window (48,000 for the paper profile)."""
        return int(round(self.sample_rate * self.duration))

    @property
    def num_frames(self) -> int:
        """Real STFT frames of one window (188 for the paper profile, 258 for universal22k)."""
        if self.framing == "center":
            return self.num_samples // self.hop + 1
        pad = (self.n_fft - self.hop) // 2
        return (self.num_samples + 2 * pad - self.n_fft) // self.hop + 1

    @property
    def padded_frames(self) -> int:
        """Frames after right zero-padding (196 for the paper profile)."""
        return self.num_frames + self.right_pad_frames

    def latent_shape(self, latent_channels: int, downsample: int) -> tuple[int, int, int]:
        """Latent grid [C, n_mels / f, padded_frames // f] of a VAE with stride f ([4, 16, 24] for paper)."""
        if self.n_mels % downsample:
            raise ValueError(f"n_mels {self.n_mels} is not divisible by the VAE downsample factor {downsample}")
        width = self.padded_frames // downsample
        if width * downsample < self.num_frames:
            raise ValueError("the VAE latent grid does not cover every real mel frame; raise right_pad_frames")
        return (latent_channels, self.n_mels // downsample, width)

    def samples_for_frames(self, frames: int) -> int:
        return frames * self.hop


PAPER_AUDIO = AudioProfile(
    name="paper", sample_rate=16_000, n_fft=1024, hop=256, win=1024, n_mels=128,
    fmin=125.0, fmax=7600.0, normalisation="paper",
)
# The exact transform the shipped HiFi-GAN V1 "universal" generator was trained with (its config.json).
UNIVERSAL22K_AUDIO = AudioProfile(
    name="universal22k", sample_rate=22_050, n_fft=1024, hop=256, win=1024, n_mels=80,
    fmin=0.0, fmax=8000.0, normalisation="hifigan", framing="hifigan",
)
AUDIO_PROFILES: dict[str, AudioProfile] = {p.name: p for p in (PAPER_AUDIO, UNIVERSAL22K_AUDIO)}


def audio_profile(name_or_profile: str | AudioProfile) -> AudioProfile:
    if isinstance(name_or_profile, AudioProfile):
        return name_or_profile
    try:
        return AUDIO_PROFILES[name_or_profile]
    except KeyError:
        raise ValueError(
            f"unknown audio profile {name_or_profile!r}; choose one of {sorted(AUDIO_PROFILES)}"
        ) from None


@dataclass(frozen=True)
class VideoConfig:
    """How a clip's frames are sampled and shaped for the video tower."""

    num_frames: int = 16
    size: int = 224
    # "squash": resize the whole frame to size x size (the paper); "center_crop": scale the short side to
    # `size`, then crop the centre square (keeps aspect ratio, loses the sides).
    resize: str = "squash"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD


@dataclass(frozen=True)
class Preset:
    """A named bundle of everything a run needs. Model/training sections are added by later stages."""

    name: str
    audio: AudioProfile
    video: VideoConfig
    extra: dict[str, Any] = field(default_factory=dict)


PRESETS: dict[str, Preset] = {
    "tiny": Preset("tiny", UNIVERSAL22K_AUDIO, VideoConfig(num_frames=4, size=32)),
    "small": Preset("small", UNIVERSAL22K_AUDIO, VideoConfig(num_frames=8, size=64)),
    "paper": Preset("paper", PAPER_AUDIO, VideoConfig(num_frames=16, size=224)),
}


def preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}") from None


def override(cfg: Any, assignments: list[str]) -> Any:
    """Apply `key.sub=value` strings to a nested frozen dataclass, type-checked against the field."""
    for item in assignments:
        if "=" not in item:
            raise ValueError(f"--set expects key=value, got {item!r}")
        key, raw = item.split("=", 1)
        cfg = _set_path(cfg, key.strip().split("."), raw.strip(), key)
    return cfg


def _set_path(obj: Any, parts: list[str], raw: str, full_key: str) -> Any:
    if not dataclasses.is_dataclass(obj):
        raise ValueError(f"--set {full_key}: {type(obj).__name__} has no fields")
    names = {f.name: f for f in dataclasses.fields(obj)}
    head = parts[0]
    if head not in names:
        raise ValueError(f"--set {full_key}: unknown key {head!r}; known keys: {', '.join(sorted(names))}")
    current = getattr(obj, head)
    if len(parts) > 1:
        return replace(obj, **{head: _set_path(current, parts[1:], raw, full_key)})
    return replace(obj, **{head: _parse_like(current, raw, full_key)})


def _parse_like(current: Any, raw: str, key: str) -> Any:
    try:
        if isinstance(current, bool):
            if raw.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError
            return raw.lower() in ("true", "1", "yes")
        if isinstance(current, int):
            return int(raw)
        if isinstance(current, float):
            return float(raw)
        if isinstance(current, tuple):
            items = [s for s in raw.strip("()[] ").split(",") if s.strip()]
            kind = type(current[0]) if current else float
            return tuple(kind(s.strip()) for s in items)
        if current is None or isinstance(current, str):
            return raw
    except ValueError:
        raise ValueError(f"--set {key}: {raw!r} is not a valid {type(current).__name__}") from None
    raise ValueError(f"--set {key}: cannot set a field of type {type(current).__name__} from the command line")
