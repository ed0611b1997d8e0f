"""Frozen configuration: audio profiles, video input, and the tiny / small / paper presets.

Every length (samples, mel frames, padded frames, latent grid) is derived here from rates and durations,
once; nothing downstream types a shape in.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, replace
from typing import Any

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# "frozen_in_time": Frozen-in-Time's SpaceTimeTransformer (models/spacetime.py), the release's video backbone;
# "timesformer": transformers' TimesformerModel (TimeSformer's own divided attention).
VIDEO_ARCHS = ("frozen_in_time", "timesformer")


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
class AVConfig:
    """The audio-visual contrastive model: a space-time video tower, an AST audio tower, a shared embedding."""

    # Video tower (divided space-time attention, one of VIDEO_ARCHS); frame count and size come from VideoConfig.
    # The paper's is Frozen-in-Time's (the weights of av.pth compute the release's features only with it).
    video_arch: str = "frozen_in_time"
    video_patch: int = 16
    video_hidden: int = 768
    video_layers: int = 12
    video_heads: int = 12
    video_mlp: int = 3072
    # Audio tower (AST). "fbank": the 128-bin Kaldi fbank (25 ms / 10 ms) of the central `fbank_seconds` of the
    # wave, AST's own recipe and the paper's; "mel": the profile's normalised mel, every real frame (tiny / small:
    # no second transform to compute or store).
    audio_input: str = "fbank"
    fbank_bins: int = 128
    fbank_seconds: float = 1.5
    # 1.5 s gives 148 frames; the release's AST takes 149 (zero-padded on the right, as AST pads to its length).
    fbank_frames: int = 149
    # AST normalises its input as (x - mean) / (2 std); defaults are AST's AudioSet fbank statistics.
    input_mean: float = -4.2677393
    input_std: float = 4.5689974
    audio_patch: int = 16
    audio_fstride: int = 10
    audio_tstride: int = 10
    audio_hidden: int = 768
    audio_layers: int = 12
    audio_heads: int = 12
    audio_mlp: int = 3072
    embed_dim: int = 256
    init_temperature: float = 0.07
    # Logit offset log(w) for negatives from the same long video (w > 1 makes these hard negatives count more).
    same_video_weight: float = 1.0


@dataclass(frozen=True)
class VAEConfig:
    """The mel-image AutoencoderKL (paper: the Stable Diffusion v1 VAE, frozen)."""

    # 3 = the mel copied to RGB, needed to load SD v1 weights; 1 for VAEs we train ourselves.
    in_channels: int = 3
    block_out_channels: tuple[int, ...] = (128, 256, 512, 512)
    layers_per_block: int = 2
    latent_channels: int = 4
    norm_groups: int = 32
    # latent = posterior sample x scaling_factor (SD v1: 0.18215). A VAE we train sets it to 1 / std of its
    # training latents when its stage ends, as SD did.
    scaling_factor: float = 0.18215
    trainable: bool = False
    kl_weight: float = 1e-6
    # Train on random crops this many frames wide (a multiple of `downsample`; 0 = whole mels): the VAE is
    # convolutional, and full-resolution convolutions dominate its cost.
    train_crop_frames: int = 0
    # Decode with this many latent columns of context at each end (models.vae.decode_latent): the first column
    # repeated on the left; on the right the mean of the last all-real column and the padding columns in place
    # of the padding columns and past them. 0 decodes the latent as it is (paper: the release's function);
    # tiny / small: 2 (the default model, 126 held-out outputs: onsets in the first 20 ms / after 2.85 s
    # 6 / 26 -> 1 / 14, onset F1 0.470 -> 0.497, control r 0.903 -> 0.911; docs/RESULTS.md, session 11).
    decode_edge_columns: int = 0

    @property
    def downsample(self) -> int:
        """Spatial stride of the encoder: one factor 2 per block after the first."""
        return 2 ** (len(self.block_out_channels) - 1)


@dataclass(frozen=True)
class UNetConfig:
    """diffusers UNet2DConditionModel (paper: the SD v1 configuration, 859.5 M parameters)."""

    block_out_channels: tuple[int, ...] = (320, 640, 1280, 1280)
    layers_per_block: int = 2
    # Cross-attention per resolution level, finest first (SD v1: at downsampling 1, 2, 4 but not 8).
    attention_levels: tuple[bool, ...] = (True, True, True, False)
    heads: int = 8
    transformer_depth: int = 1
    norm_groups: int = 32
    gradient_checkpointing: bool = False


@dataclass(frozen=True)
class ConditioningConfig:
    """Video and audio condition tokens (SPEC §2): context = [video tokens ; audio tokens] of width ctx_dim."""

    ctx_dim: int = 768
    audio_hidden: int = 512
    # False: video tokens only (the paper's "without audio condition" ablation).
    use_audio: bool = True


@dataclass(frozen=True)
class SyncStreamConfig:
    """The sync stream (models/sync_stream.py): dense frames -> a learned sync encoder -> one feature vector per
    latent column, injected per column into the UNet, so that what the video shows at t drives the sound at t.

    Off by default: a model whose stored config has no `sync_stream` section (every model saved before it
    existed, and the paper's release) computes exactly what it computed before.
    """

    enabled: bool = False
    # Minimum frame rate. Frames are read at r times the latent column rate, r the smallest integer with
    # r x column rate >= fps (21.5 fps for universal22k: columns are 92.9 ms wide), so that r frames fall in every
    # column and a shift by r frames is a shift by exactly one column. A video slower than that repeats frames:
    # the stream then carries the video's own rate.
    fps: float = 15.0
    size: int = 32  # frames are squashed to size x size (timing needs motion, not detail)
    width: int = 32  # channels of the per-frame CNN and of the temporal convolutions
    feature_dim: int = 16  # D_s: features per latent column (what the store keeps and the UNet reads)
    temporal_kernel: int = 5  # frames seen by each temporal convolution (two of them)
    # "channels": D_s zero-initialised extra UNet input channels ([D_s, F, W], the column's features repeated
    # over the mel bins); "film": a zero-initialised per-column scale and shift of the noisy latent's channels.
    # Chosen by benchmarks/ablate_sync_injection.py (tiny preset, toy flashes, 300 steps, one seed): samples put
    # the sound in the flash's own column with F1 0.64 (+-1 column: 0.91) with "channels", 0.06 (0.11) with
    # "film" and 0.07 (0.14) without the stream.
    injection: str = "channels"
    # Also add the stream to the output of every resnet block of the UNet (down, mid and up), at that block's own
    # time resolution, through zero-initialised bias-free 1 x 1 projections (SyncInjection): the input channels
    # alone reach the 4x coarser levels only through the layers in between. Off: the input channels alone
    # (every model saved before it existed, and the shipped one). Measured on benchmark v2 (docs/RESULTS.md,
    # session 8: 3000 more steps from the shipped ldm, against the same 3000 steps without it, seed 0): onset F1
    # 0.414 vs 0.382, but control r 0.403 vs 0.529 and FAD 316 vs 311; not adopted at this scale.
    deep: bool = False
    # Offset contrast (SyncEncoder.offset_loss): candidate shifts of the audio, in latent columns, either side
    # (+-557 ms for universal22k: the shift test's +-0.5 s fits).
    max_shift_columns: int = 6
    # Columns of each training crop (the rest of the window supplies the shifted negatives).
    crop_columns: int = 14
    # Columns at each end of the window's real audio that no crop or shift reaches: the convolutions there see
    # the window's edge (zero padding, the mel's right padding), a cue of *where* a column is, not of *when*
    # something happens. Without this margin a first encoder learned to recognise the aligned audio by its
    # position in the window and answered "0 ms" for audio delayed by 0.3 s.
    edge_columns: int = 3
    temperature: float = 0.1
    # Weight of the onset loss (SyncEncoder.onset_loss): a linear head on the video's column features must
    # predict how much the clip's sound rises in each column. 0: no head (encoders saved before it existed).
    # Measured on benchmark v2 windows: the offset contrast alone left features from which a linear probe
    # predicted the sound's rise no better on a clip's own columns than on another clip's (r 0.007 vs
    # -0.014, held-out videos, benchmarks/probe_sync_stream.py), while the raw motion numbers reached r 0.15: the contrast did not keep *when*.
    onset_weight: float = 0.0
    # Weight of the timbre loss (SyncEncoder.timbre_loss): a linear head on the same column features must
    # predict the spectral shape of the sound that starts there (the onset target's mel over the next
    # TIMBRE_COLUMNS columns, relative to its loudest bin), at the columns where a sound starts. The onset head
    # teaches the stream *when*; this one *what* (which object is struck: the sound's timbre), self-supervised
    # from the same track. 0: no head (encoders saved before it existed, and the shipped one: on benchmark v2 it
    # did not learn the kind, docs/RESULTS.md, session 8).
    timbre_weight: float = 0.0
    # Appearance at the contact (models/sync_stream.appearance_features): frames of this size (px; 0: none, every
    # model saved before it existed) at the stream's frame times; per column, a crop a quarter of the frame wide
    # where the camera-compensated picture moves most, as 4 x 4 mean colours, appended to the column's learned
    # features (3 x 16 more numbers, no weights). The stream's 32 px frames carry motion, not what is struck: a
    # linear probe named the contact's kind on unseen episodes from such a crop at 0.25 (chance 0.05), from the
    # stream's features at 0.05 (docs/RESULTS.md, session 12). What sound an appearance makes, the ldm learns:
    # the swap stage trained with it (`preencode --appearance 128`) placed onsets a little better (F1 0.518 vs
    # 0.497, within the noise of 42 clips) but did not pick the kind (sessions 13-14); every preset leaves it off,
    # so the recipe still makes the shipped model.
    appearance_size: int = 0


@dataclass(frozen=True)
class DiffusionConfig:
    """Noise schedule, objective, condition dropout and the default sampler."""

    num_train_timesteps: int = 1000
    beta_start: float = 0.00085
    beta_end: float = 0.012
    beta_schedule: str = "scaled_linear"  # betas = linspace(sqrt(start), sqrt(end))^2
    prediction_type: str = "epsilon"  # or "v_prediction"
    guidance_scale: float = 6.5
    # The default weight of the audio condition's own guidance direction (`sampling.guided`; 1: none, the
    # paper's setting). The embedded default model stores 8: fine-tuned with the sync stream, it let the video
    # decide the ambient unless pushed towards its condition (control r 0.004 at 1, 0.861 at 3; docs/RESULTS.md);
    # fine-tuned again on ambient swaps, it takes weight 8 without losing timing (r 0.903; session 9).
    audio_guidance_scale: float = 1.0
    # The default weight of the sync stream's own guidance direction (`sampling.guided`: the full pass against
    # the same pass with the null stream; 1: none). Only a model with the sync stream uses it.
    sync_guidance_scale: float = 1.0
    p_drop_video: float = 0.2
    # The paper never drops the audio condition; tiny / small do, so their audio null is trained too.
    p_drop_audio: float = 0.0
    # A model with the sync stream: the share of training rows whose stream alone is nulled (video tokens kept),
    # so that the sync guidance's null-sync pass is a condition the model was trained on.
    p_drop_sync: float = 0.0
    sampler: str = "dpm"  # "dpm" (DPM-Solver++ 2M) or "ddim"
    sample_steps: int = 25


@dataclass(frozen=True)
class VocoderConfig:
    """HiFi-GAN V1: generator (transformers SpeechT5HifiGan) and, for training, its two discriminators."""

    # "universal": the shipped universal generator (universal22k profile only); "train": train for the profile.
    source: str = "train"
    upsample_initial_channel: int = 512
    upsample_rates: tuple[int, ...] = (8, 8, 2, 2)  # product must equal the profile's hop
    upsample_kernel_sizes: tuple[int, ...] = (16, 16, 4, 4)
    resblock_kernel_sizes: tuple[int, ...] = (3, 7, 11)
    resblock_dilations: tuple[tuple[int, ...], ...] = ((1, 3, 5), (1, 3, 5), (1, 3, 5))
    mpd_periods: tuple[int, ...] = (2, 3, 5, 7, 11)
    msd_scales: int = 3
    disc_width: float = 1.0  # channel multiplier of both discriminators
    segment_samples: int = 8192  # random crop length for training
    lambda_mel: float = 45.0
    lambda_fm: float = 2.0


@dataclass(frozen=True)
class StageTrainConfig:
    """Optimiser and schedule of one training stage."""

    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.01
    warmup_steps: int = 0  # linear warm-up, then constant
    lr_decay: float = 1.0  # multiplied into lr once per epoch (HiFi-GAN: 0.999)
    batch_size: int = 32  # global: all devices together
    epochs: int = 1
    max_steps: int = 0  # > 0 stops there, whatever `epochs` says
    grad_clip: float = 0.0  # max global grad norm; 0 = off
    ema_decay: float = 0.0  # 0 = no EMA weights
    checkpoint_every: int = 1000  # optimiser steps


@dataclass(frozen=True)
class TrainConfig:
    """One optimiser section per trainable stage."""

    av: StageTrainConfig = StageTrainConfig(lr=1e-4, batch_size=256, epochs=10, warmup_steps=1000, grad_clip=1.0)
    vae: StageTrainConfig = StageTrainConfig(lr=4.5e-6, batch_size=64, epochs=10)
    vocoder: StageTrainConfig = StageTrainConfig(
        lr=2e-4, betas=(0.8, 0.99), lr_decay=0.999, batch_size=16, epochs=100
    )
    # SPEC §2: AdamW 1e-4, warm-up 1000, batch 720, 8 epochs. Clipping and EMA are not stated: ours.
    ldm: StageTrainConfig = StageTrainConfig(
        lr=1e-4, warmup_steps=1000, batch_size=720, epochs=8, grad_clip=1.0, ema_decay=0.9999
    )
    # The sync stream's encoder (training/sync_encoder.py); ours, not the paper's (it has no sync stream).
    sync_encoder: StageTrainConfig = StageTrainConfig(lr=1e-3, batch_size=64, epochs=20, warmup_steps=200,
                                                      grad_clip=1.0)


@dataclass(frozen=True)
class Preset:
    """A named bundle of everything a run needs; the section defaults are the paper's numbers (SPEC §2)."""

    name: str
    audio: AudioProfile
    video: VideoConfig
    av: AVConfig = AVConfig()
    vae: VAEConfig = VAEConfig()
    unet: UNetConfig = UNetConfig()
    cond: ConditioningConfig = ConditioningConfig()
    diffusion: DiffusionConfig = DiffusionConfig()
    vocoder: VocoderConfig = VocoderConfig()
    train: TrainConfig = TrainConfig()
    sync_stream: SyncStreamConfig = SyncStreamConfig()

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        """Latent grid [C, F, W] of one clip ([4, 16, 24] for paper)."""
        return self.audio.latent_shape(self.vae.latent_channels, self.vae.downsample)

    @property
    def context_shape(self) -> tuple[int, int]:
        """Cross-attention context [tokens, ctx_dim]: video frames + latent width ([40, 768] for paper)."""
        tokens = self.video.num_frames + (self.latent_shape[2] if self.cond.use_audio else 0)
        return (tokens, self.cond.ctx_dim)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (JSON-able) of every field; `preset_from_dict` inverts it."""
        return dataclasses.asdict(self)


def preset_from_dict(data: dict[str, Any], where: str = "") -> Preset:
    """Rebuild a Preset from `Preset.to_dict()` output (e.g. JSON in a weights file's metadata).

    Every value is checked against its field's type and, for the fields that size networks and buffers,
    against _LIMITS, before any dataclass is built: a ValueError names the field ("unet.heads: ...", after
    `where` and a dot when given, e.g. "preset").
    """
    return _from_dict(Preset, data, where)


@dataclass(frozen=True)
class _Bound:
    lo: float
    hi: float
    max_len: int | None = None  # for tuple fields: at most this many entries


_WIDTH, _LAYERS, _HEADS, _KERNEL = _Bound(1, 1 << 14), _Bound(1, 256), _Bound(1, 1024), _Bound(1, 4096)
_STEPS = _Bound(0, 1 << 40)
# Per-field sane maxima of a stored preset (model.json, a weights file's metadata, store.json, a run's
# config.json), "Class.field": inclusive range (of every entry, for a tuple). Far above anything a preset
# here uses (the paper's widest layer is 3072, its longest stack 12), far below what would exhaust memory
# one field at a time; what sizes in combination make is bounded where networks are built (weights.py).
# Fields not listed are only type-checked (and floats must be finite).
_LIMITS: dict[str, _Bound] = {
    "AudioProfile.sample_rate": _Bound(1, 384_000), "AudioProfile.n_fft": _Bound(1, 1 << 16),
    "AudioProfile.hop": _Bound(1, 1 << 16), "AudioProfile.win": _Bound(1, 1 << 16),
    "AudioProfile.n_mels": _Bound(1, 1024), "AudioProfile.duration": _Bound(1e-3, 600.0),
    "AudioProfile.right_pad_frames": _Bound(0, 4096),
    "VideoConfig.num_frames": _Bound(1, 1024), "VideoConfig.size": _Bound(1, 4096),
    "AVConfig.video_patch": _KERNEL, "AVConfig.video_hidden": _WIDTH, "AVConfig.video_layers": _LAYERS,
    "AVConfig.video_heads": _HEADS, "AVConfig.video_mlp": _Bound(1, 1 << 16),
    "AVConfig.fbank_bins": _Bound(1, 1024),
    "AVConfig.fbank_seconds": _Bound(1e-3, 600.0), "AVConfig.fbank_frames": _Bound(1, 1 << 16),
    "AVConfig.audio_patch": _KERNEL, "AVConfig.audio_fstride": _KERNEL, "AVConfig.audio_tstride": _KERNEL,
    "AVConfig.audio_hidden": _WIDTH, "AVConfig.audio_layers": _LAYERS, "AVConfig.audio_heads": _HEADS,
    "AVConfig.audio_mlp": _Bound(1, 1 << 16), "AVConfig.embed_dim": _WIDTH,
    "VAEConfig.in_channels": _Bound(1, 64), "VAEConfig.block_out_channels": _Bound(1, 1 << 14, max_len=8),
    "VAEConfig.layers_per_block": _Bound(1, 64), "VAEConfig.latent_channels": _Bound(1, 1024),
    "VAEConfig.norm_groups": _Bound(1, 1024), "VAEConfig.train_crop_frames": _Bound(0, 1 << 20),
    "VAEConfig.decode_edge_columns": _Bound(0, 64),
    "UNetConfig.block_out_channels": _Bound(1, 1 << 14, max_len=8),
    "UNetConfig.attention_levels": _Bound(0, 1, max_len=8),
    "UNetConfig.layers_per_block": _Bound(1, 64), "UNetConfig.heads": _HEADS,
    "UNetConfig.transformer_depth": _Bound(1, 64), "UNetConfig.norm_groups": _Bound(1, 1024),
    "ConditioningConfig.ctx_dim": _WIDTH, "ConditioningConfig.audio_hidden": _WIDTH,
    "DiffusionConfig.num_train_timesteps": _Bound(1, 100_000), "DiffusionConfig.sample_steps": _Bound(1, 100_000),
    "DiffusionConfig.beta_start": _Bound(0.0, 1.0), "DiffusionConfig.beta_end": _Bound(0.0, 1.0),
    "DiffusionConfig.p_drop_video": _Bound(0.0, 1.0), "DiffusionConfig.p_drop_audio": _Bound(0.0, 1.0),
    "DiffusionConfig.p_drop_sync": _Bound(0.0, 1.0),
    "SyncStreamConfig.appearance_size": _Bound(0, 4096),
    "VocoderConfig.upsample_initial_channel": _WIDTH, "VocoderConfig.upsample_rates": _Bound(1, 1024, 16),
    "VocoderConfig.upsample_kernel_sizes": _Bound(1, 4096, 16),
    "VocoderConfig.resblock_kernel_sizes": _Bound(1, 4096, 16),
    "VocoderConfig.resblock_dilations": _Bound(1, 4096, 16), "VocoderConfig.mpd_periods": _Bound(1, 4096, 16),
    "VocoderConfig.msd_scales": _Bound(1, 16), "VocoderConfig.disc_width": _Bound(1e-3, 64.0),
    "VocoderConfig.segment_samples": _Bound(1, 1 << 24),
    "StageTrainConfig.batch_size": _Bound(1, 1 << 20), "StageTrainConfig.epochs": _Bound(0, 1 << 20),
    "StageTrainConfig.max_steps": _STEPS, "StageTrainConfig.warmup_steps": _STEPS,
    "StageTrainConfig.checkpoint_every": _STEPS,
}


def _from_dict(cls: Any, data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise ValueError(f"{where or 'preset'}: expected a {{...}} section, got {_show(data)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(data) - set(fields)
    if unknown:
        raise ValueError(f"{where or cls.__name__}: unknown config keys {sorted(unknown)}")
    missing = [n for n, f in fields.items() if n not in data and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ValueError(f"{where + '.' if where else ''}{missing[0]}: missing")
    kwargs = {}
    for name, value in data.items():
        path = f"{where}.{name}" if where else name
        kwargs[name] = _checked(value, hints[name], path, _LIMITS.get(f"{cls.__name__}.{name}"))
    return cls(**kwargs)


def _checked(value: Any, kind: Any, where: str, bound: _Bound | None) -> Any:
    """`value` as a field of type `kind` holds it (JSON lists -> tuples), or a ValueError naming `where`."""
    if dataclasses.is_dataclass(kind):
        return _from_dict(kind, value, where)
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{where}: expected a list, got {_show(value)}")
        variadic = len(args) == 2 and args[1] is Ellipsis
        if not variadic and args and len(value) != len(args):
            raise ValueError(f"{where}: expected {len(args)} entries, got {len(value)}")
        if bound is not None and bound.max_len is not None and len(value) > bound.max_len:
            raise ValueError(f"{where}: {len(value)} entries, at most {bound.max_len} make sense")
        kinds = [args[0]] * len(value) if variadic else list(args) or [Any] * len(value)
        return tuple(_checked(v, k, f"{where}[{i}]", bound) for i, (v, k) in enumerate(zip(value, kinds)))
    if origin in (typing.Union, types.UnionType):
        for option in args:
            try:
                return _checked(value, option, where, bound)
            except ValueError:
                continue
        raise ValueError(f"{where}: expected {kind}, got {_show(value)}")
    if kind is type(None):
        if value is not None:
            raise ValueError(f"{where}: expected null, got {_show(value)}")
        return value
    if kind is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{where}: expected true or false, got {_show(value)}")
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{where}: expected an integer, got {_show(value)}")
        return _in_bounds(value, where, bound)
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{where}: expected a number, got {_show(value)}")
        if not math.isfinite(value):
            raise ValueError(f"{where}: expected a finite number, got {value}")
        return _in_bounds(float(value), where, bound)
    if kind is str:
        if not isinstance(value, str):
            raise ValueError(f"{where}: expected a string, got {_show(value)}")
        return value
    return _tuplify(value)  # a type this checker does not know: taken as given


def _in_bounds(value: float, where: str, bound: _Bound | None) -> Any:
    if bound is not None and not bound.lo <= value <= bound.hi:
        raise ValueError(f"{where}: {value} is outside the sane range [{bound.lo}, {bound.hi}]")
    return value


def _show(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:40]}{'...' if len(text) > 40 else ''}"


def _tuplify(value: Any) -> Any:
    # JSON turns tuples into lists; frozen configs hold tuples (hashable, immutable).
    if isinstance(value, (list, tuple)):
        return tuple(_tuplify(v) for v in value)
    return value


# tiny: a whole stage runs on a CPU in seconds. small: CPU-trainable in tens of minutes, and its
# VAE + UNet + conditioning + AV model fit 40 MB in fp16. paper: SPEC §2 exactly (the section defaults).
_TINY = Preset(
    "tiny", UNIVERSAL22K_AUDIO, VideoConfig(num_frames=4, size=32),
    av=AVConfig(
        video_arch="timesformer", video_patch=8, video_hidden=32, video_layers=2, video_heads=2, video_mlp=64,
        audio_input="mel", input_mean=0.5, input_std=0.25, audio_patch=16, audio_fstride=16, audio_tstride=16,
        audio_hidden=32, audio_layers=2, audio_heads=2, audio_mlp=64, embed_dim=32,
    ),
    vae=VAEConfig(in_channels=1, block_out_channels=(8, 16, 16, 16), layers_per_block=1, norm_groups=4,
                  scaling_factor=1.0, trainable=True, train_crop_frames=64, decode_edge_columns=2),
    unet=UNetConfig(block_out_channels=(32, 64), layers_per_block=1, attention_levels=(False, True), heads=2,
                    norm_groups=8),
    cond=ConditioningConfig(ctx_dim=32, audio_hidden=64),
    diffusion=DiffusionConfig(guidance_scale=3.0, p_drop_audio=0.1, sample_steps=10),
    vocoder=VocoderConfig(upsample_initial_channel=32, upsample_rates=(8, 8, 4), upsample_kernel_sizes=(16, 16, 8),
                          resblock_kernel_sizes=(3,), resblock_dilations=((1, 3),), disc_width=0.125,
                          segment_samples=4096),
    train=TrainConfig(
        av=StageTrainConfig(lr=1e-3, batch_size=8, max_steps=200),
        vae=StageTrainConfig(lr=1e-3, batch_size=8, max_steps=200),
        vocoder=StageTrainConfig(lr=2e-4, betas=(0.8, 0.99), batch_size=4, max_steps=100),
        ldm=StageTrainConfig(lr=1e-3, warmup_steps=20, batch_size=8, max_steps=300, grad_clip=1.0, ema_decay=0.99),
        sync_encoder=StageTrainConfig(lr=3e-3, batch_size=8, max_steps=60, grad_clip=1.0),
    ),
    sync_stream=SyncStreamConfig(enabled=True, size=16, width=16, feature_dim=8, onset_weight=1.0),
)
_SMALL = Preset(
    "small", UNIVERSAL22K_AUDIO, VideoConfig(num_frames=8, size=64),
    av=AVConfig(
        video_arch="timesformer", video_patch=16, video_hidden=192, video_layers=4, video_heads=3, video_mlp=768,
        audio_input="mel", input_mean=0.5, input_std=0.25, audio_patch=16, audio_fstride=16, audio_tstride=16,
        audio_hidden=192, audio_layers=4, audio_heads=3, audio_mlp=768, embed_dim=128,
    ),
    vae=VAEConfig(in_channels=1, block_out_channels=(16, 32, 64, 64), layers_per_block=1, norm_groups=8,
                  scaling_factor=1.0, trainable=True, train_crop_frames=64, decode_edge_columns=2),
    unet=UNetConfig(block_out_channels=(48, 96, 192), layers_per_block=1, attention_levels=(False, True, True),
                    heads=4, norm_groups=16),
    cond=ConditioningConfig(ctx_dim=192, audio_hidden=256),
    diffusion=DiffusionConfig(guidance_scale=3.0, p_drop_audio=0.1),
    vocoder=VocoderConfig(source="universal"),
    train=TrainConfig(
        av=StageTrainConfig(lr=3e-4, batch_size=32, epochs=20, warmup_steps=200, grad_clip=1.0),
        vae=StageTrainConfig(lr=3e-4, batch_size=16, epochs=20),
        vocoder=StageTrainConfig(lr=1e-4, betas=(0.8, 0.99), lr_decay=0.999, batch_size=8, epochs=5),
        ldm=StageTrainConfig(lr=2e-4, warmup_steps=500, batch_size=16, epochs=50, grad_clip=1.0, ema_decay=0.999),
        sync_encoder=StageTrainConfig(lr=3e-3, batch_size=16, epochs=40, warmup_steps=50, grad_clip=1.0),
    ),
    sync_stream=SyncStreamConfig(enabled=True, size=32, width=32, feature_dim=16, onset_weight=1.0),
)
_PAPER = Preset("paper", PAPER_AUDIO, VideoConfig(num_frames=16, size=224))
PRESETS: dict[str, Preset] = {
    "tiny": _TINY,
    "small": _SMALL,
    "paper": _PAPER,
    # The paper's design plus the sync stream, for training at scale: the released checkpoint cannot use it
    # (its UNet never saw the stream), so `paper` keeps it off and computes exactly the release's function.
    "paper-sync": dataclasses.replace(
        _PAPER, name="paper-sync",
        sync_stream=SyncStreamConfig(enabled=True, fps=24.0, size=112, width=64, feature_dim=32,
                                     max_shift_columns=4, crop_columns=9),  # 24 columns of 128 ms
    ),
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
