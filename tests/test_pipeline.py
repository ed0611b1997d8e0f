"""The generation path: windows and cross-fades, each ambient mode's condition, any video, alignment, the index."""

from __future__ import annotations

import json
import shutil

import av
import numpy as np
import pytest
import torch

from action2sound import media, pipeline
from action2sound.cli import main
from action2sound.errors import Action2SoundError
from action2sound.indexing import Retrieval
from action2sound.levels import ambient_level_db
from action2sound.media import video_duration
from action2sound.options import GenerateOptions
from action2sound.pipeline import Pipeline, load_pipeline
from action2sound.windows import assemble_windows, plan_windows, window_gains, window_length


@pytest.fixture(scope="session")
def pipe(env):
    return load_pipeline(env.model, device="cpu", index=env.index)


@pytest.fixture
def spy(monkeypatch):
    """Record what reaches the sampler: the audio condition of every window, the guidance, the latents out."""
    from action2sound import sampling

    calls, guidance = [], []
    real_sample, real_guided = pipeline.sample_windows, sampling.guided

    def sample_windows(ldm, tokens, audio, noise, options, preset, sync=None):
        z = real_sample(ldm, tokens, audio, noise, options, preset, sync=sync)
        calls.append({"audio": [None if a is None else a.detach().clone() for a in audio], "z": z.clone(),
                      "sync": None if sync is None else sync.detach().clone()})
        return z

    def guided(model_fn, full, null_video, null_audio, w_video, w_audio=1.0, w_sync=1.0):
        guidance.append({"full": full.clone(), "null_audio": null_audio, "w_video": w_video, "w_audio": w_audio,
                         "w_sync": w_sync})
        return real_guided(model_fn, full, null_video, null_audio, w_video, w_audio, w_sync)

    monkeypatch.setattr(pipeline, "sample_windows", sample_windows)
    monkeypatch.setattr(sampling, "guided", guided)
    return calls, guidance


def _clip(env, uid: str, i: int = 0):
    return env.bench / "clips" / uid / f"{uid}_narration_pass_1_{i}.mp4"


def _one(pipe: Pipeline, video, **options):
    (result,) = pipe.generate([video], GenerateOptions(**options))
    if isinstance(result, Exception):
        raise result
    return result


def _store_latent(pipe: Pipeline, clip_id: str, as_indexed: bool = True) -> torch.Tensor:
    store = pipe.retrieval.store
    row = next(i for i, c in enumerate(store.table) if c.clip_id == clip_id)
    mean = torch.from_numpy(store.get("latent_mean", row))
    if as_indexed:  # the index keeps the store's means as float16 (indexing.build_index_from_store)
        mean = mean.half().float()
    return mean * pipe.preset.vae.scaling_factor


def _file_latent(pipe: Pipeline, path, offset: float) -> torch.Tensor:
    from action2sound.mel import fit_wave, wave_to_mel
    from action2sound.models.vae import encode_mel

    p = pipe.preset.audio
    wave = fit_wave(media.read_audio(path, offset, p.duration, p.sample_rate), p)
    mean, _ = encode_mel(pipe.vae, torch.from_numpy(wave_to_mel(wave, p))[None])
    return mean[0] * pipe.preset.vae.scaling_factor


# ------------------------------------------------------------------------------------------ windows, cross-fade
def test_windows_cover_the_video_and_end_on_its_last_sample():
    assert plan_windows(5, 10, 2) == [0]
    assert plan_windows(10, 10, 2) == [0]
    assert plan_windows(11, 10, 2) == [0, 1]
    assert plan_windows(26, 10, 2) == [0, 8, 16]  # exactly tiled
    assert plan_windows(27, 10, 2) == [0, 8, 16, 17]  # the last one moved back to end at 27
    for total in range(11, 200):
        s = plan_windows(total, 10, 3)
        assert s[0] == 0 and s[-1] + 10 == total
        assert all(0 < b - a <= 7 for a, b in zip(s, s[1:]))  # every seam overlaps by >= 3


