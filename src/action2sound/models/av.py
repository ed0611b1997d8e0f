"""The audio-visual contrastive model: space-time video tower, AST audio tower, a shared embedding.

Its video tower is also the frozen backbone of the diffusion model: per frame, the patch tokens of the last
layer are max-pooled into one vector ([T, D] per clip, SPEC §2). Retrieval compares the projected CLS video
embedding with projected AST audio embeddings by cosine.

Negatives from the same long video. Clips of one long video share their ambient sound, so a batch made of
several clips per long video forces the model to match the *action* rather than the room. That is a batch
sampler's job (group clips by `video_uid`); `contrastive_loss` takes whatever batch it gets, and with
`video_ids` it can weigh those hard negatives up (`AVConfig.same_video_weight`).
"""

from __future__ import annotations

import math
import warnings
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers import ASTConfig, ASTModel, TimesformerConfig, TimesformerModel
from transformers.audio_utils import mel_filter_bank

from ..config import VIDEO_ARCHS, AudioProfile, AVConfig, Preset, VideoConfig
from ..errors import Action2SoundError
from .spacetime import SpaceTimeTransformer

# Kaldi's log floor: float32 epsilon.
_KALDI_EPS = float(np.finfo(np.float32).eps)


@lru_cache(maxsize=8)
def _kaldi_mel_filters(sample_rate: int, n_fft: int, num_bins: int, low_freq: float) -> np.ndarray:
    # Kaldi's triangles are linear in mel (1127 ln(1 + f/700)), not in Hz; transformers builds them exactly so.
    with warnings.catch_warnings():
        # 128 bins on a 512-point FFT leave the lowest triangles empty: true of Kaldi and AST too.
        warnings.filterwarnings("ignore", message="At least one mel filter has all zero values")
        return mel_filter_bank(
            num_frequency_bins=n_fft // 2 + 1, num_mel_filters=num_bins, min_frequency=low_freq,
            max_frequency=sample_rate / 2, sampling_rate=sample_rate, norm=None, mel_scale="kaldi",
            triangularize_in_mel_space=True,
        ).astype(np.float32)


def kaldi_fbank(
    wave: torch.Tensor, sample_rate: int, num_bins: int = 128, frame_ms: float = 25.0, shift_ms: float = 10.0,
    low_freq: float = 20.0, preemphasis: float = 0.97,
) -> torch.Tensor:
    """Kaldi-compatible log mel filterbank, AST's input: wave [B, N] -> [B, frames, num_bins].

    The settings AST trains with: snip_edges framing, DC removal and pre-emphasis per frame, symmetric Hann
    ("hanning") window, power spectrum zero-padded to a power of two, no dither, natural log.
    """
    length = int(round(sample_rate * frame_ms / 1000.0))
    shift = int(round(sample_rate * shift_ms / 1000.0))
    n_fft = 1 << (length - 1).bit_length()
    if wave.shape[-1] < length:
        raise ValueError(f"kaldi_fbank needs at least {length} samples, got {wave.shape[-1]}")
    frames = wave.float().unfold(-1, length, shift)  # [B, frames, length]
    frames = frames - frames.mean(dim=-1, keepdim=True)
    # Kaldi pre-emphasises the first sample of a frame against itself.
    previous = torch.cat([frames[..., :1], frames[..., :-1]], dim=-1)
    frames = frames - preemphasis * previous
    frames = frames * torch.hann_window(length, periodic=False, device=wave.device)
    spec = torch.fft.rfft(frames, n=n_fft)  # [B, frames, n_fft/2 + 1]
    power = spec.real.square() + spec.imag.square()
    filters = torch.from_numpy(_kaldi_mel_filters(sample_rate, n_fft, num_bins, low_freq)).to(wave.device)
    return torch.log(torch.clamp(power @ filters, min=_KALDI_EPS))


def fbank_input(wave: torch.Tensor, sample_rate: int, cfg: AVConfig) -> torch.Tensor:
    """AST input of the paper: central `fbank_seconds` of wave [B, N] -> normalised fbank [B, fbank_frames, bins]."""
    n = int(round(cfg.fbank_seconds * sample_rate))
    if wave.shape[-1] < n:
        wave = F.pad(wave, (0, n - wave.shape[-1]))
    start = (wave.shape[-1] - n) // 2
    segment = wave[..., start:start + n]
    segment = segment - segment.mean(dim=-1, keepdim=True)  # AST removes the clip's DC offset first
    fbank = kaldi_fbank(segment, sample_rate, cfg.fbank_bins)
    # AST pads (zeros, right) or truncates to its fixed length, then normalises.
    frames = fbank.shape[1]
    if frames < cfg.fbank_frames:
        fbank = F.pad(fbank, (0, 0, 0, cfg.fbank_frames - frames))
    fbank = fbank[:, : cfg.fbank_frames]
    return (fbank - cfg.input_mean) / (2.0 * cfg.input_std)


