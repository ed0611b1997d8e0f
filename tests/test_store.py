"""The pre-encoded store: contents, restart after a kill, ranks sharing the shards, refusing a mismatch."""

from __future__ import annotations

import dataclasses
import shutil

import numpy as np
import pytest
import torch
from test_training import TINY, tiny_benchmark  # the session's one small benchmark
from torch.utils.data import default_collate

from action2sound.data.store import ClipDataset, ClipEncoder, Store, preencode
from action2sound.errors import Action2SoundError
from action2sound.models.av import AVModel
from action2sound.models.vae import build_vae_from_preset
from action2sound.levels import ambient_level_db
from action2sound.data.splits import load_clip_table

FIELDS = {"video_tokens": ((4, 32), np.float16), "video_emb": ((32,), np.float32), "audio_emb": ((32,), np.float32),
          "latent_mean": (TINY.latent_shape, np.float32), "latent_std": (TINY.latent_shape, np.float32),
          "ambient_db": ((), np.float32)}




@pytest.fixture(scope="module")
def table(tmp_path_factory):
    return load_clip_table(tiny_benchmark(tmp_path_factory) / "all.tsv")  # 8 clips of 2 long videos


@pytest.fixture(scope="module")
def encoder():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return ClipEncoder(AVModel.from_preset(TINY), build_vae_from_preset(TINY), TINY, source={"av": "a", "vae": "v"})


class Counting:
    """An encoder that counts the clips it encodes and can die after a number of calls (a simulated kill)."""

    def __init__(self, inner: ClipEncoder, die_after_calls: int | None = None):
        self.inner, self.die_after_calls = inner, die_after_calls
        self.fields, self.preset, self.source = inner.fields, inner.preset, inner.source
        self.calls = self.clips = 0

    def __call__(self, batch):
        if self.die_after_calls is not None and self.calls >= self.die_after_calls:
            raise KeyboardInterrupt  # what Ctrl-C or a scheduler's kill looks like from inside
        self.calls += 1
        self.clips += len(batch["index"])
        return self.inner(batch)


def _columns(path) -> dict[str, np.ndarray]:
    store = Store(path)
    return {name: store.column(name) for name in store.fields}


def _assert_same(a: dict, b: dict) -> None:
    for name in FIELDS:
        # Different batch compositions may round differently in the last bit; nothing more.
        np.testing.assert_allclose(a[name].astype(np.float64), b[name].astype(np.float64), rtol=1e-5, atol=1e-5,
                                   err_msg=name)


def test_store_holds_what_the_networks_compute(tmp_path, table, encoder):
    report = preencode(table, encoder, tmp_path / "s", shard_size=3, batch_size=2, progress=False)
    assert (report.num_clips, report.shards_total, report.shards_written, report.clips_encoded) == (8, 3, 3, 8)
    store = Store(tmp_path / "s")
    assert [c.clip_id for c in store.table] == [c.clip_id for c in table]
    for name, (shape, dtype) in FIELDS.items():
        col = store.column(name)
        assert col.shape == (8, *shape) and col.dtype == dtype, name
    assert [np.load(tmp_path / "s" / "shards" / f"{s:06d}" / "latent_mean.npy").shape[0] for s in range(3)] == [3, 3, 2]

    decoded = default_collate([ClipDataset(table, TINY)[i] for i in range(8)])
    direct = encoder(decoded)
    np.testing.assert_allclose(store.column("video_tokens").astype(np.float32),
                               direct["video_tokens"].astype(np.float16).astype(np.float32), atol=2e-3)
    for name in ("video_emb", "audio_emb", "latent_mean", "latent_std"):
        np.testing.assert_allclose(store.column(name), direct[name], rtol=1e-5, atol=1e-6, err_msg=name)
    for i in range(8):
        assert store.get("ambient_db", i) == np.float32(ambient_level_db(decoded["wave"][i].numpy(), 22050, 0.5))
    np.testing.assert_allclose(np.linalg.norm(store.column("video_emb"), axis=1), 1.0, rtol=1e-5)
    row = store.row(5)
    assert set(row) == set(FIELDS) and np.array_equal(row["latent_std"], store.column("latent_std")[5])


def test_store_restarts_after_a_kill_without_redoing_finished_shards(tmp_path, table, encoder):
    reference = tmp_path / "reference"
    preencode(table, encoder, reference, shard_size=3, batch_size=2, progress=False)

    out = tmp_path / "killed"
    dying = Counting(encoder, die_after_calls=2)  # batches [0,1] [2,3] -> shard 0 done, then killed
    with pytest.raises(KeyboardInterrupt):
        preencode(table, dying, out, shard_size=3, batch_size=2, progress=False)
    assert sorted(p.name for p in (out / "shards").iterdir() if not p.name.startswith(".")) == ["000000"]
    with pytest.raises(Action2SoundError, match="incomplete: 2 of 3 shards missing .first 000001."):
        Store(out)
    # A shard half-written when the process died is stale and rewritten.
    (out / "shards" / ".000001.partial-99999").mkdir()

    again = Counting(encoder)
    report = preencode(table, again, out, shard_size=3, batch_size=2, progress=False)
    assert (report.shards_done_before, report.shards_written, report.clips_encoded) == (1, 2, 5)
    assert again.clips == 5  # clips 3..7: shard 0 was not redone
    assert not any(p.name.startswith(".") for p in (out / "shards").iterdir())
    _assert_same(_columns(out), _columns(reference))

    # Nothing left to do: a third run encodes nothing.
    idle = Counting(encoder)
    assert preencode(table, idle, out, shard_size=3, batch_size=2, progress=False).clips_encoded == 0
    assert idle.clips == 0

    # A lost shard (deleted) is redone alone.
    shutil.rmtree(out / "shards" / "000002")
    redo = Counting(encoder)
    preencode(table, redo, out, shard_size=3, batch_size=2, progress=False)
    assert redo.clips == 2
    _assert_same(_columns(out), _columns(reference))


