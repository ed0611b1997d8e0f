"""Audio embedders for the Fréchet distance: aisfx (shipped weights), the project's AV audio tower, VGGish, PANNs.

An embedder maps one clip's wave (at its own `sample_rate`) to a few embeddings [frames, D]; the FAD of two
sets is computed over all frames of all clips, as VGGish FAD does with its 0.96 s examples.

- ``aisfx`` (default): the 512-d sound-effects CNN of aisfx 0.1.2 (Ma & Lerch, ISMIR 2022; MIT), the only
  general audio embedder whose weights can be had offline here (it ships them). Its package is never imported
  (it pins old librosa / numpy): the checkpoint is found with importlib and read by a restricted unpickler, the
  network and its input transform are written here from what its code documents (see `aisfx_features`).
- ``av``: the AV model's audio tower (unit embedding, one per clip): a metric in the model's own terms, useful
  when no other embedder exists, but biased towards that model.
- ``vggish`` / ``panns``: the paper's VGGish (16 kHz) and PANNs Cnn14 (32 kHz), from a weight file the user
  has (`--vggish PATH` / `--panns PATH`; the common PyTorch ports' key names), since no model hub is reachable.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import Action2SoundError
from ..media import resample

EMBEDDERS = ("aisfx", "av", "vggish", "panns")
AISFX_INSTALL = "pip install --no-deps aisfx==0.1.2"


class Embedder(Protocol):
    """What the FAD needs: a name, the rate it reads, and wave [samples] -> embeddings [frames, D]."""

    name: str
    sample_rate: int

    def embed(self, wave: np.ndarray) -> np.ndarray: ...


def embed_waves(embedder: Embedder, waves: list[np.ndarray], sample_rate: int) -> list[np.ndarray]:
    """Each wave [T] at sample_rate -> its embeddings [frames, D] (float32)."""
    return [np.asarray(embedder.embed(resample(w, sample_rate, embedder.sample_rate)), dtype=np.float32)
            for w in waves]


# ================================================================================================ shared parts
class ConvBlock(nn.Module):
    """Two 3x3 conv + BN + ReLU, then a pool: the block of the DCASE 2018 baselines, aisfx and PANNs (Kong et al.)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.bn2 = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor, pool: tuple[int, int], kind: str) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        return F.max_pool2d(x, pool) if kind == "max" else F.avg_pool2d(x, pool)


def _load_foreign(module: nn.Module, path: Path, state: dict[str, torch.Tensor], prefix: str,
                  ignored: tuple[str, ...]) -> None:
    """Strict load of `state` into module after removing `prefix` and dropping keys that start with `ignored`.

    The ignored keys are named parts we do not use (classifier heads, the PCA, a framework's own mel layer);
    any other leftover or missing key is an error naming the file.
    """
    from ..weights import load_state_strict

    kept = {}
    for k, v in state.items():
        k = k[len(prefix):] if prefix and k.startswith(prefix) else k
        if not k.startswith(ignored):
            kept[k] = v.float() if v.is_floating_point() else v
    load_state_strict(module, kept, str(path))


def _read_checkpoint(path: Path, key: str | None = None) -> dict[str, torch.Tensor]:
    from ..convert.safe_load import load_torch_file, state_dict_of

    # The restricted unpickler logs the foreign objects it replaced; that is expected for these files.
    log = logging.getLogger("action2sound.convert.safe_load")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        obj = load_torch_file(path)
    finally:
        log.setLevel(level)
    if isinstance(obj, tuple) and obj and isinstance(obj[0], dict):
        obj = obj[0]  # aisfx saves (state_dict, dataset table)
    if key is not None and isinstance(obj, dict) and key in obj:
        obj = obj[key]
    return state_dict_of(obj, path)


# ================================================================================================ aisfx
AISFX_RATE = 44_100
AISFX_N_FFT, AISFX_HOP, AISFX_MELS = 2048, 1024, 96
AISFX_SPEC_MAX = 9.457798957824707  # its "original" min-max normalisation: (spec - 0) / this
AISFX_BLOCK, AISFX_BLOCK_HOP = 100, 50  # frames per embedding (~2.3 s) and the hop between them (half a block)


def aisfx_checkpoint() -> Path:
    """Path of aisfx's shipped checkpoint, found without importing the package."""
    spec = importlib.util.find_spec("aisfx")
    if spec is None or not spec.submodule_search_locations:
        raise Action2SoundError(f"the aisfx FAD embedder needs the aisfx package: `{AISFX_INSTALL}` (no-deps: it "
                                "pins old librosa/numpy), or pass --fad-embedder av / vggish / panns")
    path = Path(list(spec.submodule_search_locations)[0]) / "models" / "checkpoint.pth"
    if not path.is_file():
        raise Action2SoundError(f"{path}: aisfx is installed without its checkpoint; reinstall it ({AISFX_INSTALL})")
    return path


