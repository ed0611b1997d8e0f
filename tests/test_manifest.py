"""The clip table: save/load, selections, and the train/val split by long video."""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import replace

import pytest

from action2sound.data.manifest import TABLE_COLUMNS, Clip, ClipTable, assign_splits
from action2sound.errors import Action2SoundError


# -------------------------------------------------------------------------------------------------- table
def _clip(cid: str, vid: str, path: str, s: float, e: float, **kw) -> Clip:
    return Clip(cid, vid, path, 0.0, e - s, s, e, **kw)


def test_table_round_trip_relative_and_absolute_paths(tmp_path):
    inside = tmp_path / "set" / "clips" / "a.mp4"
    outside = tmp_path / "elsewhere" / "b.mp4"
    table = ClipTable([
        _clip("a", "v1", str(inside), 1.5, 4.5, text="hits\tthe pan", verb="hit", noun="pan"),
        Clip("b", "v2", str(outside), 0.25, 3.25, 10.1, 13.1, "", "", "", "val", "epic"),
        _clip("c", "v1", str(inside), 0.1 + 0.2, 3.3, split="test", source="ego4d"),
    ])
    path = table.save(tmp_path / "set" / "clips.tsv")
    lines = path.read_text().splitlines()
    assert lines[0].split("\t") == list(TABLE_COLUMNS)
    assert lines[1].split("\t")[2] == "clips/a.mp4"  # inside the table's folder: relative
    assert lines[2].split("\t")[2] == str(outside)  # outside: absolute
    loaded = ClipTable.load(path)
    expected = ClipTable([replace(table[0], text="hits the pan"), table[1], table[2]])
    assert loaded == expected  # floats exact (0.30000000000000004 included); tab replaced by a space

    # move the whole folder: relative media paths follow it
    moved = tmp_path / "moved"
    shutil.copytree(tmp_path / "set", moved)
    again = ClipTable.load(moved / "clips.tsv")
    assert again[0].media_path == str(moved / "clips" / "a.mp4")
    assert again[1].media_path == str(outside)


def test_table_selections(tmp_path):
    t = ClipTable([
        _clip("b", "v1", "/m/x", 5.0, 8.0), _clip("a", "v1", "/m/x", 0.0, 3.0, split="val"),
        _clip("c", "v2", "/m/x", 2.0, 5.0), _clip("d", "v1", "/m/x", 0.0, 3.0),
    ])
    assert t.by_video() == {"v1": [1, 3, 0], "v2": [2]}  # time order; equal times by clip_id
    assert [c.clip_id for c in t.split("val")] == ["a"]
    assert [c.clip_id for c in t.filter(lambda c: c.video_id == "v1")] == ["b", "a", "d"]
    assert isinstance(t[1:3], ClipTable) and len(t[1:3]) == 2
    with pytest.raises(ValueError):
        t.split("dev")
    with pytest.raises(ValueError):
        _clip("x", "v", "/m/x", 3.0, 3.0)  # empty interval
    with pytest.raises(ValueError):
        _clip("x", "v", "/m/x", 0.0, 3.0, split="training")


def test_table_load_errors(tmp_path):
    with pytest.raises(Action2SoundError, match="not found"):
        ClipTable.load(tmp_path / "none.tsv")
    bad = tmp_path / "bad.tsv"
    bad.write_text("clip_id\tvideo_id\tmedia_path\n")
    with pytest.raises(Action2SoundError, match=r"bad\.tsv.*media_start"):
        ClipTable.load(bad)
    t = ClipTable([_clip("a", "v", "/m/x", 0, 3), _clip("a", "v", "/m/y", 3, 6)])
    with pytest.raises(Action2SoundError, match="appears twice"):
        ClipTable.load(t.save(tmp_path / "dup.tsv"))


# ------------------------------------------------------------------------------------------------- splits
def test_assign_splits_deterministic_and_by_hash():
    vids = [f"vid{i:03d}" for i in range(40)]
    s = assign_splits(vids, 0.1, seed=3)
    val = sorted(v for v, x in s.items() if x == "val")
    assert len(val) == 4
    # documented rule: the lowest blake2b(seed \0 id) hashes are val (stable across processes, unlike hash())
    def h(v):
        return int.from_bytes(hashlib.blake2b(f"3\0{v}".encode(), digest_size=8).digest(), "big")
    assert val == sorted(sorted(vids, key=h)[:4])
    assert assign_splits(list(reversed(vids)), 0.1, seed=3) == s  # row order does not matter
    assert sorted(v for v, x in assign_splits(vids, 0.1, seed=4).items() if x == "val") != val
    assert list(assign_splits(["a", "b"], 0.05).values()).count("val") == 1  # at least one val video
    assert set(assign_splits(["a"], 0.05).values()) == {"train"}  # never an empty train set
    assert set(assign_splits(vids, 0.0).values()) == {"train"}
