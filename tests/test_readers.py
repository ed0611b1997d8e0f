"""The readers (Ego4D-Sounds, EPIC-KITCHENS-100, a folder of videos), on small files each test writes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from action2sound import media
from action2sound.data import readers
from action2sound.data.manifest import Clip, assign_splits
from action2sound.data.readers import (
    EGO4D_COLUMNS,
    clean_narration,
    mine_folder,
    parse_timestamp,
    read_ego4d_sounds,
    read_epic_kitchens,
)
from action2sound.errors import Action2SoundError

SR = 16_000


def write_video(path: Path, seconds: float, fps: int = 5, audio: np.ndarray | None = None) -> Path:
    """A tiny 16x16 video of `seconds` (grey frames), with the given 16 kHz mono track if any."""
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = np.full((int(round(seconds * fps)), 16, 16, 3), 128, np.uint8)
    media.write_video(path, frames, fps, audio=audio, sample_rate=SR if audio is not None else None)
    return path


# -------------------------------------------------------------------------------------------- Ego4D-Sounds
def write_ego4d(tmp_path: Path, rows: list[dict], drop: tuple[str, ...] = (), touch: bool = True) -> Path:
    cols = [c for c in EGO4D_COLUMNS if c not in drop]
    lines = ["\t".join(cols)]
    for r in rows:
        full = {
            "video_dur": "-1", "narration_source": "narration_pass_1", "narration_ind": "0", "tag_verb": "[]",
            "tag_noun": "[]", "positive": "1.0", "speech": "0.1", "background_music": "0.0",
            "traffic_noise": "0.0", "wind_noise": "0.0", **r,
        }
        if "clip_start" not in r:  # the released layout: a 1.5 s window around the narration
            t = r["narration_time"]
            full["clip_start"] = f"{t - 0.5}" if isinstance(t, float) else "1.0"
            full["clip_end"] = f"{t + 1.0}" if isinstance(t, float) else "2.5"
        lines.append("\t".join(str(full[c]) for c in cols))
        if touch and not r.get("_missing"):
            f = tmp_path / "clips" / full["clip_file"]
            f.parent.mkdir(parents=True, exist_ok=True)
            f.touch()  # the reader only checks existence
    tsv = tmp_path / "meta.tsv"
    tsv.write_text("\n".join(lines) + "\n")
    return tsv


def _row(uid, ind, t, text="#C C hits the pan", **kw):
    return {"video_uid": uid, "narration_ind": ind, "narration_time": t, "clip_text": text,
            "clip_file": f"{uid}/{uid}_narration_pass_1_{ind}.mp4", **kw}


def test_ego4d_reader(tmp_path):
    rows = [
        _row("u1", 0, 10.0, tag_verb="['hit']", tag_noun="['pan', 'lid']"),
        _row("u1", 1, 0.8, text="#O man X picks a cup #unsure"),  # near the start: shifted to [0, 3]
        _row("u2", 0, 19.5, video_dur="20.0"),  # near the known end: shifted to [17, 20]
        {**_row("u2", 1, 5.0), "_missing": True},  # clip file absent
        _row("u2", 2, 6.0, clip_start="7.0", clip_end="6.0"),  # negative duration
        _row("u3", 0, "abc"),  # bad number
        _row("u3", 1, 30.0, video_dur="20.0"),  # narration past the end of the video
    ]
    tsv = write_ego4d(tmp_path, rows)
    table, report = read_ego4d_sounds(tsv, tmp_path / "clips", split="test")
    assert (report.read, report.kept, report.clips) == (7, 3, 3)
    assert report.skipped == {
        "clip file missing": 1, "negative duration (clip_end <= clip_start)": 1,
        "bad number in a time column": 1, "narration_time outside the video": 1,
    }
    assert "clip file missing: 1 (e.g. u2/u2_narration_pass_1_1.mp4)" in report.summary()
    assert "\n" not in report.summary()
    a, b, c = table
    assert a == Clip("u1_narration_pass_1_0", "u1", str(tmp_path / "clips/u1/u1_narration_pass_1_0.mp4"),
                     0.0, 3.0, 8.5, 11.5, "hits the pan", "hit", "pan,lid", "test", "ego4d")
    assert (b.video_start, b.video_end, b.text) == (0.0, 3.0, "man X picks a cup")
    assert (c.video_start, c.video_end, c.media_start, c.media_end) == (17.0, 20.0, 0.0, 3.0)

    # without file checks the missing clip is kept (the bad rows are still bad)
    table2, report2 = read_ego4d_sounds(tsv, tmp_path / "nowhere", split="test", check_files=False)
    assert len(table2) == 4 and "clip file missing" not in report2.skipped


def test_ego4d_wav_clip_file_found_as_mp4(tmp_path):
    tsv = write_ego4d(tmp_path, [_row("u1", 0, 5.0)])
    text = tsv.read_text().replace("_0.mp4", "_0.wav")
    tsv.write_text(text)
    table, report = read_ego4d_sounds(tsv, tmp_path / "clips")
    assert len(table) == 1 and table[0].media_path.endswith("_0.mp4")


def test_ego4d_missing_column(tmp_path):
    tsv = write_ego4d(tmp_path, [_row("u1", 0, 5.0)], drop=("clip_file", "narration_time"))
    with pytest.raises(Action2SoundError) as err:
        read_ego4d_sounds(tsv, tmp_path / "clips")
    msg = str(err.value)
    assert "meta.tsv" in msg and "narration_time" in msg and "clip_file" in msg and "\n" not in msg
    with pytest.raises(Action2SoundError, match="not found"):
        read_ego4d_sounds(tmp_path / "none.tsv", tmp_path / "clips")


def test_ego4d_val_split_by_video(tmp_path):
    rows = [_row(f"v{i:02d}", j, 5.0 + 4 * j) for i in range(40) for j in range(3)]
    tsv = write_ego4d(tmp_path, rows)
    table, _ = read_ego4d_sounds(tsv, tmp_path / "clips", val_fraction=0.1, seed=7)
    per_video: dict[str, set[str]] = {}
    for c in table:
        per_video.setdefault(c.video_id, set()).add(c.split)
    assert all(len(s) == 1 for s in per_video.values())  # never split inside a long video
    val = {v for v, s in per_video.items() if s == {"val"}}
    assert len(val) == 4
    assert val == {v for v, x in assign_splits(per_video, 0.1, seed=7).items() if x == "val"}
    again, _ = read_ego4d_sounds(tsv, tmp_path / "clips", val_fraction=0.1, seed=7)
    assert again == table


def test_clean_narration():
    assert clean_narration("#C C Rinses spoons with water") == "Rinses spoons with water"
    assert clean_narration("# c c opens  the drawer ") == "opens the drawer"
    assert clean_narration("#O woman Y cuts carrot #Unsure") == "woman Y cuts carrot"
    assert clean_narration("#C Cuts carrot") == "Cuts carrot"  # 'Cuts' is not the subject "C"
    assert clean_narration("plain text") == "plain text"


# ---------------------------------------------------------------------------------------- EPIC-KITCHENS-100
def test_parse_timestamp():
    assert parse_timestamp("00:01:02.50") == pytest.approx(62.5)
    assert parse_timestamp("01:00:00.00") == pytest.approx(3600.0)
    assert parse_timestamp("00:00:01.089") == pytest.approx(1.089)
    assert parse_timestamp("02:03.5") == pytest.approx(123.5)
    for bad in ("", "aa", "00:00:75.00", "1:2:3:4", "00::01.0", "-1:00:00"):
        with pytest.raises(ValueError):
            parse_timestamp(bad)


EPIC_HEADER = ("narration_id,participant_id,video_id,narration_timestamp,start_timestamp,stop_timestamp,"
               "start_frame,stop_frame,narration,verb,verb_class,noun,noun_class,all_nouns,all_noun_classes")


def _epic_row(nid, vid, t0, t1, narration="open door", verb="open", noun="door"):
    pid = vid.split("_")[0]
    return f'{nid},{pid},{vid},{t0},{t0},{t1},1,2,{narration},{verb},3,{noun},8,"[\'{noun}\']",[8]'


def test_epic_reader(tmp_path):
    root = tmp_path / "videos"
    v1 = write_video(root / "P01" / "videos" / "P01_01.MP4", 6.0)  # participant layout, upper-case ext
    v2 = write_video(root / "P02_03.mp4", 10.0)  # flat layout, lower-case ext
    (root / "P04_01.MP4").write_bytes(b"not a video at all")
    dur1 = media.probe(v1).duration
    rows = [
        _epic_row("P01_01_0", "P01_01", "00:00:01.00", "00:00:02.00"),  # centre 1.5 -> [0, 3]
        _epic_row("P01_01_1", "P01_01", "00:00:05.50", "00:00:05.90"),  # centre 5.7 -> ends at the video's end
        _epic_row("P02_03_0", "P02_03", "00:00:02.00", "00:00:04.00", "put, down plate", "put-down", "plate"),
        _epic_row("P02_03_1", "P02_03", "00:00:04.00", "00:00:03.00"),  # stop before start
        _epic_row("P02_03_2", "P02_03", "00:00:xx.00", "00:00:03.00"),  # bad timestamp
        _epic_row("P02_03_3", "P02_03", "00:00:12.00", "00:00:13.00"),  # past the end
        _epic_row("P03_01_0", "P03_01", "00:00:01.00", "00:00:02.00"),  # no such video
        _epic_row("P04_01_0", "P04_01", "00:00:01.00", "00:00:02.00"),  # unreadable video
    ]
    rows[2] = rows[2].replace("put, down plate", '"put, down plate"')
    csv = tmp_path / "EPIC_100_train.csv"
    csv.write_text(EPIC_HEADER + "\n" + "\n".join(rows) + "\n")
    table, report = read_epic_kitchens(csv, root, duration=3.0, split="train")
    assert (report.read, report.kept) == (8, 3)
    assert report.skipped == {
        "negative duration (stop before start)": 1, "bad timestamp": 1,
        "action starts past the end of the video": 1, "video file missing": 1, "video unreadable": 1,
    }
    a, b, c = table
    assert (a.clip_id, a.video_id, a.media_path) == ("P01_01_0", "P01_01", str(v1))
    assert (a.media_start, a.media_end, a.video_start, a.video_end) == (0.0, 3.0, 0.0, 3.0)
    assert b.media_end == pytest.approx(dur1, abs=1e-6) and b.media_start == pytest.approx(dur1 - 3.0, abs=1e-6)
    assert (c.media_path, c.media_start, c.media_end) == (str(v2), 1.5, 4.5)
    assert (c.text, c.verb, c.noun, c.source, c.split) == ("put, down plate", "put-down", "plate", "epic", "train")
    assert all(x.media_start == x.video_start and x.media_end == x.video_end for x in table)


def test_epic_missing_column_and_duration_hook(tmp_path, monkeypatch):
    root = tmp_path / "videos"
    (root / "P01_01.MP4").parent.mkdir(parents=True)
    (root / "P01_01.MP4").touch()
    csv = tmp_path / "ann.csv"
    csv.write_text("narration_id,video_id,start_timestamp,stop_timestamp\nx,P01_01,00:00:01.00,00:00:02.00\n")
    with pytest.raises(Action2SoundError, match=r"ann\.csv.*participant_id"):
        read_epic_kitchens(csv, root)
    # the test-set timestamps file has no narration/verb/noun: allowed; the probe can be swapped out
    csv.write_text("narration_id,participant_id,video_id,start_timestamp,stop_timestamp\n"
                   "x,P01,P01_01,00:00:00.50,00:00:01.50\ny,P01,P01_01,00:00:03.00,00:00:03.50\n")
    monkeypatch.setattr(readers, "video_duration", lambda path: 2.0)
    table, report = read_epic_kitchens(csv, root, duration=1.0, split="test")
    assert [(c.video_start, c.video_end, c.text) for c in table] == [(0.5, 1.5, "")]
    assert report.skipped == {"action starts past the end of the video": 1}


# ------------------------------------------------------------------------------------------ folder mining
def test_mine_folder_windows(tmp_path):
    write_video(tmp_path / "a.mp4", 10.0)
    write_video(tmp_path / "sub" / "b.MKV", 4.0)
    write_video(tmp_path / "short.m4v", 2.0)
    (tmp_path / "broken.mov").write_bytes(b"\x00" * 100)
    (tmp_path / "notes.txt").write_text("not a video")
    table, report = mine_folder(tmp_path, duration=3.0, mode="windows", val_fraction=0.0)
    assert (report.read, report.kept, report.clips) == (4, 2, 4)
    assert report.skipped == {"shorter than one clip": 1, "unreadable file": 1}
    assert [(c.video_id, c.media_start, c.media_end) for c in table] == [
        ("a", 0.0, 3.0), ("a", 3.0, 6.0), ("a", 6.0, 9.0), ("sub/b", 0.0, 3.0)]
    assert table[3].media_path == str(tmp_path / "sub" / "b.MKV")
    assert len({c.clip_id for c in table}) == 4 and all(c.source == "folder" for c in table)
    hop, _ = mine_folder(tmp_path, duration=3.0, hop=2.0, val_fraction=0.5)
    assert [c.media_start for c in hop if c.video_id == "a"] == [0.0, 2.0, 4.0, 6.0]
    assert sorted({c.split for c in hop}) == ["train", "val"]  # two videos, one each
    assert len({c.split for c in hop if c.video_id == "a"}) == 1


def test_mine_folder_onsets(tmp_path):
    rng = np.random.default_rng(0)
    n = 12 * SR
    wave = 0.002 * rng.standard_normal(n).astype(np.float32)
    clicks = [2.0, 2.6, 6.5, 10.0]  # 2.6 is within one clip of 2.0: only one of them may be kept
    for t, amp in zip(clicks, (0.8, 0.3, 0.8, 0.8)):
        i = int(t * SR)
        m = int(0.02 * SR)
        wave[i:i + m] += amp * np.exp(-np.arange(m) / 60.0) * np.sign(rng.standard_normal(m))
    write_video(tmp_path / "clicks.mp4", 12.0, audio=wave)
    write_video(tmp_path / "silent.mp4", 5.0)  # no audio track
    table, report = mine_folder(tmp_path, duration=3.0, mode="onsets", val_fraction=0.0)
    assert report.skipped == {"no audio track (onset mode)": 1}
    centres = sorted((c.media_start + c.media_end) / 2 for c in table)
    assert len(centres) == 3
    assert np.allclose(centres, [2.0, 6.5, 10.0], atol=0.06)
    spans = sorted((c.media_start, c.media_end) for c in table)
    assert all(e0 <= s1 for (_, e0), (s1, _) in zip(spans, spans[1:]))  # never overlapping
    assert all(e - s == pytest.approx(3.0) for s, e in spans)


def test_mine_folder_bad_args(tmp_path):
    with pytest.raises(Action2SoundError, match="not found"):
        mine_folder(tmp_path / "nope")
    with pytest.raises(ValueError):
        mine_folder(tmp_path, mode="beats")


def test_saved_folder_table_is_portable(tmp_path):
    write_video(tmp_path / "data" / "a.mp4", 3.5)
    table, _ = mine_folder(tmp_path / "data")
    text = table.save(tmp_path / "data" / "clips.tsv").read_text()
    assert str(tmp_path) not in text
    assert [line.split("\t")[2] for line in text.splitlines()[1:]] == ["a.mp4"]
