"""Training machinery on the tiny preset (CPU): the CLI stages, learning on fixed batches, exact resume, data."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, default_collate

from action2sound import cli, media
from action2sound.config import preset
from action2sound.data.manifest import Clip, ClipTable
from action2sound.data.neighbours import Neighbours
from action2sound.data.store import ClipDataset, ClipEncoder, Store, preencode
from action2sound.errors import Action2SoundError
from action2sound.models.av import AVModel, retrieval_recall
from action2sound.models.vae import build_vae_from_preset
from action2sound.models.vocoder import mel_l1_loss
from action2sound.training import train
from action2sound.data.splits import load_clip_table, split_train_val
from action2sound.training.data import StoreDataset, StreamSampler, epoch_order
from action2sound.training.ldm import LDMStage

TINY = preset("tiny")

# ------------------------------------------------------------------------------------ shared, built once
_SHARED: dict[str, Path] = {}


def tiny_benchmark(tmp_path_factory) -> Path:
    """ONE small benchmark for the whole session (2 short episodes at 32 px), shared by the training tests."""
    if "bench" not in _SHARED:
        from action2sound.benchmark import build_benchmark

        root = tmp_path_factory.mktemp("bench")
        build_benchmark(root, episodes=2, seed=0, size=32, episode_seconds=(15.0, 20.0), progress=False)
        _SHARED["bench"] = root
    return _SHARED["bench"]


def tiny_store(tmp_path_factory) -> Path:
    """A store of every benchmark clip, encoded by freshly initialised tiny networks (seeded)."""
    if "store" not in _SHARED:
        bench = tiny_benchmark(tmp_path_factory)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            encoder = ClipEncoder(AVModel.from_preset(TINY), build_vae_from_preset(TINY), TINY)
        out = tmp_path_factory.mktemp("store") / "store"
        preencode(load_clip_table(bench / "all.tsv"), encoder, out, shard_size=3, batch_size=4, progress=False)
        _SHARED["store"] = out
    return _SHARED["store"]


@pytest.fixture(scope="session")
def bench(tmp_path_factory) -> Path:
    return tiny_benchmark(tmp_path_factory)




def _fit(module: L.LightningModule, batch: dict, steps: int) -> None:
    """Train a stage module on one fixed batch for `steps` batches, through its own training_step."""
    trainer = L.Trainer(max_steps=steps * module.optimizer_steps_per_batch, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, accelerator="cpu",
                        num_sanity_val_steps=0, limit_val_batches=0)
    trainer.fit(module, DataLoader([batch] * steps, batch_size=None))


def _clip_batch(bench: Path, n: int = 4, frames: bool = True) -> dict:
    table = load_clip_table(bench / "all.tsv")
    ds = ClipDataset(table, TINY, frames=frames)
    return default_collate([ds[i] for i in range(n)])


# ------------------------------------------------------------------------------------------- the CLI path
def test_every_stage_runs_from_the_cli(bench, tmp_path, capsys):
    run, store, model = tmp_path / "run", tmp_path / "store", tmp_path / "model"
    common = ["--preset", "tiny", "--out", str(run), "--quiet", "--checkpoint-every", "2"]
    # av on all.tsv: two long videos, so the last one is held out and R@k is reported.
    assert cli.main(["train", "av", "--data", str(bench / "all.tsv"), "--max-steps", "3", *common]) == 0
    assert cli.main(["train", "vae", "--data", str(bench), "--max-steps", "3", *common]) == 0
    assert cli.main(["train", "vocoder", "--data", str(bench), "--max-steps", "2", *common]) == 0
    assert cli.main(["preencode", "--data", str(bench), "--model", str(run), "--out", str(store),
                     "--shard-size", "2", "--quiet"]) == 0
    assert cli.main(["train", "ldm", "--data", str(store), "--max-steps", "3", "--sample-every", "3", *common]) == 0
    assert cli.main(["export", str(run), "--out", str(model)]) == 0

    for stage, steps in (("av", 3), ("vae", 3), ("vocoder", 2), ("ldm", 3)):
        summary = json.loads((run / stage / "summary.json").read_text())
        assert summary["steps"] == steps
        assert (run / stage / "weights.safetensors").is_file()
        assert (run / stage / "checkpoints" / "last.ckpt").is_file()
        logged = (run / stage / "logs" / "version_0" / "metrics.csv").read_text().splitlines()
        assert logged[0].split(",").count("train/loss") == 1 and len(logged) > 1
    av = json.loads((run / "av" / "summary.json").read_text())
    assert {"val/R@1", "val/R@5", "val/R@10"} <= set(av["metrics"]) and av["val_clips"] == 4
    assert 0.0 < av["metrics"]["val/R@1"] <= av["metrics"]["val/R@5"] <= 1.0
    assert json.loads((run / "vae" / "summary.json").read_text())["scaling_factor"] > 0
    # The run's VAE encoded the store, so the samples are decoded mels (PNG) and Griffin-Lim sounds (WAV).
    samples = sorted(p.name for p in (run / "ldm" / "samples").iterdir())
    assert samples == ["step00000003.png"] + [f"step00000003_{k}.wav" for k in range(4)]
    # Checkpoints every 2 batches, plus the end.
    assert sorted(p.name for p in (run / "ldm" / "checkpoints").glob("step*.ckpt")) == [
        "step00000002.ckpt", "step00000003.ckpt"]
    assert Store(store).num_clips == len(load_clip_table(bench))
    assert {p.name for p in model.iterdir()} >= {"model.json", "av.safetensors", "vae.safetensors",
                                                   "ldm.safetensors", "vocoder.safetensors", "vocoder.json"}


def test_cli_rejects_bad_input(bench, tmp_path, capsys):
    assert cli.main(["train", "ldm", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "r"),
                     "--quiet"]) == 2
    assert "not a store" in capsys.readouterr().err
    assert cli.main(["train", "vae", "--data", str(bench), "--out", str(tmp_path / "r"), "--quiet",
                     "--set", "vae.nonsense=1"]) == 2
    assert "unknown key 'nonsense'" in capsys.readouterr().err
    assert cli.main(["train", "vae", "--data", str(bench), "--out", str(tmp_path / "r"), "--resume"]) == 2
    assert "nothing to resume" in capsys.readouterr().err


# --------------------------------------------------------------------------------- learning, not just running
def test_av_learns_to_rank_matched_pairs_first(bench):
    from action2sound.training.av import AVStage

    # All 8 clips of both episodes: 4 per long video, so most negatives share the positive's ambient.
    batch = _clip_batch(bench, 8)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        module = AVStage(TINY, dataclasses.replace(TINY.train.av, lr=3e-4), train_size=8)
    with torch.no_grad():
        v, a = module.embed(batch)
        before, r1_before = float(module.compute_loss(batch)), retrieval_recall(v, a, (1,))[1]
    _fit(module, batch, 200)
    with torch.no_grad():
        v, a = module.embed(batch)
        after = float(module.compute_loss(batch))
    assert after < 0.25 * before
    assert r1_before < 0.5
    assert retrieval_recall(v, a, (1,))[1] == 1.0  # every video's own audio ranks first


def test_vae_reconstruction_improves(bench):
    from action2sound.training.vae import VAEStage

    batch = _clip_batch(bench, 4, frames=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        module = VAEStage(TINY, dataclasses.replace(TINY.train.vae, lr=3e-3), train_size=4)
    real = batch["mel"][..., : TINY.audio.num_frames]
    before = float((module.reconstruct(batch["mel"]) - real).abs().mean())
    _fit(module, batch, 40)
    after = float((module.reconstruct(batch["mel"]) - real).abs().mean())
    assert after < 0.6 * before


def test_vocoder_mel_loss_falls(bench):
    from action2sound.training.vocoder import VocoderStage

    batch = _clip_batch(bench, 2, frames=False)
    batch["wave"] = batch["wave"][:, :8192]  # the stage crops segment_samples (4096) at random from these
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        module = VocoderStage(TINY, dataclasses.replace(TINY.train.vocoder, lr=2e-3), train_size=2)
    wave = batch["wave"]
    with torch.no_grad():
        before = float(mel_l1_loss(module.log_mel, module.generate(wave), wave))
    _fit(module, batch, 12)
    with torch.no_grad():
        after = float(mel_l1_loss(module.log_mel, module.generate(wave), wave))
    assert after < 0.8 * before


def test_ldm_loss_falls_on_a_fixed_batch(tmp_path_factory):
    store = Store(tiny_store(tmp_path_factory))
    ds = StoreDataset(store, np.arange(4), neighbours_k=4)
    batch = default_collate([ds[(k, 0)] for k in range(4)])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        module = LDMStage(TINY, dataclasses.replace(TINY.train.ldm, warmup_steps=1, lr=2e-3), train_size=4)

    def fixed_loss() -> float:
        # Average over several fixed draws of t and noise: one draw is too noisy to compare.
        with torch.no_grad():
            return float(np.mean([float(module.compute_loss(batch, torch.Generator().manual_seed(s)))
                                  for s in range(8)]))

    before = fixed_loss()
    _fit(module, batch, 40)
    assert fixed_loss() < 0.7 * before


def test_missing_neighbour_gets_the_audio_null_used_for_guidance():
    # With random dropout off, forcing the audio null (no neighbour) must equal giving no audio condition at
    # all, which is exactly the null that `guidance_contexts` uses at sampling.
    p = dataclasses.replace(TINY, diffusion=dataclasses.replace(TINY.diffusion, p_drop_video=0.0, p_drop_audio=0.0))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = LDMStage(p, p.train.ldm).model
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn((3, *p.latent_shape), generator=g)
    cond = torch.randn((3, *p.latent_shape), generator=g)
    video = torch.randn((3, p.video.num_frames, p.av.video_hidden), generator=g)
    missing = torch.tensor([True, True, True])
    with torch.no_grad():
        forced = model.loss(x0, video, cond, torch.Generator().manual_seed(1), audio_missing=missing)
        none = model.loss(x0, video, None, torch.Generator().manual_seed(1))
        given = model.loss(x0, video, cond, torch.Generator().manual_seed(1), audio_missing=~missing)
        _, _, null_audio = model.guidance_contexts(video, cond)
    assert float(forced) == float(none)
    assert float(given) != float(none)
    assert torch.equal(null_audio[:, p.video.num_frames:], model.conditioner.null_audio.expand(3, -1, -1))


# -------------------------------------------------------------------------------------------- exact resume
def _ckpt(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)


def test_resume_continues_exactly_and_ldm_never_decodes_video(tmp_path_factory, tmp_path, monkeypatch):
    def no_decoding(*args, **kwargs):
        raise AssertionError("the ldm stage decoded media")

    store = tiny_store(tmp_path_factory)  # pre-encoding decodes, of course; the ldm stage below must not
    monkeypatch.setattr(media, "read_frames", no_decoding)
    monkeypatch.setattr(media, "read_audio", no_decoding)
    args = dict(preset="tiny", data=store, max_steps=6, checkpoint_every=3, progress=False,
                overrides=["train.ldm.batch_size=2", "train.ldm.warmup_steps=4"])
    full = train("ldm", out=tmp_path / "full", **args)
    assert full.steps == 6

    # A run killed after its step-3 checkpoint: only that checkpoint (as last.ckpt) and the config survive.
    cut = tmp_path / "cut" / "ldm"
    (cut / "checkpoints").mkdir(parents=True)
    shutil.copyfile(tmp_path / "full" / "ldm" / "checkpoints" / "step00000003.ckpt", cut / "checkpoints" / "last.ckpt")
    shutil.copyfile(tmp_path / "full" / "ldm" / "config.json", cut / "config.json")
    resumed = train("ldm", out=tmp_path / "cut", resume=True, **args)
    assert resumed.steps == 6

    a = _ckpt(tmp_path / "full" / "ldm" / "checkpoints" / "last.ckpt")
    b = _ckpt(cut / "checkpoints" / "last.ckpt")
    assert a["global_step"] == b["global_step"] == 6 and a["a2s_batches_seen"] == b["a2s_batches_seen"] == 6
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for k in a["state_dict"]:
        assert torch.equal(a["state_dict"][k], b["state_dict"][k]), k
    opt_a, opt_b = a["optimizer_states"][0], b["optimizer_states"][0]
    for pid, state in opt_a["state"].items():
        for name, value in state.items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(opt_b["state"][pid][name])), (pid, name)
    assert a["lr_schedulers"][0]["last_epoch"] == b["lr_schedulers"][0]["last_epoch"] == 6
    ema_a, ema_b = a["callbacks"]["EMA[model]"], b["callbacks"]["EMA[model]"]
    assert ema_a["updates"] == ema_b["updates"] == 6
    for k in ema_a["shadow"]:
        assert torch.equal(ema_a["shadow"][k], ema_b["shadow"][k]), k
    # ... and the EMA weights are what the stage exports.
    from action2sound.weights import read_weights

    exported, _ = read_weights(cut / "weights.safetensors", "ldm")
    for k, v in ema_b["shadow"].items():
        assert torch.equal(exported[k], v), k


# ------------------------------------------------------------------------------------------------ the data
def test_stream_resumes_mid_epoch_and_splits_ranks():
    n, b, total = 7, 3, 9
    whole = list(StreamSampler(n, b, total, seed=5))
    assert list(StreamSampler(n, b, total, seed=5, start_batch=4)) == whole[4 * b:]
    # Every data epoch is one permutation of the training set.
    for e in range(len(whole) // n):
        epoch = [i for i, ep in whole if ep == e]
        assert sorted(epoch) == list(range(n)) and epoch == list(epoch_order(n, 5, e))
    # Two ranks: batch k of rank r is slice r of the global batch k of a world-size-1 stream of batch 2b.
    global_stream = list(StreamSampler(n, 2 * b, total, seed=5))
    r0 = list(StreamSampler(n, b, total, seed=5, rank=0, world=2))
    r1 = list(StreamSampler(n, b, total, seed=5, rank=1, world=2))
    for k in range(total):
        assert r0[k * b:(k + 1) * b] + r1[k * b:(k + 1) * b] == global_stream[k * 2 * b:(k + 1) * 2 * b]


def test_epoch_order_groups_clips_of_one_video():
    groups = np.array([0, 0, 0, 0, 1, 1, 1, 1, 2, 2])
    order = epoch_order(len(groups), seed=1, epoch=0, groups=groups, group_size=2)
    assert sorted(order) == list(range(10))
    pairs = order.reshape(5, 2)
    assert all(groups[x] == groups[y] for x, y in pairs)


def test_store_dataset_neighbours_follow_the_manifest_rules(tmp_path_factory):
    store = Store(tiny_store(tmp_path_factory))
    table = store.table
    nb = Neighbours(table, k=10, seed=3)
    ds = StoreDataset(store, neighbours_k=10, seed=3)
    for epoch in range(3):
        for i in range(len(table)):
            item = ds[(i, epoch)]
            j = nb.choose(i, epoch)
            assert item["has_cond"] == (j is not None)
            if j is not None:
                assert table[j].video_id == table[i].video_id and j != i
                assert table[j].video_end <= table[i].video_start or table[j].video_start >= table[i].video_end
                assert np.array_equal(item["cond_mean"], store.get("latent_mean", j))
            else:
                assert not item["cond_mean"].any()
    # A clip alone in its video has no neighbour: it trains with the audio null.
    lone = ClipTable([Clip("a", "v1", "x.mp4", 0.0, 3.0, 0.0, 3.0), Clip("b", "v2", "y.mp4", 0.0, 3.0, 0.0, 3.0)])
    assert Neighbours(lone, k=2).choose(0, 0) is None


def test_split_train_val_holds_out_a_whole_video(bench):
    train_t, val_t = split_train_val(load_clip_table(bench / "all.tsv"))
    assert len(val_t) and len(train_t)
    assert set(train_t.video_ids()).isdisjoint(val_t.video_ids())
    with pytest.raises(Action2SoundError, match="neither a clip table"):
        bad = bench / "bad.tsv"
        bad.write_text("a\tb\n1\t2\n")
        load_clip_table(bad)


def test_warmup_then_constant_learning_rate():
    from action2sound.training.base import StageModule

    cfg = dataclasses.replace(TINY.train.ldm, warmup_steps=4, lr_decay=1.0)
    m = StageModule(TINY, cfg, train_size=16)
    assert [m.lr_factor(s) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    decayed = StageModule(TINY, dataclasses.replace(cfg, warmup_steps=0, lr_decay=0.5, batch_size=8), train_size=16)
    assert [decayed.lr_factor(s) for s in range(5)] == [1.0, 1.0, 0.5, 0.5, 0.25]