@lru_cache(maxsize=1)
def _aisfx_mel_basis() -> np.ndarray:
    import librosa

    # HTK mel scale, each triangle normalised to unit sum: Essentia's MelBands(warping="htkMel",
    # normalize="unit_sum"), which aisfx's training spectrograms used; librosa's norm=1 is the same L1 norm.
    return librosa.filters.mel(sr=AISFX_RATE, n_fft=AISFX_N_FFT, n_mels=AISFX_MELS, fmin=0.0,
                               fmax=AISFX_RATE / 2, htk=True, norm=1.0).astype(np.float64)


def aisfx_features(wave: np.ndarray) -> np.ndarray:
    """Wave [T] at 44.1 kHz -> aisfx's normalised log-mel blocks [blocks, 100, 96] float32.

    As aisfx's code documents it: the wave peak-normalised to 1 (silence left as is); power spectrum of
    2048-sample Hann frames every 1024 samples, centred with zero padding; 96 HTK mel bands 0-22.05 kHz with
    unit-sum triangles; log10(1e4 x + 1); divided by 9.4578 (its cross-dataset maximum). Laid out
    [frames, bands] as Essentia gives it (aisfx's librosa path forgets this transpose). Blocks of 100 frames
    every 50, the last one zero-padded (its `blocking` with drop_partial_block=False).
    """
    x = np.asarray(wave, dtype=np.float64).reshape(-1)
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    if peak > 0:
        x = x / peak
    pad = AISFX_N_FFT // 2
    x = np.pad(x, (pad, pad))
    if x.size < AISFX_N_FFT:
        x = np.pad(x, (0, AISFX_N_FFT - x.size))
    frames = np.lib.stride_tricks.sliding_window_view(x, AISFX_N_FFT)[::AISFX_HOP]  # [F, n_fft]
    window = np.hanning(AISFX_N_FFT + 1)[:-1]
    power = np.abs(np.fft.rfft(frames * window, axis=-1)) ** 2  # [F, n_fft/2 + 1]
    spec = np.log10(power @ _aisfx_mel_basis().T * 1e4 + 1.0) / AISFX_SPEC_MAX  # [F, 96]
    n = spec.shape[0]
    blocks = max(1, int(np.ceil((n - AISFX_BLOCK) / AISFX_BLOCK_HOP + 1)))
    spec = np.concatenate([spec, np.zeros((AISFX_BLOCK, AISFX_MELS))])
    return np.stack([spec[i * AISFX_BLOCK_HOP : i * AISFX_BLOCK_HOP + AISFX_BLOCK] for i in range(blocks)]
                    ).astype(np.float32)


class AisfxNet(nn.Module):
    """aisfx's embedding CNN: log-mel blocks [B, 100, 96] -> [B, 512] (four conv blocks, max-pooled)."""

    def __init__(self, width: int = 64):
        super().__init__()
        self.conv_block1 = ConvBlock(1, width)
        self.conv_block2 = ConvBlock(width, 2 * width)
        self.conv_block3 = ConvBlock(2 * width, 4 * width)
        self.conv_block4 = ConvBlock(4 * width, 8 * width)

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        x = spec[:, None]  # [B, 1, time, bands]
        x = self.conv_block1(x, (2, 2), "max")
        x = self.conv_block2(x, (2, 2), "max")
        x = self.conv_block3(x, (2, 2), "max")
        x = self.conv_block4(x, (1, 1), "max")
        return x.mean(dim=3).amax(dim=2)  # mean over bands, max over time -> [B, 512]


