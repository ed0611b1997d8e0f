"""The AV-Sync classifier: its negatives, that it learns timing (tiny, synthetic), and `train sync` end to end."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from action2sound.config import preset
from action2sound.evaluation.sync import load_sync
from action2sound.models.sync_classifier import (SyncClassifier, clip_in_sync, data_preset, half_probabilities,
                                                 half_samples, sync_loss)
from action2sound.mel import wave_to_mel
from action2sound.training.sync import MIN_SHIFT_S, SyncStage, make_examples
from action2sound.weights import save_weights

TINY = preset("tiny")
SR = TINY.audio.sample_rate


def _synthetic(rng: np.random.Generator, n: int, shift_s: float = 0.0) -> dict[str, torch.Tensor]:
    """Clips with one visible event per half: a white frame at the event, a click in the audio (shifted)."""
    p = data_preset(TINY)
    t_frames, size, ns = p.video.num_frames, p.video.size, TINY.audio.num_samples
    frames = np.full((n, t_frames, size, size, 3), 20, dtype=np.uint8)
    wave = (rng.standard_normal((n, ns)) * 1e-3).astype(np.float32)
    slot = TINY.audio.duration / t_frames
    for i in range(n):
        for h in range(2):
            k = h * (t_frames // 2) + int(rng.integers(t_frames // 2))  # the frame showing the event
            frames[i, k] = 235
            t = (k + 0.5) * slot + shift_s
            j = int(round(t * SR)) % ns
            burst = rng.standard_normal(int(0.03 * SR)).astype(np.float32) * 0.5
            wave[i, j:j + burst.size] += burst[: ns - j]
    mel = wave_to_mel(wave, TINY.audio)
    return {"frames": torch.from_numpy(frames), "wave": torch.from_numpy(wave), "mel": torch.from_numpy(mel),
            "video_code": torch.zeros(n, dtype=torch.long)}


def test_negatives_are_shifted_far_enough_or_from_another_clip():
    rng = np.random.default_rng(0)
    batch = _synthetic(rng, 64)
    half, source, start, label = make_examples(batch, TINY, torch.Generator().manual_seed(3))
    n, span = half_samples(TINY), TINY.audio.num_samples - half_samples(TINY)
    true = half * n
    positive = label == 1
    assert 0.3 < positive.float().mean() < 0.7  # about half are positives
    assert torch.equal(start[positive], true[positive]) and torch.equal(source[positive], torch.arange(64)[positive])
    other = (source != torch.arange(64))
    shifted = ~positive & ~other
    assert other.any() and shifted.any()
    assert torch.equal(start[other], true[other])  # another clip, same span
    assert ((start[shifted] - true[shifted]).abs() >= int(round(MIN_SHIFT_S * SR))).all()
    assert ((start >= 0) & (start <= span)).all()
    # The same generator state draws the same examples (a resumed run sees what the first one saw).
    again = make_examples(batch, TINY, torch.Generator().manual_seed(3))
    assert all(torch.equal(a, b) for a, b in zip((half, source, start, label), again))


def test_the_either_half_rule():
    probs = np.array([[0.4, 0.6], [0.5, 0.1], [0.49, 0.3]])
    assert clip_in_sync(probs).tolist() == [True, True, False]


def test_tiny_classifier_learns_timing_and_shifted_audio_scores_lower(tmp_path):
    rng = np.random.default_rng(1)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        stage = SyncStage(TINY, TINY.train.av, seed=0)
    model = stage.model
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    model.train()
    g = torch.Generator().manual_seed(0)
    pool = [_synthetic(rng, 16) for _ in range(6)]  # new negatives are drawn at every step
    for step in range(120):
        logits, label = stage.logits(pool[step % len(pool)], g)
        loss = sync_loss(logits, label)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    test_rng = np.random.default_rng(99)
    aligned = _synthetic(test_rng, 32)
    shifted = _synthetic(np.random.default_rng(99), 32, shift_s=0.75)  # the same clips, sound 0.75 s late
    assert torch.equal(aligned["frames"], shifted["frames"])
    p_aligned = half_probabilities(model, aligned["frames"], aligned["wave"])
    p_shifted = half_probabilities(model, shifted["frames"], shifted["wave"])
    assert p_aligned.shape == (32, 2) and ((p_aligned >= 0) & (p_aligned <= 1)).all()
    assert float(p_aligned.mean()) > float(p_shifted.mean()) + 0.25
    assert clip_in_sync(p_aligned.numpy()).mean() > clip_in_sync(p_shifted.numpy()).mean()

    # Saved as `train sync` exports it -> load gives the same scores.
    path = save_weights(tmp_path / "sync.safetensors", model.state_dict(), "sync", model.preset)
    again = half_probabilities(load_sync(path), aligned["frames"], aligned["wave"])
    assert torch.allclose(again, p_aligned, atol=1e-6)


def test_load_sync_names_the_fix_when_missing(tmp_path):
    with pytest.raises(ValueError, match="train sync"):
        load_sync(tmp_path / "nothing")


def test_paper_sized_inputs_have_the_right_shapes():
    # The paper's audio tower reads the Kaldi fbank of the 1.5 s segment (149 frames); build only the shapes.
    paper = preset("paper")
    with torch.device("meta"):
        model = SyncClassifier(paper)
    assert model.audio_tower.frames == paper.av.fbank_frames
    wave = torch.randn(2, paper.audio.num_samples)
    x = model.audio_input(wave, None, torch.tensor([0, half_samples(paper)]))
    assert tuple(x.shape) == (2, paper.av.fbank_frames, paper.av.fbank_bins)
