"""Evaluation metrics against known answers, the embedders' loaders, and `evaluate` end to end (tiny, CPU)."""

from __future__ import annotations

import importlib.util
import json
import math

import numpy as np
import pytest
from scipy import linalg
import soundfile
import torch

from action2sound import media
from action2sound.cli import main
from action2sound.errors import Action2SoundError
from action2sound.evaluation import benchmark_metrics as bm
from action2sound.evaluation.embedders import (AisfxEmbedder, Cnn14, EmbedderSpec, PANNsEmbedder, VGGish,
                                               VGGishEmbedder, aisfx_features, build_embedder)
from action2sound.evaluation.fad import GaussianStats, fad, frechet_distance, gaussian_stats, trace_sqrt_product
from action2sound.indexing import load_retrieval
from action2sound.levels import ambient_level_db


# The cross-check of fad.trace_sqrt_product: scipy's general sqrtm, as most FID/FAD code computes it.
def trace_sqrt_product_scipy(s1: np.ndarray, s2: np.ndarray, eps: float = 1e-6) -> float:
    """tr((S1 S2)^(1/2)) with scipy's general `sqrtm`, as most FID/FAD code does it (a cross-check).

    A non-finite result is retried with eps * I added to both covariances; an imaginary part larger than
    1e-3 of the real one is an error rather than silently dropped.
    """
    a, b = np.asarray(s1, dtype=np.float64), np.asarray(s2, dtype=np.float64)
    root = linalg.sqrtm(a @ b)
    if not np.isfinite(root).all():
        offset = eps * np.eye(a.shape[0])
        root = linalg.sqrtm((a + offset) @ (b + offset))
    tr = np.trace(root)
    if np.iscomplexobj(tr):
        if abs(tr.imag) > 1e-3 * max(abs(tr.real), 1e-12):
            raise Action2SoundError(f"sqrtm gave a trace with imaginary part {tr.imag:.3g}: the covariances are "
                                    "too ill-conditioned for it; use the eigen-based trace_sqrt_product")
        tr = tr.real
    return float(tr)

SR = bm.ANALYSIS_RATE


