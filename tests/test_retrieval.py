import json

import numpy as np
import pytest

from action2sound.errors import Action2SoundError
from action2sound.levels import ambient_level_db
from action2sound.retrieval import (
    AudioIndex, IndexMeta, Hit, IndexEntry, default_nlist,
)

KINDS = ("exact", "ivf", "hnsw")


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _table(video_of, ambient=None):
    n = len(video_of)
    ambient = np.linspace(-60.0, -10.0, n) if ambient is None else ambient
    return IndexMeta(
        clip_id=[f"clip{i:04d}" for i in range(n)], video_id=[f"vid{v:03d}" for v in video_of],
        media_path=[f"vid{v:03d}.mp4" for v in video_of], media_start=np.arange(n) * 3.0,
        media_end=np.arange(n) * 3.0 + 3.0, ambient_db=ambient,
    )


def _clustered(rng, n_videos, per_video, dim, spread):
    """Clips grouped by long video: each video a random direction, its clips scattered around it."""
    centres = _unit(rng.standard_normal((n_videos, dim)))
    video_of = np.repeat(np.arange(n_videos), per_video)
    video = _unit(centres[video_of] + spread * rng.standard_normal((len(video_of), dim)))
    audio = _unit(video + 0.5 * spread * rng.standard_normal(video.shape))
    return audio.astype(np.float32), video.astype(np.float32), video_of


def _brute(db, q, k, allowed):
    s = _unit(db[allowed]) @ _unit(q)
    order = np.argsort(-s, kind="stable")[:k]
    return allowed[order], s[order]


@pytest.fixture(scope="module")
def onehot():
    # 40 clips in 10 videos, each clip's audio and video near its own basis vector: clip j is the only right
    # answer for a query near e_j.
    rng = np.random.default_rng(0)
    n, dim = 40, 64
    basis = np.eye(n, dim)
    audio = basis + 0.05 * rng.standard_normal((n, dim))
    video = basis + 0.05 * rng.standard_normal((n, dim))
    return audio.astype(np.float32), video.astype(np.float32), np.arange(n) // 4


@pytest.fixture(scope="module")
def clustered():
    rng = np.random.default_rng(1)
    audio, video, video_of = _clustered(rng, n_videos=40, per_video=50, dim=32, spread=0.15)
    return audio, video, video_of


@pytest.fixture(scope="module")
def narrow(clustered):
    # Deliberately narrow approximate searches (IVF cells hold ~50 clips, about one video each), built once.
    audio, video, video_of = clustered
    return {kind: AudioIndex.build(audio, video, _table(video_of), kind=kind, nlist=40, nprobe=1, ef_search=8,
                                   seed=0) for kind in KINDS}


def test_cross_modal_video_query_finds_the_clip_in_audio_space(onehot):
    audio, video, video_of = onehot
    index = AudioIndex.build(audio, video, _table(video_of))
    rng = np.random.default_rng(5)
    queries = video + 0.03 * rng.standard_normal(video.shape).astype(np.float32)  # perturbed copies of clip j
    hits = index.query(queries, k=1, space="audio")
    assert [h[0].index for h in hits] == list(range(len(audio)))
    assert hits[7][0] == Hit(7, "clip0007", "vid001", hits[7][0].score)
    # Scores are cosines and the order is the brute-force order.
    top3 = index.query(queries[11], k=3)[0]
    want_rows, want_scores = _brute(audio, queries[11], 3, np.arange(len(audio)))
    assert [h.index for h in top3] == want_rows.tolist()
    np.testing.assert_allclose([h.score for h in top3], want_scores, atol=1e-5)


