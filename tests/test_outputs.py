"""Results are never lost or mixed (issue 12 §3): collision-free names, the umask honoured, output sets replaced
atomically with a verified record, the output folder checked first, numbers checked before any work, and the
progress of a long video counted in windows."""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from action2sound import Action2Sound, api, media, outputs
from action2sound.cli import main
from action2sound.config import preset
from action2sound.errors import Action2SoundError
from action2sound.options import GenerateOptions
from action2sound.outputs import GenerationResult
from action2sound.pipeline import Pipeline
from media_factory import index_frames


@pytest.fixture(scope="session")
def a2s(env):
    return Action2Sound.from_pretrained(env.model, device="cpu")


def _clip(env, i: int = 0) -> Path:
    return env.bench / "clips" / "a2s-0-0002" / f"a2s-0-0002_narration_pass_1_{i}.mp4"


def _cli(env, *argv: str) -> list[str]:
    """A quick generate command line; options in argv come last, so they win over these defaults."""
    return ["generate", "--model", str(env.model), "--ambient", "none", "--steps", "1", "--device", "cpu",
            "--quiet", *argv]


def _digests(folder: Path, name: str) -> dict[str, bytes]:
    return {f.name: f.read_bytes() for f in sorted(folder.glob(f"{name}.*"))}


def _staged(folder: Path) -> list[str]:
    """Hidden files: what a writer stages before renaming."""
    return sorted(f.name for f in folder.iterdir() if f.name.startswith("."))


@pytest.fixture
def no_generation(monkeypatch):
    """Fail the test if any model is loaded or any video generated (the checks must come first)."""

    def refuse(*a, **k):
        raise AssertionError("model work started before the bad input was refused")

    monkeypatch.setattr(api, "load_pipeline", refuse)
    monkeypatch.setattr(Pipeline, "generate", refuse)


# ------------------------------------------------------------------------------------------------ 1. names
def test_inputs_with_one_stem_get_distinct_names_reported_in_record_and_summary(env, tmp_path, capsys):
    names = api.output_names([Path("a/x.mp4"), Path("b/x.mp4"), Path("c/x-2.mp4"), Path("d/X.mp4")])
    assert names == ["x", "x-3", "x-2", "X-4"]  # an input's own stem x-2 is not taken; case does not count
    assert names == api.output_names([Path("a/x.mp4"), Path("b/x.mp4"), Path("c/x-2.mp4"), Path("d/X.mp4")])

    for folder, i in (("a", 0), ("b", 1)):
        (tmp_path / folder).mkdir()
        shutil.copy(_clip(env, i), tmp_path / folder / "x.mp4")
    a, b, out = tmp_path / "a" / "x.mp4", tmp_path / "b" / "x.mp4", tmp_path / "out"
    assert main(_cli(env, str(a), str(b), "--out", str(out))) == 0
    summary = capsys.readouterr().out
    assert "generated 2" in summary and f"{b} -> x-2.*" in summary
    first, second = (json.loads((out / f"{n}.json").read_text()) for n in ("x", "x-2"))
    assert (first["input"], first["name"]) == (str(a), "x")
    assert (second["input"], second["name"]) == (str(b), "x-2")
    assert first["files"]["x.wav"] != second["files"]["x-2.wav"]  # two different sounds, both kept

    # b alone is named x now: x.json is a's record, so b is generated, not skipped as done.
    assert main(_cli(env, str(b), "--out", str(out))) == 0
    assert "generated 1, skipped 0" in capsys.readouterr().out
    assert json.loads((out / "x.json").read_text())["input"] == str(b)


# ------------------------------------------------------------------------------------------------ 2. umask
def test_outputs_honour_the_umask(a2s, env, tmp_path):
    result = a2s.generate(_clip(env), ambient="none", steps=1)
    old = os.umask(0o022)
    try:
        paths = result.save(tmp_path / "out", "x")
    finally:
        os.umask(old)
    assert sorted(paths) == ["audio", "image", "json", "video"]
    for path in paths.values():
        assert path.stat().st_mode & 0o777 == 0o644, path.name


