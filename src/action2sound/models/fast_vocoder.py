"""A light vocoder for CPUs: a ConvNeXt stack at the mel frame rate and an inverse-STFT head.

HiFi-GAN V1 upsamples to the sample rate inside the network (158 GFLOP per 3 s at 22.05 kHz); this model
stays at the frame rate (86 frames/s) and lets one inverse FFT per frame make the samples, the design of
Vocos (Siuzdenko et al. 2023, arXiv 2306.00814) and iSTFTNet. Per frame it predicts the log magnitude and
the phase of an n_fft-point spectrum; overlap-add with a Hann window and hop = the mel hop gives
frames * hop samples, frame f centred on sample f * hop + hop / 2 as in HiFi-GAN's mel framing.

It is trained by distillation from the universal HiFi-GAN (`training.distil`, `action2sound distil-vocoder`),
so it takes the same input (natural-log 80-band mel of the universal22k profile, [B, frames, n_mels] like
SpeechT5HifiGan, so `models.vocoder.vocode` calls both alike) and approximates the same function.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from safetensors.torch import save_file

from ..config import UNIVERSAL22K_AUDIO
from ..errors import Action2SoundError

WEIGHTS = "fast_vocoder.safetensors"
# The distilled weights the package ships (`--vocoder fast`), trained as the README says.
SHIPPED = Path(__file__).resolve().parent.parent / "vocoders" / WEIGHTS
# Largest log magnitude the head may emit (e^8 ~ 3000, far above a full-scale sine's ~n_fft / 4 = 256).
_MAX_LOG_MAG = 8.0


@dataclass(frozen=True)
class FastVocoderConfig:
    """Shape of the network; the defaults are the shipped model's."""

    n_mels: int = UNIVERSAL22K_AUDIO.n_mels
    hop: int = UNIVERSAL22K_AUDIO.hop
    n_fft: int = 1024
    dim: int = 256
    hidden: int = 768
    layers: int = 8
    kernel: int = 7

    def to_dict(self) -> dict:
        return asdict(self)