def test_crossfade_is_equal_power():
    starts, length, fade = [0, 800, 1600, 1900], 1000, 120
    gains = window_gains(starts, length, fade)
    power = np.zeros(2900)
    for s, g in zip(starts, gains):
        power[s : s + length] += g**2
    np.testing.assert_allclose(power, 1.0, atol=1e-12)  # squares sum to one at every sample
    assert np.all(gains[0][:800] == 1.0) and gains[1][0] == 0.0 and gains[3][-1] == 1.0
    # Each fade is `fade` samples long and centred in its overlap (here [800, 1000) -> [840, 960)).
    assert np.all(gains[0][840:960] < 1) and np.all(gains[0][960:] == 0) and np.all(gains[0][:840] == 1)
    # Uncorrelated windows: the total power stays constant across every seam; a linear fade would sag to 1/2.
    rng = np.random.default_rng(0)
    waves = [rng.standard_normal(length) for _ in starts]
    trials = np.stack([assemble_windows([rng.standard_normal(length) for _ in starts], starts, 2900, fade)
                       for _ in range(400)])
    block_power = (trials.astype(np.float64) ** 2).mean(0).reshape(-1, 50).mean(1)  # 58 blocks of 50 samples
    np.testing.assert_allclose(block_power, 1.0, atol=0.1)
    out = assemble_windows(waves, starts, 2900, fade)
    assert out.dtype == np.float32 and out.shape == (2900,)
    np.testing.assert_allclose(out[:840], waves[0][:840], rtol=1e-6)  # before the first fade: window 0 alone


# ------------------------------------------------------------------------------------------ ambient modes
def test_retrieved_uses_the_store_latent_of_the_best_audio_match_outside_the_own_video(pipe, env, spy):
    calls, guidance = spy
    clip = _clip(env, "a2s-0-0002")
    res = _one(pipe, clip, ambient="retrieved", steps=1, audio_guidance=2.0)
    cond = res.metadata["condition"]
    assert cond["mode"] == "retrieved" and cond["source"] == "index"  # the index carries the store's means
    assert cond["excluded_video"] == "a2s-0-0002"  # the input is an indexed clip: its own video is skipped
    hit = cond["clips"][0]
    # Cross-modal rule: the query video's embedding against every clip's AUDIO embedding, own video excluded.
    query = pipe._read_and_encode(0, clip, GenerateOptions().resolved(pipe.preset)).query
    store = pipe.retrieval.store
    scores = store.column("audio_emb") @ query
    own = np.array([c.video_id == "a2s-0-0002" for c in store.table])
    best = int(np.argmax(np.where(own, -np.inf, scores)))
    assert hit["clip_id"] == store.table[best].clip_id and hit["score"] == pytest.approx(scores[best], abs=1e-5)
    assert torch.equal(calls[0]["audio"][0], _store_latent(pipe, hit["clip_id"]))
    # Audio guidance != 1 evaluates the audio-null pass; the full context carries the clip's audio tokens.
    assert guidance[0]["w_audio"] == 2.0 and guidance[0]["null_audio"] is not None


def test_retrieved_without_a_store_reads_the_clip_audio(pipe, env, spy):
    calls, _ = spy
    r = pipe.retrieval
    bare = Pipeline(pipe.preset, pipe.av, pipe.vae, pipe.ldm, pipe.vocoder, "cpu", Retrieval(r.index, r.folder))
    assert r.latents is not None and bare.retrieval.latents is None
    res = _one(bare, _clip(env, "a2s-0-0002"), ambient="retrieved", steps=1)
    cond = res.metadata["condition"]
    assert cond["source"] == "audio"
    # The same VAE on the same audio: the latent the store holds for that clip.
    torch.testing.assert_close(calls[0]["audio"][0], _store_latent(pipe, cond["clips"][0]["clip_id"], False),
                               atol=1e-4, rtol=0)


def test_quiet_picks_among_the_lowest_ambient_clips(pipe, env, spy):
    calls, _ = spy
    res = _one(pipe, _clip(env, "a2s-0-0000"), ambient="quiet", quiet_quantile=0.5, steps=1)
    hit = res.metadata["condition"]["clips"][0]
    index = pipe.retrieval.index
    quiet = {str(index.meta.clip_id[i]) for i in index.quiet_rows(0.5)}
    assert hit["clip_id"] in quiet and hit["video_id"] != "a2s-0-0000"
    assert hit["ambient_db"] <= np.sort(index.meta.ambient_db)[3] + 1e-3
    assert torch.equal(calls[0]["audio"][0], _store_latent(pipe, hit["clip_id"]))