# ------------------------------------------------------------------------------------------------ 3. atomic sets
def test_a_failed_overwrite_keeps_the_old_set_whole_and_the_rerun_redoes_it(a2s, env, tmp_path, monkeypatch):
    out, clip = tmp_path / "out", _clip(env)
    name = clip.stem

    def run(**extra) -> api.BatchReport:
        return api.generate_files(a2s, [clip], out, ambient="none", steps=1, progress=False, **extra)

    assert len(run(seed=0).done) == 1
    old = _digests(out, name)
    assert sorted(old) == [f"{name}.{e}" for e in ("json", "mp4", "png", "wav")]

    def broken_png(*a, **k):
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as m:  # the picture fails after the wav and the mp4 were written
        m.setattr(outputs, "render_png", broken_png)
        report = run(seed=1, overwrite=True)
    assert len(report.failed) == 1 and "No space left" in report.failed[0][1]
    assert _digests(out, name) == old  # nothing new beside the old record
    assert _staged(out) == []
    assert json.loads((out / f"{name}.json").read_text())["settings"]["seed"] == 0

    # A kill while renaming (after the wav, before the picture): the set has no record, so it is not done.
    real_replace = os.replace

    def killed_at_png(src, dst):
        if Path(dst).name == f"{name}.png":
            raise KeyboardInterrupt
        real_replace(src, dst)

    with monkeypatch.context() as m, pytest.raises(KeyboardInterrupt):
        m.setattr(outputs.os, "replace", killed_at_png)
        run(seed=1, overwrite=True)
    assert not (out / f"{name}.json").exists()
    assert (out / f"{name}.wav").read_bytes() != old[f"{name}.wav"]
    report = run(seed=1)
    assert len(report.done) == 1 and not report.skipped  # redone, not skipped
    meta = json.loads((out / f"{name}.json").read_text())
    assert meta["settings"]["seed"] == 1 and set(meta["files"]) == {f"{name}.{e}" for e in ("mp4", "png", "wav")}
    assert _staged(out) == []

    # A record whose files do not match it (a file changed or gone) is not done either.
    assert len(run(seed=1).skipped) == 1
    wav = out / f"{name}.wav"
    wav.write_bytes(wav.read_bytes()[:-2] + b"\x00\x01")
    assert len(run(seed=1).done) == 1
    (out / f"{name}.png").unlink()
    assert len(run(seed=1).done) == 1
    assert len(run(seed=1).skipped) == 1


# ------------------------------------------------------------------------------------------------ 4. --out
def test_a_bad_output_folder_is_refused_before_any_model_work(env, tmp_path, capsys, no_generation):
    not_a_folder = tmp_path / "taken"
    not_a_folder.write_text("a file")
    for out in (not_a_folder, not_a_folder / "below"):
        assert main(_cli(env, str(_clip(env)), "--out", str(out))) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("action2sound: error: --out ") and str(out) in err[0]

    # --out the inputs' own folder: an output would replace an input (the video, or the ambient file).
    folder = tmp_path / "videos"
    folder.mkdir()
    video = folder / "x.mp4"
    shutil.copy(_clip(env), video)
    before = video.read_bytes()
    assert main(_cli(env, str(folder), "--out", str(folder))) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"the output {video} would replace the input {video}" in err[0]
    ambient = folder / "y.wav"
    media.write_audio(ambient, np.zeros(22_050 * 4, np.float32), 22_050)
    other = tmp_path / "y.avi"
    media.write_video(other, index_frames(24, 32, 32), fps=8, codec="mpeg4")
    assert main(_cli(env, str(other), "--out", str(folder), "--ambient", str(ambient))) == 2
    assert f"would replace the input {ambient}" in capsys.readouterr().err
    assert video.read_bytes() == before and sorted(f.name for f in folder.iterdir()) == ["x.mp4", "y.wav"]