class ConvNeXtBlock(nn.Module):
    """Depthwise conv along time, LayerNorm, pointwise MLP (GELU), learned per-channel residual scale."""

    def __init__(self, dim: int, hidden: int, kernel: int, layer_scale: float):
        super().__init__()
        self.dwconv = nn.Conv1d(dim, dim, kernel, padding=kernel // 2, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pw1 = nn.Linear(dim, hidden)
        self.pw2 = nn.Linear(hidden, dim)
        self.gamma = nn.Parameter(torch.full((dim,), layer_scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, dim, frames] -> same."""
        h = self.dwconv(x).transpose(1, 2)
        h = self.pw2(F.gelu(self.pw1(self.norm(h))))
        return x + (self.gamma * h).transpose(1, 2)


class FastVocoder(nn.Module):
    """Log mel [B, frames, n_mels] -> wave [B, frames * hop] (a SpeechT5HifiGan-like call)."""

    def __init__(self, cfg: FastVocoderConfig = FastVocoderConfig()):
        super().__init__()
        if cfg.n_fft < cfg.hop or cfg.n_fft % 2 or (cfg.n_fft - cfg.hop) % 2:
            raise Action2SoundError(f"n_fft {cfg.n_fft} must be even, >= hop {cfg.hop}, and n_fft - hop even")
        self.cfg = cfg
        self.conv_in = nn.Conv1d(cfg.n_mels, cfg.dim, cfg.kernel, padding=cfg.kernel // 2)
        self.norm_in = nn.LayerNorm(cfg.dim, eps=1e-6)
        self.blocks = nn.ModuleList(
            ConvNeXtBlock(cfg.dim, cfg.hidden, cfg.kernel, 1.0 / cfg.layers) for _ in range(cfg.layers))
        self.norm_out = nn.LayerNorm(cfg.dim, eps=1e-6)
        self.head = nn.Linear(cfg.dim, cfg.n_fft + 2)  # log magnitude and phase of n_fft / 2 + 1 bins
        self.register_buffer("window", torch.hann_window(cfg.n_fft), persistent=False)

    def spectrum(self, log_mel: torch.Tensor) -> torch.Tensor:
        """Log mel [B, frames, n_mels] -> complex spectrum [B, frames, n_fft / 2 + 1]."""
        x = self.conv_in(log_mel.transpose(1, 2))
        x = self.norm_in(x.transpose(1, 2)).transpose(1, 2)
        for block in self.blocks:
            x = block(x)
        out = self.head(self.norm_out(x.transpose(1, 2)))  # [B, frames, n_fft + 2]
        log_mag, phase = out.float().chunk(2, dim=-1)
        mag = torch.exp(log_mag.clamp(max=_MAX_LOG_MAG))
        return torch.polar(mag, phase)

    def forward(self, log_mel: torch.Tensor) -> torch.Tensor:
        return self.overlap_add(self.spectrum(log_mel))

    def overlap_add(self, spec: torch.Tensor) -> torch.Tensor:
        """Complex spectrum [B, frames, bins] -> wave [B, frames * hop]: windowed inverse FFTs, overlap-added,
        divided by the summed squared window (exact inverse of a Hann-windowed STFT with the same framing)."""
        n, hop = self.cfg.n_fft, self.cfg.hop
        b, frames, _ = spec.shape
        window = self.window.to(spec.device)
        pieces = torch.fft.irfft(spec, n=n, dim=-1) * window  # [B, frames, n_fft]
        length = (frames - 1) * hop + n
        wave = F.fold(pieces.transpose(1, 2), (1, length), (1, n), stride=(1, hop)).view(b, length)
        env = F.fold((window ** 2).expand(1, frames, n).transpose(1, 2), (1, length), (1, n),
                     stride=(1, hop)).view(1, length)
        start = (n - hop) // 2  # frame f covers samples [f hop - start, f hop - start + n)
        return (wave / env.clamp_min(1e-8))[:, start:start + frames * hop]


def analysis_spectrum(wave: torch.Tensor, cfg: FastVocoderConfig) -> torch.Tensor:
    """The STFT with FastVocoder's framing: wave [B, frames * hop] -> complex [B, frames, n_fft / 2 + 1].

    `FastVocoder.overlap_add` inverts it exactly; used by the tests and as a distillation target.
    """
    n, hop = cfg.n_fft, cfg.hop
    start = (n - hop) // 2
    padded = F.pad(wave, (start, n - hop - start))
    frames = padded.unfold(-1, n, hop)  # [B, frames, n]
    return torch.fft.rfft(frames * torch.hann_window(n, device=wave.device), dim=-1)


def build_fast_vocoder(cfg_dict: dict | None = None) -> FastVocoder:
    """A FastVocoder from a stored config dict (unknown keys refused), default shape without one."""
    fields = FastVocoderConfig.__dataclass_fields__
    cfg_dict = dict(cfg_dict or {})
    unknown = set(cfg_dict) - set(fields)
    if unknown:
        raise Action2SoundError(f"unknown fast vocoder config keys {sorted(unknown)}; distil the vocoder again")
    return FastVocoder(FastVocoderConfig(**cfg_dict))


def save_fast_vocoder(model: FastVocoder, path: Path, steps: int, dtype: torch.dtype = torch.float32) -> None:
    """Weights as safetensors (cast to `dtype`; the package ships float16), the config and the step count in the
    metadata; atomic (temp + rename), readable by all like `weights.save_weights`."""
    tensors = {k: v.detach().to(dtype).contiguous().clone() for k, v in model.state_dict().items()}
    tmp = Path(path).with_suffix(".partial")
    save_file(tensors, str(tmp), metadata={"component": "fast_vocoder", "config": json.dumps(model.cfg.to_dict()),
                                           "steps": str(steps)})
    os.chmod(tmp, 0o644)  # safetensors writes owner-only files
    os.replace(tmp, path)


def load_fast_vocoder(path: str | os.PathLike = SHIPPED) -> FastVocoder:
    """A FastVocoder from a `fast_vocoder.safetensors` (default: the shipped one), strict, eval mode, fp32."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise Action2SoundError(f"{path}: no such file; distil one with `action2sound distil-vocoder`")
    try:
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as err:  # safetensors raises its own error types for damaged headers
        raise Action2SoundError(f"{path}: not a readable safetensors file ({err}); distil it again") from err
    if meta.get("component") != "fast_vocoder":
        raise Action2SoundError(f"{path}: not a fast vocoder (component {meta.get('component')!r})")
    model = build_fast_vocoder(json.loads(meta["config"]))
    missing = set(model.state_dict()) ^ set(state)
    if missing:
        raise Action2SoundError(f"{path}: keys differ from the fast vocoder's: {sorted(missing)[:4]}")
    model.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    return model.eval()
