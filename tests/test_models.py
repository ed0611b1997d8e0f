"""Networks: paper shapes on the meta device, tiny forward shapes, learning on fixed batches, the vocoders."""

import dataclasses
import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from action2sound.config import (
    PRESETS, UNIVERSAL22K_AUDIO, DiffusionConfig, override, preset, preset_from_dict,
)
from action2sound.convert.hifigan import convert_official_hifigan
from action2sound.errors import Action2SoundError
from action2sound.models.av import (
    AVModel, contrastive_loss, fbank_input, frames_to_pixels, kaldi_fbank, retrieval_recall,
)
from action2sound.models.conditioning import AudioTokens, Conditioner
from action2sound.models.ldm import LatentDiffusion
from action2sound.models.vae import build_vae, decode_latent, encode_mel, sample_latent, vae_loss
from action2sound.models.vocoder import (
    HifiGanDiscriminator, apply_weight_norm, build_hifigan, discriminator_loss,
    feature_matching_loss, generator_adversarial_loss, load_universal_hifigan, remove_weight_norm,
    universal_hifigan_files, vocode,
)

RELEASE_KEYS = json.loads((Path(__file__).parent / "data" / "original_checkpoint_keys.json").read_text())
TINY = preset("tiny")




def _numel(module):
    return sum(p.numel() for p in module.parameters())


def _release_numel(section, prefix, exclude=()):
    return sum(math.prod(s) for k, s in RELEASE_KEYS[section].items()
               if k.startswith(prefix) and not any(e in k for e in exclude))


# ------------------------------------------------------------------------------------------------ config

def test_presets_round_trip_and_derive_their_shapes():
    assert PRESETS["paper"].latent_shape == (4, 16, 24)
    assert PRESETS["paper"].context_shape == (40, 768)
    for p in PRESETS.values():
        assert preset_from_dict(json.loads(json.dumps(p.to_dict()))) == p
        assert p.latent_shape == p.audio.latent_shape(p.vae.latent_channels, p.vae.downsample)
    changed = override(PRESETS["small"],
                       ["unet.heads=2", "train.ldm.lr=0.001", "diffusion.prediction_type=v_prediction"])
    assert (changed.unet.heads, changed.train.ldm.lr, changed.diffusion.prediction_type) == (2, 1e-3, "v_prediction")
    with pytest.raises(ValueError, match="unknown config keys"):
        preset_from_dict({**PRESETS["tiny"].to_dict(), "extra": {}})


# ------------------------------------------------------------------------------------ paper, on the meta device

@pytest.fixture(scope="module")
def paper_models():
    p = PRESETS["paper"]
    with torch.device("meta"):
        return LatentDiffusion.from_preset(p), build_vae(p.vae, p.audio), AVModel.from_preset(p)


def test_paper_unet_is_sd_v1_with_the_release_parameter_count(paper_models):
    ldm, _, _ = paper_models
    n = _numel(ldm.unet)
    assert abs(n - 859.5e6) < 0.05e6
    assert n == _release_numel("ldm_checkpoint", "model.diffusion_model.") == 859_520_964
    cfg = ldm.unet.config
    assert tuple(cfg.block_out_channels) == (320, 640, 1280, 1280) and cfg.layers_per_block == 2
    assert tuple(cfg.down_block_types) == ("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",)
    assert tuple(cfg.up_block_types) == ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3
    assert cfg.cross_attention_dim == 768 and cfg.attention_head_dim == 8 and cfg.in_channels == 4
    assert type(next(iter(ldm.unet.attn_processors.values()))).__name__ == "AttnProcessor2_0"


def test_paper_shapes_flow_through_on_meta(paper_models):
    ldm, vae, av = paper_models
    with torch.device("meta"):
        feats, cls = av.video_tower(torch.empty(2, 16, 3, 224, 224))
        assert feats.shape == (2, 16, 768) and cls.shape == (2, 768)
        assert av.audio_tower(torch.empty(2, 149, 128)).shape == (2, 768)
        mean, std = encode_mel(vae, torch.empty(2, 128, 196))
        assert mean.shape == std.shape == (2, 4, 16, 24)
        assert decode_latent(vae, mean, 188).shape == (2, 128, 188)
        ctx = ldm.context(feats, mean)
        assert ctx.shape == (2, 40, 768)
        assert ldm(mean, torch.zeros(2, dtype=torch.long), ctx).shape == (2, 4, 16, 24)