def test_ranks_share_the_shards(tmp_path, table, encoder):
    out = tmp_path / "s"
    r0 = preencode(table, Counting(encoder), out, shard_size=2, batch_size=2, rank=0, world=3, progress=False)
    r1 = preencode(table, Counting(encoder), out, shard_size=2, batch_size=2, rank=1, world=3, progress=False)
    with pytest.raises(Action2SoundError, match="incomplete"):
        Store(out)
    r2 = preencode(table, Counting(encoder), out, shard_size=2, batch_size=2, rank=2, world=3, progress=False)
    # 4 shards: rank 0 writes 0 and 3, rank 1 writes 1, rank 2 writes 2.
    assert (r0.shards_written, r1.shards_written, r2.shards_written) == (2, 1, 1)
    single = tmp_path / "single"
    preencode(table, encoder, single, shard_size=2, batch_size=2, progress=False)
    _assert_same(_columns(out), _columns(single))
    with pytest.raises(Action2SoundError, match="rank 3 is outside the world of 3"):
        preencode(table, encoder, out, shard_size=2, rank=3, world=3, progress=False)


def test_store_refuses_other_clips_or_networks(tmp_path, table, encoder):
    out = tmp_path / "s"
    preencode(table, encoder, out, shard_size=4, batch_size=4, progress=False)
    with pytest.raises(Action2SoundError, match="another shard size"):
        preencode(table, encoder, out, shard_size=3, progress=False)
    with pytest.raises(Action2SoundError, match="another clip table"):
        preencode(table[:6], encoder, out, shard_size=4, progress=False)
    other = ClipEncoder(encoder.av, encoder.vae, TINY, source={"av": "b", "vae": "v"})
    with pytest.raises(Action2SoundError, match="another network weights"):
        preencode(table, other, out, shard_size=4, progress=False)
    with pytest.raises(Action2SoundError, match="not a store"):
        Store(tmp_path)


def test_a_sync_encoder_adds_sync_features_from_the_clips_dense_frames(tmp_path, table, encoder):
    from action2sound import media
    from action2sound.data.store import decode_clip, store_fields
    from action2sound.models.sync_stream import SyncEncoder, sync_frame_times
    from action2sound.training.data import StoreDataset

    assert TINY.sync_stream.enabled
    assert "sync_features" not in encoder.fields  # no sync encoder: no sync field
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        sync_enc = SyncEncoder(TINY).eval()
    with_sync = ClipEncoder(encoder.av, encoder.vae, TINY, source={"av": "a", "vae": "v", "sync_encoder": "s"},
                            sync_encoder=sync_enc)
    w, d = TINY.latent_shape[2], TINY.sync_stream.feature_dim
    assert with_sync.fields["sync_features"] == ((w, d), "float16") == store_fields(TINY)["sync_features"]
    preencode(table, with_sync, tmp_path / "s", shard_size=3, batch_size=4, progress=False)
    store = Store(tmp_path / "s")
    assert store.column("sync_features").shape == (8, w, d)

    clip = table[2]
    frames = decode_clip(clip, TINY, frames=False, audio=False, sync=True)["sync_frames"]
    expected = media.read_frames_at(clip.media_path, clip.media_start + sync_frame_times(TINY),
                                    size=TINY.sync_stream.size, resize=TINY.video.resize)
    np.testing.assert_array_equal(frames, expected)
    with torch.no_grad():
        direct = sync_enc.video_features(torch.from_numpy(frames)[None])[0].numpy()
    np.testing.assert_allclose(store.get("sync_features", 2).astype(np.float32), direct, atol=2e-3, rtol=2e-3)
    assert np.abs(direct).max() > 0  # a random encoder's features are not all zero

    item = StoreDataset(store, audio=False)[(2, 0)]
    assert item["sync_features"].dtype == np.float32 and item["sync_features"].shape == (w, d)

    # The ldm stage feeds the stored features to the loss (and its samples), from the store alone.
    from action2sound.training.ldm import LDMStage

    nodrop = dataclasses.replace(TINY, diffusion=dataclasses.replace(TINY.diffusion, p_drop_video=0.0))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        stage = LDMStage(nodrop, nodrop.train.ldm)
    with torch.no_grad():
        for q in stage.model.parameters():
            q.add_(0.01)  # as if trained: the stream's zero-initialised input weights now matter
    batch = default_collate([StoreDataset(store, audio=False)[(k, 0)] for k in range(3)])
    without = {k: v for k, v in batch.items() if k != "sync_features"}
    with torch.no_grad():
        fed = float(stage.compute_loss(batch, torch.Generator().manual_seed(0)))
        null = float(stage.compute_loss(without, torch.Generator().manual_seed(0)))
        assert fed != null
        z = stage.generate(batch, torch.Generator().manual_seed(0), steps=2)
        z0 = stage.generate(without, torch.Generator().manual_seed(0), steps=2)
    assert z.shape == (3, *TINY.latent_shape) and not torch.equal(z, z0)
    with pytest.raises(Action2SoundError, match="sync stream is off"):
        off = dataclasses.replace(TINY, sync_stream=dataclasses.replace(TINY.sync_stream, enabled=False))
        ClipEncoder(encoder.av, encoder.vae, off, sync_encoder=sync_enc)
