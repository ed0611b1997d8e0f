"""The sync stream's appearance (SyncStreamConfig.appearance_size): a crop where the picture moves, per column,
appended to the stream; how it is placed, that it moves with the video, that the ldm takes it in starting as no
change, and that the store and the pipeline carry it."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from action2sound.config import preset
from action2sound.models.ldm import LatentDiffusion
from action2sound.models.sync_stream import (APPEARANCE_GRID, SyncEncoder, appearance_dim, appearance_features,
                                             frames_per_column, stream_dim, widen_for_stream)

SIZE = 64


def _with_appearance(p, size: int = SIZE):
    return dataclasses.replace(p, sync_stream=dataclasses.replace(p.sync_stream, appearance_size=size))


def _texture(n: int, seed: int = 0) -> np.ndarray:
    """n copies of one grey random texture [n, S, S, 3] (a still scene)."""
    grey = np.random.default_rng(seed).integers(60, 200, (SIZE, SIZE, 1), dtype=np.uint8)
    return np.repeat(np.repeat(grey, 3, axis=2)[None], n, axis=0)


def _crop_colours(frame: np.ndarray, cy: int, cx: int) -> np.ndarray:
    half = SIZE // 8
    crop = torch.from_numpy(frame[cy - half: cy + half, cx - half: cx + half]).permute(2, 0, 1).float() / 255
    return (4.0 * (torch.nn.functional.adaptive_avg_pool2d(crop[None], APPEARANCE_GRID).flatten() - 0.5)).numpy()


def test_the_crop_goes_where_the_picture_moves_and_to_the_centre_where_nothing_does():
    r, w = 2, 10
    frames = _texture(r * w)
    # A red square arrives at (40, 20) in column 6's frames and stays: it moves only there.
    for k in range(6 * r, r * w):
        frames[k, 36:45, 16:25] = (230, 20, 20)
    a = appearance_features(torch.from_numpy(frames)[None], r)[0].numpy()  # [W, 3 G^2]
    assert a.shape == (w, 3 * APPEARANCE_GRID ** 2)
    np.testing.assert_allclose(a[6], _crop_colours(frames[6 * r + 1], 40, 20), atol=1e-5)
    red, green = a[6].reshape(3, -1).mean(axis=1)[:2]
    assert red > green + 0.5  # the crop holds the square
    for j in (2, 8):  # nothing moves in these columns (before the square; after it settled)
        np.testing.assert_allclose(a[j], _crop_colours(frames[j * r + 1], SIZE // 2, SIZE // 2), atol=1e-5)


def test_a_camera_pan_is_not_taken_for_motion():
    r, w = 2, 6
    grey = np.random.default_rng(1).integers(60, 200, (SIZE + 20, SIZE + 2 * r * w, 1), dtype=np.uint8)
    scene = np.repeat(grey, 3, axis=2)
    scene[50:58, 14:22] = (20, 20, 230)  # a blue object, part of the scene
    # The camera pans 2 px per frame; a red square moves on its own in column 3 only (at 16, 44 in the frame).
    frames = np.stack([scene[10:10 + SIZE, 2 * k: 2 * k + SIZE] for k in range(r * w)]).copy()
    frames[3 * r + 1, 12:21, 40:49] = (230, 20, 20)
    a = appearance_features(torch.from_numpy(frames)[None], r)[0].numpy()
    np.testing.assert_allclose(a[3], _crop_colours(frames[3 * r + 1], 16, 44), atol=1e-5)


def test_appearance_moves_with_the_video_by_whole_columns():
    r, w, m = 2, 12, 2
    rng = np.random.default_rng(2)
    ext = rng.integers(0, 256, (r * (w + m), SIZE, SIZE, 3), dtype=np.uint8)
    base, later = ext[r * m:], ext[: r * w]  # later[i] = base[i - r m]: the same video, m columns later
    a = appearance_features(torch.from_numpy(base)[None], r)[0]
    b = appearance_features(torch.from_numpy(later)[None], r)[0]
    # A column's crop depends on its own frames and the frame before them only.
    torch.testing.assert_close(b[m + 1: w], a[1: w - m])


def test_the_stream_appends_the_appearance_to_the_learned_features():
    p = _with_appearance(preset("tiny"))
    assert appearance_dim(preset("tiny").sync_stream) == 0
    assert stream_dim(p.sync_stream) == p.sync_stream.feature_dim + 3 * APPEARANCE_GRID ** 2
    torch.manual_seed(0)
    enc = SyncEncoder(p).eval()
    n, s = enc.num_frames, p.sync_stream.size
    rng = np.random.default_rng(3)
    frames = torch.from_numpy(rng.integers(0, 256, (1, n, s, s, 3), dtype=np.uint8))
    detail = torch.from_numpy(rng.integers(0, 256, (1, n, SIZE, SIZE, 3), dtype=np.uint8))
    with torch.no_grad():
        out = enc.stream_features(frames, detail)
        torch.testing.assert_close(out[..., : p.sync_stream.feature_dim], enc.video_features(frames))
    r = frames_per_column(p.sync_stream, p.audio, p.vae.downsample)
    torch.testing.assert_close(out[..., p.sync_stream.feature_dim:], appearance_features(detail, r))
    with pytest.raises(ValueError, match="appearance"):
        enc.stream_features(frames)
    with pytest.raises(ValueError, match="appearance_size"):
        SyncEncoder(_with_appearance(preset("tiny"), 8))


def test_an_ldm_with_the_stream_starts_the_appearance_as_no_change():
    """`train ldm --init` of a model with the stream but no appearance: its outputs stay the same whatever the
    appearance says, until training moves the new (zero) input weights; the appearance enters unnormalised."""
    p0 = preset("tiny")
    p = _with_appearance(p0)
    torch.manual_seed(0)
    before = LatentDiffusion.from_preset(p0).eval()
    with torch.no_grad():
        for q in before.parameters():
            q.add_(0.01)  # as if trained
    after = LatentDiffusion.from_preset(p).eval()
    after.load_state_dict(widen_for_stream(before.state_dict(), after))
    c, d = p.latent_shape[0], p.sync_stream.feature_dim
    assert after.unet.conv_in.weight.shape[1] == c + stream_dim(p.sync_stream)
    assert not after.unet.conv_in.weight[:, c + d:].any()
    x, t = torch.randn(2, *p.latent_shape), torch.tensor([10, 500])
    learned = torch.randn(2, p.latent_shape[2], d)
    look = torch.randn(2, p.latent_shape[2], appearance_dim(p.sync_stream))
    with torch.no_grad():
        ctx = before.context(None, None, batch_size=2)
        torch.testing.assert_close(after(x, t, ctx, torch.cat([learned, look], -1)), before(x, t, ctx, learned))
        torch.testing.assert_close(after(x, t, ctx, torch.zeros(2, p.latent_shape[2], stream_dim(p.sync_stream))),
                                   before(x, t, ctx))  # the null stream
        after.unet.conv_in.weight[:, c + d:] = 0.01  # as if trained
        one = after(x, t, ctx, torch.cat([learned, look], -1))
        assert not torch.allclose(one, after(x, t, ctx, torch.cat([learned, 2 * look], -1)))  # not normalised away


def test_the_store_keeps_the_appearance_beside_the_learned_features(tmp_path_factory):
    from test_training import TINY, tiny_benchmark

    from action2sound import media
    from action2sound.data.splits import load_clip_table
    from action2sound.data.store import ClipEncoder, Store, decode_clip, preencode, store_fields
    from action2sound.models.av import AVModel
    from action2sound.models.sync_stream import sync_frame_times
    from action2sound.models.vae import build_vae_from_preset

    p = _with_appearance(TINY, 32)
    table = load_clip_table(tiny_benchmark(tmp_path_factory) / "all.tsv")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        enc = ClipEncoder(AVModel.from_preset(p), build_vae_from_preset(p), p,
                          source={"av": "a", "vae": "v", "sync_encoder": "s"}, sync_encoder=SyncEncoder(p).eval())
    w, d = p.latent_shape[2], stream_dim(p.sync_stream)
    assert enc.fields["sync_features"] == ((w, d), "float16") == store_fields(p)["sync_features"]
    out = tmp_path_factory.mktemp("appearance") / "store"
    preencode(table, enc, out, shard_size=4, batch_size=4, progress=False)
    clip = table[1]
    decoded = decode_clip(clip, p, frames=False, audio=False, sync=True)
    times = clip.media_start + sync_frame_times(p)
    np.testing.assert_array_equal(decoded["sync_detail"], media.read_frames_at(clip.media_path, times, size=32,
                                                                               resize=p.video.resize))
    assert decoded["sync_frames"].shape[1] == p.sync_stream.size
    with torch.no_grad():
        direct = enc.sync_encoder.stream_features(torch.from_numpy(decoded["sync_frames"])[None],
                                                  torch.from_numpy(decoded["sync_detail"])[None])[0].numpy()
    stored = Store(out).get("sync_features", 1).astype(np.float32)
    np.testing.assert_allclose(stored, direct, atol=2e-3, rtol=2e-3)
    assert np.abs(stored[:, p.sync_stream.feature_dim:]).max() > 0.1  # the crops' colours are there


def test_the_pipeline_passes_the_appearance_to_the_sampler(tmp_path, monkeypatch):
    """A model exported with the appearance on: generate reads the stream's frames at both sizes in one pass and
    the sampler gets the learned features and the appearance of the same frames."""
    from generation_factory import tiny_model_dir

    from action2sound import media, pipeline as pl
    from action2sound.models.sync_stream import sync_frame_times
    from action2sound.options import GenerateOptions

    model = tiny_model_dir(tmp_path, sync_encoder=True, p=_with_appearance(preset("tiny"), 32))
    pipe = pl.load_pipeline(model, device="cpu")
    p = pipe.preset
    assert p.sync_stream.appearance_size == 32
    video = tmp_path / "v.mp4"
    frames = np.random.default_rng(4).integers(0, 256, (40, 48, 48, 3), dtype=np.uint8)
    media.write_video(video, frames, fps=12.0, crf=0)
    seen = []
    real = pl.Pipeline._sync_features

    def spy(self, dense, windows):
        out = real(self, dense, windows)
        seen.append((dense, out))
        return out

    monkeypatch.setattr(pl.Pipeline, "_sync_features", spy)
    (result,) = pipe.generate([video], GenerateOptions(ambient="none", steps=2))
    assert not isinstance(result, Exception)
    (dense, out), *_ = seen
    assert [f.shape[1] for f in dense] == [p.sync_stream.size, 32]
    assert out.shape[1:] == (p.latent_shape[2], stream_dim(p.sync_stream))
    n = len(sync_frame_times(p))
    with torch.no_grad():
        direct = pipe.sync_encoder.stream_features(torch.from_numpy(dense[0][:n])[None],
                                                   torch.from_numpy(dense[1][:n])[None])[0]
    torch.testing.assert_close(out[0], direct)


def test_box_sums_are_the_sums_over_each_square():
    from action2sound.models.sync_stream import box_sums

    x = torch.rand(2, 3, 9, 11)
    half = 2
    expected = torch.nn.functional.avg_pool2d(x.double(), 2 * half + 1, stride=1, padding=half,
                                              count_include_pad=True) * (2 * half + 1) ** 2
    torch.testing.assert_close(box_sums(x, half), expected)


def test_the_ldm_takes_the_stream_as_its_store_encoded_it():
    from types import SimpleNamespace

    from action2sound.data.store import store_fields
    from action2sound.training.run import _ldm_preset

    p = preset("tiny")
    enc = _with_appearance(p, 32)
    with_stream = SimpleNamespace(preset=enc, fields=store_fields(enc), path="s")
    assert _ldm_preset(p, with_stream).sync_stream.appearance_size == 32
    off = dataclasses.replace(p, sync_stream=dataclasses.replace(p.sync_stream, enabled=False))
    assert not _ldm_preset(off, with_stream).sync_stream.enabled  # switching the stream off stays the ldm's choice
    without = SimpleNamespace(preset=enc, fields=store_fields(enc, sync=False), path="s")
    assert _ldm_preset(p, without).sync_stream.appearance_size == 0  # no features stored: nothing to follow


def test_preencode_can_add_the_appearance_to_an_encoder_saved_without_it(tmp_path):
    """`preencode --appearance PX` with a sync encoder trained (and saved) without it; the exported model then
    takes the appearance from its ldm, whose store had it."""
    from generation_factory import tiny_model_dir

    from action2sound.errors import Action2SoundError
    from action2sound.weights import load_sync_encoder, merge_presets

    model = tiny_model_dir(tmp_path, sync_encoder=True)
    enc, sha = load_sync_encoder(model)
    assert enc.cfg.appearance_size == 0 and sha
    wide, sha2 = load_sync_encoder(model, appearance_size=32)
    assert wide.cfg.appearance_size == 32 and sha2 == sha
    for k, v in enc.state_dict().items():
        torch.testing.assert_close(wide.state_dict()[k], v)  # the same weights
    with pytest.raises(Action2SoundError, match="appearance size 8"):
        load_sync_encoder(model, appearance_size=8)
    p = preset("tiny")
    merged = merge_presets({"ldm": _with_appearance(p, 32), "sync_encoder": p})
    assert merged.sync_stream.appearance_size == 32