def test_paper_vae_is_sd_v1(paper_models):
    _, vae, _ = paper_models
    assert _numel(vae) == _release_numel("ldm_checkpoint", "first_stage_model.") == 83_653_863
    cfg = vae.config
    assert tuple(cfg.block_out_channels) == (128, 256, 512, 512) and cfg.layers_per_block == 2
    assert (cfg.in_channels, cfg.latent_channels, cfg.scaling_factor) == (3, 4, 0.18215)
    assert not any(p.requires_grad for p in vae.parameters())  # frozen


def test_paper_conditioning_and_av_heads_have_the_release_shapes(paper_models):
    ldm, _, av = paper_models
    ours = {k: tuple(v.shape) for k, v in ldm.conditioner.state_dict().items()}
    release = {k: tuple(v) for k, v in RELEASE_KEYS["ldm_checkpoint"].items()}
    pairs = {
        "video.proj.weight": "cond_stage_model.embedder.0.weight", "video.pos": "cond_stage_model.pos_emb.weight",
        "audio.mlp.0.weight": "audio_cond_encoder.linear.0.weight",
        "audio.mlp.2.weight": "audio_cond_encoder.linear.2.weight", "audio.pos": "audio_cond_encoder.pos_emb.weight",
    }
    for mine, theirs in pairs.items():
        assert ours[mine] == release[theirs], mine
    assert ours["null_video"] == (16, 768) and ours["null_audio"] == (24, 768)
    av_keys = {k: tuple(v) for k, v in RELEASE_KEYS["av_pth"].items()}
    assert tuple(av.video_proj.weight.shape) == av_keys["module.vid_proj.weight"] == (256, 768)
    assert tuple(av.audio_proj[1].weight.shape) == av_keys["module.audio_model.mlp_head.1.weight"]
    assert tuple(av.audio_tower.ast.embeddings.position_embeddings.shape) == av_keys["module.audio_model.v.pos_embed"]
    assert _numel(av.audio_tower) == _release_numel("av_pth", "module.audio_model.v.", exclude=("head",))
    # The paper's tower is the release's Frozen-in-Time backbone, parameter for parameter (its head unused).
    assert av.video_tower.arch == "frozen_in_time"
    assert _numel(av.video_tower) == _release_numel("av_pth", "module.video_model.", exclude=("head",)) == 114_177_792


def test_small_preset_fits_40_mb_in_fp16():
    p = PRESETS["small"]
    with torch.device("meta"):
        total = sum(_numel(m) for m in (LatentDiffusion.from_preset(p), build_vae(p.vae, p.audio),
                                         AVModel.from_preset(p)))
    assert total * 2 <= 40e6


# ------------------------------------------------------------------------------------------ tiny modules

@pytest.fixture(scope="module")
def tiny_av():
    torch.manual_seed(0)
    return AVModel.from_preset(TINY)


def test_tiny_av_shapes_and_unit_embeddings(tiny_av):
    pix = torch.randn(3, 4, 3, 32, 32)
    mel = torch.rand(3, 80, TINY.audio.padded_frames)
    audio = tiny_av.audio_input(mel=mel)
    assert audio.shape == (3, TINY.audio.num_frames, 80)
    v, a = tiny_av(pix, audio)
    assert v.shape == a.shape == (3, 32)
    torch.testing.assert_close(v.norm(dim=-1), torch.ones(3))
    assert tiny_av.video_tower(pix)[0].shape == (3, 4, 32)
    with pytest.raises(ValueError, match="pass wave="):
        AVModel(dataclasses.replace(TINY.av, audio_input="fbank"), TINY.video, TINY.audio).audio_input(mel=mel)


def test_frames_to_pixels_normalises_like_imagenet():
    frames = torch.zeros((1, 2, 4, 4, 3), dtype=torch.uint8)
    frames[..., 0] = 255
    px = frames_to_pixels(frames, TINY.video)
    assert px.shape == (1, 2, 3, 4, 4)
    assert torch.allclose(px[0, 0, :, 0, 0], torch.tensor([(1 - 0.485) / 0.229, -0.456 / 0.224, -0.406 / 0.225]))


