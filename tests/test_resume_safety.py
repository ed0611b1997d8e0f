"""`train --resume` reads checkpoints without running code, and gets past a damaged last.ckpt."""

from __future__ import annotations

import json
import logging
import pickle
import shutil
from pathlib import Path

import pytest
import torch
from test_training import TINY, tiny_store  # the session's one small store

from action2sound import cli
from action2sound.training import callbacks, train




class _CreatesAFile:
    """Unpickling this calls open(path, "w"): what a crafted checkpoint could do (any code at all)."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def _stage_dir(run: Path, store: Path) -> Path:
    """A run folder holding what a resume reads besides the checkpoint: the stage's config.json."""
    stage = run / "ldm"
    (stage / "checkpoints").mkdir(parents=True)
    (stage / "config.json").write_text(json.dumps({"stage": "ldm", "preset": TINY.to_dict(), "seed": 0,
                                                   "data": str(store), "overrides": []}))
    return stage


def _resume_cli(run: Path, store: Path) -> list[str]:
    return ["train", "ldm", "--data", str(store), "--out", str(run), "--resume", "--quiet", "--max-steps", "4",
            "--set", "train.ldm.batch_size=2"]


@pytest.mark.parametrize("container", ["torch.save", "bare pickle"])
def test_a_crafted_checkpoint_runs_no_code(tmp_path_factory, tmp_path, capsys, container):
    store = tiny_store(tmp_path_factory)
    marker = tmp_path / "created_by_the_checkpoint"
    last = _stage_dir(tmp_path / "run", store) / "checkpoints" / "last.ckpt"
    payload = {"state_dict": {}, "a2s_batches_seen": _CreatesAFile(marker)}
    if container == "torch.save":
        torch.save(payload, last)
    else:
        last.write_bytes(pickle.dumps(payload))
    assert cli.main(_resume_cli(tmp_path / "run", store)) == 2
    assert not marker.exists(), "loading the checkpoint ran its code"
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(last.parent) in err and "last.ckpt" in err, err
    if container == "torch.save":
        # A whole archive that names code is refused outright, not skipped: someone replaced the file.
        assert "refused" in err and "io.open" in err


def test_a_damaged_last_checkpoint_falls_back_to_the_newest_whole_step(tmp_path_factory, tmp_path, monkeypatch,
                                                                       caplog):
    store = tiny_store(tmp_path_factory)
    args = dict(preset="tiny", data=store, checkpoint_every=2, progress=False, overrides=["train.ldm.batch_size=2"])
    first = train("ldm", out=tmp_path / "run", max_steps=4, **args)
    assert first.steps == 4
    ckpts = tmp_path / "run" / "ldm" / "checkpoints"
    assert sorted(p.name for p in ckpts.iterdir()) == ["last.ckpt", "step00000002.ckpt", "step00000004.ckpt"]
    # A kill while writing: last.ckpt cut in half, and the newest step file left empty.
    whole = (ckpts / "last.ckpt").read_bytes()
    (ckpts / "last.ckpt").write_bytes(whole[: len(whole) // 2])
    (ckpts / "step00000004.ckpt").write_bytes(b"")

    saved_at: list[int] = []
    save = callbacks.StepCheckpoint.save

    def recording_save(self, trainer, pl_module):
        saved_at.append(pl_module.batches_seen)
        save(self, trainer, pl_module)

    monkeypatch.setattr(callbacks.StepCheckpoint, "save", recording_save)
    with caplog.at_level(logging.WARNING, logger="action2sound.training.run"):
        resumed = train("ldm", out=tmp_path / "run", max_steps=6, resume=True, **args)
    assert resumed.steps == 6
    # Continued from step 2 (a fresh start would have saved at 2 again).
    assert sorted(set(saved_at)) == [4, 6]
    warned = caplog.text
    assert "last.ckpt is damaged" in warned and "step00000004.ckpt is damaged" in warned
    assert "resuming from" in warned and "step00000002.ckpt" in warned
    ckpt = torch.load(ckpts / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["a2s_batches_seen"] == 6


def test_no_whole_checkpoint_is_a_one_line_error(tmp_path_factory, tmp_path, capsys):
    store = tiny_store(tmp_path_factory)
    ckpts = _stage_dir(tmp_path / "run", store) / "checkpoints"
    (ckpts / "last.ckpt").write_bytes(b"")
    (ckpts / "step00000002.ckpt").write_bytes(b"PK\x03\x04 cut off")
    assert cli.main(_resume_cli(tmp_path / "run", store)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "no intact checkpoint" in err and "last.ckpt" in err and "step00000002.ckpt" in err


def test_resume_refuses_a_damaged_config(tmp_path_factory, tmp_path, capsys):
    store = tiny_store(tmp_path_factory)
    stage = _stage_dir(tmp_path / "run", store)
    shutil.copyfile(stage / "config.json", stage / "checkpoints" / "last.ckpt")  # any file: it is never reached
    (stage / "config.json").write_text('{"preset": {"name": "tiny"')
    assert cli.main(_resume_cli(tmp_path / "run", store)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "config.json" in err and "damaged" in err, err