def test_file_ambient_is_that_recording_from_the_offset(pipe, env, spy):
    calls, _ = spy
    episode = env.bench / "episodes" / "a2s-0-0001.mp4"
    res = _one(pipe, _clip(env, "a2s-0-0000"), ambient=str(episode), ambient_offset=4.0, steps=1)
    p = pipe.preset.audio
    level = ambient_level_db(media.read_audio(episode, 4.0, p.duration, p.sample_rate), p.sample_rate)
    assert res.metadata["condition"] == {"mode": "file", "source": "file", "file": str(episode), "offset": 4.0,
                                         "ambient_db": round(level, 3)}
    expected = _file_latent(pipe, episode, 4.0)
    torch.testing.assert_close(calls[0]["audio"][0], expected, atol=1e-5, rtol=0)
    assert not torch.allclose(expected, _file_latent(pipe, episode, 0.0), atol=1e-3)  # the offset matters
    with pytest.raises(Action2SoundError, match="no-such.wav: no such file"):
        _one(pipe, _clip(env, "a2s-0-0000"), ambient=str(env.bench / "no-such.wav"), steps=1)


def test_random_is_a_clip_of_another_video_drawn_from_the_seed_and_the_name(pipe, env, spy):
    calls, _ = spy
    clip = _clip(env, "a2s-0-0002")
    res = _one(pipe, clip, ambient="random", seed=3, steps=1)
    cond = res.metadata["condition"]
    assert cond["mode"] == "random" and cond["source"] == "index" and cond["excluded_video"] == "a2s-0-0002"
    (hit,) = cond["clips"]
    assert hit["video_id"] != "a2s-0-0002" and "score" not in hit
    assert torch.equal(calls[0]["audio"][0], _store_latent(pipe, hit["clip_id"]))
    # The same seed and video draw the same clip; the evaluator draws through the same resolver by clip id.
    again = pipe.conditions.random(clip.stem, 3, "a2s-0-0002")
    assert again.clips[0].clip_id == hit["clip_id"] and torch.equal(again.latent, calls[0]["audio"][0])
    assert again.ambient_db == pytest.approx(hit["ambient_db"], abs=1e-3)
    draws = {pipe.conditions.random_choice(clip.stem, s, "a2s-0-0002").clip_id for s in range(12)}
    assert len(draws) > 1  # the seed matters


def test_none_gives_the_learned_audio_null_and_skips_the_audio_pass(pipe, env, spy):
    calls, guidance = spy
    res = _one(pipe, _clip(env, "a2s-0-0000"), ambient="none", steps=1, audio_guidance=3.0)
    assert res.metadata["condition"] == {"mode": "none", "source": "learned null"}
    assert calls[0]["audio"] == [None]
    t = pipe.preset.video.num_frames
    null = pipe.ldm.conditioner.null_audio
    assert torch.equal(guidance[0]["full"][0, t:], null)  # the context's audio tokens are the learned null
    assert guidance[0]["w_audio"] == 1.0 and guidance[0]["null_audio"] is None


def test_retrieval_modes_without_an_index_say_how_to_get_one(env):
    bare = load_pipeline(env.model, device="cpu")
    with pytest.raises(Action2SoundError, match="index build"):
        _one(bare, _clip(env, "a2s-0-0000"), ambient="quiet", steps=1)


# ------------------------------------------------------------------------------------------ any video
def _vfr_times(seconds: float, rng: np.random.Generator) -> np.ndarray:
    gaps = rng.uniform(1 / 30, 1 / 8, size=int(seconds * 30))
    t = np.concatenate([[0.0], np.cumsum(gaps)])
    return t[t < seconds - 1 / 30]


def _decoded_audio_seconds(path, rate: int) -> float:
    return media.read_audio_file(path, rate).size / rate