def test_encode_frames_is_the_towers_tokens_and_the_unit_embedding(tiny_av):
    frames = torch.randint(0, 256, (2, TINY.video.num_frames, 32, 32, 3), dtype=torch.uint8)
    with torch.no_grad():
        tokens, emb = tiny_av.encode_frames(frames)
        pixels = frames_to_pixels(frames, TINY.video)
        torch.testing.assert_close(tokens, tiny_av.video_tower(pixels)[0], rtol=0, atol=0)
        torch.testing.assert_close(emb, tiny_av.embed_video(pixels), rtol=0, atol=0)
    torch.testing.assert_close(emb.norm(dim=-1), torch.ones(2))


@pytest.mark.parametrize("arch", ["timesformer", "frozen_in_time"])
def test_video_tower_pools_each_frame_over_its_own_patches(arch):
    # Without transformer layers a frame's output depends on that frame's pixels only: a wrong token reshape
    # (frame-major for transformers' TimeSformer, patch-major for Frozen-in-Time) would leak the change into
    # other frames.
    av = AVModel(dataclasses.replace(TINY.av, video_layers=0, video_arch=arch), TINY.video, TINY.audio).eval()
    pix = torch.randn(1, 4, 3, 32, 32)
    changed = pix.clone()
    changed[0, 2] += 1.0
    with torch.no_grad():
        diff = (av.video_tower(changed)[0] - av.video_tower(pix)[0]).abs().amax(dim=-1)[0]
    assert diff[2] > 1e-3 and torch.all(diff[[0, 1, 3]] == 0)


@pytest.mark.filterwarnings("ignore:At least one mel filter has all zero values")
def test_kaldi_fbank_matches_the_reference_implementation():
    from transformers.audio_utils import mel_filter_bank, spectrogram, window_function

    rng = np.random.default_rng(0)
    wave = (0.1 * rng.standard_normal(8000) + 0.3 * np.sin(np.arange(8000) * 0.05)).astype(np.float32)
    filters = mel_filter_bank(num_frequency_bins=257, num_mel_filters=128, min_frequency=20, max_frequency=8000,
                              sampling_rate=16000, norm=None, mel_scale="kaldi", triangularize_in_mel_space=True)
    ref = spectrogram(wave.astype(np.float64), window_function(400, "hann", periodic=False), frame_length=400,
                      hop_length=160, fft_length=512, power=2.0, center=False, preemphasis=0.97,
                      mel_filters=filters, log_mel="log", mel_floor=float(np.finfo(np.float32).eps),
                      remove_dc_offset=True).T
    ours = kaldi_fbank(torch.from_numpy(wave)[None], 16000)[0].numpy()
    assert ours.shape == ref.shape == (48, 128)
    assert np.abs(ours - ref).max() < 1e-3


def test_paper_fbank_input_takes_the_central_1_5_s():
    cfg = PRESETS["paper"].av
    wave = torch.zeros(2, 48_000)
    wave[:, 12_000:36_000] = torch.randn(2, 24_000, generator=torch.Generator().manual_seed(0))
    x = fbank_input(wave, 16_000, cfg)
    assert x.shape == (2, 149, 128)
    # 148 real frames, all from the noisy centre (no silent frame at the log floor); frame 149 is AST's zero pad.
    floor = (math.log(np.finfo(np.float32).eps) - cfg.input_mean) / (2 * cfg.input_std)
    # (The median over bins: a silent frame sits at the floor in every bin, a noisy one only by chance in one.)
    assert torch.all(x[:, :148, 20:].median(dim=-1).values > floor + 1)
    torch.testing.assert_close(x[:, 148], torch.full((2, 128), -cfg.input_mean / (2 * cfg.input_std)))


def test_contrastive_loss_known_values():
    v = torch.eye(4)
    s = 10.0
    expected = -math.log(math.exp(s) / (math.exp(s) + 3))
    torch.testing.assert_close(contrastive_loss(v, v, s), torch.tensor(expected))
    ids = torch.tensor([0, 0, 1, 1])
    torch.testing.assert_close(contrastive_loss(v, v, s, ids, 1.0), torch.tensor(expected))
    # Weight 3 on the one same-video negative: it counts as three negatives.
    weighted = -math.log(math.exp(s) / (math.exp(s) + 2 + 3))
    torch.testing.assert_close(contrastive_loss(v, v, s, ids, 3.0), torch.tensor(weighted))
    r = retrieval_recall(v, v[[1, 0, 2, 3]], ks=(1, 2))
    assert r == {1: 0.5, 2: 1.0}  # the swapped pairs each rank their match second