def test_video_space_and_missing_video_space(onehot):
    audio, video, video_of = onehot
    both = AudioIndex.build(audio, video, _table(video_of))
    assert both.query(video[3] * 5.0, k=1, space="video")[0][0].index == 3  # scale-free: cosine
    audio_only = AudioIndex.build(audio, None, _table(video_of))
    with pytest.raises(Action2SoundError, match="no video embeddings"):
        audio_only.query(video[3], space="video")


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("k", (5, 120))
def test_excluding_own_video_returns_k_others(clustered, narrow, kind, k):
    audio, video, video_of = clustered
    table = _table(video_of)
    # k=120 others cannot be found in the first narrow IVF cells probed, so the search must widen.
    index = narrow[kind]
    rng = np.random.default_rng(2)
    picks = rng.choice(len(audio), size=20, replace=False)
    own = [table.video_id[j] for j in picks]
    got = index.query(video[picks], k=k, exclude_video_ids=own)
    plain = index.query(video[picks], k=5)
    for j, hits, hits_plain in zip(picks, got, plain):
        assert len(hits) == k
        assert all(h.video_id != table.video_id[j] for h in hits)
        # Without exclusion the own video fills the top: the test really exercises the deeper search.
        assert all(h.video_id == table.video_id[j] for h in hits_plain)
        allowed = np.flatnonzero(video_of != video_of[j])
        want_rows, _ = _brute(audio, video[j], k, allowed)
        if kind == "exact":
            assert [h.index for h in hits] == want_rows.tolist()
        else:
            assert hits[0].index == want_rows[0]
        scores = [h.score for h in hits]
        assert scores == sorted(scores, reverse=True)


def test_exclusion_is_per_query_and_unknown_videos_exclude_nothing(onehot):
    audio, video, video_of = onehot
    index = AudioIndex.build(audio, video, _table(video_of))
    hits = index.query(video[[0, 0, 0]], k=2, exclude_video_ids=[None, "vid000", "not-in-index"])
    assert [h.index for h in hits[0]][0] == 0
    assert hits[1][0].video_id != "vid000" and len(hits[1]) == 2
    assert [h.index for h in hits[2]] == [h.index for h in hits[0]]


def test_bad_queries_give_clear_errors(onehot):
    audio, video, video_of = onehot
    index = AudioIndex.build(audio, video, _table(video_of))
    with pytest.raises(Action2SoundError, match="dimension 8 .* 64-d"):
        index.query(np.ones((1, 8)))
    with pytest.raises(Action2SoundError, match="only 36 are eligible"):
        index.query(video[0], k=37, exclude_video_ids=["vid000"])
    assert len(index.query(video[0], k=36, exclude_video_ids=["vid000"])[0]) == 36
    with pytest.raises(Action2SoundError, match="one entry .* per query"):
        index.query(video[:2], exclude_video_ids=["vid000"])
    with pytest.raises(Action2SoundError, match="all-zero row"):
        index.query(np.zeros(64))
    with pytest.raises(Action2SoundError, match="metadata rows"):
        AudioIndex.build(audio[:5], None, _table(video_of))


@pytest.mark.parametrize("kind", KINDS)
def test_save_load_round_trip_gives_identical_results(tmp_path, clustered, kind):
    audio, video, video_of = clustered
    table = _table(video_of)
    index = AudioIndex.build(audio, video, table, kind=kind, nlist=20, model_hash="abc123", seed=3)
    folder = index.save(tmp_path / "idx")
    loaded = AudioIndex.load(folder, expect_model_hash="abc123")
    info = json.loads((folder / "index.json").read_text())
    assert (info["kind"], info["dim"], info["count"], info["model_hash"]) == (kind, 32, 2000, "abc123")
    assert loaded.kind == kind and loaded.has_video and len(loaded) == len(index)
    assert loaded.settings == index.settings
    for i in (0, 777, 1999):
        assert loaded.meta.entry(i) == table.entry(i)
    q = video[::97] + 0.01
    excl = [table.video_id[i] for i in range(0, 2000, 97)]
    for space in ("audio", "video"):
        assert loaded.query(q, k=4, exclude_video_ids=excl, space=space) == \
            index.query(q, k=4, exclude_video_ids=excl, space=space)
    assert loaded.quiet(q, k=2, quantile=0.2) == index.quiet(q, k=2, quantile=0.2)


