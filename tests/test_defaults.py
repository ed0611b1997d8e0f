"""What a new user expects: no --model means the packaged default, a rerun with other settings is redone,
and a video mp4 cannot hold (a cinepak AVI) still comes out as a playable mp4 with its record."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest

from action2sound import Action2Sound, api, media
from action2sound.cli import main
from action2sound.errors import Action2SoundError
from action2sound.weights import MODEL_JSON, default_model_dir
from media_factory import index_frames


def _clip(env):
    return env.bench / "clips" / "a2s-0-0002" / "a2s-0-0002_narration_pass_1_0.mp4"


def test_default_model_dir_is_the_packaged_one():
    path = default_model_dir()
    assert path.name == "default_model" and (path / MODEL_JSON).is_file()
    assert path.parent.resolve() == Path(api.__file__).parent.resolve()


def test_generate_and_evaluate_without_model_use_the_default(env, tmp_path, monkeypatch):
    loaded = []
    real = api.load_pipeline

    def spy(model_dir, **kw):  # the real loading, of the small test model, remembering what was asked for
        loaded.append(model_dir)
        return real(env.model, **kw)

    monkeypatch.setattr(api, "load_pipeline", spy)
    assert main(["generate", str(_clip(env)), "--out", str(tmp_path), "--ambient", "none", "--steps", "1",
                 "--device", "cpu", "--quiet"]) == 0
    assert loaded == [default_model_dir()]
    Action2Sound.from_pretrained(device="cpu")
    assert loaded[-1] == default_model_dir()

    from action2sound.evaluation import runner

    seen = []

    def stop(settings):  # stop right after the command made its settings
        seen.append(settings)
        raise Action2SoundError("stopped by the test")

    monkeypatch.setattr(runner, "evaluate", stop)
    assert main(["evaluate", "--data", str(env.bench), "--out", str(tmp_path / "eval")]) == 2
    assert seen[0].model == str(default_model_dir())


def test_a_rerun_with_other_settings_is_not_skipped(env, tmp_path):
    a2s = Action2Sound.from_pretrained(env.model, device="cpu", index=env.index)
    out = tmp_path / "out"
    record = out / f"{_clip(env).stem}.json"
    base = dict(ambient="none", steps=1, progress=False)

    def run(**extra) -> tuple[int, int]:
        report = api.generate_files(a2s, [_clip(env)], out, **{**base, **extra})
        assert not report.failed, report.failed
        return len(report.done), len(report.skipped)

    assert run() == (1, 0)
    assert run() == (0, 1)
    assert run(batch_size=3) == (0, 1)  # batching does not change the sound
    for key, value in [("seed", 5), ("ambient", "quiet"), ("steps", 2), ("format", "flac"),
                       ("video_guidance", 2.5), ("audio_guidance", 1.5), ("keep_original_audio", "mix"),
                       ("container", "mkv")]:
        assert run(**{key: value}) == (1, 0), key
        assert json.loads(record.read_text())["settings"][key] == value
        assert run(**{key: value}) == (0, 1), key  # now done with these settings
    other = Action2Sound.from_pretrained(env.model, device="cpu")  # the same model without the index
    assert api.generate_files(other, [_clip(env)], out, **base).done
    record.write_text("{ cut short")
    assert run() == (1, 0)  # an unreadable record is not done


def test_a_cinepak_avi_comes_out_as_a_playable_mp4_with_its_record(env, tmp_path):
    src = tmp_path / "old camera.avi"
    media.write_video(src, index_frames(40, 64, 64), fps=16, codec="cinepak")
    out = tmp_path / "out"
    assert main(["generate", str(src), "--model", str(env.model), "--out", str(out), "--ambient", "none",
                 "--steps", "1", "--device", "cpu", "--quiet"]) == 0
    meta = json.loads((out / "old camera.json").read_text())
    assert meta["mux"]["video"] == "re-encoded (libx264)" and "cinepak" in meta["mux"]["reason"]
    with av.open(str(out / "old camera.mp4")) as c:
        assert c.streams.video[0].codec_context.name == "h264" and c.streams.audio
    assert media.video_duration(out / "old camera.mp4") == pytest.approx(2.5, abs=1e-3)
    assert media.read_audio_file(out / "old camera.mp4", 22_050).size == meta["num_samples"]

    assert main(["generate", str(src), "--model", str(env.model), "--out", str(out), "--ambient", "none",
                 "--steps", "1", "--device", "cpu", "--quiet", "--container", "mkv"]) == 0
    assert (out / "old camera.mkv").is_file()
    assert json.loads((out / "old camera.json").read_text())["mux"]["container"] == "matroska"


def test_a_folder_of_the_four_kinds_of_video_and_a_truncated_one(env, tmp_path, capsys):
    """The issue's check: H.264 mp4, mp4 without sound, cinepak AVI, MS-MPEG4 AVI -> wav + playable mp4 + json
    each; a truncated file beside them is reported by name and the exit status says one failed."""
    folder = tmp_path / "videos"
    frames = index_frames(36, 64, 64)
    media.write_video(folder / "phone.mp4", frames, fps=12, audio=np.zeros(3 * 16_000), sample_rate=16_000)
    media.write_video(folder / "silent.mp4", frames, fps=12)
    media.write_video(folder / "cinepak.avi", frames, fps=12, codec="cinepak")
    media.write_video(folder / "msmpeg4.avi", frames, fps=12, codec="msmpeg4")
    data = (folder / "phone.mp4").read_bytes()
    (folder / "truncated.mp4").write_bytes(data[: len(data) // 2])
    out = tmp_path / "out"
    assert main(["generate", str(folder), "--model", str(env.model), "--out", str(out), "--ambient", "none",
                 "--steps", "1", "--device", "cpu", "--quiet"]) == 2
    captured = capsys.readouterr()
    assert "generated 4, skipped 0" in captured.out and "failed 1" in captured.out
    failures = [line for line in captured.err.splitlines() if line.startswith("action2sound: failed:")]
    assert len(failures) == 1 and "truncated.mp4" in failures[0] and "truncated" in failures[0].split(":", 2)[2]
    for name in ("phone", "silent", "cinepak", "msmpeg4"):
        with av.open(str(out / f"{name}.mp4")) as c:
            assert c.streams.video[0].codec_context.name in ("h264",), name  # what every player plays
            assert len(c.streams.audio) == 1
        assert media.video_duration(out / f"{name}.mp4") == pytest.approx(3.0, abs=1e-3), name
        assert (out / f"{name}.wav").is_file() and (out / f"{name}.json").is_file()
    assert not (out / "truncated.json").exists()