def test_tiny_av_ranks_matched_pairs_first_after_a_short_fit():
    torch.manual_seed(1)
    av = AVModel.from_preset(TINY)
    g = torch.Generator().manual_seed(0)
    pix = torch.randn(8, 4, 3, 32, 32, generator=g)
    audio = av.audio_input(mel=torch.rand(8, 80, TINY.audio.padded_frames, generator=g))
    opt = torch.optim.AdamW(av.parameters(), lr=3e-3)
    with torch.no_grad():
        before = retrieval_recall(*av(pix, audio))[1]
    for _ in range(40):
        v, a = av(pix, audio)
        loss = av.contrastive_loss(v, a)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        after = retrieval_recall(*av.eval()(pix, audio))
    assert before < 1.0 and after[1] == 1.0


# ------------------------------------------------------------------------------------------- conditioning

def test_audio_tokens_read_the_latent_as_time_steps():
    tokens = AudioTokens((4, 10, 33), ctx_dim=16, hidden=32)
    z = torch.randn(2, 4, 10, 33)
    changed = z.clone()
    changed[:, :, :, 7] += 1.0
    diff = (tokens(changed) - tokens(z)).abs().amax(dim=-1)
    assert tokens(z).shape == (2, 33, 16)
    assert torch.all(diff[:, 7] > 0) and torch.all(diff[:, torch.arange(33) != 7] == 0)


def test_dropping_a_condition_uses_the_same_null_tokens_as_sampling():
    torch.manual_seed(0)
    ldm = LatentDiffusion.from_preset(TINY)
    cond = ldm.conditioner
    nulls = {n for n, _ in cond.named_parameters() if "null" in n}
    assert nulls == {"null_video", "null_audio"}  # one learned set per condition, nothing else
    T, (C, F, W) = TINY.video.num_frames, TINY.latent_shape
    feats, lat = torch.randn(3, T, 32), torch.randn(3, C, F, W)
    drop_v, drop_a = torch.tensor([True, False, False]), torch.tensor([False, True, False])
    train_ctx = cond(feats, lat, drop_v, drop_a)  # what training's condition dropout builds
    full, null_video, null_audio = ldm.guidance_contexts(feats, lat)  # what sampling builds
    assert train_ctx.shape == (3, T + W, 32)
    # Row 0 dropped video, row 1 dropped audio: identical to sampling's nulled contexts, which hold the parameters.
    torch.testing.assert_close(train_ctx[0], null_video[0], rtol=0, atol=0)
    torch.testing.assert_close(train_ctx[1], null_audio[1], rtol=0, atol=0)
    torch.testing.assert_close(train_ctx[2], full[2], rtol=0, atol=0)
    torch.testing.assert_close(null_video[:, :T], cond.null_video.expand(3, -1, -1), rtol=0, atol=0)
    torch.testing.assert_close(null_audio[:, T:], cond.null_audio.expand(3, -1, -1), rtol=0, atol=0)
    # ... and training's dropped rows train exactly those parameters.
    train_ctx[0, :T].sum().backward()
    assert cond.null_video.grad is not None and cond.null_video.grad.abs().sum() > 0
    assert cond.null_audio.grad is None or cond.null_audio.grad.abs().sum() == 0


def test_conditioner_without_audio_gives_video_tokens_only():
    p = dataclasses.replace(TINY, cond=dataclasses.replace(TINY.cond, use_audio=False))
    cond = Conditioner.from_preset(p)
    assert cond(torch.randn(2, 4, 32), None).shape == (2, 4, 32) == (2, *p.context_shape)
    with pytest.raises(ValueError, match="no audio condition"):
        cond(torch.randn(2, 4, 32), torch.randn(2, *TINY.latent_shape))


# ------------------------------------------------------------------------------------------------- ldm