def test_metadata_round_trip_keeps_unicode_and_floats(tmp_path):
    entries = [
        IndexEntry("a\tb", "vidé", "dir/ünïcode clip.mp4", 0.1, 3.1, -41.25),
        IndexEntry("c", "vidé", "", 12.345678901234, 15.0, -120.0),
    ]
    table = IndexMeta.from_entries(entries)
    table.save(tmp_path / "clips.npz")
    back = IndexMeta.load(tmp_path / "clips.npz")
    assert [back.entry(i) for i in range(2)] == entries
    with pytest.raises(Action2SoundError, match="not unique"):
        IndexMeta.from_entries(entries + [entries[0]])
    with pytest.raises(Action2SoundError, match="NaN or inf"):
        IndexMeta.from_entries([IndexEntry("x", "v", "p", 0.0, 1.0, float("nan"))])


@pytest.mark.parametrize("kind", ("ivf", "hnsw"))
def test_approximate_indexes_agree_with_exact(clustered, narrow, kind):
    audio, video, video_of = clustered
    exact = narrow["exact"]
    approx = narrow[kind].with_search(nprobe=4, ef_search=32)
    rng = np.random.default_rng(4)
    q = _unit(video[rng.choice(len(video), 200, replace=False)] + 0.1 * rng.standard_normal((200, 32)))
    want = [h[0].index for h in exact.query(q)]
    got = [h[0].index for h in approx.query(q)]
    recall_at_1 = np.mean(np.array(want) == np.array(got))
    assert recall_at_1 >= 0.95, recall_at_1


def test_quiet_picks_the_visually_closest_low_ambient_clip():
    rng = np.random.default_rng(6)
    audio, video, video_of = _clustered(rng, n_videos=10, per_video=20, dim=16, spread=0.3)
    ambient = rng.uniform(-70, -10, len(audio))
    index = AudioIndex.build(audio, video, _table(video_of, ambient))
    quiet_rows = np.argsort(ambient)[:20]  # quantile 0.1 of 200 clips
    assert sorted(index.quiet_rows(0.1).tolist()) == sorted(quiet_rows.tolist())
    loud = np.setdiff1d(np.arange(200), quiet_rows)
    for j in loud[:10]:  # a loud clip's own video embedding: plain search would return the clip itself
        assert index.query(video[j], space="video")[0][0].index == j
        hits = index.quiet(video[j], k=3, quantile=0.1)[0]
        want_rows, want_scores = _brute(video, video[j], 3, quiet_rows)
        assert [h.index for h in hits] == want_rows.tolist()
        np.testing.assert_allclose([h.score for h in hits], want_scores, atol=1e-5)
    # Excluding the query's video still picks among quiet clips of other videos.
    j = int(quiet_rows[0])
    own = f"vid{video_of[j]:03d}"
    hits = index.quiet(video[j], k=2, quantile=0.1, exclude_video_ids=[own])[0]
    allowed = quiet_rows[video_of[quiet_rows] != video_of[j]]
    assert [h.index for h in hits] == _brute(video, video[j], 2, allowed)[0].tolist()
    # Without video embeddings "visually closest" falls back to the cross-modal audio space.
    audio_only = AudioIndex.build(audio, None, _table(video_of, ambient))
    hits = audio_only.quiet(video[loud[0]], k=1, quantile=0.1)[0]
    assert hits[0].index == _brute(audio, video[loud[0]], 1, quiet_rows)[0][0]
    with pytest.raises(Action2SoundError, match="quantile"):
        index.quiet(video[0], quantile=0.0)


def _saved(tmp_path, onehot, name="idx"):
    audio, video, video_of = onehot
    return AudioIndex.build(audio, video, _table(video_of), model_hash="m1").save(tmp_path / name)


