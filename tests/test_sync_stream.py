"""The sync stream (models/sync_stream.py): its time grid, shift equivariance, the offset contrast on toy clips,
the offset estimator, the UNet injection, and that models saved without it load as before."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from action2sound.config import PRESETS, preset, preset_from_dict
from action2sound.models.ldm import LatentDiffusion
from action2sound.models.sync_stream import (SyncEncoder, column_period, column_times, frames_per_column,
                                             interpolation_matrix, offset_from_scores, sync_frame_times)
from sync_factory import toy_clips, trained_toy_encoder

DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "src" / "action2sound" / "default_model"


# ------------------------------------------------------------------------------------------------ time grid
@pytest.mark.parametrize("name", ["tiny", "paper-sync"])
def test_frames_fill_each_column_around_its_centre(name):
    p = preset(name)
    _, _, w = p.latent_shape
    ds = p.vae.downsample
    r = frames_per_column(p.sync_stream, p.audio, ds)
    assert r / column_period(p.audio, ds) >= p.sync_stream.fps
    assert (r - 1) / column_period(p.audio, ds) < p.sync_stream.fps  # the smallest such r
    times = sync_frame_times(p)
    cols = column_times(p.audio, ds, w)
    assert times.shape == (r * w,)
    np.testing.assert_allclose(times.reshape(w, r).mean(axis=1), cols, atol=1e-12)
    assert np.all(np.diff(times) > 0)


def test_column_centres_follow_the_framing():
    # universal22k ("hifigan" framing): frame i centred on (i + 1/2) hop, so column j on (8 j + 4) hop.
    p = preset("tiny")
    np.testing.assert_allclose(column_times(p.audio, 8, 3), (np.arange(3) * 8 + 4) * 256 / 22050)
    # paper ("center" framing): frame i centred on i hop, so column j on (8 j + 3.5) hop.
    q = preset("paper")
    np.testing.assert_allclose(column_times(q.audio, 8, 2), (np.arange(2) * 8 + 3.5) * 256 / 16000)


def test_linear_interpolation_matrix():
    m = interpolation_matrix(np.array([0.0, 1.0, 2.0]), np.array([-1.0, 0.25, 1.5, 3.0])).numpy()
    np.testing.assert_allclose(m, [[1, 0, 0], [0.75, 0.25, 0], [0, 0.5, 0.5], [0, 0, 1]])


# ------------------------------------------------------------------------------------------- equivariance
def _receptive_columns(p, enc) -> int:
    """Columns at each edge whose features can see past the window (difference + temporal convolutions)."""
    r = frames_per_column(p.sync_stream, p.audio, p.vae.downsample)
    return int(np.ceil(enc.video.reach / r)) + 1


@pytest.mark.parametrize("m", [1, 3, -2])
def test_shifting_the_video_by_k_frames_shifts_the_features_by_k_over_r_columns(m):
    p = preset("tiny")
    torch.manual_seed(0)
    enc = SyncEncoder(p).eval()
    r = frames_per_column(p.sync_stream, p.audio, p.vae.downsample)
    g = torch.Generator().manual_seed(1)
    n, s = enc.num_frames, p.sync_stream.size
    frames = torch.randint(0, 256, (2, n + 2 * r * abs(m), s, s, 3), generator=g, dtype=torch.uint8)
    k = r * m  # frames
    base = frames[:, r * abs(m): r * abs(m) + n]
    moved = frames[:, r * abs(m) - k: r * abs(m) - k + n]  # moved[i] = base[i - k]: the video is k frames later
    with torch.no_grad():
        a, b = enc.video_features(base), enc.video_features(moved)
    e = _receptive_columns(p, enc) + abs(m)
    w = a.shape[1]
    assert not torch.allclose(a[:, e: w - e], a[:, e - 1: w - e - 1])  # the features do vary over time
    torch.testing.assert_close(b[:, e + m: w - e + m], a[:, e: w - e], rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------------------------------------ toy clips
@pytest.fixture(scope="module")
def trained():
    enc, losses = trained_toy_encoder()
    return preset("tiny"), enc, losses


def test_offset_loss_decreases_on_toy_clips(trained):
    p, _, losses = trained
    chance = np.log(2 * p.sync_stream.max_shift_columns + 1)
    assert abs(losses[:3].mean() - chance) < 0.1  # starts at chance: no shift preferred
    assert losses[-15:].mean() < 0.5 * chance


@pytest.mark.parametrize("k", [0, 2, -3])
def test_offset_estimator_recovers_a_known_shift(trained, k):
    p, enc, _ = trained
    frames, mel = toy_clips(p, 16, seed=99, delay_s=k * enc.period)  # held-out clips, audio k columns late
    est = enc.estimate_offset(frames, mel).numpy() / enc.period  # columns
    assert np.median(np.abs(est - k)) < 0.3
    assert np.mean(np.abs(est - k) < 0.5) >= 0.75


def test_onset_target_marks_the_column_where_the_sound_rises():
    p = preset("tiny")
    enc = SyncEncoder(p)
    w, ds = p.latent_shape[2], p.vae.downsample
    frames = p.audio.num_frames + p.audio.right_pad_frames
    mel = torch.full((3, p.audio.n_mels, frames), 0.2)
    mel[1, :, 5 * ds + 3:] = 0.7  # a step inside column 5
    mel[2, :, 5 * ds + 3:] = 0.25  # the same step, much softer
    target = enc.onset_target(mel)
    assert target.shape == (3, w)
    assert not target[0].any()  # steady sound: no onset anywhere
    torch.testing.assert_close(target[1], torch.eye(w)[5] * 0.5 / 0.55)
    assert target[2, 5] == target[2].max() and target[2, 5] > 0.4  # relative: a soft step still counts


def test_onset_head_learns_when_on_toy_clips_and_follows_a_shift():
    p = preset("tiny")
    assert p.sync_stream.onset_weight > 0
    enc, _ = trained_toy_encoder(80, onsets=True)
    test_frames, test_mel = toy_clips(p, 16, seed=7)  # held out
    with torch.no_grad():
        logits = enc.onset_logits(enc.video_features(test_frames))[:, enc.lo:enc.hi]
        target = enc.onset_target(test_mel)[:, enc.lo:enc.hi]
        r = float(torch.corrcoef(torch.stack([logits.flatten(), target.flatten()]))[0, 1])
        assert r > 0.5, r
        # The same clips with the flashes 2 columns later: the head's peaks move 2 columns later too.
        r_frames = frames_per_column(p.sync_stream, p.audio, p.vae.downsample)
        late = torch.cat([test_frames[:, :1].expand(-1, 2 * r_frames, -1, -1, -1),
                          test_frames[:, : -2 * r_frames]], dim=1)
        moved = enc.onset_logits(enc.video_features(late))
        before = enc.onset_logits(enc.video_features(test_frames))
    inner = slice(enc.lo + 2, enc.hi - 2)
    assert (moved.argmax(1) - before.argmax(1) == 2).float().mean() >= 0.75
    torch.testing.assert_close(moved[:, inner], before[:, enc.lo:enc.hi - 4], atol=1e-4, rtol=1e-4)


def with_timbre(p, weight: float = 1.0):
    return dataclasses.replace(p, sync_stream=dataclasses.replace(p.sync_stream, timbre_weight=weight))


def test_timbre_target_is_the_shape_of_the_sound_that_starts_in_a_column():
    p = with_timbre(preset("tiny"))
    enc = SyncEncoder(p)
    w, ds, n_mels = p.latent_shape[2], p.vae.downsample, p.audio.n_mels
    frames = p.audio.num_frames + p.audio.right_pad_frames
    spectrum = torch.linspace(0.3, 0.9, n_mels)  # a sound brighter towards the top
    mel = torch.full((2, n_mels, frames), 0.2)
    mel[1, :, 5 * ds:] = spectrum[:, None]  # starts at column 5, lasts
    mel[1, :, 7 * ds:] = 0.2  # ... two columns
    shape, weight = enc.timbre_target(mel)
    assert shape.shape == (2, w, n_mels) and weight.shape == (2, w)
    assert not weight[0].any()  # steady: nothing starts
    torch.testing.assert_close(weight[1], torch.eye(w)[5])
    # Column 5 looks four columns ahead: two of the sound, two of the floor; less its loudest bin.
    ahead = (2 * spectrum + 2 * 0.2) / 4
    torch.testing.assert_close(shape[1, 5], ahead - ahead.max())
    torch.testing.assert_close(shape[1, 5] - shape[1, 5].max(), shape[1, 5])
    with pytest.raises(ValueError, match="timbre head"):
        SyncEncoder(preset("tiny")).timbre_prediction(torch.zeros(1, w, p.sync_stream.feature_dim))


def test_the_timbre_head_learns_what_a_flash_sounds_like_from_its_colour():
    """Toy kinds (a red flash rings at 300 Hz, a blue one at 3 kHz): trained on the stage's whole objective, the
    head's shapes at held-out onsets tell the two apart, which needs the colour (the timing is the same)."""
    from sync_factory import TOY_TONES_HZ, toy_clips

    p = with_timbre(preset("tiny"))
    frames, mel = toy_clips(p, 48, seed=0, kinds=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        enc = SyncEncoder(p)
    assert not enc.timbre.weight.any()  # starts at zero: the features are not pushed about by a random head
    opt = torch.optim.AdamW(enc.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(300):
        idx = torch.randint(0, len(frames), (8,), generator=g)
        loss = enc.loss(frames[idx], mel[idx], g)
        opt.zero_grad()
        loss.backward()
        opt.step()
    test_frames, test_mel = toy_clips(p, 16, seed=7, kinds=True)
    with torch.no_grad():
        shape, weight = enc.timbre_target(test_mel)
        pred = enc.timbre_prediction(enc.eval().video_features(test_frames))
    starts = weight[:, enc.lo:enc.hi] > 0
    true, got = shape[:, enc.lo:enc.hi][starts], pred[:, enc.lo:enc.hi][starts]
    assert len(true) >= 15
    # Which tone: the mel bin of 300 Hz against that of 3 kHz, in the true shape and in the prediction.
    from action2sound.mel import mel_basis

    fb = torch.tensor(mel_basis(p.audio))  # [n_mels, bins]
    hz = torch.linspace(0, p.audio.sample_rate / 2, fb.shape[1])
    low, high = (int(fb[:, int(torch.argmin((hz - f).abs()))].argmax()) for f in TOY_TONES_HZ)
    true_low, got_low = true[:, low] > true[:, high], got[:, low] > got[:, high]
    assert 0.2 < true_low.float().mean() < 0.8  # both kinds among the held-out onsets
    assert (true_low == got_low).float().mean() >= 0.85
    mean = shape[:, enc.lo:enc.hi][starts].mean(dim=0)
    r2 = 1 - (true - got).pow(2).sum() / (true - mean).pow(2).sum()
    assert r2 > 0.5, float(r2)


def test_a_sync_encoder_without_the_timbre_head_starts_a_fine_tune_with_one():
    from action2sound.errors import Action2SoundError
    from action2sound.training.sync_encoder import SyncEncoderStage

    p = preset("tiny")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        old = SyncEncoder(p).state_dict()
    stage = SyncEncoderStage(with_timbre(p), p.train.sync_encoder, 0, 1)
    stage.init_from(old, "an encoder without the head")
    got = stage.model.state_dict()
    assert all(torch.equal(got[k], v) for k, v in old.items())
    assert not got["timbre.weight"].any()
    broken = {k: v for k, v in old.items() if not k.startswith("video.cnn.0")}
    with pytest.raises(Action2SoundError):
        stage.init_from(broken, "an encoder without its first layer")


def test_parabola_refines_the_best_shift():
    scores = torch.tensor([[0.0, 0.5, 1.0, 0.5, 0.0], [0.0, 0.0, 1.0, 0.5, 0.0], [1.0, 0.0, 0.0, 0.0, 0.0]])
    est = offset_from_scores(scores, 2)
    torch.testing.assert_close(est, torch.tensor([0.0, 0.5 * (0.0 - 0.5) / (0.0 - 2.0 + 0.5), -2.0]))


# ------------------------------------------------------------------------------------------------ injection
@pytest.mark.parametrize("injection", ["channels", "film"])
def test_injection_starts_as_no_change_and_the_null_stream_never_changes_anything(injection):
    p = preset("tiny")
    p = dataclasses.replace(p, sync_stream=dataclasses.replace(p.sync_stream, injection=injection))
    torch.manual_seed(0)
    ldm = LatentDiffusion.from_preset(p).eval()
    x = torch.randn(2, *p.latent_shape)
    t = torch.tensor([10, 500])
    ctx = ldm.context(None, None, batch_size=2)
    sync = torch.randn(2, p.latent_shape[2], p.sync_stream.feature_dim)
    with torch.no_grad():
        plain = ldm(x, t, ctx)
        torch.testing.assert_close(ldm(x, t, ctx, sync), plain)  # zero-initialised
        for q in ldm.parameters():  # as if trained: every weight non-zero
            q.add_(0.01)
        plain = ldm(x, t, ctx)
        torch.testing.assert_close(ldm(x, t, ctx, torch.zeros_like(sync)), plain)  # zeros = the null stream
        assert not torch.allclose(ldm(x, t, ctx, sync), plain)  # the stream now matters
    with pytest.raises(ValueError, match="sync features must be"):
        ldm(x, t, ctx, sync[:, :5])


def _trained_like_ldm(p):
    torch.manual_seed(0)
    ldm = LatentDiffusion.from_preset(p).eval()
    with torch.no_grad():
        for q in ldm.parameters():  # as if trained: the stream's zero-initialised weights now matter
            q.add_(0.01)
    return ldm


def _guidance_inputs():
    """A trained-like tiny ldm and what its guided passes take: x_t, t, the full and null contexts, a stream."""
    p = preset("tiny")
    ldm = _trained_like_ldm(p)
    x = torch.randn(2, *p.latent_shape)
    t = torch.tensor([10, 500])
    full = ldm.context(torch.randn(2, p.video.num_frames, p.av.video_hidden), None, batch_size=2)
    null = ldm.context(None, None, batch_size=2)
    sync = torch.randn(2, p.latent_shape[2], p.sync_stream.feature_dim)
    return ldm, x, t, full, null, sync


@pytest.mark.parametrize("p_drop_video", [0.0, 1.0])
def test_loss_feeds_the_stream_and_drops_it_with_the_video(p_drop_video):
    p = preset("tiny")
    p = dataclasses.replace(p, diffusion=dataclasses.replace(p.diffusion, p_drop_video=p_drop_video))
    ldm = _trained_like_ldm(p)
    x0 = torch.randn(2, *p.latent_shape)
    video = torch.randn(2, p.video.num_frames, p.av.video_hidden)
    sync = torch.randn(2, p.latent_shape[2], p.sync_stream.feature_dim)

    def loss(s):
        with torch.no_grad():
            return float(ldm.loss(x0, video, None, torch.Generator().manual_seed(3), sync=s))

    assert loss(None) == loss(torch.zeros_like(sync))  # None is the null stream
    if p_drop_video == 1.0:
        assert loss(sync) == loss(None)  # the video condition dropped: the stream with it
    else:
        assert loss(sync) != loss(None)


@pytest.mark.parametrize("w_audio", [1.0, 2.0])
def test_guidance_gives_the_null_video_branch_the_zero_stream(w_audio):
    from action2sound.sampling import guided

    ldm, x, t, full, null, sync = _guidance_inputs()
    w = 3.0
    with torch.no_grad():
        got = guided(ldm.guided_model_fn(sync, w, w_audio), full, null, full, w, w_audio)(x, t)
        f, n = ldm(x, t, full, sync), ldm(x, t, null, torch.zeros_like(sync))
        a = ldm(x, t, full, sync)  # the "null audio" context is the full one here: same stream as full
        expected = f + (w - 1.0) * (f - n) + (w_audio - 1.0) * (f - a)
        torch.testing.assert_close(got, expected)
        assert ldm.guided_model_fn(None, w) is ldm and ldm.guided_model_fn(sync, w) is not ldm
        with pytest.raises(ValueError, match="same weights"):
            guided(ldm.guided_model_fn(sync, w, 1.0), full, null, full, w, 2.0)(x, t)


def test_sync_stream_is_on_for_tiny_and_small_and_off_for_paper():
    assert PRESETS["tiny"].sync_stream.enabled and PRESETS["small"].sync_stream.enabled
    assert not PRESETS["paper"].sync_stream.enabled
    assert PRESETS["paper-sync"].sync_stream.enabled
    assert dataclasses.replace(PRESETS["paper-sync"], name="paper", sync_stream=PRESETS["paper"].sync_stream) \
        == PRESETS["paper"]


def test_a_model_without_sync_stream_refuses_one():
    p = preset("paper")
    q = dataclasses.replace(preset("tiny"), sync_stream=p.sync_stream)
    ldm = LatentDiffusion.from_preset(q)
    assert ldm.sync is None
    x = torch.randn(1, *q.latent_shape)
    with pytest.raises(ValueError, match="no sync stream"):
        ldm(x, torch.tensor([1]), ldm.context(None, None, batch_size=1), torch.zeros(1, q.latent_shape[2], 8))


def test_a_model_trained_without_the_stream_starts_a_fine_tune_with_it_unchanged():
    """`train ldm --init` of a model without the stream: the widened model computes exactly the given one, with
    any stream, until training moves the stream's weights; a state dict that does not fit is still refused."""
    from action2sound.config import StageTrainConfig
    from action2sound.models.sync_stream import widen_for_stream
    from action2sound.training.ldm import LDMStage

    p = preset("tiny")
    without = _trained_like_ldm(dataclasses.replace(p, sync_stream=preset("paper").sync_stream))
    stage = LDMStage(p, StageTrainConfig())
    state = without.state_dict()
    stage.init_from(state, "test")
    x = torch.randn(2, *p.latent_shape)
    t = torch.tensor([10, 500])
    with torch.no_grad():
        ctx = without.context(None, None, batch_size=2)
        sync = torch.randn(2, p.latent_shape[2], p.sync_stream.feature_dim)
        torch.testing.assert_close(stage.model.eval()(x, t, ctx, sync), without(x, t, ctx))
    wide = stage.model.state_dict()["unet.conv_in.weight"]
    assert wide.shape[1] == p.latent_shape[0] + p.sync_stream.feature_dim
    assert not wide[:, p.latent_shape[0]:].any()
    torch.testing.assert_close(widen_for_stream(stage.model.state_dict(), stage.model)["unet.conv_in.weight"],
                               wide)  # already fits: unchanged
    bad = {**state, "unet.conv_in.weight": state["unet.conv_in.weight"][:, :2]}
    with pytest.raises(Exception, match="conv_in"):
        stage.init_from(bad, "test")


def test_deep_injection_reads_each_level_at_its_own_columns():
    from action2sound.models.sync_stream import at_width

    s = torch.arange(33.0).view(1, 1, 33)
    assert torch.equal(at_width(s, 33), s)
    assert at_width(s, 17)[0, 0].tolist() == list(range(0, 33, 2))
    assert at_width(s, 9)[0, 0].tolist() == list(range(0, 33, 4))
    assert at_width(s, 5)[0, 0].tolist() == [0, 8, 16, 24, 32]
    # The tiny UNet's levels: every resnet block's output width is one of these, and the stride-2 convolutions
    # centre output column k on input column 2k.
    conv = torch.nn.Conv2d(1, 1, 3, 2, 1, bias=False)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, 0, 1, 1] = 1.0  # the centre tap: a picker
        torch.testing.assert_close(conv(s.view(1, 1, 1, 33))[0, 0, 0], at_width(s, 17)[0, 0])


def test_deep_injection_starts_as_the_model_it_was_given_and_the_null_stream_changes_nothing():
    """`train ldm --init` of a model with the stream at the input alone into one with deep injection: the same
    function until the projections move; once they have, the stream matters at every level, the null stream
    still changes nothing, and a change of the stream in one column moves the output most near that column."""
    from action2sound.config import StageTrainConfig
    from action2sound.training.ldm import LDMStage

    p = preset("tiny")
    deep = dataclasses.replace(p, sync_stream=dataclasses.replace(p.sync_stream, deep=True))
    shallow = _trained_like_ldm(p)
    stage = LDMStage(deep, StageTrainConfig())
    stage.init_from(shallow.state_dict(), "test")
    model = stage.model.eval()
    assert len(model.sync.deep) == sum(type(m).__name__ == "ResnetBlock2D" for m in model.unet.modules())
    x = torch.randn(2, *p.latent_shape)
    t = torch.tensor([10, 500])
    w = p.latent_shape[2]
    with torch.no_grad():
        ctx = shallow.context(None, None, batch_size=2)
        sync = torch.randn(2, w, p.sync_stream.feature_dim)
        torch.testing.assert_close(model(x, t, ctx, sync), shallow(x, t, ctx, sync))
        model.unet.conv_in.weight[:, p.latent_shape[0]:] = 0.0  # the input channels out of the way
        for proj in model.sync.deep:
            proj.weight.normal_(0.0, 0.1)
        torch.testing.assert_close(model(x, t, ctx, None), shallow(x, t, ctx, None))  # null: no change
        base = model(x, t, ctx, sync)
        moved = sync.clone()
        moved[:, w // 2] = torch.randn(2, p.sync_stream.feature_dim)
        change = (model(x, t, ctx, moved) - base).abs().sum(dim=(0, 1, 2))  # [W]
    assert change[w // 2 - 1: w // 2 + 2].sum() > change[:4].sum() + change[-4:].sum()
    twin = copy.deepcopy(model)  # hooks its own projections, not the original's
    with torch.no_grad():
        for proj in twin.sync.deep:
            proj.weight.zero_()
        torch.testing.assert_close(twin(x, t, ctx, sync), twin(x, t, ctx, None))  # the copy's stream is gone...
        torch.testing.assert_close(model(x, t, ctx, sync), base)  # ... and the original's still there


def test_a_video_only_model_starts_from_an_audio_conditioned_one_without_its_audio_weights():
    """`train ldm --init --set cond.use_audio=false`: the shared weights are copied; a missing one still fails."""
    from action2sound.config import StageTrainConfig
    from action2sound.training.ldm import LDMStage

    p = preset("tiny")
    full = _trained_like_ldm(p)
    state = full.state_dict()
    assert any(k.startswith("conditioner.audio.") for k in state)
    vo = dataclasses.replace(p, cond=dataclasses.replace(p.cond, use_audio=False))
    stage = LDMStage(vo, StageTrainConfig())
    stage.init_from(state, "test")
    own = stage.model.state_dict()
    assert not any(k.startswith("conditioner.audio.") for k in own)
    for k, v in own.items():
        torch.testing.assert_close(v, state[k])
    with pytest.raises(Exception, match="conv_in"):
        stage.init_from({k: v for k, v in state.items() if k != "unet.conv_in.weight"}, "test")


def test_the_embedded_default_model_builds_exactly_its_stored_weights_and_old_manifests_mean_no_stream():
    from safetensors import safe_open

    manifest = json.loads((DEFAULT_MODEL / "model.json").read_text())
    p = preset_from_dict(manifest["preset"])
    assert p.sync_stream.enabled and "sync_encoder" in manifest["files"]  # the default carries the stream
    for component, module in (("ldm", LatentDiffusion.from_preset(p)), ("sync_encoder", SyncEncoder(p))):
        with safe_open(str(DEFAULT_MODEL / manifest["files"][component]["file"]), "pt") as f:
            stored = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
        assert {k: tuple(v.shape) for k, v in module.state_dict().items()} == stored, component
    # A model saved before the stream existed has no section: it is off, and its ldm builds without it.
    old = {k: v for k, v in manifest["preset"].items() if k != "sync_stream"}
    assert not preset_from_dict(old).sync_stream.enabled


# ---------------------------------------------------------------------------------------------------- stage
def test_delay_mel_moves_whole_columns_and_shifts_in_silence():
    from action2sound.training.sync_encoder import delay_mel

    mel = torch.arange(1.0, 25.0).view(1, 1, 24)
    late = delay_mel(mel, 2, 4)
    assert torch.equal(late[..., :8], torch.zeros(1, 1, 8)) and torch.equal(late[..., 8:], mel[..., :16])
    assert torch.equal(delay_mel(mel, 0, 4), mel)


@pytest.fixture(scope="module")
def bench(tmp_path_factory) -> Path:
    from action2sound.benchmark import build_benchmark

    root = tmp_path_factory.mktemp("bench")
    build_benchmark(root, episodes=2, seed=0, size=32, episode_seconds=(12.0, 14.0), progress=False)
    return root


def test_sync_encoder_stage_trains_on_decoded_clips_and_reports_offsets(bench):
    import lightning as L

    from action2sound import media
    from action2sound.data import load_clip_table, split_train_val
    from action2sound.training.data import StageData
    from action2sound.training.sync_encoder import KNOWN_SHIFT, sync_clip_dataset, SyncEncoderStage

    p = preset("tiny")
    train_t, val_t = split_train_val(load_clip_table(bench / "all.tsv"))  # the second episode held out
    assert len(train_t) and len(val_t)
    train_set, val_set = sync_clip_dataset(train_t, p, cache_bytes=1 << 26), sync_clip_dataset(val_t, p)
    item = train_set[(0, 0)]
    clip = train_t[0]
    n = len(sync_frame_times(p))
    assert item["sync_frames"].shape == (n, p.sync_stream.size, p.sync_stream.size, 3)
    assert item["mel"].shape == (p.audio.n_mels, p.audio.padded_frames)
    expected = media.read_frames_at(clip.media_path, clip.media_start + sync_frame_times(p), size=p.sync_stream.size)
    np.testing.assert_array_equal(item["sync_frames"], expected)

    cfg = p.train.sync_encoder
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        stage = SyncEncoderStage(p, cfg, 0, len(train_set))
    dm = StageData(train_set, val_set, 4, 3, val_batch_size=8)
    trainer = L.Trainer(accelerator="cpu", max_steps=3, max_epochs=-1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, use_distributed_sampler=False,
                        val_check_interval=3, check_val_every_n_epoch=None, num_sanity_val_steps=0)
    trainer.fit(stage, datamodule=dm)
    assert stage.batches_seen == 3
    m = trainer.callback_metrics
    assert 0.0 <= float(m["val/shift_accuracy"]) <= 1.0
    assert float(m["val/clips"]) == len(val_set)
    column_ms = stage.model.period * 1000
    max_ms = p.sync_stream.max_shift_columns * column_ms
    assert 0.0 <= float(m["val/offset_ms"]) <= max_ms
    assert 0.0 <= float(m[f"val/offset_error_ms@+{KNOWN_SHIFT}"]) <= max_ms + KNOWN_SHIFT * column_ms
    assert set(stage.export_tensors()) == set(SyncEncoder(p).state_dict())


def test_camera_compensation_removes_a_whole_pixel_pan():
    from action2sound.models.sync_stream import camera_compensated_difference

    scene = torch.rand(1, 1, 3, 40, 40, generator=torch.Generator().manual_seed(0))
    prev = scene[..., 4:36, 4:36]
    x = scene[..., 6:38, 3:35]  # the camera moved 2 px down and 1 px left
    assert (x - prev).abs().sum() > 100  # the plain difference is all texture
    assert camera_compensated_difference(x, prev).abs().sum() == 0  # nothing moved but the camera
    hand = x.clone()
    hand[..., 10:14, 10:14] = 1.0  # something moved in the scene as well
    d = camera_compensated_difference(hand, prev)
    assert d[..., 10:14, 10:14].abs().sum() > 0 and d[..., 20:, 20:].abs().sum() == 0


def test_train_sync_encoder_stage_then_export_and_load(bench, tmp_path):
    from action2sound.training import train
    from action2sound.weights import build_component, export, load_model_dir, load_sync_encoder, save_weights

    p = preset("tiny")
    run = tmp_path / "run"
    result = train("sync_encoder", "tiny", bench / "all.tsv", run, max_steps=2, progress=False, val_clips=4,
                   overrides=["train.sync_encoder.batch_size=4"])
    assert result.steps == 2 and result.weights.is_file()
    assert "val/shift_accuracy" in result.metrics
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        for component in ("vae", "ldm"):
            save_weights(run / component / "weights.safetensors", build_component(component, p).state_dict(),
                         component, p)
    out = export(run, tmp_path / "model", fp16=False)
    manifest = json.loads((out / "model.json").read_text())
    assert "sync_encoder" in manifest["files"]
    loaded = load_model_dir(out)
    from action2sound.weights import read_weights

    tensors, _ = read_weights(result.weights, "sync_encoder")
    got = loaded.sync_encoder.state_dict()
    assert set(got) == set(tensors) and all(torch.equal(got[k], tensors[k]) for k in tensors)
    enc, sha = load_sync_encoder(out)
    assert enc is not None and sha == manifest["files"]["sync_encoder"]["sha256"]

    # An ldm without the stream (paper-like) never ships the encoder, even when the run has one.
    off = preset_from_dict({**p.to_dict(), "sync_stream": {"enabled": False}})
    save_weights(run / "ldm" / "weights.safetensors", build_component("ldm", off).state_dict(), "ldm", off)
    out2 = export(run, tmp_path / "model2", fp16=False)
    assert "sync_encoder" not in json.loads((out2 / "model.json").read_text())["files"]
    assert load_model_dir(out2).sync_encoder is None and load_sync_encoder(out2) == (None, None)


def test_the_onset_target_comes_from_the_action_track_beside_the_video(bench, tmp_path):
    from action2sound import media
    from action2sound.data.manifest import Clip
    from action2sound.data.store import action_track, decode_clip
    from action2sound.mel import fit_wave, wave_to_mel

    p = preset("tiny")
    uid = sorted(f.stem for f in (bench / "episodes").glob("*.mp4"))[0]
    link = tmp_path / "videos" / f"{uid}.mp4"  # as scripts/default_model.sh links the episodes
    link.parent.mkdir()
    link.symlink_to((bench / "episodes" / f"{uid}.mp4").resolve())
    assert action_track(link) == (bench / "episodes" / f"{uid}.action.wav").resolve()
    clip = Clip(f"{uid}_w", uid, str(link), 2.0, 2.0 + p.audio.duration, 2.0, 2.0 + p.audio.duration)
    got = decode_clip(clip, p, frames=False, audio=True, onset_track=True)
    track = media.read_audio(bench / "episodes" / f"{uid}.action.wav", 2.0, p.audio.duration, p.audio.sample_rate)
    np.testing.assert_allclose(got["onset_mel"], wave_to_mel(fit_wave(track, p.audio), p.audio), atol=1e-6)
    assert np.abs(got["onset_mel"] - got["mel"]).max() > 0.05  # the mixture holds ambient and off-screen sound

    lone = tmp_path / "lone.mp4"  # no track beside it: the clip's own sound
    lone.symlink_to(link.resolve().parent.parent / "clips" / uid / sorted(
        f.name for f in (bench / "clips" / uid).glob("*.mp4"))[0])
    assert action_track(lone) is None
    got = decode_clip(dataclasses.replace(clip, media_path=str(lone), media_start=0.0, media_end=p.audio.duration,
                                          video_start=0.0, video_end=p.audio.duration),
                      p, frames=False, audio=True, onset_track=True)
    assert got["onset_mel"] is got["mel"]


def test_flips_keep_every_clip_one_of_its_four_mirror_images():
    from action2sound.training.sync_encoder import flip_frames

    frames = torch.randint(0, 255, (64, 3, 8, 8, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    out = flip_frames(frames, torch.Generator().manual_seed(1))
    kinds = []
    for a, b in zip(frames, out):
        images = [a, a.flip(2), a.flip(1), a.flip(1).flip(2)]
        kinds.append([i for i, m in enumerate(images) if torch.equal(m, b)][0])
    assert set(kinds) == {0, 1, 2, 3}


@pytest.mark.parametrize("w_video,w_audio", [(3.0, 1.0), (3.0, 2.0), (1.0, 1.0)])
def test_sync_guidance_pushes_along_what_the_stream_alone_adds(w_video, w_audio):
    """The sync term is the full pass against the full context with the null stream: + (w_s - 1)(f - s0)."""
    from action2sound.sampling import guided

    ldm, x, t, full, null, sync = _guidance_inputs()
    w_sync = 2.5
    with torch.no_grad():
        got = guided(ldm.guided_model_fn(sync, w_video, w_audio, w_sync), full, null, full, w_video, w_audio,
                     w_sync)(x, t)
        f = ldm(x, t, full, sync)
        n, s0 = ldm(x, t, null, torch.zeros_like(sync)), ldm(x, t, full, torch.zeros_like(sync))
        expected = f + (w_video - 1.0) * (f - n) + (w_audio - 1.0) * (f - f) + (w_sync - 1.0) * (f - s0)
        torch.testing.assert_close(got, expected)
        assert not torch.allclose(f, s0)  # the stream matters to this model, so the term is not zero
        # w_s = 1: no null-sync pass at all (the same function as before the option existed).
        plain = guided(ldm.guided_model_fn(sync, w_video, w_audio), full, null, full, w_video, w_audio)(x, t)
        torch.testing.assert_close(plain, expected - (w_sync - 1.0) * (f - s0))


def test_p_drop_sync_nulls_the_stream_alone_and_leaves_runs_without_it_unchanged():
    p = preset("tiny")
    base = dataclasses.replace(p.diffusion, p_drop_video=0.0, p_drop_audio=0.0)
    ldm = _trained_like_ldm(dataclasses.replace(p, diffusion=base))
    x0 = torch.randn(2, *p.latent_shape)
    video = torch.randn(2, p.video.num_frames, p.av.video_hidden)
    sync = torch.randn(2, p.latent_shape[2], p.sync_stream.feature_dim)

    def loss(s, drop):
        ldm.diffusion = dataclasses.replace(base, p_drop_sync=drop)
        with torch.no_grad():
            return float(ldm.loss(x0, video, None, torch.Generator().manual_seed(3), sync=s))

    assert loss(sync, 1.0) == loss(None, 0.0)  # every stream dropped, the video tokens kept
    assert loss(sync, 1.0) != loss(sync, 0.0)
    assert loss(sync, 0.0) != loss(None, 0.0)


def test_the_sync_guidance_option_resolves_from_the_model():
    from action2sound.config import override
    from action2sound.options import GenerateOptions

    small = preset("small")
    assert GenerateOptions().resolved(small).sync_guidance == 1.0
    tuned = override(small, ["diffusion.sync_guidance_scale=3"])
    assert GenerateOptions().resolved(tuned).sync_guidance == 3.0
    assert GenerateOptions(sync_guidance=1.5).resolved(tuned).sync_guidance == 1.5
    with pytest.raises(Exception, match="sync_guidance"):
        GenerateOptions(sync_guidance=float("nan"))