class AisfxEmbedder:
    """aisfx embeddings [blocks, 512] of a wave at 44.1 kHz (see `aisfx_features`)."""

    name = "aisfx"
    sample_rate = AISFX_RATE

    def __init__(self, checkpoint: str | os.PathLike | None = None, device: str | torch.device = "cpu"):
        path = Path(checkpoint) if checkpoint is not None else aisfx_checkpoint()
        self.net = AisfxNet()
        # fc.* are its nine per-dataset classifier heads: not part of the embedding.
        _load_foreign(self.net, path, _read_checkpoint(path), "embedding_net.", ("fc.",))
        self.device = torch.device(device)
        self.net.to(self.device).eval()

    @torch.no_grad()
    def embed(self, wave: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(aisfx_features(wave)).to(self.device)
        return self.net(x).cpu().numpy()


# ================================================================================================ AV audio tower
class AVEmbedder:
    """The AV model's unit audio embedding [1, E] of one model window (the model's profile and rate)."""

    name = "av"

    def __init__(self, av: nn.Module, profile, device: str | torch.device = "cpu"):
        self.av, self.profile = av.eval(), profile
        self.sample_rate = profile.sample_rate
        self.device = torch.device(device)

    @torch.no_grad()
    def embed(self, wave: np.ndarray) -> np.ndarray:
        return audio_embedding(self.av, [wave], self.profile, self.device).numpy()


def audio_embedding(av: nn.Module, waves: list[np.ndarray], profile, device: str | torch.device = "cpu"
                    ) -> torch.Tensor:
    """Unit AV audio embeddings [B, E] of waves [T] at the profile's rate (each fitted to one window)."""
    from ..mel import fit_wave, wave_to_mel

    w = np.stack([fit_wave(x, profile) for x in waves])
    mel = torch.from_numpy(wave_to_mel(w, profile)).to(device)
    with torch.no_grad():
        x = av.audio_input(wave=torch.from_numpy(w).to(device), mel=mel)
        return av.embed_audio(x).float().cpu()


# ================================================================================================ VGGish
VGGISH_RATE = 16_000


@lru_cache(maxsize=1)
def _vggish_mel_basis() -> np.ndarray:
    # VGGish's own filterbank: 64 HTK-mel triangles, 125-7500 Hz, over a 512-point FFT, unnormalised, with the
    # DC bin zeroed (mel_features.spectrogram_to_mel_matrix).
    n_bins = 257
    hz = np.linspace(0.0, VGGISH_RATE / 2, n_bins)
    mel = 1127.0 * np.log1p(hz / 700.0)
    lo, hi = 1127.0 * np.log1p(125.0 / 700.0), 1127.0 * np.log1p(7500.0 / 700.0)
    edges = np.linspace(lo, hi, 64 + 2)
    basis = np.zeros((n_bins, 64))
    for i in range(64):
        left, centre, right = edges[i : i + 3]
        up = (mel - left) / (centre - left)
        down = (right - mel) / (right - centre)
        basis[:, i] = np.maximum(0.0, np.minimum(up, down))
    basis[0] = 0.0
    return basis


def vggish_features(wave: np.ndarray) -> np.ndarray:
    """Wave [T] at 16 kHz -> VGGish examples [N, 96, 64]: log(mel + 0.01) of 25 ms / 10 ms frames, 0.96 s each."""
    x = np.asarray(wave, dtype=np.float64).reshape(-1)
    win, hop, n_fft = 400, 160, 512
    if x.size < win:
        x = np.pad(x, (0, win - x.size))
    frames = np.lib.stride_tricks.sliding_window_view(x, win)[::hop]
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(win) / win)  # periodic Hann
    mag = np.abs(np.fft.rfft(frames * window, n=n_fft, axis=-1))
    log_mel = np.log(mag @ _vggish_mel_basis() + 0.01)  # [F, 64]
    n = max(1, log_mel.shape[0] // 96)
    if log_mel.shape[0] < 96:
        log_mel = np.pad(log_mel, ((0, 96 - log_mel.shape[0]), (0, 0)), constant_values=np.log(0.01))
    return log_mel[: n * 96].reshape(n, 96, 64).astype(np.float32)


class VGGish(nn.Module):
    """VGGish (Hershey et al. 2017): examples [B, 96, 64] -> 128-d embeddings (no PCA, no final ReLU, as TF's)."""

    def __init__(self):
        super().__init__()
        layers: list[nn.Module] = []
        cin = 1
        for spec in (64, "M", 128, "M", 256, 256, "M", 512, 512, "M"):
            if spec == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(cin, spec, 3, padding=1), nn.ReLU(inplace=True)]
                cin = spec
        self.features = nn.Sequential(*layers)  # indices 0, 3, 6, 8, 11, 13 hold the convolutions
        self.embeddings = nn.Sequential(nn.Linear(512 * 4 * 6, 4096), nn.ReLU(inplace=True),
                                        nn.Linear(4096, 4096), nn.ReLU(inplace=True), nn.Linear(4096, 128))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x[:, None])  # [B, 512, 6, 4]
        # Flatten in TensorFlow's [B, H, W, C] order, which the ported fully connected weights expect.
        x = x.permute(0, 2, 3, 1).reshape(x.shape[0], -1)
        return self.embeddings(x)


class VGGishEmbedder:
    """VGGish embeddings [N, 128] (one per 0.96 s) from a torchvggish-style state dict file."""

    name = "vggish"
    sample_rate = VGGISH_RATE

    def __init__(self, path: str | os.PathLike | None, device: str | torch.device = "cpu"):
        path = _need_file(path, "vggish", "a VGGish state dict (.pth, torchvggish key names)")
        self.net = VGGish()
        _load_foreign(self.net, path, _read_checkpoint(path), "", ("pproc.",))
        self.device = torch.device(device)
        self.net.to(self.device).eval()

    @torch.no_grad()
    def embed(self, wave: np.ndarray) -> np.ndarray:
        return self.net(torch.from_numpy(vggish_features(wave)).to(self.device)).cpu().numpy()


