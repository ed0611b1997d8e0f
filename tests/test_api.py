"""The Python API and the `generate` command: one code path, batches, skipping, outputs."""

from __future__ import annotations

import json
import subprocess
import sys

import av
import numpy as np
import pytest
import soundfile

from action2sound import Action2Sound
from action2sound.api import make_options
from action2sound.cli import main
from action2sound.errors import Action2SoundError


def _clip(env, uid: str, i: int = 0):
    return env.bench / "clips" / uid / f"{uid}_narration_pass_1_{i}.mp4"


def test_api_and_cli_give_identical_audio_for_one_seed(a2s, env, tmp_path):
    clip = _clip(env, "a2s-0-0002", 1)
    result = a2s.generate(clip, ambient="retrieved", seed=7, steps=1)
    assert result.sample_rate == 22050 and result.audio.dtype == np.float32
    api_paths = result.save(tmp_path / "api")
    assert main(["generate", str(clip), "--model", str(env.model), "--index", str(env.index), "--out",
                 str(tmp_path / "cli"), "--seed", "7", "--steps", "1", "--device", "cpu", "--quiet"]) == 0
    cli_wav = tmp_path / "cli" / f"{clip.stem}.wav"
    assert cli_wav.read_bytes() == api_paths["audio"].read_bytes()
    pcm, _ = soundfile.read(cli_wav, dtype="int16")
    expected = np.round(np.clip(result.audio, -1, 1) * 32767).astype(np.int16)
    assert np.max(np.abs(pcm.astype(int) - expected)) <= 1  # 16-bit quantisation only
    cli_meta = json.loads((tmp_path / "cli" / f"{clip.stem}.json").read_text())
    assert cli_meta["condition"] == json.loads(api_paths["json"].read_text())["condition"]
    other = a2s.generate(clip, ambient="retrieved", seed=8, steps=1)
    assert not np.allclose(other.audio, result.audio)  # the seed is what decides the noise


def test_batch_reports_a_corrupt_file_and_finishes_the_others(env, tmp_path, capsys):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    good = [_clip(env, "a2s-0-0000"), _clip(env, "a2s-0-0003", 1)]
    for g in good:
        (inputs / g.name).write_bytes(g.read_bytes())
    corrupt = inputs / "corrupt.mp4"
    corrupt.write_bytes(good[0].read_bytes()[: 3000])  # cut short: the index points past the end
    out = tmp_path / "out"
    argv = ["generate", str(inputs), "--model", str(env.model), "--out", str(out), "--ambient", "none",
            "--steps", "1", "--device", "cpu", "--quiet"]
    assert main(argv) == 2
    captured = capsys.readouterr()
    failures = [line for line in captured.err.splitlines() if line.startswith("action2sound: failed:")]
    assert len(failures) == 1 and "corrupt.mp4" in failures[0]
    assert "generated 2, skipped 0" in captured.out and "failed 1" in captured.out
    for g in good:
        for ext in ("wav", "mp4", "png", "json"):
            assert (out / f"{g.stem}.{ext}").is_file()
    assert not (out / "corrupt.json").exists()

    # A rerun skips what is done and retries only the failure; --overwrite redoes everything.
    stamp = (out / f"{good[0].stem}.json").stat().st_mtime_ns
    corrupt.unlink()
    assert main(argv) == 0
    assert "generated 0, skipped 2" in capsys.readouterr().out
    assert (out / f"{good[0].stem}.json").stat().st_mtime_ns == stamp
    assert main(argv + ["--overwrite"]) == 0
    assert "generated 2, skipped 0" in capsys.readouterr().out


def test_result_metadata_flac_and_a_second_audio_track(a2s, env, tmp_path):
    clip = _clip(env, "a2s-0-0001")
    result = a2s.generate(clip, ambient="quiet", seed=3, steps=1, quiet_quantile=0.5, video_guidance=2.0,
                          audio_guidance=1.5, sync_guidance=1.5)
    paths = result.save(tmp_path, "named", format="flac", keep_original_audio="add")
    assert sorted(p.name for p in paths.values()) == ["named.flac", "named.json", "named.mp4", "named.png"]
    meta = json.loads(paths["json"].read_text())
    s = meta["settings"]
    assert (s["seed"], s["steps"], s["sampler"], s["ambient"]) == (3, 1, "dpm", "quiet")
    # This test model has the stream but no encoder (the null stream): the sync weight was not used, and the
    # record says 1 (tests/test_serve.py records a used one).
    assert meta["sync_stream"] == "null"
    assert (s["video_guidance"], s["audio_guidance"], s["sync_guidance"], s["total_guidance"]) == (2.0, 1.5, 1.0, 2.5)
    assert s["format"] == "flac" and s["keep_original_audio"] == "add" and s["device"] == "cpu"
    assert len(meta["model"]["hash"]) == 16 and meta["model"]["preset"] == "tiny"
    assert meta["condition"]["clips"][0]["clip_id"].startswith("a2s-0-") and "score" in meta["condition"]["clips"][0]
    assert {"read", "video_tower", "sample", "decode", "vocode", "total", "save"} <= set(meta["timings"])
    with av.open(str(paths["video"])) as c:
        assert len(c.streams.audio) == 2  # the generated track and the original
    flac, rate = soundfile.read(paths["audio"])
    assert rate == 22050 and flac.size == result.audio.size


def test_unknown_options_and_missing_model_are_clear_errors(a2s, env, tmp_path):
    with pytest.raises(Action2SoundError, match="unknown generate option.*stepz"):
        make_options(stepz=3)
    with pytest.raises(Action2SoundError, match="not a model directory"):
        Action2Sound.from_pretrained(tmp_path)
    with pytest.raises(Action2SoundError, match="no-such.mp4: file not found"):
        a2s.generate(tmp_path / "no-such.mp4", ambient="none")


def test_import_stays_light_and_exports_the_api():
    code = "import sys, action2sound; assert 'torch' not in sys.modules; print(action2sound.Action2Sound.__name__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "Action2Sound"
