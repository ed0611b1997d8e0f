"""The ambient-aware benchmark: stems, events vs pictures, determinism, TSVs, banks, sound bank, contact sheet."""

from __future__ import annotations

import csv
import json
import math
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile

from action2sound import benchmark as B
from action2sound.benchmark import soundbank as SB
from action2sound.benchmark import sound as synth
from action2sound.benchmark.contact_sheet import ClipArrays, contact_sheet
from action2sound.errors import Action2SoundError

SR = 22050
FPS = 15.0
TINY = dict(size=64, fps=FPS, sample_rate=SR, episode_seconds=(8.0, 10.0), progress=False)


@pytest.fixture(scope="module")
def bench(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("bench")
    B.build_benchmark(root, episodes=2, seed=7, **TINY)
    return root


def _episode_json(root: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((root / "episodes").glob("*.events.json"))]


def _read(path: Path) -> np.ndarray:
    x, rate = soundfile.read(str(path), dtype="float32")
    assert rate == SR
    return x


def _onset_ok(x: np.ndarray, s: int) -> bool:
    """A sound starts at sample s: loud right after, and the sharpest step is within 2 ms after s."""
    x = x.astype(np.float64)
    w5, w20, w2 = int(0.005 * SR), int(0.02 * SR), int(0.002 * SR)
    rms_after = np.sqrt(np.mean(x[s : s + w5] ** 2))
    rms_before = np.sqrt(np.mean(x[max(0, s - w5) : s] ** 2)) if s > 0 else 0.0
    d = np.abs(np.diff(x[max(0, s - w20) : s + w2 + 1]))
    step_at = max(0, s - w20) + 1 + int(np.argmax(d))
    return rms_after > 4 * rms_before + 1e-9 and s <= step_at <= s + w2


# ------------------------------------------------------------------------------------------ layout and TSVs
def test_tsvs_have_the_ego4d_columns_and_every_clip_exists(bench):
    from action2sound.data import read_ego4d_sounds
    from action2sound.media import probe

    tables = {}
    for name in ("all", "train", "test"):
        with open(bench / f"{name}.tsv", newline="") as f:
            rows = list(csv.reader(f, delimiter="\t"))
        assert tuple(rows[0]) == B.EGO4D_COLUMNS and len(rows[0]) == 16
        assert all(len(r) == 16 for r in rows[1:])
        tables[name] = [dict(zip(rows[0], r)) for r in rows[1:]]
    train_v = {r["video_uid"] for r in tables["train"]}
    test_v = {r["video_uid"] for r in tables["test"]}
    assert train_v and test_v and not train_v & test_v  # split by episode, at least one test episode
    assert len(tables["all"]) == len(tables["train"]) + len(tables["test"])
    for r in tables["all"]:
        clip = bench / "clips" / r["clip_file"]
        assert clip.is_file()
        assert r["clip_file"] == f"{r['video_uid']}/{r['video_uid']}_{r['narration_source']}_{r['narration_ind']}.mp4"
        assert r["clip_text"].startswith("#C C ") and r["positive"] == "1"
        assert r["tag_verb"][2:-2] in B.ACTIONS and r["clip_text"].endswith(r["tag_noun"][2:-2])
        assert math.isclose(float(r["clip_end"]) - float(r["clip_start"]), 3.0, abs_tol=1e-5)
        assert math.isclose(float(r["narration_time"]), float(r["clip_start"]) + 1.5, abs_tol=1e-5)
        assert all(r[c] in ("0", "1") for c in B.FLAG_COLUMNS)
    info = probe(bench / "clips" / tables["all"][0]["clip_file"])
    assert info.has_audio and info.fps == FPS and info.width == 64 and math.isclose(info.duration, 3.0, abs_tol=0.05)
    table, report = read_ego4d_sounds(bench / "all.tsv", bench / "clips")
    assert len(table) == len(tables["all"])


def test_stems_sum_exactly_to_the_mix(bench):
    clips = sorted((bench / "groundtruth").iterdir())
    assert clips
    for gt in clips:
        a, b, c, mix = (_read(gt / f"{n}.wav") for n in ("action", "ambient", "offscreen", "mix"))
        assert a.size == b.size == c.size == mix.size == 3 * SR
        assert np.array_equal((a + b) + c, mix)  # float32, bit for bit
    for ep in _episode_json(bench):
        stem = bench / "episodes" / ep["video_uid"]
        a, b, c, mix = (_read(Path(f"{stem}.{n}.wav")) for n in ("action", "ambient", "offscreen", "mix"))
        assert np.array_equal((a + b) + c, mix) and mix.size == ep["num_samples"]
        assert np.max(np.abs(mix)) <= 0.95 + 1e-6


def test_clip_stems_are_slices_of_the_episode(bench):
    gt = sorted((bench / "groundtruth").iterdir())[-1]
    meta = json.loads((gt / "clip.json").read_text())
    ep_action = _read(bench / "episodes" / f"{meta['video_uid']}.action.wav")
    s0 = meta["first_sample"]
    assert s0 == B.frame_to_sample(meta["first_frame"], FPS, SR)
    assert np.array_equal(_read(gt / "action.wav"), ep_action[s0 : s0 + 3 * SR])


# ------------------------------------------------------------------------------------- events vs pictures
def test_events_happen_on_the_frames_where_contact_is_drawn(bench):
    for ep in _episode_json(bench):
        scene = np.load(bench / "episodes" / f"{ep['video_uid']}.scene.npz")
        traj = B.Trajectory(scene["camera"], scene["hand"], scene["objects"], scene["held"])
        objects = tuple(B.SceneObject(**o) for o in ep["objects"])
        contacts = B.detect_contacts(traj, objects)
        onscreen = [e for e in ep["events"] if e["onscreen"]]
        assert len(onscreen) >= 2
        assert sorted((c.frame, c.object) for c in contacts) == sorted((e["frame"], e["object"]) for e in onscreen)
        kind_of = {"touch": {"hit", "scrape"}, "land": {"drop"}, "shake": {"shake"}}
        by_frame = {(c.frame, c.object): c.type for c in contacts}
        size = 64
        for e in onscreen:
            assert e["action"] in kind_of[by_frame[(e["frame"], e["object"])]]
            assert e["sample"] == B.frame_to_sample(e["frame"], FPS, SR)
            assert e["kind"] == objects[e["object"]].kind
            # The contact point is inside the view on that frame.
            k = e["frame"]
            px = traj.hand[k, :2] if e["action"] in ("hit", "scrape") else traj.objects[e["object"], k, :2]
            view = px - traj.camera[k]
            assert (0 <= view).all() and (view < size).all()


def test_the_fingertip_is_drawn_on_the_object_at_a_hit():
    cfg = B.BenchmarkConfig(episodes=1, seed=3, bank="procedural", size=96, episode_seconds=(12.0, 14.0))
    ep = B.make_episode(0, cfg, B.ProceduralBank())
    touches = [e for e in ep.events if e.action in ("hit", "scrape")]
    assert touches
    for e in touches:
        frame = B.render_frames(ep, e.frame, e.frame + 1)[0]
        tip = ep.trajectory.hand[e.frame, :2] - ep.trajectory.camera[e.frame]
        x, y = int(round(tip[0])), int(round(tip[1]))
        hand = ep.renderer.hand
        assert tuple(frame[y, x]) in (hand.skin, hand.outline)  # the hand is there, drawn on top
        assert ep.trajectory.hand[e.frame, 2] == 0.0 and ep.trajectory.hand[e.frame - 1, 2] > 0.0
        assert ep.objects[e.object].contains(*ep.trajectory.hand[e.frame, :2])


def test_action_sounds_start_on_their_event_samples(bench):
    for ep in _episode_json(bench):
        x = _read(bench / "episodes" / f"{ep['video_uid']}.action.wav")
        first = min(e["sample"] for e in ep["events"] if e["onscreen"])
        assert not np.any(x[:first])  # silent until the first visible contact
        for e in ep["events"]:
            if e["onscreen"]:
                assert _onset_ok(x, e["sample"]), e


def test_offscreen_events_are_in_the_offscreen_stem_only(bench):
    n_off = 0
    for ep in _episode_json(bench):
        stem = bench / "episodes" / ep["video_uid"]
        action, off = _read(Path(f"{stem}.action.wav")), _read(Path(f"{stem}.offscreen.wav"))
        offs = [e for e in ep["events"] if not e["onscreen"]]
        assert offs and all(e["object"] == -1 for e in offs)
        n_off += len(offs)
        assert not np.any(off[: min(e["sample"] for e in offs)])
        contact_frames = {c["frame"] for c in ep["contacts"]}
        for e in offs:
            assert _onset_ok(off, e["sample"]), e
            assert not _onset_ok(action, e["sample"])
            assert e["frame"] not in contact_frames
        on_samples = [e["sample"] for e in ep["events"] if e["onscreen"]]
        # the off-screen stem has no onset at the visible contacts
        assert not any(_onset_ok(off, s) for s in on_samples if np.any(off[:s]))
    assert n_off >= 2


# ------------------------------------------------------------------------------------- ambient, determinism
def test_each_episode_has_its_own_ambient_and_a_quiet_one_exists(bench):
    meta = json.loads((bench / "benchmark.json").read_text())
    amb = [e["ambient"] for e in meta["episodes"]]
    assert amb[0]["kind"] != amb[1]["kind"]
    assert not amb[0]["quiet"] and amb[1]["quiet"]
    levels = []
    for ep in meta["episodes"]:
        x = _read(bench / "episodes" / f"{ep['video_uid']}.ambient.wav").astype(np.float64)
        levels.append(20 * math.log10(np.sqrt(np.mean(x ** 2))))
        assert abs(levels[-1] - ep["ambient"]["level_db"]) < 6.0  # drifts around its level
        raised = synth.AMBIENT_FLAGS.get(ep["ambient"]["kind"], ())
        assert ep["ambient"]["flags"] == {c: int(c in raised) for c in B.FLAG_COLUMNS}
    assert levels[1] < -50.0 < levels[0] - 10.0


def test_the_same_seed_gives_identical_data_and_another_seed_does_not(bench, tmp_path):
    B.build_benchmark(tmp_path / "again", episodes=2, seed=7, **TINY)
    assert B.stems_digest(tmp_path / "again") == B.stems_digest(bench)
    cfg = B.BenchmarkConfig(episodes=2, seed=7, bank="procedural", size=64, episode_seconds=(8.0, 10.0))
    a, b = (B.render_frames(B.make_episode(0, cfg, B.ProceduralBank())) for _ in range(2))
    assert np.array_equal(a, b)
    other = B.make_episode(0, B.BenchmarkConfig(**{**cfg.__dict__, "seed": 8}), B.ProceduralBank())
    assert other.events != B.make_episode(0, cfg, B.ProceduralBank()).events


def test_a_benchmark_folder_gives_back_the_settings_that_rebuild_its_episodes(bench, tmp_path):
    cfg = B.read_config(bench)
    assert (cfg.episodes, cfg.seed, cfg.size, cfg.episode_seconds, cfg.layout) == (2, 7, 64, (8.0, 10.0), "v2")
    stored = _episode_json(bench)[1]["events"]
    assert [(e["frame"], e["kind"]) for e in stored] == \
        [(e.frame, e.kind) for e in B.make_episode(1, cfg, B.open_bank(cfg.bank, cfg.sample_rate)).events]
    with pytest.raises(Action2SoundError, match="benchmark.json: not found"):
        B.read_config(tmp_path)


def test_episodes_do_not_depend_on_how_many_are_built():
    small = B.BenchmarkConfig(episodes=1, seed=5, bank="procedural", size=64, episode_seconds=(8.0, 10.0))
    large = B.BenchmarkConfig(**{**small.__dict__, "episodes": 6})
    e1, e2 = (B.make_episode(0, c, B.ProceduralBank()) for c in (small, large))
    assert np.array_equal(e1.stems["ambient"], e2.stems["ambient"]) and e1.events == e2.events


def test_test_split_takes_a_fifth_of_the_episodes_and_at_least_one():
    def n_test(n):
        return len(B.test_episodes(B.BenchmarkConfig(episodes=n, seed=0, bank="procedural")))
    assert (n_test(1), n_test(2), n_test(5), n_test(10)) == (0, 1, 1, 2)


def test_bad_settings_are_clear_errors(tmp_path):
    with pytest.raises(Action2SoundError, match="episode_seconds"):
        B.build_benchmark(tmp_path, episodes=1, seed=0, episode_seconds=(4.0, 5.0), progress=False)
    with pytest.raises(Action2SoundError, match="size"):
        B.build_benchmark(tmp_path, episodes=1, seed=0, size=63, progress=False)
    with pytest.raises(Action2SoundError, match="whole number of frames"):
        B.build_benchmark(tmp_path, episodes=1, seed=0, fps=12.5, clip_seconds=3.1, progress=False)
    with pytest.raises(Action2SoundError, match="no sounds under"):
        B.build_benchmark(tmp_path, episodes=1, seed=0, bank=tmp_path, progress=False)


# ------------------------------------------------------------------------------------------------- sounds
def test_impacts_start_at_sample_zero_and_materials_ring_differently():
    rng = np.random.default_rng(0)
    tails, centroids = {}, {}
    for name in ("metal", "plastic", "glass", "wood"):
        y = synth.impact(synth.modal_body(synth.MATERIALS[name], rng), SR, rng)
        # unit peak, sounding from sample 0 and at (near) full level within 1 ms
        assert np.max(np.abs(y)) == pytest.approx(1.0) and abs(y[0]) > 0.05 and np.abs(y[:22]).max() > 0.8
        e = y ** 2
        tails[name] = e[int(0.2 * SR):].sum() / e.sum()
        spec = np.abs(np.fft.rfft(y[:4096], 8192))
        centroids[name] = float((spec * np.fft.rfftfreq(8192, 1 / SR)).sum() / spec.sum())
    assert tails["metal"] > 20 * tails["plastic"]  # a pan rings on, a plastic box thuds
    assert centroids["glass"] > centroids["wood"]


def test_shake_grains_cluster_on_the_given_times():
    rng = np.random.default_rng(1)
    body = synth.modal_body(synth.MATERIALS["plastic"], rng)
    y = synth.shake(body, SR, rng, np.array([0.0, 0.25, 0.5]), 0.6)
    env = np.array([np.sqrt(np.mean(y[i : i + 220] ** 2)) for i in range(0, y.size - 220, 220)])
    t = np.arange(env.size) * 220 / SR
    quiet = env[(t > 0.12) & (t < 0.2)].mean()
    for c in (0.0, 0.25, 0.5):
        assert env[(t >= c) & (t < c + 0.03)].max() > 5 * quiet


def test_every_ambient_kind_synthesises_a_distinct_bed():
    rng = np.random.default_rng(2)
    spectra = {}
    for kind in (*synth.AMBIENT_KINDS, synth.QUIET_AMBIENT):
        y = synth.ambient_bed(kind, 2 * SR, SR, rng)
        assert y.shape == (2 * SR,) and np.sqrt(np.mean(y ** 2)) == pytest.approx(1.0)
        s = np.abs(np.fft.rfft(y)) ** 2
        edges = np.searchsorted(np.fft.rfftfreq(y.size, 1 / SR), np.geomspace(40, 10000, 13))
        spectra[kind] = 10 * np.log10(np.add.reduceat(s, edges)[:-1] + 1e-12)  # dB in 12 octave-ish bands
    kinds = list(spectra)
    for i in range(len(kinds)):
        for j in range(i + 1, len(kinds)):
            assert np.mean(np.abs(spectra[kinds[i]] - spectra[kinds[j]])) > 3.0, (kinds[i], kinds[j])


# ---------------------------------------------------------------------------------------- recording bank
def _tone(path: Path, freq: float, seconds: float, decay: float | None = 0.1, noise: bool = False) -> None:
    t = np.arange(int(seconds * SR)) / SR
    rng = np.random.default_rng(int(freq))
    x = rng.standard_normal(t.size) * 0.2 if noise else 0.8 * np.sin(2 * math.pi * freq * t)
    if decay:
        x = x * np.exp(-t / decay)
    x = np.concatenate([np.zeros(300), x])  # leading silence: the bank must trim to the onset
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(str(path), x.astype(np.float32), SR)


def test_a_folder_of_recordings_is_used_instead_of_synthesis(tmp_path):
    bank = tmp_path / "bank"
    _tone(bank / "events" / "clank" / "a.wav", 3000.0, 0.5)
    _tone(bank / "events" / "clank" / "b.flac", 3100.0, 0.4)
    _tone(bank / "events" / "thump" / "a.wav", 150.0, 0.5)
    _tone(bank / "ambient" / "street_traffic.wav", 0.0, 4.0, decay=None, noise=True)
    (bank / "LICENSES.md").write_text("all CC0\n")
    out = tmp_path / "out"
    B.build_benchmark(out, episodes=2, seed=1, bank=bank, **TINY)
    meta = json.loads((out / "benchmark.json").read_text())
    assert meta["kinds"] == ["clank", "thump"] and meta["ambient_kinds"] == ["street_traffic"]
    assert (out / "BANK_LICENSES.md").read_text() == "all CC0\n"
    assert all(e["ambient"]["flags"]["traffic_noise"] == 1 for e in meta["episodes"])
    checked = 0
    for ep in _episode_json(out):
        x = _read(out / "episodes" / f"{ep['video_uid']}.action.wav").astype(np.float64)
        for e in ep["events"]:
            if not e["onscreen"] or e["action"] not in ("hit", "drop"):
                continue
            seg = x[e["sample"] : e["sample"] + 1024]
            f = np.fft.rfftfreq(4096, 1 / SR)[np.argmax(np.abs(np.fft.rfft(seg * np.hanning(seg.size), 4096)))]
            want = 3000.0 if e["kind"] == "clank" else 150.0
            assert abs(f - want) < 200.0, (e, f)
            assert _onset_ok(x, e["sample"])
            checked += 1
    assert checked >= 2
    with open(out / "all.tsv", newline="") as fh:
        texts = [r["clip_text"] for r in csv.DictReader(fh, delimiter="\t")]
    assert all(t.endswith(("the clank", "the thump")) for t in texts)


def test_a_bank_without_ambient_is_a_clear_error(tmp_path):
    _tone(tmp_path / "events" / "clank" / "a.wav", 3000.0, 0.5)
    with pytest.raises(Action2SoundError, match="ambient"):
        B.open_bank(tmp_path, SR)


# -------------------------------------------------------------------------------------------- sound bank
_COPYRIGHT = """Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: fake

Files: *
Copyright: someone
License: MIT

Files: etc/samples/drum_tom_hi_hard.flac
Copyright: 2013 someone else
License: CC0
"""


def _fake_fetch(name: str, workdir: Path):
    root = workdir / name
    if name == "sonic-pi-samples":
        samples = root / "usr/share/sonic-pi/samples"
        _tone(samples / "drum_tom_hi_hard.flac", 200.0, 0.3)
        _tone(samples / "perc_bell.flac", 2000.0, 1.0)
        _tone(samples / "loop_amen.flac", 100.0, 1.0)  # music: not wanted
        _tone(samples / "ambi_drone.flac", 80.0, 5.0, decay=None)
        _tone(samples / "ambi_sauna.flac", 80.0, 1.0, decay=None)  # too short for an ambient bed
        _tone(samples / "perc_snap.flac", 0.0, 1.0)  # silent (tuxpaint ships such a file): not wanted
    else:
        tmp = workdir / "rain_12.wav"
        _tone(tmp, 0.0, 4.0, decay=None, noise=True)
        _tone(workdir / "arrow_metal_01.wav", 1500.0, 0.3)
        z = root / "usr/share/games/0ad/mods/public/public.zip"
        z.parent.mkdir(parents=True)
        with zipfile.ZipFile(z, "w") as zf:
            zf.write(tmp, "audio/ambient/weather/rain_12.wav")
            zf.write(workdir / "arrow_metal_01.wav", "audio/attack/impact/arrow_metal_01.wav")
            zf.write(workdir / "arrow_metal_01.wav", "audio/voice/hello.wav")
    doc = root / "usr/share/doc" / name
    doc.mkdir(parents=True, exist_ok=True)
    (doc / "copyright").write_text(_COPYRIGHT)
    return root, "1.0-1"


def test_soundbank_sorts_package_files_and_lists_their_licences(tmp_path, monkeypatch):
    monkeypatch.setattr(SB, "fetch_package", _fake_fetch)
    summary = SB.build_soundbank(tmp_path, packages=("sonic-pi-samples", "0ad-data"), progress=False)
    assert summary.kinds == {"drum": 1, "metal": 2} and summary.ambient == 2
    assert summary.skipped["silent"] == 1
    files = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.suffix in (".flac", ".wav"))
    assert files == ["ambient/0ad-data__rain_12.wav", "ambient/sonic-pi-samples__ambi_drone.flac",
                     "events/drum/sonic-pi-samples__drum_tom_hi_hard.flac",
                     "events/metal/0ad-data__arrow_metal_01.wav", "events/metal/sonic-pi-samples__perc_bell.flac"]
    lic = (tmp_path / "LICENSES.md").read_text()
    assert "| events/drum/sonic-pi-samples__drum_tom_hi_hard.flac | sonic-pi-samples | CC0 |" in lic
    assert "| events/metal/sonic-pi-samples__perc_bell.flac | sonic-pi-samples | MIT |" in lic
    assert "| ambient/0ad-data__rain_12.wav | 0ad-data | CC-BY-SA-3.0 |" in lic
    assert (tmp_path / "licenses" / "0ad-data.copyright").is_file()
    assert not list(tmp_path.glob(".work-*"))
    bank = B.open_bank(tmp_path, SR)  # the result is a usable --bank DIR
    assert bank.kinds == ("drum", "metal")