def test_long_variable_frame_rate_video_without_audio(pipe, env, spy, tmp_path):
    calls, _ = spy
    rng = np.random.default_rng(1)
    times = _vfr_times(10.0, rng)
    frames = rng.integers(0, 255, size=(times.size, 32, 48, 3), dtype=np.uint8)
    video = tmp_path / "vfr.mp4"
    media.write_video(video, frames, 15.0, frame_times=times)
    info = media.probe(video)
    assert not info.has_audio
    with av.open(str(video)) as c:
        vs = c.streams.video[0]
        duration = float(vs.duration * vs.time_base)
    assert abs(duration - 10.0) < 0.2
    episode = env.bench / "episodes" / "a2s-0-0001.mp4"
    res = _one(pipe, video, ambient=str(episode), steps=1)
    sr = pipe.sample_rate
    assert res.audio.shape == (round(duration * sr),) and res.audio.dtype == np.float32
    # Four windows, each after the first conditioned on its predecessor's generated latent.
    starts = plan_windows(res.audio.size, window_length(pipe.preset), round(0.5 * sr))
    assert len(calls) == len(starts) == len(res.metadata["windows"]) == 4
    torch.testing.assert_close(calls[0]["audio"][0], _file_latent(pipe, episode, 0.0), atol=1e-5, rtol=0)
    for prev, cur in zip(calls, calls[1:]):
        assert torch.equal(cur["audio"][0], prev["z"][0])
    paths = res.save(tmp_path / "out")
    assert sorted(p.name for p in paths.values()) == ["vfr.json", "vfr.mp4", "vfr.png", "vfr.wav"]
    import soundfile

    wav, rate = soundfile.read(paths["audio"])
    assert rate == sr and wav.size == round(duration * sr)
    muxed = media.probe(paths["video"])
    assert muxed.has_audio and muxed.has_video
    assert abs(_decoded_audio_seconds(paths["video"], sr) - duration) <= 1024 / sr  # one AAC frame
    meta = json.loads(paths["json"].read_text())
    assert meta["num_samples"] == wav.size and meta["settings"]["seed"] == 0
    assert [w["condition"] for w in meta["windows"]] == ["file"] + ["previous window"] * 3


def test_one_second_portrait_video(pipe, tmp_path):
    frames = np.zeros((15, 32, 48, 3), np.uint8)
    frames[:, :8, :8] = 255
    video = tmp_path / "portrait.mov"
    media.write_video(video, frames, 15.0, rotation=90)
    info = media.probe(video)
    assert (info.width, info.height) == (32, 48)
    duration = video_duration(video)
    assert duration == pytest.approx(1.0, abs=1e-6)
    res = _one(pipe, video, ambient="none", steps=1)
    sr = pipe.sample_rate
    assert res.audio.size == round(duration * sr) == sr
    assert res.metadata["video"]["rotation"] == 90 and len(res.metadata["windows"]) == 1
    paths = res.save(tmp_path / "out")
    assert abs(_decoded_audio_seconds(paths["video"], sr) - duration) <= 1024 / sr
    assert media.probe(paths["video"]).rotation == 90
    from PIL import Image

    assert Image.open(paths["image"]).size[0] > 0


def test_generated_onsets_line_up_with_the_frames_of_their_events(env, monkeypatch, tmp_path):
    # A random model cannot place onsets, so the model's output is stubbed: each window's mel holds a sharp
    # onset at the episode's ground-truth event times (in that window's own time). Everything else is real:
    # window planning, cross-fades, trimming, Griffin-Lim, writing and muxing.
    gl = load_pipeline(env.model, device="cpu", vocoder="griffinlim")
    episode = env.bench / "episodes" / "a2s-0-0000.mp4"
    truth = json.loads((env.bench / "episodes" / "a2s-0-0000.events.json").read_text())
    fps, sr, p = truth["fps"], gl.sample_rate, gl.preset.audio
    times = np.array(sorted(e["time"] for e in truth["events"] if e["onscreen"]))
    isolated = times[np.diff(np.concatenate([[-1.0], times])) > 0.4]
    assert isolated.size >= 3
    total = round(video_duration(episode) * sr)
    starts = plan_windows(total, window_length(gl.preset), round(0.5 * sr))
    assert len(starts) >= 4
    order = iter(range(len(starts)))

    def fake_sample(ldm, tokens, audio, noise, options, preset):
        return noise.clone()

    def fake_decode(vae, z, preset):
        mels = torch.zeros(z.shape[0], p.n_mels, p.num_frames)
        for b in range(z.shape[0]):
            s0 = starts[next(order)] / sr
            for t in times:
                i = int(round((t - s0) * sr / p.hop))  # HiFi-GAN framing: frame i starts at sample i * hop
                for j in range(6):
                    if 0 <= i + j < p.num_frames:
                        mels[b, :, i + j] = 0.95 - 0.08 * j
        return mels

    monkeypatch.setattr(pipeline, "sample_windows", fake_sample)
    monkeypatch.setattr(pipeline, "latents_to_mels", fake_decode)
    res = _one(gl, episode, ambient="none", steps=1, batch_size=2)
    assert next(order, None) is None  # every window decoded once, in order
    paths = res.save(tmp_path, "episode", image=False)
    assert res.audio.size == total
    x = np.abs(media.read_audio_file(paths["video"], sr))
    for t in isolated:
        lo, hi = int((t - 0.2) * sr), int((t + 0.2) * sr)
        seg = x[lo:hi]
        onset = lo + int(np.argmax(seg > 0.2 * seg.max()))
        assert abs(onset / sr - t) <= 1.0 / fps, (t, onset / sr)