def mel_input(mel: torch.Tensor, num_frames: int, cfg: AVConfig) -> torch.Tensor:
    """AST input of tiny / small: normalised mel [B, n_mels, >= num_frames] -> [B, num_frames, n_mels]."""
    if mel.shape[-1] < num_frames:
        raise ValueError(f"mel has {mel.shape[-1]} frames; the audio tower needs {num_frames}")
    x = mel[..., :num_frames].transpose(1, 2)
    return (x - cfg.input_mean) / (2.0 * cfg.input_std)


def audio_input_shape(cfg: AVConfig, profile: AudioProfile) -> tuple[int, int]:
    """(frames, bins) of the audio tower's input for this profile."""
    if cfg.audio_input == "fbank":
        return cfg.fbank_frames, cfg.fbank_bins
    if cfg.audio_input == "mel":
        return profile.num_frames, profile.n_mels
    raise Action2SoundError(f"AVConfig.audio_input must be 'fbank' or 'mel', got {cfg.audio_input!r}")


class VideoTower(nn.Module):
    """Divided space-time ViT: frames [B, T, 3, H, W] -> (frame tokens [B, T, D], CLS [B, D]).

    `AVConfig.video_arch` picks the backbone: "frozen_in_time" (`spacetime.SpaceTimeTransformer`, the release's,
    held as `spacetime`) or "timesformer" (transformers' TimesformerModel, held as `timesformer`).
    """

    def __init__(self, cfg: AVConfig, video: VideoConfig):
        super().__init__()
        if video.size % cfg.video_patch:
            raise Action2SoundError(f"video size {video.size} is not a multiple of the patch {cfg.video_patch}")
        self.arch = cfg.video_arch
        self.hidden_size = cfg.video_hidden
        self.num_frames = video.num_frames
        self.num_patches = (video.size // cfg.video_patch) ** 2
        if self.arch == "frozen_in_time":
            self.spacetime = SpaceTimeTransformer(
                num_frames=video.num_frames, image_size=video.size, patch_size=cfg.video_patch,
                dim=cfg.video_hidden, depth=cfg.video_layers, heads=cfg.video_heads, mlp_dim=cfg.video_mlp,
            )
        elif self.arch == "timesformer":
            self.timesformer = TimesformerModel(TimesformerConfig(
                image_size=video.size, patch_size=cfg.video_patch, num_channels=3, num_frames=video.num_frames,
                hidden_size=cfg.video_hidden, num_hidden_layers=cfg.video_layers,
                num_attention_heads=cfg.video_heads, intermediate_size=cfg.video_mlp,
                attention_type="divided_space_time", layer_norm_eps=1e-6,
            ))
        else:
            raise Action2SoundError(f"AVConfig.video_arch must be one of {VIDEO_ARCHS}, got {self.arch!r}")

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """pixels [B, T, 3, H, W] (ImageNet-normalised) -> (frame tokens [B, T, D], CLS [B, D])."""
        if pixels.ndim != 5 or pixels.shape[1] != self.num_frames:
            raise ValueError(f"video tower expects [B, {self.num_frames}, 3, H, W], got {tuple(pixels.shape)}")
        if self.arch == "frozen_in_time":
            hidden = self.spacetime(pixels)  # [B, 1 + T*N, D]
            # Frozen-in-Time orders the space-time tokens frame-major, patch-minor: [T, N].
            patches = hidden[:, 1:].unflatten(1, (self.num_frames, self.num_patches))  # [B, T, N, D]
            return patches.amax(dim=2), hidden[:, 0]
        hidden = self.timesformer(pixel_values=pixels).last_hidden_state  # [B, 1 + N*T, D]
        # transformers orders the space-time tokens patch-major, frame-minor: [N, T].
        patches = hidden[:, 1:].unflatten(1, (self.num_patches, self.num_frames))  # [B, N, T, D]
        return patches.amax(dim=1), hidden[:, 0]


class AudioTower(nn.Module):
    """AST: input [B, frames, bins] -> pooled embedding [B, D] (mean of the CLS and distillation tokens)."""

    def __init__(self, cfg: AVConfig, frames: int, bins: int):
        super().__init__()
        self.frames, self.bins = frames, bins
        self.ast = ASTModel(ASTConfig(
            hidden_size=cfg.audio_hidden, num_hidden_layers=cfg.audio_layers,
            num_attention_heads=cfg.audio_heads, intermediate_size=cfg.audio_mlp, patch_size=cfg.audio_patch,
            frequency_stride=cfg.audio_fstride, time_stride=cfg.audio_tstride, max_length=frames,
            num_mel_bins=bins, layer_norm_eps=1e-6,
        ))

    @property
    def hidden_size(self) -> int:
        return self.ast.config.hidden_size

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        """audio [B, frames, bins] -> [B, D]."""
        if audio.ndim != 3 or audio.shape[1:] != (self.frames, self.bins):
            raise ValueError(f"audio tower expects [B, {self.frames}, {self.bins}], got {tuple(audio.shape)}")
        return self.ast(input_values=audio).pooler_output


def contrastive_loss(
    v: torch.Tensor, a: torch.Tensor, logit_scale: torch.Tensor | float, video_ids: torch.Tensor | None = None,
    same_video_weight: float = 1.0,
) -> torch.Tensor:
    """Symmetric InfoNCE over a batch of unit embeddings v, a [B, E]; pair i is (v_i, a_i).

    With `video_ids` [B] (the long video of each clip) and `same_video_weight` w != 1, the logits of negatives
    from the same long video get + log w: they count as w negatives each (importance-weighted hard negatives,
    Robinson et al. 2021, arXiv 2010.04592).
    """
    logits = logit_scale * v @ a.t()  # [B, B], row i: video i against every audio
    if video_ids is not None and same_video_weight != 1.0:
        same = video_ids[:, None] == video_ids[None, :]
        same.fill_diagonal_(False)
        logits = logits + same.to(logits.dtype) * math.log(same_video_weight)
    target = torch.arange(v.shape[0], device=v.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target))