def test_a_read_only_output_folder_is_refused_before_any_model_work(env, tmp_path, capsys, monkeypatch,
                                                                     no_generation):
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o555)
    if os.geteuid() == 0:  # root writes into read-only folders: refuse the write as the file system would
        def denied(path):
            raise PermissionError(13, "Permission denied", str(path))

        monkeypatch.setattr(media, "staging_path", denied)
    try:
        assert main(_cli(env, str(_clip(env)), "--out", str(out))) == 2
    finally:
        out.chmod(0o755)
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"action2sound: error: --out {out}: cannot write there (Permission denied); choose a folder you "
                   "can write to"]


def test_saving_into_a_file_is_a_clear_error(a2s, env, tmp_path):
    result = a2s.generate(_clip(env), ambient="none", steps=1)
    (tmp_path / "f").write_text("")
    with pytest.raises(Action2SoundError, match="is a file, not a folder"):
        result.save(tmp_path / "f")


# ------------------------------------------------------------------------------------------------ 5. numbers
def _short_ambient(tmp_path: Path) -> Path:
    path = tmp_path / "ambient.wav"
    if not path.exists():
        media.write_audio(path, 0.1 * np.sin(np.arange(22_050) * 0.05).astype(np.float32), 22_050)  # 1 s
    return path


