"""Paper-profile mels to sound without a paper-profile vocoder: a bridge to the universal HiFi-GAN, or Griffin-Lim.

The paper's HiFi-GAN (16 kHz, 128 mels, 125-7600 Hz) was never published. Its mel can still be heard through
the shipped universal generator (22,050 Hz, 80 mels, 0-8 kHz):

1. normalised mel v -> mel magnitudes; cells at (or within `floor` of) the normalisation floor v = 0 become
   zero magnitude, not the floor's 1e-4 (-80 dB) that, summed over hundreds of bins, is an audible hiss;
2. mel magnitudes -> linear spectrum: each band's mean magnitude (its mel value over the filter's bin sum)
   sits at the band's centre frequency and the spectral envelope is interpolated linearly between centres
   (issue 11's prototype found this as good as non-negative least squares on the filterbank, at 2 ms instead
   of 0.3 s);
   outside the source band (below 125 Hz, above 7.6 kHz) the edge bands are held: a guess, but a better one
   than silence;
3. the time axis is resampled from the source frames (16 ms apart, centred) to the target's (11.6 ms,
   HiFi-GAN framing), linearly;
4. re-projection on the target mel filterbank, natural log -> the universal generator's input;
5. after vocoding, the wave is resampled to the source rate.

Steps 2-4 are one [80, 128] matrix and one [frames_src, frames_dst] matrix, so the bridge costs two matrix
products; the vocoder is passed in as a function (this module knows no network).
`griffinlim` inverts a mel with the same envelope and the same floor rule, on the profile's own STFT.
Measured on 20 real recordings in docs/VOCODERS.md (on ground-truth mels, that Griffin-Lim scored better than
the bridge on MR-STFT and aisfx FAD; both far better than Griffin-Lim without the rule).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache

import librosa
import numpy as np
import torch

from .config import UNIVERSAL22K_AUDIO, AudioProfile, audio_profile
from .media import resample
from .mel import crop_frames, fit_wave, mel_basis, mel_to_vocoder_input, mel_to_wave_griffinlim

# A normalised cell at or below this counts as the floor (step 1; v = 0.08 is -72 dB in the paper's scale).
# Generated mels rarely sit exactly at 0: the small default model's VAE decodes cells that are at the floor in
# the ground truth to a median of 0.041 and a 95th percentile of 0.075 (20 real clips); with that residue put
# back on ground-truth paper mels, Griffin-Lim's MR-STFT distance was 1.81 without the rule, 1.78 / 1.44 /
# 1.16 / 1.13 with thresholds 0 / 0.05 / 0.08 / 0.12 (benchmarks/bench_vocoders.py, docs/VOCODERS.md).
FLOOR = 0.08
_LOG_EPS = 1e-5  # the universal generator's own log clamp


# ------------------------------------------------------------------------------------------- the maps
def mel_magnitude(mel: np.ndarray, profile: AudioProfile, floor: float | None = FLOOR) -> np.ndarray:
    """Normalised mel [..., n_mels, frames] -> mel magnitudes, floor cells (v <= floor) zero; None: no rule."""
    mag = np.exp(mel_to_vocoder_input(np.asarray(mel, dtype=np.float64), profile))
    if floor is not None:
        mag = np.where(np.asarray(mel) <= floor, 0.0, mag)
    return mag


@lru_cache(maxsize=8)
def envelope_matrix(src_name: str, freqs: tuple[float, ...]) -> np.ndarray:
    """[len(freqs), n_mels] map: mel magnitudes -> linear magnitudes at `freqs` (Hz) by the band-centre envelope."""
    p = audio_profile(src_name)
    basis = mel_basis(p).astype(np.float64)  # [n_mels, bins]
    # Slaney filters have unit area in Hz, so a band's bin sum turns its mel value into a mean magnitude.
    per_band = 1.0 / basis.sum(axis=1)
    centres = librosa.mel_frequencies(p.n_mels + 2, fmin=p.fmin, fmax=p.fmax)[1:-1]
    f = np.asarray(freqs, dtype=np.float64)
    out = np.zeros((f.size, p.n_mels))
    # Linear interpolation weights between neighbouring centres, the end bands held flat beyond the first and
    # last centre. Outside fmin..fmax the mel knows nothing; holding the edge band there (rather than zero) is
    # closer to real sound (MR-STFT 1.79 -> 1.60 on sonic-pi's tabla loop, 1.54 -> 1.26 on its vinyl hiss)
    # and keeps the generator's input in the range it was trained on.
    pos = np.interp(f, centres, np.arange(p.n_mels, dtype=np.float64))
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, p.n_mels - 1)
    frac = pos - lo
    rows = np.arange(f.size)
    np.add.at(out, (rows, lo), 1.0 - frac)
    np.add.at(out, (rows, hi), frac)
    return out * per_band[None, :]


def stft_freqs(p: AudioProfile) -> tuple[float, ...]:
    """Centre frequencies (Hz) of the profile's STFT bins."""
    return tuple(np.arange(p.n_fft // 2 + 1) * p.sample_rate / p.n_fft)


@lru_cache(maxsize=8)
def frequency_map(src_name: str, dst_name: str) -> np.ndarray:
    """[n_mels_dst, n_mels_src]: source mel magnitudes -> target mel magnitudes (steps 2 and 4)."""
    dst = audio_profile(dst_name)
    linear = envelope_matrix(src_name, stft_freqs(dst))  # [bins_dst, n_mels_src]
    return mel_basis(dst).astype(np.float64) @ linear


def frame_times(p: AudioProfile, frames: int) -> np.ndarray:
    """Centre time (s) of each STFT frame: i hop (centred framing) or i hop + hop / 2 (HiFi-GAN framing)."""
    # HiFi-GAN framing pads (n_fft - hop) / 2 on the left: frame i spans [i hop - (n_fft - hop) / 2, + n_fft).
    offset = 0.0 if p.framing == "center" else p.hop / 2
    return (np.arange(frames) * p.hop + offset) / p.sample_rate


def target_frames(src: AudioProfile, dst: AudioProfile) -> int:
    """Target frames whose wave covers the source window (259 for 3 s at 22,050 Hz / hop 256)."""
    return math.ceil(src.num_samples / src.sample_rate * dst.sample_rate / dst.hop)


@lru_cache(maxsize=8)
def time_map(src_name: str, dst_name: str) -> np.ndarray:
    """[frames_src, frames_dst] linear interpolation from source frame times to target frame times (step 3)."""
    src, dst = audio_profile(src_name), audio_profile(dst_name)
    t_src, t_dst = frame_times(src, src.num_frames), frame_times(dst, target_frames(src, dst))
    pos = np.interp(t_dst, t_src, np.arange(src.num_frames, dtype=np.float64))  # held at the ends
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, src.num_frames - 1)
    out = np.zeros((src.num_frames, t_dst.size))
    cols = np.arange(t_dst.size)
    np.add.at(out, (lo, cols), 1.0 - (pos - lo))
    np.add.at(out, (hi, cols), pos - lo)
    return out


def bridge_log_mel(mel: np.ndarray, src: str | AudioProfile = "paper", dst: str | AudioProfile = UNIVERSAL22K_AUDIO,
                   floor: float | None = FLOOR) -> np.ndarray:
    """Normalised source mel [..., n_mels_src, >= num_frames] -> natural-log target mel [..., n_mels_dst, frames]."""
    src, dst = audio_profile(src), audio_profile(dst)
    mag = mel_magnitude(crop_frames(np.asarray(mel, dtype=np.float64), src), src, floor)
    out = frequency_map(src.name, dst.name) @ mag @ time_map(src.name, dst.name)
    return np.log(np.maximum(out, _LOG_EPS)).astype(np.float32)


# ------------------------------------------------------------------------------------------- the waves
def bridge_waves(vocode: Callable[[torch.Tensor], torch.Tensor], mel: np.ndarray | torch.Tensor,
                 src: str | AudioProfile = "paper", dst: str | AudioProfile = UNIVERSAL22K_AUDIO,
                 floor: float | None = FLOOR) -> np.ndarray:
    """Normalised source mels [B, n_mels, frames] -> waves float32 [B, num_samples] at the source rate.

    `vocode`: natural-log target mel [B, n_mels_dst, frames] (torch) -> wave [B, frames * hop_dst], e.g.
    `lambda m: models.vocoder.vocode(universal_generator, m)`.
    """
    src, dst = audio_profile(src), audio_profile(dst)
    if isinstance(mel, torch.Tensor):
        mel = mel.detach().float().cpu().numpy()
    log_mel = torch.from_numpy(bridge_log_mel(mel, src, dst, floor))
    with torch.no_grad():
        wave = vocode(log_mel).float().cpu().numpy()  # [B, frames * hop] at the target rate
    out = np.stack([resample(w, dst.sample_rate, src.sample_rate) for w in wave])
    return fit_wave(out, src).astype(np.float32)


def griffinlim(mel: np.ndarray, profile: str | AudioProfile = "paper", floor: float | None = FLOOR,
               n_iter: int = 64, seed: int = 0) -> np.ndarray:
    """Normalised mel [n_mels, >= num_frames] -> wave [num_samples]: band-centre envelope + floor rule, then
    Griffin-Lim on the profile's own STFT. The package's one Griffin-Lim entry point: a HiFi-GAN-framed profile
    (universal22k, whose mel the universal vocoder reads directly) keeps `mel.mel_to_wave_griffinlim`."""
    p = audio_profile(profile)
    if p.framing != "center":
        return mel_to_wave_griffinlim(mel, p, n_iter=n_iter, seed=seed)
    mag = envelope_matrix(p.name, stft_freqs(p)) @ mel_magnitude(crop_frames(np.asarray(mel), p), p, floor)
    wave = librosa.griffinlim(mag, n_iter=n_iter, hop_length=p.hop, win_length=p.win, n_fft=p.n_fft, center=True,
                              pad_mode="reflect", random_state=np.random.RandomState(seed))
    return fit_wave(wave.astype(np.float32), p)


def normalised_from_log(log_mel: np.ndarray, profile: AudioProfile) -> np.ndarray:
    """Natural-log mel (a vocoder's input) -> the profile's normalised mel in [0, 1] (`mel_to_vocoder_input`^-1)."""
    if profile.normalisation == "paper":
        v = (log_mel * (20.0 / math.log(10.0)) + 80.0) / 100.0
    else:
        v = (log_mel - profile.log_min) / (profile.log_max - profile.log_min)
    return np.clip(v, 0.0, 1.0)


def bridge_applies(profile: AudioProfile) -> bool:
    """True when the profile's mel differs from the universal generator's own (the bridge has work to do)."""
    return profile != UNIVERSAL22K_AUDIO


class BridgeVocoder(torch.nn.Module):
    """A profile's vocoder made of the universal generator and the bridge; a drop-in for `models.vocoder.vocode`:
    natural-log source mel [B, frames, n_mels] (SpeechT5HifiGan's layout) -> wave [B, num_samples] at the
    source rate. Not differentiable (the bridge runs in numpy); for inference only."""

    def __init__(self, universal: torch.nn.Module, profile: str | AudioProfile = "paper", floor: float | None = FLOOR):
        super().__init__()
        self.universal, self.profile, self.floor = universal, audio_profile(profile), floor

    def forward(self, log_mel: torch.Tensor) -> torch.Tensor:
        mel = normalised_from_log(log_mel.detach().float().cpu().numpy().transpose(0, 2, 1), self.profile)
        param = next(self.universal.parameters())

        def vocode(m: torch.Tensor) -> torch.Tensor:
            return self.universal(m.to(param.device, param.dtype).transpose(1, 2))  # [B, frames * hop]

        wave = bridge_waves(vocode, mel, self.profile, UNIVERSAL22K_AUDIO, self.floor)
        return torch.from_numpy(wave).to(log_mel.device)