@torch.no_grad()
def retrieval_recall(v: torch.Tensor, a: torch.Tensor, ks: tuple[int, ...] = (1, 5, 10)) -> dict[int, float]:
    """Video->audio recall@k of unit embeddings v, a [B, E] where pair i is the match: {k: fraction}."""
    sims = v @ a.t()
    # Rank of the true audio = number of audios scoring strictly higher.
    rank = (sims > sims.diagonal()[:, None]).sum(dim=1)
    return {k: float((rank < k).float().mean()) for k in ks}


def frames_to_pixels(frames: torch.Tensor, video: VideoConfig) -> torch.Tensor:
    """uint8 frames [B, T, S, S, 3] -> ImageNet-normalised float pixels [B, T, 3, S, S] (a video tower's input)."""
    mean = torch.tensor(video.mean, device=frames.device).view(1, 1, 3, 1, 1)
    std = torch.tensor(video.std, device=frames.device).view(1, 1, 3, 1, 1)
    x = frames.permute(0, 1, 4, 2, 3).float() / 255.0
    return (x - mean) / std


class AVModel(nn.Module):
    """Video and audio towers with projections to a shared unit-norm embedding and a learned temperature."""

    def __init__(self, cfg: AVConfig, video: VideoConfig, profile: AudioProfile):
        super().__init__()
        self.cfg = cfg
        self.video = video
        self.profile = profile
        frames, bins = audio_input_shape(cfg, profile)
        self.video_tower = VideoTower(cfg, video)
        self.audio_tower = AudioTower(cfg, frames, bins)
        # As in the release: video CLS -> one Linear; AST pooled -> LayerNorm + Linear (AST's own head shape).
        self.video_proj = nn.Linear(cfg.video_hidden, cfg.embed_dim)
        self.audio_proj = nn.Sequential(nn.LayerNorm(cfg.audio_hidden, eps=1e-6),
                                        nn.Linear(cfg.audio_hidden, cfg.embed_dim))
        # CLIP's parametrisation: logits = exp(s) cos, s learned, exp(s) capped at 100.
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / cfg.init_temperature)))

    @classmethod
    def from_preset(cls, p: Preset) -> AVModel:
        return cls(p.av, p.video, p.audio)

    def audio_input(self, wave: torch.Tensor | None = None, mel: torch.Tensor | None = None) -> torch.Tensor:
        """The audio tower's input from the wave [B, N] ("fbank") or the normalised mel [B, n_mels, frames] ("mel")."""
        if self.cfg.audio_input == "fbank":
            if wave is None:
                raise ValueError("this AV model reads the waveform (audio_input='fbank'); pass wave=")
            return fbank_input(wave, self.profile.sample_rate, self.cfg)
        if mel is None:
            raise ValueError("this AV model reads the mel (audio_input='mel'); pass mel=")
        return mel_input(mel, self.profile.num_frames, self.cfg)

    def pixels(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 frames [B, T, S, S, 3] -> the video tower's normalised pixels [B, T, 3, S, S]."""
        return frames_to_pixels(frames, self.video)

    def encode_frames(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 frames [B, T, S, S, 3] -> (per-frame max-pooled backbone tokens [B, T, D]: the diffusion model's
        video condition, unit video embedding [B, E] in float32: the retrieval query), from one tower pass."""
        tokens, cls = self.video_tower(self.pixels(frames))
        return tokens, F.normalize(self.video_proj(cls).float(), dim=-1)

    def embed_video(self, pixels: torch.Tensor) -> torch.Tensor:
        """Unit video embedding [B, E] from frames [B, T, 3, H, W]."""
        return F.normalize(self.video_proj(self.video_tower(pixels)[1]), dim=-1)

    def embed_audio(self, audio: torch.Tensor) -> torch.Tensor:
        """Unit audio embedding [B, E] from the audio tower's input [B, frames, bins]."""
        return F.normalize(self.audio_proj(self.audio_tower(audio)), dim=-1)

    def forward(self, pixels: torch.Tensor, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(video embedding [B, E], audio embedding [B, E])."""
        return self.embed_video(pixels), self.embed_audio(audio)

    def contrastive_loss(self, v: torch.Tensor, a: torch.Tensor, video_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Symmetric InfoNCE with this model's learned temperature (see `contrastive_loss`)."""
        scale = self.logit_scale.exp().clamp(max=100.0)
        return contrastive_loss(v, a, scale, video_ids, self.cfg.same_video_weight)