@pytest.mark.parametrize("argv, option", [
    (["--steps", "5000"], "steps"),  # beyond the 1000-step schedule: an IndexError after the work, before
    (["--steps", "0"], "steps"),
    (["--batch-size", "0"], "batch-size"),
    (["--threads", "-2"], "threads"),
    (["--video-guidance", "nan"], "video-guidance"),
    (["--audio-guidance", "inf"], "audio-guidance"),
    (["--overlap", "nan"], "overlap"),
    (["--overlap", "1.5"], "overlap"),  # more than a third of the 3 s window
    (["--overlap", "-0.1"], "overlap"),
    (["--ambient-offset", "nan", "--ambient", "AMBIENT"], "ambient-offset"),
    (["--ambient-offset", "-1", "--ambient", "AMBIENT"], "ambient-offset"),
    (["--ambient-offset", "2", "--ambient", "AMBIENT"], "ambient-offset"),  # the file lasts 1 s
])
def test_bad_numbers_are_one_line_errors_before_any_generation(env, tmp_path, capsys, monkeypatch, argv, option):
    def refuse(*a, **k):
        raise AssertionError("generation started before the bad option was refused")

    monkeypatch.setattr(Pipeline, "generate", refuse)
    argv = [str(_short_ambient(tmp_path)) if a == "AMBIENT" else a for a in argv]
    assert main(_cli(env, str(_clip(env)), "--out", str(tmp_path / "out"), *argv)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("action2sound: error:") and f"--{option}" in err[0], err
    assert not list((tmp_path / "out").glob("*.wav"))


@pytest.mark.parametrize("option", ["seeds", "limit", "steps", "batch-size", "threads"])
def test_evaluate_counts_below_one_are_refused(env, tmp_path, capsys, option):
    assert main(["evaluate", "--model", str(env.model), "--data", str(env.bench), "--out", str(tmp_path),
                 f"--{option}", "0"]) == 2
    assert f"--{option} must be at least 1, got 0" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_the_api_checks_the_same_numbers(a2s, env, tmp_path):
    clip = _clip(env)
    for bad, match in [(dict(video_guidance=math.nan), "video_guidance must be a finite number"),
                       (dict(audio_guidance=math.inf), "audio_guidance must be a finite number"),
                       (dict(ambient_offset=math.nan), "ambient_offset must be a finite number"),
                       (dict(steps=5000), r"steps must be at most 1000"),
                       (dict(steps=2.5), "steps must be a whole number"),
                       (dict(batch_size=0), "batch_size must be at least 1"),
                       (dict(seed=1.5), "seed must be a whole number")]:
        with pytest.raises(Action2SoundError, match=match):
            a2s.generate(clip, ambient="none", **bad)
    ambient = _short_ambient(tmp_path)
    p = preset("tiny")
    with pytest.raises(Action2SoundError, match=r"--ambient-offset 1\.5 s is past the end of .*ambient.wav"):
        GenerateOptions(ambient=str(ambient), ambient_offset=1.5).resolved(p)
    with pytest.warns(UserWarning, match=r"only 0\.50 s of sound from 0\.5 s, shorter than one 3\.00 s model window"):
        GenerateOptions(ambient=str(ambient), ambient_offset=0.5).resolved(p)
    with pytest.raises(Action2SoundError, match="no such file"):
        GenerateOptions(ambient=str(tmp_path / "missing.wav")).resolved(p)


def test_audio_with_nan_is_never_written(tmp_path, env):
    wave = np.zeros(22_050, np.float32)
    wave[100] = np.nan
    with pytest.raises(Action2SoundError, match="1 NaN/inf samples"):
        media.write_audio(tmp_path / "a.wav", wave, 22_050)
    result = GenerationResult(wave, 22_050, {"settings": {"ambient": "none"}, "timings": {}}, _clip(env))
    with pytest.raises(Action2SoundError, match="NaN/inf"):
        result.save(tmp_path / "out", "x")
    assert sorted(os.listdir(tmp_path)) == ["out"] and not os.listdir(tmp_path / "out")


# ------------------------------------------------------------------------------------------------ 6. progress
def test_progress_of_one_long_video_counts_its_windows(a2s, tmp_path, capsys):
    video = tmp_path / "long.mp4"
    media.write_video(video, index_frames(56, 32, 32), fps=8)  # 7 s: windows at 0, 2.5 and 4 s
    seen: list[tuple[int, int]] = []
    report = api.generate_files(a2s, [video], tmp_path / "out", ambient="none", steps=1, batch_size=1,
                                progress=lambda done, total: seen.append((done, total)))
    assert len(report.done) == 1
    done = [d for d, _ in seen]
    assert sorted(set(done)) == [0, 1, 2, 3] and done == sorted(done)  # every window, in order
    assert {t for _, t in seen} == {3} and seen[-1] == (3, 3)
    assert len(json.loads((tmp_path / "out" / "long.json").read_text())["windows"]) == 3

    api.generate_files(a2s, [video], tmp_path / "out", ambient="none", steps=1, batch_size=1, overwrite=True)
    bar = capsys.readouterr().err
    assert "3/3" in bar and "window" in bar


def test_the_model_sets_the_default_audio_guidance_and_an_option_overrides_it():
    from action2sound.config import override, preset, preset_from_dict
    from action2sound.options import GenerateOptions
    from action2sound.weights import default_model_dir

    small = preset("small")
    assert GenerateOptions().resolved(small).audio_guidance == 1.0  # no audio guidance unless a model asks
    tuned = override(small, ["diffusion.audio_guidance_scale=3"])
    assert GenerateOptions().resolved(tuned).audio_guidance == 3.0
    assert GenerateOptions(audio_guidance=1.5).resolved(tuned).audio_guidance == 1.5
    # The embedded default model stores 8 (docs/RESULTS.md, session 9); a manifest without the field means 1.
    manifest = json.loads((default_model_dir() / "model.json").read_text())
    assert preset_from_dict(manifest["preset"]).diffusion.audio_guidance_scale == 8.0
    assert preset_from_dict(manifest["preset"]).diffusion.sync_guidance_scale == 3.0  # docs/RESULTS.md
    old = json.loads(json.dumps(manifest["preset"]))
    del old["diffusion"]["audio_guidance_scale"]
    assert preset_from_dict(old).diffusion.audio_guidance_scale == 1.0