def test_ldm_loss_drops_conditions_by_their_probabilities():
    torch.manual_seed(0)
    lat = torch.randn(2, *TINY.latent_shape)
    f1, f2 = torch.randn(2, 4, 32), torch.randn(2, 4, 32)
    a1, a2 = torch.randn(2, *TINY.latent_shape), torch.randn(2, *TINY.latent_shape)

    def losses(p_video, p_audio):
        d = dataclasses.replace(TINY.diffusion, p_drop_video=p_video, p_drop_audio=p_audio)
        ldm = LatentDiffusion.from_preset(dataclasses.replace(TINY, diffusion=d))
        ldm.load_state_dict(reference.state_dict())
        with torch.no_grad():
            return [ldm.loss(lat, f, a, torch.Generator().manual_seed(5)).item() for f, a in ((f1, a1), (f2, a2))]

    reference = LatentDiffusion.from_preset(TINY)
    dropped = losses(1.0, 1.0)
    kept = losses(0.0, 0.0)
    assert dropped[0] == dropped[1]  # both conditions replaced by the nulls: the inputs cannot matter
    assert kept[0] != kept[1]


def test_tiny_ldm_overfits_a_fixed_batch():
    torch.manual_seed(0)
    ldm = LatentDiffusion.from_preset(TINY)
    g = torch.Generator().manual_seed(0)
    lat, feats = torch.randn(4, *TINY.latent_shape, generator=g), torch.randn(4, 4, 32, generator=g)
    audio = torch.randn(4, *TINY.latent_shape, generator=g)

    def held_out_loss():
        with torch.no_grad():
            return np.mean([ldm.loss(lat, feats, audio, torch.Generator().manual_seed(100 + s)).item()
                            for s in range(4)])

    before = held_out_loss()
    opt = torch.optim.AdamW(ldm.parameters(), lr=2e-3)
    g_train = torch.Generator().manual_seed(1)
    for _ in range(100):
        loss = ldm.loss(lat, feats, audio, g_train)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert held_out_loss() < 0.5 * before


def test_v_prediction_target():
    # A network that always predicts 0 scores E[target^2]. With x0 = 0 the v target is sqrt(abar) eps, so the
    # loss is E_t[abar] (~0.37), where the epsilon target would give 1.
    d = dataclasses.replace(TINY.diffusion, prediction_type="v_prediction")
    ldm = LatentDiffusion.from_preset(dataclasses.replace(TINY, diffusion=d))
    c = TINY.latent_shape[0]  # the UNet's input may hold the sync stream's channels after the latent's
    ldm.unet.forward = lambda x, t, encoder_hidden_states: type("Out", (), {"sample": torch.zeros_like(x[:, :c])})()
    zeros = torch.zeros(512, *TINY.latent_shape)
    loss = ldm.loss(zeros, None, None, torch.Generator().manual_seed(0)).item()
    assert abs(loss - float(ldm.alphas_cumprod.mean())) < 0.03


# ------------------------------------------------------------------------------------------------- vae

def test_tiny_vae_shapes_and_latent_sampling():
    torch.manual_seed(0)
    vae = build_vae(TINY.vae, TINY.audio)
    mel = torch.rand(2, 80, TINY.audio.padded_frames)
    mean, std = encode_mel(vae, mel)
    assert mean.shape == std.shape == (2, *TINY.latent_shape) and torch.all(std > 0)
    z1 = sample_latent(mean, std, 0.5, torch.Generator().manual_seed(0))
    z2 = sample_latent(mean, std, 0.5, torch.Generator().manual_seed(0))
    assert torch.equal(z1, z2) and not torch.equal(z1, mean * 0.5)
    torch.testing.assert_close(sample_latent(mean, torch.zeros_like(std), 0.5), mean * 0.5)
    out = decode_latent(vae, z1, TINY.audio.num_frames)
    assert out.shape == (2, 80, TINY.audio.num_frames) and out.min() >= 0 and out.max() <= 1
    total, rec, kl = vae_loss(vae, mel, 1e-3, TINY.audio.num_frames)
    torch.testing.assert_close(total, rec + 1e-3 * kl)


def test_decoding_with_edge_columns_moves_the_decoders_edges_out_of_the_window():
    torch.manual_seed(0)
    vae = build_vae(TINY.vae, TINY.audio).eval()
    n = TINY.audio.num_frames
    z = torch.randn(2, *TINY.latent_shape)
    steady = z[..., :1].expand_as(z).contiguous()  # the same column everywhere: only the edges differ
    with torch.no_grad():
        plain = vae.decode(z / vae.config.scaling_factor).sample[:, 0, :, :n].clamp(0, 1)
        torch.testing.assert_close(decode_latent(vae, z, n), plain)  # 0: the latent decoded as it is
        assert decode_latent(vae, z, n, edge_columns=2).shape == plain.shape

        def edge_error(mel):  # how far the first and last 4 frames are from the steady middle
            middle = mel[..., 40:-40].mean(-1, keepdim=True)
            return float((mel[..., :4] - middle).abs().mean()), float((mel[..., -4:] - middle).abs().mean())

        first0, last0 = edge_error(decode_latent(vae, steady, n, clamp=False))
        first2, last2 = edge_error(decode_latent(vae, steady, n, clamp=False, edge_columns=2))
    assert first2 < 0.85 * first0 and last2 < 0.85 * last0