# ================================================================================================ FAD
def _exact_moments(rng, n: int, mean: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """n samples whose sample mean and (unbiased) covariance are exactly `mean` and `cov`."""
    d = mean.size
    z = rng.standard_normal((n, d))
    z -= z.mean(axis=0)
    z = z @ np.linalg.inv(np.linalg.cholesky(np.cov(z, rowvar=False))).T  # sample covariance I
    return z @ np.linalg.cholesky(cov).T + mean


def test_identical_sets_have_fad_zero_even_when_rank_deficient():
    rng = np.random.default_rng(0)
    for n, d in ((500, 8), (20, 64)):  # the second: 20 embeddings in 64 dimensions, singular covariances
        x = rng.standard_normal((n, d)) * rng.uniform(0.1, 3.0, d)
        assert fad(x, x.copy()) == pytest.approx(0.0, abs=1e-9 * d)


def test_fad_of_isotropic_gaussians_matches_the_closed_form():
    rng = np.random.default_rng(1)
    d, a, b = 16, 0.5, 2.0
    m1, m2 = rng.standard_normal(d), rng.standard_normal(d)
    x = _exact_moments(rng, 400, m1, a * a * np.eye(d))
    y = _exact_moments(rng, 300, m2, b * b * np.eye(d))
    expected = float((m1 - m2) @ (m1 - m2)) + d * (a - b) ** 2
    assert fad(x, y) == pytest.approx(expected, rel=1e-9)


def test_fad_of_non_commuting_covariances_matches_the_2d_formula():
    # For 2x2 PSD M with eigenvalues l1, l2: tr(M^1/2) = sqrt(l1) + sqrt(l2) = sqrt(tr M + 2 sqrt(det M)).
    s1 = np.array([[2.0, 0.9], [0.9, 1.0]])
    s2 = np.array([[0.5, -0.3], [-0.3, 1.5]])
    tr = math.sqrt(np.trace(s1 @ s2) + 2 * math.sqrt(np.linalg.det(s1) * np.linalg.det(s2)))
    assert trace_sqrt_product(s1, s2) == pytest.approx(tr, rel=1e-12)
    m = np.array([1.0, -2.0])
    expected = 5.0 + np.trace(s1) + np.trace(s2) - 2 * tr
    got = frechet_distance(GaussianStats(m, s1, 10), GaussianStats(np.zeros(2), s2, 10))
    assert got == pytest.approx(expected, rel=1e-12)


def test_eigen_and_scipy_square_roots_agree_on_well_conditioned_covariances():
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal((200, 12)), rng.standard_normal((200, 12)) @ rng.standard_normal((12, 12))
    s1, s2 = gaussian_stats(a).cov, gaussian_stats(b).cov
    assert trace_sqrt_product(s1, s2) == pytest.approx(trace_sqrt_product_scipy(s1, s2), rel=1e-8)


def test_fad_rejects_bad_embeddings():
    with pytest.raises(Action2SoundError, match="at least 2"):
        fad(np.zeros((1, 4)), np.zeros((5, 4)))
    with pytest.raises(Action2SoundError, match="sizes differ"):
        fad(np.ones((3, 4)) * np.arange(3)[:, None], np.ones((3, 5)) * np.arange(3)[:, None])


# ================================================================================================ embedders
def _wave(seconds: float = 3.0, sr: int = SR, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    return (0.3 * np.sin(2 * np.pi * 440 * t) * np.exp(-3 * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)


@pytest.mark.skipif(importlib.util.find_spec("aisfx") is None,
                    reason="aisfx is not installed (pip install --no-deps aisfx==0.1.2); its embedder is untested")
def test_aisfx_embedder_loads_the_shipped_weights_and_ignores_loudness():
    emb = build_embedder(EmbedderSpec("aisfx"))
    assert isinstance(emb, AisfxEmbedder) and emb.sample_rate == 44_100
    w = _wave(sr=44_100)
    assert aisfx_features(w).shape == (2, 100, 96)  # 130 frames -> blocks at 0 and 50, the second padded
    e = emb.embed(w)
    assert e.shape == (2, 512) and np.isfinite(e).all() and e.std() > 0
    np.testing.assert_allclose(emb.embed(0.25 * w), e, rtol=1e-4, atol=1e-5)  # peak-normalised input
    assert not np.allclose(emb.embed(np.sin(np.arange(132_300) / 3.0).astype(np.float32)), e)  # another sound


def test_vggish_and_panns_need_their_files_and_load_strictly(tmp_path):
    with pytest.raises(Action2SoundError, match="--vggish PATH"):
        build_embedder(EmbedderSpec("vggish"))
    with pytest.raises(Action2SoundError, match="--panns PATH"):
        build_embedder(EmbedderSpec("panns"))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        vggish, cnn14 = VGGish(), Cnn14()
    # The torchvggish layout (+ its PCA parameters, which we leave out).
    sd = {**vggish.state_dict(), "pproc._pca_matrix": torch.zeros(128, 128), "pproc._pca_means": torch.zeros(128)}
    torch.save(sd, tmp_path / "vggish.pth")
    emb = VGGishEmbedder(tmp_path / "vggish.pth")
    assert emb.embed(_wave(sr=16_000)).shape == (3, 128)  # one per 0.96 s
    torch.save({**sd, "extra.weight": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(Action2SoundError, match="unexpected 1 key"):
        VGGishEmbedder(tmp_path / "bad.pth")
    # The PANNs checkpoint layout: {"model": state dict with its own STFT / mel layers and tagging head}.
    sd = {**cnn14.state_dict(), "spectrogram_extractor.stft.conv_real.weight": torch.zeros(1),
          "logmel_extractor.melW": torch.zeros(1), "fc_audioset.weight": torch.zeros(527, 2048)}
    torch.save({"model": sd, "iteration": 0}, tmp_path / "cnn14.pth")
    e = PANNsEmbedder(tmp_path / "cnn14.pth").embed(_wave(1.0, sr=32_000))
    assert e.shape == (1, 2048) and (e >= 0).all()


# ================================================================================================ onsets
def _clicks(times, seconds: float = 3.0, sr: int = SR, noise: float = 0.0, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = noise * rng.standard_normal(int(seconds * sr))
    for t in times:
        i = int(round(t * sr))
        n = int(0.08 * sr)
        x[i:i + n] += 0.5 * rng.standard_normal(n) * np.exp(-np.arange(n) / (0.015 * sr))
    return x.astype(np.float32)


def test_onsets_of_clicks_are_found_within_tolerance():
    times = [0.31, 1.02, 1.5, 2.64]
    found = bm.detect_onsets(_clicks(times, noise=0.003), SR)
    assert len(found) == len(times)
    assert np.max(np.abs(found - np.array(times))) < bm.ONSET_TOLERANCE_S / 2
    assert bm.detect_onsets(np.zeros(3 * SR, np.float32), SR).size == 0
    assert bm.detect_onsets(0.01 * np.random.default_rng(0).standard_normal(3 * SR), SR).size == 0  # steady noise


def test_perfect_onsets_score_one_and_silence_scores_zero():
    ref = [0.2, 0.9, 2.5]
    assert bm.onset_f1(ref, [0.21, 0.88, 2.5]).f1 == 1.0
    assert bm.onset_f1(ref, []).f1 == 0.0
    assert math.isnan(bm.onset_f1([], []).f1)
    s = bm.onset_f1(ref, [0.2, 0.6, 2.56])  # 0.6 and 2.56 are out of +-50 ms
    assert (s.hits, s.precision, s.recall) == (1, 1 / 3, 1 / 3)
    # One estimate cannot match two references.
    assert bm.match_onsets([1.0, 1.04], [1.02]) == 1


def _events():
    return [
        {"time": 0.5, "kind": "wood", "onscreen": True, "duration": 0.0},
        {"time": 1.2, "kind": "metal", "onscreen": True, "duration": 0.6},  # a scrape: sounds 1.2-1.8 s
        {"time": 2.2, "kind": "knock", "onscreen": False, "duration": 0.0},
        {"time": -0.4, "kind": "glass", "onscreen": True, "duration": 0.0},  # started before the clip
    ]


def test_contact_scores_ignore_onsets_inside_a_sustained_contact_and_count_hallucinations():
    ev = _events()
    assert bm.visible_contacts(ev, 3.0).tolist() == [0.5, 1.2]
    s = bm.contact_onset_score([0.5, 1.2, 1.5, 2.2], ev, 3.0)
    assert (s.hits, s.n_reference, s.n_estimated, s.f1) == (2, 2, 3, 0.8)  # 1.5 is during the scrape: left out
    assert bm.hallucinated_onsets([0.5, 1.5, 2.2, 2.9], ev) == 2  # the off-screen knock and 2.9
    silent = bm.contact_onset_score(bm.detect_onsets(np.zeros(3 * SR), SR), ev, 3.0)
    assert silent.f1 == 0.0


def test_leakage_of_silence_is_zero_and_of_the_mix_is_its_ambient_ratio():
    action = _clicks([0.5, 2.0], noise=0.0)
    assert bm.ambient_leakage(np.zeros_like(action), action, SR) == 0.0
    mask = bm.event_mask(action, SR)
    assert mask[int(0.52 * SR)] and mask[int(2.02 * SR)] and not mask[int(1.3 * SR)]
    ambient = 0.01 * np.random.default_rng(3).standard_normal(action.size)
    leak = bm.ambient_leakage(action + ambient, action, SR)
    expected = np.mean(ambient[~mask] ** 2) / np.mean(action[mask] ** 2)
    assert leak == pytest.approx(expected, rel=1e-6)
    assert math.isnan(bm.ambient_leakage(action, np.zeros_like(action), SR))  # no event window


def test_kind_classifier_tells_two_materials_apart():
    rng = np.random.default_rng(4)
    t = np.arange(int(0.4 * SR)) / SR

    def tone(f):
        return (np.sin(2 * np.pi * f * (1 + 0.02 * rng.standard_normal()) * t) * np.exp(-8 * t)).astype(np.float32)

    def hiss():
        return (rng.standard_normal(t.size) * np.exp(-20 * t)).astype(np.float32)

    train = [(tone(300), "wood") for _ in range(6)] + [(hiss(), "glass") for _ in range(6)]
    clf = bm.KindClassifier().fit(train, SR)
    assert clf.kinds == ["glass", "wood"]
    assert clf.predict([tone(300), hiss(), tone(300)], SR) == ["wood", "glass", "wood"]
    wave = np.zeros(3 * SR, np.float32)
    wave[int(0.5 * SR):int(0.9 * SR)] = tone(300)
    events = [{"time": 0.5, "kind": "wood", "onscreen": True}, {"time": 2.9, "kind": "wood", "onscreen": True}]
    assert bm.kind_accuracy(clf, wave, SR, events) == (1, 1)  # the second has no whole window in the clip
    assert bm.kind_accuracy(clf, np.zeros_like(wave), SR, events) == (0, 1)  # silence is no material


def test_controllability_of_a_linear_relation_is_one():
    c = np.array([-60.0, -45.0, -30.0, -25.0, -40.0])
    assert bm.controllability(c, 0.5 * c - 3.0) == bm.Controllability(1.0, 0.5, 5)
    assert bm.controllability(c, -c).r == -1.0
    assert math.isnan(bm.controllability(c, np.full(5, -20.0)).r)


def test_recall_at_k():
    e = np.eye(12, dtype=np.float32)
    assert bm.recall_at_k(e, e) == {"R@1": 1.0, "R@5": 1.0, "R@10": 1.0}
    assert bm.recall_at_k(e, e[::-1])["R@1"] == 0.0


# ================================================================================================ end to end
def _run(env, out, *extra):
    return main(["evaluate", "--model", str(env.model), "--data", str(env.bench), "--out", str(out), "--index",
                 str(env.index), "--steps", "1", "--fad-embedder", "av", "--device", "cpu", "--quiet", *extra])


def test_a_curve_takes_seed_0_of_each_run_in_the_order_of_its_setting(tmp_path):
    from action2sound.evaluation.report import curve_points, plot_curve

    def run(steps, f1_by_seed, fad, w=None):
        per = {str(i): {"onset_f1@50ms": f, "fad": fad + i} for i, f in enumerate(f1_by_seed)}
        return {"settings": {"steps": steps, "sync_guidance": w}, "per_seed": per,
                "groundtruth": {"onset_f1@50ms": 0.6}}

    runs = [run(50, [0.4], 300.0), run(None, [0.3, 0.9, 0.9], 310.0), run(5, [0.1], 400.0)]
    pts = curve_points(runs, "steps", 25)
    assert pts["onset_f1@50ms"] == [(5, 0.1), (25, 0.3), (50, 0.4)]  # seed 0, not the 3 seeds' mean
    assert pts["fad"] == [(5, 400.0), (25, 310.0), (50, 300.0)]
    assert pts["onset_ap"] == [] and pts["desync_ms"] == []
    plot_curve(tmp_path / "steps.png", runs, "steps", 25, "sampler steps", log=True)
    assert (tmp_path / "steps.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Another setting, where 1 (the unset default) is a point of its own.
    guided = [run(None, [0.2], 320.0, 3.0), run(None, [0.1], 330.0), run(None, [0.25], 310.0, 5.0)]
    assert curve_points(guided, "sync_guidance", 1.0)["onset_f1@50ms"] == [(1.0, 0.1), (3.0, 0.2), (5.0, 0.25)]


def test_evaluate_runs_end_to_end_and_resumes(env, tmp_path, capsys):
    out = tmp_path / "report"
    assert _run(env, out, "--seeds", "2") == 0
    assert "evaluated 2 clips x 2 seeds: 6 new outputs" in capsys.readouterr().out
    records = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    assert sorted(r["key"].split("#")[1] for r in records) == ["gt", "gt", "s0", "s0", "s1", "s1"]
    for r in records:
        assert (out / r["audio"]).is_file() and (out / r["embeddings"]).is_file()
        assert {"ambient_db", "av_sim", "onset", "leakage", "kind", "hallucinated"} <= set(r)
    model = [r for r in records if r["seed"] is not None]
    assert all(r["condition"]["mode"] == "retrieved" and r["condition"]["ambient_db"] is not None for r in model)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["clips"] == 2 and summary["seeds"] == [0, 1]
    assert summary["groundtruth"]["fad"] == pytest.approx(0.0, abs=1e-6)
    assert summary["mean"]["fad"] > 0 and set(summary["per_seed"]) == {"0", "1"}
    for name in ("results.md", "controllability.png", "spectrograms.png"):
        assert (out / name).stat().st_size > 0
    assert "| ground truth |" in (out / "results.md").read_text()
    # Issue 10's metrics, pooled from the records, with the centre impulse beside them.
    gt = summary["groundtruth"]
    refs = [r for r in records if r["seed"] is None]
    hits, n_ref, n_est = (sum(r["onset_tol"]["100ms"][i] for r in refs) for i in range(3))
    assert gt["onset_f1@100ms"] == pytest.approx(2.0 * hits / (n_ref + n_est))
    assert gt["onset_f1@50ms"] <= gt["onset_f1@100ms"]
    assert 0.0 <= gt["onset_ap"] <= 1.0 and gt["off_centre_contacts"] == sum(r["off_centre"][1] for r in refs)
    assert gt["centre_impulse_f1@50ms"] == pytest.approx(np.mean([r["centre_impulse"]["f1@50ms"] for r in refs]))
    assert "F1 ±50 ms" in (out / "results.md").read_text()

    # A rerun skips everything; a killed run's half-written last line is redone.
    lines = (out / "records.jsonl").read_text().splitlines()
    (out / "records.jsonl").write_text("\n".join(lines[:-1] + [lines[-1][:40]]) + "\n")
    assert _run(env, out, "--seeds", "2") == 0
    assert "1 new outputs, 5 already done" in capsys.readouterr().out
    assert _run(env, out, "--seeds", "2") == 0
    assert "0 new outputs, 6 already done" in capsys.readouterr().out
    # Other settings in the same folder are refused.
    assert _run(env, out, "--ambient", "quiet") == 2
    assert "other settings (ambient)" in capsys.readouterr().err


def test_baselines_and_the_silent_ground_truth(env, tmp_path):
    from action2sound.evaluation.runner import EvalSettings, evaluate

    common = dict(model=str(env.model), data=str(env.bench), index=str(env.index), steps=1, fad_embedder="av",
                  device="cpu", progress=False)
    gt = evaluate(EvalSettings(out=str(tmp_path / "gt"), baseline="groundtruth", **common)).summary
    # The ground truth as the output: every metric equals the reference row's.
    for k in ("onset_f1", "kind_accuracy", "leakage", "av_sim", "ambient_db"):
        assert gt["mean"][k] == pytest.approx(gt["groundtruth"][k])
    assert gt["mean"]["fad"] == pytest.approx(0.0, abs=1e-6)

    ret = evaluate(EvalSettings(out=str(tmp_path / "ret"), baseline="retrieval", **common))
    records = [json.loads(line) for line in (ret.out / "records.jsonl").read_text().splitlines()]
    for r in (r for r in records if r["seed"] == 0):
        cond = r["condition"]
        assert cond["mode"] == "retrieval" and not cond["clip_id"].startswith(r["video_id"])
        # The output is the retrieved clip's audio, so its ambient level is the condition's.
        assert r["ambient_db"] == pytest.approx(cond["ambient_db"], abs=0.5)
        wave, _ = soundfile.read(ret.out / r["audio"], dtype="float32")
        assert wave.size == 66_150 and np.abs(wave).max() > 0

    # The codec baseline: the reference through the model's own VAE (posterior mean) and vocoder.
    from types import SimpleNamespace

    from action2sound.evaluation.baselines import Generator
    from action2sound.pipeline import latents_to_mels, load_pipeline, mels_to_waves

    settings = EvalSettings(out=str(tmp_path / "codec"), baseline="codec", **common)
    codec = evaluate(settings)
    records = [json.loads(line) for line in (codec.out / "records.jsonl").read_text().splitlines()]
    assert {r["condition"]["mode"] for r in records if r["seed"] == 0} == {"codec"} and not codec.failed
    pipe = load_pipeline(str(env.model), device="cpu")
    gt = [np.asarray(soundfile.read(codec.out / "audio" / f"{r['clip_id']}_gt.wav", dtype="float32")[0])
          for r in records if r["seed"] == 0]
    waves = [o.wave for o in Generator(settings, pipe).outputs([SimpleNamespace(gt_wave=g) for g in gt], seed=0)]
    with torch.no_grad():
        z = torch.stack([pipe.conditions.wave_latent(g) for g in gt])
        expected = mels_to_waves(pipe.vocoder, latents_to_mels(pipe.vae, z, pipe.preset), pipe.preset)
    for w, e, g in zip(waves, expected, gt):
        np.testing.assert_allclose(w, e, atol=1e-6)  # exactly the model's own reconstruction
        assert np.abs(w - g).mean() > 0.1 * np.abs(g).mean()  # and not the ground truth itself


def test_random_and_file_conditions_are_resolved_once_and_recorded(env, tmp_path):
    from action2sound.evaluation.runner import EvalSettings, evaluate

    common = dict(model=str(env.model), data=str(env.bench), index=str(env.index), steps=1, fad_embedder="none",
                  device="cpu", progress=False, limit=1)
    rnd = evaluate(EvalSettings(out=str(tmp_path / "random"), ambient="random", **common))
    (r,) = [json.loads(line) for line in (rnd.out / "records.jsonl").read_text().splitlines()
            if json.loads(line)["seed"] == 0]
    # The ablation's clip: another long video's, with the index's ambient level of that clip.
    assert r["condition"]["mode"] == "random" and not r["condition"]["clip_id"].startswith(r["video_id"])
    index = load_retrieval(env.index).index
    row = int(np.flatnonzero(index.meta.clip_id == r["condition"]["clip_id"])[0])
    assert r["condition"]["ambient_db"] == pytest.approx(float(index.meta.ambient_db[row]), abs=1e-6)

    episode = env.bench / "episodes" / "a2s-0-0001.mp4"
    ff = evaluate(EvalSettings(out=str(tmp_path / "file"), ambient=str(episode), **common))
    (r,) = [json.loads(line) for line in (ff.out / "records.jsonl").read_text().splitlines()
            if json.loads(line)["seed"] == 0]
    level = ambient_level_db(media.read_audio(episode, 0.0, 3.0, 22_050), 22_050)
    assert r["condition"] == {"mode": "file", "file": str(episode), "ambient_db": pytest.approx(level, abs=1e-6)}


def test_train_sync_then_evaluate_reports_av_sync_and_its_ceiling(env, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "sync", "--data", str(env.bench), "--out", str(run), "--max-steps", "2", "--quiet",
                 "--cache-mb", "0"]) == 0
    weights = run / "sync" / "weights.safetensors"
    assert weights.is_file() and "val/in_sync" in json.loads((run / "sync" / "summary.json").read_text())["metrics"]
    out = tmp_path / "report"
    assert _run(env, out, "--sync", str(weights), "--limit", "1") == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["mean"]["av_sync"] in (0.0, 100.0) and summary["groundtruth"]["av_sync"] in (0.0, 100.0)
    record = json.loads((out / "records.jsonl").read_text().splitlines()[0])
    assert len(record["sync_p"]) == 2 and record["in_sync"] == (max(record["sync_p"]) >= 0.5)


def test_desync_judge_measures_every_output_and_the_reference_alike(env, tmp_path):
    from action2sound.evaluation.runner import EvalSettings, evaluate
    from generation_factory import tiny_model_dir
    from action2sound.weights import load_sync_encoder

    judge = tiny_model_dir(tmp_path / "judge", seed=3, sync_encoder=True)
    enc, _ = load_sync_encoder(judge)
    reach_ms = 1000.0 * enc.cfg.max_shift_columns * enc.period
    common = dict(model=str(env.model), data=str(env.bench), index=str(env.index), steps=1, fad_embedder="none",
                  device="cpu", progress=False, limit=3, desync=str(judge))
    rep = evaluate(EvalSettings(out=str(tmp_path / "gt"), baseline="groundtruth", **common))
    records = [json.loads(line) for line in (rep.out / "records.jsonl").read_text().splitlines()]
    assert all(abs(r["sync_offset_ms"]) <= reach_ms + 0.005 for r in records)  # records round to 0.01 ms
    by_clip = {}
    for r in records:
        by_clip.setdefault(r["clip_id"], []).append(r["sync_offset_ms"])
    assert len(by_clip) >= 2 and all(len(v) == 2 for v in by_clip.values())  # the reference and one output
    assert all(a == b for a, b in by_clip.values())  # the ground truth as output: the judge's same answer
    assert rep.summary["mean"]["desync_ms"] == pytest.approx(rep.summary["groundtruth"]["desync_ms"])
    with pytest.raises(Exception, match="has no sync encoder"):
        evaluate(EvalSettings(out=str(tmp_path / "bad"), **{**common, "desync": str(env.model)}))


def test_shift_test_counts_onsets_that_move_with_the_video(env, tmp_path, monkeypatch):
    from action2sound.evaluation import shift as shift_mod
    from action2sound.evaluation.clips import load_eval_clips
    from action2sound.pipeline import load_pipeline

    clips = load_eval_clips(env.bench, "test", limit=2)
    c = clips[0].clip
    episode = env.bench / "episodes" / f"{c.video_id}.mp4"
    late = shift_mod.delayed_clip(c, episode, 0.3, 1e9)
    assert late.media_start == pytest.approx(c.video_start - 0.3) and late.duration == pytest.approx(c.duration)
    assert shift_mod.delayed_clip(c, episode, c.video_start + 0.1, 1e9) is None  # would start before the episode

    # A "model" that ignores the picture follows no shift; one whose onset moves with the picture follows all.
    pipe = load_pipeline(env.model, device="cpu", index=env.index)
    calls = []

    def fake_onsets(wave, sr):
        return calls.pop(0)

    class Result:
        audio = np.zeros(66_150, np.float32)

    def ignoring(paths, options, conditions):
        assert len({id(x) for x in conditions}) == 1  # the same condition for every delay
        calls.extend(np.array([1.0]) for _ in paths)  # the same onset whatever the picture
        return [Result() for _ in paths]

    monkeypatch.setattr(pipe, "generate", ignoring)
    monkeypatch.setattr(shift_mod.bm, "detect_onsets", fake_onsets)
    still = shift_mod.shift_test(pipe, clips, env.bench, tmp_path / "cache", delays=(0.3,))
    assert still["eligible"] > 0 and still["followed"] == 0 and still["share"] == 0.0
    assert still["stayed"] == still["eligible"] and still["stay_share"] == 1.0  # every onset kept its time

    def following(paths, options, conditions):
        assert (options.ambient, options.sync_guidance, options.steps) == ("random", 2.5, 3)  # the run's settings
        for k, _ in enumerate(paths):
            calls.append(np.array([1.0 + (0.3 if k else 0.0)]))  # the delayed window's onset comes 0.3 s later
        return [Result() for _ in paths]

    monkeypatch.setattr(pipe, "generate", following)
    moved = shift_mod.shift_test(pipe, clips, env.bench, tmp_path / "cache", delays=(0.3,),
                                 options={"sync_guidance": 2.5, "steps": 3, "ambient": "quiet"})
    assert moved["share"] == 1.0 and moved["eligible"] == still["eligible"] and moved["stayed"] == 0


def test_an_evaluation_passes_only_the_settings_it_sets_to_generation():
    from action2sound.evaluation.runner import EvalSettings

    s = EvalSettings(model="m", data="d", out="o", steps=10, sync_guidance=3.0)
    assert s.generate_options() == {"steps": 10, "sync_guidance": 3.0}
    assert EvalSettings(model="m", data="d", out="o", audio_guidance=1.0).generate_options() == {"audio_guidance": 1.0}


def test_evaluate_runs_the_shift_test_once_and_keeps_it(env, tmp_path):
    from action2sound.evaluation.runner import EvalSettings, evaluate

    s = EvalSettings(model=str(env.model), data=str(env.bench), out=str(tmp_path / "run"), index=str(env.index),
                     steps=1, fad_embedder="none", device="cpu", progress=False, limit=1, shift_test=True)
    first = evaluate(s).summary
    saved = json.loads((tmp_path / "run" / "shift.json").read_text())
    assert first["shift_test"] == saved and saved["clips"] == 1 and set(saved["delays"]) == {"-0.5", "-0.3", "+0.3", "+0.5"}
    (tmp_path / "run" / "shift.json").write_text(json.dumps({**saved, "share": 0.25}))
    assert evaluate(s).summary["mean"]["shift_follow"] == 0.25  # reused, not recomputed