def test_soundbank_without_apt_get_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setattr(SB.shutil, "which", lambda name: None)
    with pytest.raises(Action2SoundError, match="apt-get.*DIR/events/<kind>"):
        SB.build_soundbank(tmp_path, progress=False)


def test_soundbank_skips_the_large_package_unless_asked(tmp_path, monkeypatch):
    fetched = []

    def fetch(name, workdir):
        fetched.append(name)
        return _fake_fetch(name, workdir)

    monkeypatch.setattr(SB, "fetch_package", fetch)
    SB.build_soundbank(tmp_path, progress=False)
    assert fetched == ["sonic-pi-samples", "tuxpaint-stamps-default"]
    fetched.clear()
    SB.build_soundbank(tmp_path / "all", include_large=True, progress=False)
    assert fetched[-1] == "0ad-data"


# ------------------------------------------------------------------------------------------ contact sheet
def _red_pixels(png: Path) -> int:
    from PIL import Image

    img = np.asarray(Image.open(png).convert("RGB")).astype(int)
    return int(np.sum((np.abs(img - np.array([228, 26, 28])).sum(-1) < 40)))


def test_contact_sheet_of_a_clip_marks_its_contacts(bench, tmp_path):
    gt = sorted((bench / "groundtruth").iterdir())[0]
    meta = json.loads((gt / "clip.json").read_text())
    clip = bench / "clips" / meta["video_uid"] / f"{gt.name}.mp4"
    marked = contact_sheet(clip, tmp_path / "marked.png", events=gt / "events.json")
    plain = contact_sheet(clip, tmp_path / "plain.png")
    assert marked.is_file() and plain.is_file()
    assert _red_pixels(marked) > 100 and _red_pixels(plain) < 20
    frames = np.zeros((45, 32, 32, 3), np.uint8)
    arrays = contact_sheet(ClipArrays(frames, FPS, np.zeros(3 * 16000, np.float32), 16000), tmp_path / "a.png",
                           events=[{"time": 1.5, "kind": "metal", "action": "hit", "onscreen": True}])
    assert _red_pixels(arrays) > 50