def test_the_default_vae_decodes_stationary_noise_without_a_fade_at_the_ends():
    # The defect decode_edge_columns mends: decoded as is, the shipped VAE fades the last frames of a steady
    # sound (its last 4 frames ~0.27 of the mel's range below the rest: an onset before the fade); mended, its
    # last 16 frames keep the level of the rest and the last 4 fade half as far.
    from action2sound.mel import wave_to_mel
    from action2sound.weights import default_model_dir, load_model_dir

    md = load_model_dir(default_model_dir(), components=("vae",))
    audio, k = md.preset.audio, md.preset.vae.decode_edge_columns
    assert k == 2
    wave = (0.1 * np.random.default_rng(0).standard_normal((2, audio.num_samples))).astype(np.float32)
    with torch.no_grad():
        mean, _ = encode_mel(md.vae, torch.from_numpy(wave_to_mel(wave, audio)))
        z = mean * md.vae.config.scaling_factor

        def tail_below_middle(edge_columns):  # (last 16 frames, last 4 frames) minus the middle, mean over bins
            level = decode_latent(md.vae, z, audio.num_frames, edge_columns=edge_columns).mean(1)  # [B, frames]
            middle = level[:, 16:-16].mean(1, keepdim=True)
            return float((level[:, -16:] - middle).mean()), float((level[:, -4:] - middle).mean())

        last16_0, last4_0 = tail_below_middle(0)
        last16_k, last4_k = tail_below_middle(k)
    assert last4_0 < -0.2 and last16_0 < -0.06
    assert abs(last16_k) < 0.03 and -0.17 < last4_k


def test_three_channel_vae_copies_the_mel_and_keeps_channel_0():
    cfg = dataclasses.replace(TINY.vae, in_channels=3)
    vae = build_vae(cfg, TINY.audio)
    seen = {}
    original = vae.encode

    def spy(image):
        seen["image"] = image
        return original(image)

    vae.encode = spy
    mel = torch.rand(1, 80, TINY.audio.padded_frames)
    mean, _ = encode_mel(vae, mel)
    assert seen["image"].shape == (1, 3, 80, TINY.audio.padded_frames)
    assert all(torch.equal(seen["image"][0, c], mel[0]) for c in range(3))
    image = vae.decode(mean / vae.config.scaling_factor).sample
    torch.testing.assert_close(decode_latent(vae, mean, 100, clamp=False), image[:, 0, :, :100])


# ---------------------------------------------------------------------------------------------- vocoder

def test_trainable_hifigan_for_a_profile_and_its_discriminators():
    gen = build_hifigan(TINY.audio, TINY.vocoder)
    log_mel = torch.randn(2, 80, 16) - 5
    wave = vocode(gen, log_mel)
    assert wave.shape == (2, 16 * TINY.audio.hop)
    disc = HifiGanDiscriminator(TINY.vocoder)
    logits, feats = disc(wave)
    assert len(logits) == len(feats) == len(TINY.vocoder.mpd_periods) + TINY.vocoder.msd_scales
    with pytest.raises(Action2SoundError, match="hop"):
        build_hifigan(TINY.audio, dataclasses.replace(TINY.vocoder, upsample_rates=(8, 8, 2)))
    # Weight norm on for training, folded for export: the function is unchanged.
    apply_weight_norm(gen)
    with torch.no_grad():
        before = vocode(gen, log_mel)
        after = vocode(remove_weight_norm(gen), log_mel)
    torch.testing.assert_close(before, after)
    assert set(gen.state_dict()) == set(build_hifigan(TINY.audio, TINY.vocoder).state_dict())