# ================================================================================================ PANNs
PANNS_RATE = 32_000


@lru_cache(maxsize=1)
def _panns_mel_basis() -> np.ndarray:
    import librosa

    return librosa.filters.mel(sr=PANNS_RATE, n_fft=1024, n_mels=64, fmin=50.0, fmax=14000.0).astype(np.float64)


class Cnn14(nn.Module):
    """PANNs Cnn14 (Kong et al. 2020, arXiv 1912.10211): log-mel [B, frames, 64] -> fc1 embedding [B, 2048]."""

    def __init__(self):
        super().__init__()
        self.bn0 = nn.BatchNorm2d(64)
        widths = (64, 128, 256, 512, 1024, 2048)
        cin = 1
        for i, w in enumerate(widths, start=1):
            setattr(self, f"conv_block{i}", ConvBlock(cin, w))
            cin = w
        self.fc1 = nn.Linear(2048, 2048)

    def forward(self, log_mel: torch.Tensor) -> torch.Tensor:
        x = log_mel[:, None]  # [B, 1, T, 64]
        x = self.bn0(x.transpose(1, 3)).transpose(1, 3)  # normalise each mel band
        for i in range(1, 7):
            x = getattr(self, f"conv_block{i}")(x, (2, 2) if i < 6 else (1, 1), "avg")
        x = x.mean(dim=3)  # [B, 2048, T']
        x = x.amax(dim=2) + x.mean(dim=2)
        return F.relu(self.fc1(x))


def panns_features(wave: np.ndarray) -> np.ndarray:
    """Wave [T] at 32 kHz -> Cnn14's log-mel [1, frames, 64]: 1024 / 320 centred reflect STFT, power, dB."""
    x = np.asarray(wave, dtype=np.float64).reshape(-1)
    x = np.pad(x, (512, 512), mode="reflect" if x.size > 512 else "constant")
    frames = np.lib.stride_tricks.sliding_window_view(x, 1024)[::320]
    power = np.abs(np.fft.rfft(frames * (np.hanning(1025)[:-1]), axis=-1)) ** 2
    return (10.0 * np.log10(np.maximum(power @ _panns_mel_basis().T, 1e-10)))[None].astype(np.float32)


class PANNsEmbedder:
    """PANNs Cnn14 embedding [1, 2048] of a clip, from the released checkpoint file (its "model" dict)."""

    name = "panns"
    sample_rate = PANNS_RATE

    def __init__(self, path: str | os.PathLike | None, device: str | torch.device = "cpu"):
        path = _need_file(path, "panns", "a PANNs Cnn14 checkpoint (e.g. Cnn14_mAP=0.431.pth)")
        self.net = Cnn14()
        # Its torchlibrosa STFT / mel layers are fixed transforms (computed here); fc_audioset is the tagger head.
        _load_foreign(self.net, path, _read_checkpoint(path, "model"), "",
                      ("spectrogram_extractor.", "logmel_extractor.", "fc_audioset."))
        self.device = torch.device(device)
        self.net.to(self.device).eval()

    @torch.no_grad()
    def embed(self, wave: np.ndarray) -> np.ndarray:
        return self.net(torch.from_numpy(panns_features(wave)).to(self.device)).cpu().numpy()


# ================================================================================================ choosing one
def _need_file(path: str | os.PathLike | None, name: str, what: str) -> Path:
    if path is None:
        raise Action2SoundError(f"--fad-embedder {name} needs its weights: pass --{name} PATH ({what}); they cannot "
                                "be downloaded here. Or use --fad-embedder aisfx / av")
    p = Path(path)
    if not p.is_file():
        raise Action2SoundError(f"--{name} {p}: no such file; pass {what}")
    return p


@dataclass(frozen=True)
class EmbedderSpec:
    """Which embedder to build: its name and, for vggish / panns, the weight file."""

    name: str = "aisfx"
    weights: str | None = None


def build_embedder(spec: EmbedderSpec, av: nn.Module | None = None, profile=None,
                   device: str | torch.device = "cpu") -> Embedder:
    """The embedder named by spec (av needs the AV model and its audio profile)."""
    if spec.name == "aisfx":
        return AisfxEmbedder(spec.weights, device)
    if spec.name == "av":
        if av is None:
            raise Action2SoundError("--fad-embedder av needs a model directory with an AV model")
        return AVEmbedder(av, profile, device)
    if spec.name == "vggish":
        return VGGishEmbedder(spec.weights, device)
    if spec.name == "panns":
        return PANNsEmbedder(spec.weights, device)
    raise Action2SoundError(f"unknown FAD embedder {spec.name!r}; use one of {', '.join(EMBEDDERS)}")
