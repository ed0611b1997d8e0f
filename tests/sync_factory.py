"""Toy clips for the sync stream (flashes with a click at each) and a tiny sync encoder trained on them."""

from __future__ import annotations

import functools

import numpy as np
import torch

from action2sound.config import preset
from action2sound.mel import wave_to_mel
from action2sound.models.sync_stream import SyncEncoder, sync_frame_times


TOY_TONES_HZ = (300.0, 3000.0)  # with `kinds`: a red flash rings low, a blue one high


def toy_waves(p, n: int, seed: int, delay_s: float = 0.0, kinds: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(frames uint8 [n, N, S, S, 3], waves float32 [n, samples]): 1-3 flashes (a bright square for 0.1 s) per
    clip at random times, and a click at each flash, delayed by delay_s. With `kinds` each flash is red or blue
    and its sound a decaying tone at TOY_TONES_HZ[0] or [1] (what the flash looks like says what it sounds
    like) instead of the click."""
    rng = np.random.default_rng(seed)
    times, s, sr = sync_frame_times(p), p.sync_stream.size, p.audio.sample_rate
    frames = np.zeros((n, len(times), s, s, 3), np.uint8)
    waves = np.zeros((n, p.audio.num_samples), np.float32)
    for i in range(n):
        waves[i] = rng.normal(0, 1e-3, p.audio.num_samples)
        for te in np.sort(rng.uniform(0.6, p.audio.duration - 0.6, rng.integers(1, 4))):
            y, x = rng.integers(0, s // 2, 2)
            on = (times >= te) & (times < te + 0.1)
            j, m = int(round((te + delay_s) * sr)), int((0.3 if kinds else 0.04) * sr)
            if kinds:
                kind = int(rng.integers(0, 2))
                frames[i, on, y:y + s // 2, x:x + s // 2] = (220, 30, 30) if kind == 0 else (30, 30, 220)
                t = np.arange(m) / sr
                click = 0.5 * np.sin(2 * np.pi * TOY_TONES_HZ[kind] * t) * np.exp(-t / 0.08)
            else:
                frames[i, on, y:y + s // 2, x:x + s // 2] = rng.integers(128, 256, 3)
                click = rng.normal(0, 0.5, m) * np.exp(-np.arange(m) / (0.008 * sr))
            if 0 <= j < waves.shape[1]:
                waves[i, j:j + m] += click[: waves.shape[1] - j]
    return frames, waves


def toy_clips(p, n: int, seed: int, delay_s: float = 0.0, kinds: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(frames uint8 [n, N, S, S, 3], normalised mels [n, n_mels, padded]) of `toy_waves`."""
    frames, waves = toy_waves(p, n, seed, delay_s, kinds)
    return torch.from_numpy(frames), torch.from_numpy(np.stack([wave_to_mel(w, p.audio) for w in waves]))


@functools.lru_cache(maxsize=2)
def trained_toy_encoder(steps: int = 60, onsets: bool = False) -> tuple[SyncEncoder, np.ndarray]:
    """A tiny-preset sync encoder trained `steps` steps on 48 toy clips (seconds on a CPU), and its losses:
    offset contrast alone, or with `onsets` the stage's whole objective (SyncEncoder.loss, with the onset head)."""
    p = preset("tiny")
    frames, mel = toy_clips(p, 48, seed=0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        enc = SyncEncoder(p)
    opt = torch.optim.AdamW(enc.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(steps):
        idx = torch.randint(0, len(frames), (8,), generator=g)
        loss = (enc.loss if onsets else enc.offset_loss)(frames[idx], mel[idx], g)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return enc.eval(), np.array(losses)
