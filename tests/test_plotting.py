"""The generation picture: frames over the spectrogram, each frame above the sound of its moment."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from action2sound import media
from action2sound.errors import Action2SoundError
from action2sound.plotting import render_png, thumbnail_times


def test_thumbnail_times_tile_the_strip():
    # 12 in wide, 1.3 in high strip: 16:9 thumbnails fit round(12 / (1.3 * 16 / 9)) = 5 slots.
    np.testing.assert_allclose(thumbnail_times(6.0, 16 / 9), [0.6, 1.8, 3.0, 4.2, 5.4])
    assert thumbnail_times(1.0, 0.01).size == 24  # capped
    assert thumbnail_times(1.0, 100.0).size == 1
    with pytest.raises(Action2SoundError, match="duration 0"):
        thumbnail_times(0.0, 1.0)


def _mask(img: np.ndarray, rgb) -> np.ndarray:
    return np.abs(img[..., :3].astype(int) - np.array(rgb)).sum(-1) < 60


def test_render_png_puts_each_frame_over_its_moment(tmp_path):
    # 2 s of video: red for the first second, blue for the second; a 1 kHz tone at 16 kHz (drawn at 22.05 kHz).
    frames = np.zeros((20, 32, 48, 3), np.uint8)
    frames[:10] = (230, 20, 20)
    frames[10:] = (20, 20, 230)
    sr = 16_000
    tone = (0.5 * np.sin(2 * np.pi * 1000.0 * np.arange(2 * sr) / sr)).astype(np.float32)
    video = tmp_path / "v.mp4"
    media.write_video(video, frames, fps=10, audio=tone, sample_rate=sr)
    out = render_png(tmp_path / "pic" / "v.png", video, tone, sr, seams=(1.0,), title="two halves")
    img = np.asarray(Image.open(out))
    assert img.shape[:2] == (460, 1200)
    red, blue = _mask(img, (230, 20, 20)), _mask(img, (20, 20, 230))
    assert red.sum() > 5000 and blue.sum() > 5000
    red_x, blue_x = np.nonzero(red)[1], np.nonzero(blue)[1]
    # The time axis spans x in [0.06, 0.99] of the width: 1 s is at its middle.
    middle = 1200 * (0.06 + 0.99) / 2
    assert red_x.max() < middle + 5 and blue_x.min() > middle - 5