def test_load_names_the_folder_when_files_are_missing_or_mismatched(tmp_path, onehot):
    with pytest.raises(Action2SoundError, match="nowhere.*does not exist"):
        AudioIndex.load(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(Action2SoundError, match="empty has no index.json"):
        AudioIndex.load(tmp_path / "empty")

    folder = _saved(tmp_path, onehot, "a")
    with pytest.raises(Action2SoundError, match="built with model m1, not m2"):
        AudioIndex.load(folder, expect_model_hash="m2")
    (folder / "video.faiss").unlink()
    with pytest.raises(Action2SoundError, match="a is missing video.faiss"):
        AudioIndex.load(folder)

    folder = _saved(tmp_path, onehot, "b")
    (folder / "audio.faiss").write_bytes(b"not a faiss index")
    with pytest.raises(Action2SoundError, match="audio.faiss is not a readable faiss index"):
        AudioIndex.load(folder)

    # clips.npz from a smaller build: counts disagree.
    folder = _saved(tmp_path, onehot, "c")
    audio, video, video_of = onehot
    AudioIndex.build(audio[:8], None, _table(video_of[:8])).save(tmp_path / "small")
    (folder / "clips.npz").write_bytes((tmp_path / "small" / "clips.npz").read_bytes())
    with pytest.raises(Action2SoundError, match="clips.npz has 8 clips but the index has 40"):
        AudioIndex.load(folder)

    # A faiss file from a different kind of build.
    folder = _saved(tmp_path, onehot, "d")
    AudioIndex.build(audio, video, _table(video_of), kind="hnsw").save(tmp_path / "h")
    (folder / "audio.faiss").write_bytes((tmp_path / "h" / "audio.faiss").read_bytes())
    with pytest.raises(Action2SoundError, match=r"d/audio.faiss holds 40 64-d vectors \(hnsw\)"):
        AudioIndex.load(folder)

    folder = _saved(tmp_path, onehot, "e")
    (folder / "index.json").write_text("{ broken")
    with pytest.raises(Action2SoundError, match="index.json is damaged"):
        AudioIndex.load(folder)


def test_saving_over_an_index_replaces_it(tmp_path, onehot):
    audio, video, video_of = onehot
    folder = AudioIndex.build(audio, video, _table(video_of)).save(tmp_path / "idx")
    AudioIndex.build(audio, None, _table(video_of), kind="ivf", nlist=1).save(folder)
    loaded = AudioIndex.load(folder)
    assert loaded.kind == "ivf" and not loaded.has_video and not (folder / "video.faiss").exists()


def test_ambient_level_is_the_quietest_half_second():
    sr = 16000
    rng = np.random.default_rng(7)
    wave = 0.5 * rng.standard_normal(3 * sr)
    t = np.arange(sr // 2) / sr
    wave[sr:sr + sr // 2] = 0.1 * np.sin(2 * np.pi * 440 * t)  # mean square 0.005 -> -23.01 dB
    assert ambient_level_db(wave, sr) == pytest.approx(10 * np.log10(0.005), abs=0.01)
    assert ambient_level_db(np.zeros(sr), sr) == -120.0
    assert ambient_level_db(np.full(100, 0.5), sr) == pytest.approx(10 * np.log10(0.25))  # shorter than window


def test_default_nlist():
    assert default_nlist(1_000_000) == 4000
    assert default_nlist(100) == 2 and default_nlist(10) == 1


def test_ivf_probing_every_cell_is_exact(clustered):
    audio, video, video_of = clustered
    table = _table(video_of)
    ivf = AudioIndex.build(audio, None, table, kind="ivf", nlist=40, nprobe=1, seed=0)
    exact = AudioIndex.build(audio, None, table)
    q = video[::50] + 0.05
    full = ivf.with_search(nprobe=40)
    assert [[h.index for h in r] for r in full.query(q, k=3)] == [[h.index for h in r] for r in exact.query(q, k=3)]
    assert ivf.settings.nprobe == 1 and full.settings.nprobe == 40