# ------------------------------------------------------------------------------------------ index, vocoder
def test_index_build_command(env, tmp_path):
    from action2sound.data.store import Store
    from action2sound.retrieval import AudioIndex
    from action2sound.weights import read_model_json

    out = tmp_path / "idx"
    assert main(["index", "build", "--store", str(env.store), "--model", str(env.model), "--out", str(out),
                 "--kind", "hnsw"]) == 0
    av_sha = read_model_json(env.model)["files"]["av"]["sha256"]
    index = AudioIndex.load(out, expect_model_hash=av_sha)
    store = Store(env.store)
    assert index.kind == "hnsw" and len(index) == len(store) == 8 and index.has_video
    assert list(index.meta.clip_id) == [c.clip_id for c in store.table]
    np.testing.assert_allclose(index.meta.ambient_db, store.column("ambient_db"), atol=1e-6)
    for i in range(len(index)):
        rel = str(index.meta.media_path[i])
        assert not rel.startswith("/") and (out / rel).resolve() == media_path_of(store, i)
    assert (out / json.loads((out / "source.json").read_text())["store"]).resolve() == env.store.resolve()
    hits = index.query(store.column("video_emb")[:1], k=1, exclude_video_ids=[store.table[0].video_id])
    assert hits[0][0].video_id != store.table[0].video_id


def media_path_of(store, i):
    from pathlib import Path

    return Path(store.table[i].media_path).resolve()


def test_a_model_without_a_vocoder_falls_back_to_griffin_lim_with_a_warning(env, tmp_path):
    from action2sound.weights import file_sha256

    model = tmp_path / "model"
    shutil.copytree(env.model, model)
    (model / "vocoder.json").write_text(json.dumps({"kind": "griffinlim"}))
    manifest = json.loads((model / "model.json").read_text())
    manifest["vocoder"] = {"kind": "griffinlim"}
    manifest["files"]["vocoder.json"]["sha256"] = file_sha256(model / "vocoder.json")
    (model / "model.json").write_text(json.dumps(manifest))
    with pytest.warns(UserWarning, match="Griffin-Lim.*train vocoder"):
        gl = load_pipeline(model, device="cpu")
    assert gl.vocoder is None and gl.model_info["vocoder"] == "griffinlim"


def test_bad_settings_and_inputs_are_one_clear_error(pipe, env, tmp_path):
    audio_only = tmp_path / "sound.wav"
    media.write_audio(audio_only, np.zeros(22050, np.float32), 22050)
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(200))
    good = _clip(env, "a2s-0-0000")
    results = pipe.generate([audio_only, good, broken], GenerateOptions(ambient="none", steps=1))
    assert isinstance(results[0], Action2SoundError) and "no video stream" in str(results[0])
    assert isinstance(results[2], Action2SoundError) and "broken.mp4" in str(results[2])
    assert results[1].audio.size == round(video_duration(good) * pipe.sample_rate)
    with pytest.raises(Action2SoundError, match="sampler"):
        pipe.generate([good], GenerateOptions(sampler="euler"))
    with pytest.raises(Action2SoundError, match="overlap"):
        pipe.generate([good], GenerateOptions(overlap=2.0, ambient="none"))


