from pathlib import Path

import librosa
import numpy as np
import pytest
import torch

from action2sound.config import PAPER_AUDIO, UNIVERSAL22K_AUDIO, override, preset
from action2sound.mel import (
    MelTransform, crop_frames, fit_wave, mel_to_vocoder_input, mel_to_wave_griffinlim, wave_to_mel,
)

FIXTURE = Path(__file__).parent / "data" / "mel_paper_profile_fixture.npz"


def _chirp(profile, seconds=3.0):
    n = int(profile.sample_rate * seconds)
    f = np.linspace(200, 6000, n)
    return (0.5 * np.sin(2 * np.pi * np.cumsum(f) / profile.sample_rate)).astype(np.float32)


def test_paper_profile_matches_reference_fixture():
    ref = np.load(FIXTURE)
    mel, frames = wave_to_mel(ref["wave_16k"], "paper", return_frames=True)
    assert mel.dtype == np.float32 and mel.shape == (128, 196) == ref["expected_mel"].shape
    assert frames == int(ref["original_frames"]) == 188
    assert np.abs(mel - ref["expected_mel"]).max() <= 1e-4
    assert np.all(mel[:, 188:] == 0)


def test_derived_lengths():
    assert (PAPER_AUDIO.num_samples, PAPER_AUDIO.num_frames, PAPER_AUDIO.padded_frames) == (48000, 188, 196)
    assert PAPER_AUDIO.latent_shape(4, 8) == (4, 16, 24)
    # HiFi-GAN framing: (n_fft - hop)/2 reflect padding, no centring -> samples // hop frames.
    assert UNIVERSAL22K_AUDIO.num_samples == 66150 and UNIVERSAL22K_AUDIO.num_frames == 66150 // 256


def test_fit_wave_truncates_and_pads_right():
    long = np.arange(50000, dtype=np.float32)
    assert np.array_equal(fit_wave(long, "paper"), long[:48000])
    short = np.ones(1000, dtype=np.float32)
    out = fit_wave(short, "paper")
    assert out.shape == (48000,) and out[:1000].sum() == 1000 and not out[1000:].any()


@pytest.mark.parametrize("profile", [PAPER_AUDIO, UNIVERSAL22K_AUDIO])
def test_torch_twin_matches_numpy(profile):
    wave = _chirp(profile)
    ref = wave_to_mel(wave, profile)
    got = MelTransform(profile)(torch.from_numpy(wave)[None])[0].numpy()
    assert got.shape == (profile.n_mels, profile.num_frames)
    assert np.abs(got - crop_frames(ref, profile)).max() < 1e-3


def test_universal_hifigan_log_mel_is_the_generators_transform():
    # HiFi-GAN's mel: log(clamp(basis @ sqrt(|X|^2 + 1e-9), 1e-5)) with (n_fft-hop)/2 reflect padding.
    p = UNIVERSAL22K_AUDIO
    wave = _chirp(p) + 0.05 * np.random.default_rng(0).standard_normal(p.num_samples).astype(np.float32)
    pad = (p.n_fft - p.hop) // 2
    x = np.pad(wave.astype(np.float64), (pad, pad), mode="reflect")
    spec = librosa.stft(x, n_fft=p.n_fft, hop_length=p.hop, win_length=p.win, center=False)
    mag = np.sqrt(np.abs(spec) ** 2 + 1e-9)
    basis = librosa.filters.mel(sr=p.sample_rate, n_fft=p.n_fft, n_mels=p.n_mels, fmin=p.fmin, fmax=p.fmax)
    expected = np.log(np.maximum(basis @ mag, 1e-5))
    got = mel_to_vocoder_input(crop_frames(wave_to_mel(wave, p), p), p)
    inside = (expected > p.log_min + 1e-3) & (expected < p.log_max - 1e-3)  # unclipped region
    assert inside.mean() > 0.9
    assert np.abs(got - expected)[inside].max() < 1e-4


def test_paper_vocoder_input_is_natural_log_magnitude():
    mel = np.array([[0.0, 0.2, 0.8, 1.0]], dtype=np.float32)
    db = mel * 100 - 80
    assert np.allclose(mel_to_vocoder_input(mel, "paper"), np.log(10 ** (db / 20)), atol=1e-5)
    assert torch.allclose(mel_to_vocoder_input(torch.from_numpy(mel), "paper"),
                          torch.from_numpy(np.log(10 ** (db / 20))).float(), atol=1e-5)


def test_griffinlim_round_trip_keeps_the_spectrum():
    p = UNIVERSAL22K_AUDIO
    wave = _chirp(p)
    mel = wave_to_mel(wave, p)
    rec = mel_to_wave_griffinlim(mel, p, n_iter=32)
    assert rec.shape == (p.num_samples,)
    err = np.abs(wave_to_mel(rec, p) - mel)[:, : p.num_frames].mean()
    assert err < 0.06, err


@pytest.mark.parametrize("assignment", ["audio.fmax=4000", "audio.n_mels=64"])
def test_filterbank_follows_the_profiles_values_not_its_name(assignment):
    # `--set audio.fmax=...` keeps the profile's name ("paper"): the filterbank must follow the values.
    changed = override(preset("paper"), [assignment]).audio
    assert changed.name == PAPER_AUDIO.name and changed != PAPER_AUDIO
    p = changed
    wave = _chirp(p) + 0.05 * np.random.default_rng(0).standard_normal(p.num_samples).astype(np.float32)
    # The paper transform written out with librosa: centred reflect-padded STFT, |X|, Slaney mel, dB scale.
    spec = librosa.stft(wave.astype(np.float64), n_fft=p.n_fft, hop_length=p.hop, win_length=p.win,
                        center=True, pad_mode="reflect")
    basis = librosa.filters.mel(sr=p.sample_rate, n_fft=p.n_fft, n_mels=p.n_mels, fmin=p.fmin, fmax=p.fmax)
    expected = np.clip((20 * np.log10(np.maximum(basis @ np.abs(spec), 1e-5)) + 80) / 100, 0, 1)
    got = wave_to_mel(wave, p)
    assert got.shape == (p.n_mels, p.padded_frames)
    assert np.abs(crop_frames(got, p) - expected).max() < 1e-5
    assert got.shape != wave_to_mel(wave, PAPER_AUDIO).shape or np.abs(got - wave_to_mel(wave, PAPER_AUDIO)).max() > 0.1
    # The torch twin reads the same filterbank.
    twin = MelTransform(p)(torch.from_numpy(wave)[None])[0].numpy()
    assert twin.shape == (p.n_mels, p.num_frames)
    assert np.abs(twin - crop_frames(got, p)).max() < 1e-3
    # Griffin-Lim inverts with the same filterbank: its output's mel is close to the one it was given.
    rec = mel_to_wave_griffinlim(got, p, n_iter=16)
    assert np.abs(wave_to_mel(rec, p) - got)[:, : p.num_frames].mean() < 0.08