def test_gan_losses_known_values():
    ones, zeros = [torch.ones(2, 5), torch.ones(3)], [torch.zeros(2, 5), torch.zeros(3)]
    assert discriminator_loss(ones, zeros).item() == 0.0
    assert discriminator_loss(zeros, ones).item() == 4.0  # (1 + 1) per discriminator
    assert generator_adversarial_loss(ones).item() == 0.0 and generator_adversarial_loss(zeros).item() == 2.0
    real = [[torch.zeros(2, 3), torch.zeros(4)], [torch.zeros(1)]]
    fake = [[torch.full((2, 3), 2.0), torch.ones(4)], [torch.full((1,), -1.0)]]
    assert feature_matching_loss(real, fake).item() == 4.0


def _official_generator():
    """The official HiFi-GAN code shipped beside the weights, loaded as a file (the package import needs torchaudio)."""
    ckpt, config = universal_hifigan_files()
    spec = importlib.util.spec_from_file_location("official_hifigan_models", ckpt.parent.parent / "models.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    class Attrs(dict):
        __getattr__ = dict.__getitem__

    gen = module.Generator(Attrs(json.loads(config.read_text())))
    gen.load_state_dict(torch.load(ckpt, map_location="cpu", weights_only=True)["generator"])
    return gen.eval()


@pytest.fixture(scope="module")
def universal():
    return load_universal_hifigan()


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_universal_hifigan_loads_strictly_and_equals_the_official_generator(universal):
    x = torch.randn(1, 80, 12) - 5
    with torch.no_grad():
        ours, official = vocode(universal, x), _official_generator()(x)[:, 0]
    assert (ours - official).abs().max() < 1e-5
    ckpt, _ = universal_hifigan_files()
    state = torch.load(ckpt, map_location="cpu", weights_only=True)["generator"]
    with pytest.raises(Action2SoundError, match="no place"):
        convert_official_hifigan({**state, "extra.weight_g": torch.ones(1)}, universal)
    del state["conv_post.bias"]
    with pytest.raises(Action2SoundError, match="lacks conv_post.bias"):
        convert_official_hifigan(state, universal)


def _voiced(profile, seconds):
    """A speech-like test signal: a gliding harmonic source through three formant resonators, plus a little noise."""
    from scipy.signal import lfilter

    sr = profile.sample_rate
    t = np.arange(int(sr * seconds)) / sr
    phase = 2 * np.pi * np.cumsum(140 + 40 * np.sin(2 * np.pi * 1.5 * t)) / sr
    source = sum(np.sin(k * phase) / k for k in range(1, 40))
    out = np.zeros_like(t)
    for fc, bw in ((700, 130), (1200, 70), (2600, 160)):
        r, th = np.exp(-np.pi * bw / sr), 2 * np.pi * fc / sr
        out += lfilter([1 - r], [1, -2 * r * np.cos(th), r * r], source)
    out = out * np.minimum(1, np.minimum(t, seconds - t) * 20)
    out += 0.02 * lfilter([1, -0.9], [1], np.random.default_rng(0).standard_normal(len(t)))
    return (0.8 * out / np.abs(out).max()).astype(np.float32)


def test_universal_hifigan_resynthesises_the_mel_it_is_given(universal):
    from action2sound.mel import crop_frames, mel_to_vocoder_input, wave_to_mel

    profile = dataclasses.replace(UNIVERSAL22K_AUDIO, duration=0.5)
    log_mel = mel_to_vocoder_input(crop_frames(wave_to_mel(_voiced(profile, 0.5), profile), profile), profile)
    with torch.no_grad():
        wave = vocode(universal, torch.from_numpy(log_mel)[None])[0].numpy()
    assert wave.shape == (profile.num_frames * profile.hop,)
    again = mel_to_vocoder_input(crop_frames(wave_to_mel(wave, profile), profile), profile)
    l1 = np.abs(again - log_mel).mean()  # measured 0.26 nats (~2.2 dB); silence would be ~8
    convergence = np.linalg.norm(np.exp(again) - np.exp(log_mel)) / np.linalg.norm(np.exp(log_mel))  # 0.25
    assert l1 < 0.4 and convergence < 0.4


def test_sampling_defaults_match_the_paper():
    d = DiffusionConfig()
    assert (d.num_train_timesteps, d.beta_start, d.beta_end, d.beta_schedule) == (1000, 0.00085, 0.012, "scaled_linear")
    assert (d.prediction_type, d.guidance_scale, d.p_drop_video, d.sampler, d.sample_steps) == (
        "epsilon", 6.5, 0.2, "dpm", 25)