def test_release_sampling_conditions_on_a_seeded_posterior_sample(pipe, env):
    """Release-exact mode feeds the model a posterior *sample* of the condition (mean + std * eps, eps from the
    seed), as the public release does; our own sampling keeps the mean."""
    from action2sound.conditions import ConditionResolver
    from action2sound.mel import fit_wave, wave_to_mel
    from action2sound.models.vae import encode_mel

    episode = env.bench / "episodes" / "a2s-0-0001.mp4"
    p = pipe.preset.audio
    wave = fit_wave(media.read_audio(episode, 2.0, p.duration, p.sample_rate), p)
    mean, std = encode_mel(pipe.vae, torch.from_numpy(wave_to_mel(wave, p))[None])
    sf = pipe.preset.vae.scaling_factor
    eps = torch.randn(mean.shape, generator=torch.Generator().manual_seed(5))
    expected = ((mean + std * eps) * sf)[0]

    release = ConditionResolver(pipe.preset, pipe.vae, pipe.device, pipe.retrieval, posterior_seed=5)
    got = release.file(episode, 2.0).latent
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    assert not torch.allclose(got, mean[0] * sf, atol=1e-3)  # a sample, not the mean
    torch.testing.assert_close(pipe.conditions.file(episode, 2.0).latent, mean[0] * sf, atol=1e-5, rtol=0)
    # An indexed clip: the store's std is used (the index's latents.npy holds means only).
    store = pipe.retrieval.store
    row = 0
    s_mean = torch.from_numpy(store.get("latent_mean", row))
    s_std = torch.from_numpy(store.get("latent_std", row))
    eps = torch.randn(s_mean[None].shape, generator=torch.Generator().manual_seed(5))
    index_row = next(i for i, c in enumerate(pipe.retrieval.index.meta.clip_id) if c == store.table[row].clip_id)
    latent, source = release.clip_latent(index_row)
    assert source == "store"
    torch.testing.assert_close(latent, ((s_mean + s_std * eps[0]) * sf), atol=1e-5, rtol=0)


def test_a_model_without_a_sync_encoder_passes_no_stream(env, pipe, spy):
    calls, _ = spy
    assert pipe.sync_encoder is None
    res = _one(pipe, _clip(env, "a2s-0-0000"), ambient="none", steps=2)
    assert calls and all(c["sync"] is None for c in calls)
    assert res.metadata["sync_stream"] == "null"  # the tiny ldm has the stream, this model no encoder for it


@pytest.mark.parametrize("m", [2, -1])
def test_the_sync_stream_reaches_the_sampler_and_moves_with_the_video(tmp_path, spy, m):
    from generation_factory import tiny_model_dir

    from action2sound.models.sync_stream import frames_per_column, sync_frame_times

    calls, _ = spy
    pipe_s = load_pipeline(tiny_model_dir(tmp_path, sync_encoder=True), device="cpu")
    p = pipe_s.preset
    assert pipe_s.sync_encoder is not None and pipe_s.ldm.sync is not None
    times = sync_frame_times(p)
    r = frames_per_column(p.sync_stream, p.audio, p.vae.downsample)
    n, dt, k = len(times), times[1] - times[0], r * m  # k frames of the stream: m columns
    # One frame per sync time, shown from a quarter frame before it, so the frame read at time i is frame i.
    frame_times = np.concatenate([[0.0], times[1:] - dt / 4])
    rng = np.random.default_rng(0)
    ext = rng.integers(0, 256, (n + 2 * abs(k), 32, 32, 3), dtype=np.uint8)
    base = ext[abs(k): abs(k) + n]
    moved = ext[abs(k) - k: abs(k) - k + n]  # moved[i] = base[i - k]: the same video, k frames later
    features = []
    for name, frames in (("base", base), ("moved", moved)):
        path = tmp_path / f"{name}.mp4"
        media.write_video(path, frames, fps=1.0 / dt, frame_times=frame_times, crf=0)  # lossless
        calls.clear()
        meta = _one(pipe_s, path, ambient="none", steps=2, sync_guidance=2.0).metadata
        assert meta["sync_stream"] == "encoder" and meta["settings"]["sync_guidance"] == 2.0
        assert spy[1][-1]["w_sync"] == 2.0  # the weight reached the guidance
        (call,) = calls  # the video is a little longer than a window (the last column is padding): 2 windows
        assert call["sync"].shape[1:] == (p.latent_shape[2], p.sync_stream.feature_dim)
        features.append(call["sync"][0])  # the first window, from t = 0
    with torch.no_grad():
        direct = pipe_s.sync_encoder.video_features(torch.from_numpy(media.read_frames_at(
            tmp_path / "base.mp4", times, size=p.sync_stream.size, resize=p.video.resize))[None])[0]
    torch.testing.assert_close(features[0], direct)  # what reaches the sampler is the encoder's features
    a, b = features
    # Columns whose features see past the window's frames (difference + two temporal convolutions) or the
    # moved video's first frames differ; all the others move by exactly m columns.
    e = int(np.ceil((1 + 2 * (p.sync_stream.temporal_kernel // 2)) / r)) + 1 + abs(m)
    w = a.shape[0]
    assert not torch.allclose(a[e: w - e], a[e - 1: w - e - 1])  # the features vary over time
    torch.testing.assert_close(b[e + m: w - e + m], a[e: w - e], rtol=1e-4, atol=1e-4)
