"""Media I/O against files the tests write: exact frame picks, rotation, sample-exact audio, muxing, errors."""

from __future__ import annotations

import os

import numpy as np
import pytest
import soundfile

from action2sound import media
from action2sound.errors import Action2SoundError
from media_factory import (
    asymmetric_picture, click_train, find_clicks, frame_index, index_frames, packets, write_audio_pyav,
    write_faststart_mp4,
)

SR = 16_000
# AAC is lossy but keeps an isolated click's peak on its sample; resampling may move it by one.
CLICK_TOL = 2


def _expected_index(frame_times: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Index of the last frame with pts <= t (the first frame for times before it)."""
    return np.clip(np.searchsorted(frame_times, t, side="right") - 1, 0, None)


# ------------------------------------------------------------------------------------------------ frames


@pytest.mark.parametrize("ext", ["mp4", "mkv"])
def test_variable_frame_rate_picks_last_frame_at_or_before_each_time(tmp_path, ext):
    rng = np.random.default_rng(0)
    n = 40
    # Irregular gaps of 12..180 ms, first frame at 0; mkv keeps milliseconds, so round to them.
    times = np.round(np.concatenate([[0.0], np.cumsum(rng.uniform(0.012, 0.18, n - 1))]), 3)
    path = tmp_path / f"vfr.{ext}"
    media.write_video(path, index_frames(n), fps=30, frame_times=times)
    # Exact frame times, points 2 ms after and 2 ms before them, and times past the end.
    query = np.concatenate([times, times[1:] + 0.002, times[1:] - 0.002, [times[-1] + 0.5, times[-1] + 3]])
    query = rng.permutation(query)  # read_frames_at must not depend on the order asked
    images, picked = media.read_frames_at(path, query, size=16, return_times=True)
    want = _expected_index(times, query)
    assert images.shape == (query.size, 16, 16, 3) and images.dtype == np.uint8
    np.testing.assert_array_equal(frame_index(images), want)
    np.testing.assert_allclose(picked, times[want], atol=1e-4)


def test_read_frames_uses_centres_of_equal_slices(tmp_path):
    path = tmp_path / "cfr.mp4"
    media.write_video(path, index_frames(50), fps=25)
    images, picked = media.read_frames(path, start=0.3, duration=1.0, num_frames=8, size=24, return_times=True)
    targets = 0.3 + (np.arange(8) + 0.5) / 8
    want = np.floor(targets * 25 + 1e-9).astype(int)  # frame k is shown on [k/25, (k+1)/25)
    np.testing.assert_array_equal(frame_index(images), want)
    np.testing.assert_allclose(picked, want / 25, atol=1e-6)
    np.testing.assert_allclose(media.clip_frame_times(0.3, 1.0, 8), targets)


def test_several_sizes_from_one_pass_equal_separate_reads(tmp_path):
    # The pipeline reads the tower's frames and the sync stream's dense small ones together: the same pictures
    # as two reads, each set in its own order and size.
    path = tmp_path / "both.mp4"
    media.write_video(path, index_frames(60), fps=25)
    tower = np.array([1.9, 0.1, 1.1, 0.6])
    dense = np.linspace(0.0, 2.0, 43)[::-1]
    got = media.read_frames_at_sizes(path, [(tower, 32), (dense, 16)])
    np.testing.assert_array_equal(got[0], media.read_frames_at(path, tower, size=32))
    np.testing.assert_array_equal(got[1], media.read_frames_at(path, dense, size=16))
    np.testing.assert_array_equal(frame_index(got[1]), np.floor(dense * 25 + 1e-9).astype(int))
    with pytest.raises(Action2SoundError, match="no frame times"):
        media.read_frames_at_sizes(path, [(tower, 32), ([], 16)])


def test_seek_then_decode_matches_the_timeline(tmp_path):
    # 8 s at 25 fps with B-frames and keyframes seconds apart: the seek lands on a keyframe before the
    # window and decoding runs forward to the wanted frames.
    path = tmp_path / "long.mp4"
    frames = index_frames(200)
    media.write_video(path, frames, fps=25)
    for start in (0.0, 1.37, 4.02, 6.5, 7.9):
        images, picked = media.read_frames(path, start, 1.0, 5, size=16, return_times=True)
        targets = media.clip_frame_times(start, 1.0, 5)
        want = np.minimum(np.floor(targets * 25 + 1e-9).astype(int), 199)
        np.testing.assert_array_equal(frame_index(images), want, err_msg=f"start {start}")


@pytest.mark.parametrize("rotation", [90, 180, 270])
def test_rotated_file_reports_display_size_and_frames_come_out_turned(tmp_path, rotation):
    img = asymmetric_picture(32, 48)
    path = tmp_path / f"rot{rotation}.mp4"
    media.write_video(path, np.stack([img] * 5), fps=10, rotation=rotation)
    info = media.probe(path)
    assert info.rotation == rotation
    assert (info.width, info.height) == ((32, 48) if rotation in (90, 270) else (48, 32))
    full = media.read_frames(path, 0.0, 0.5, 2, size=None)
    want = np.rot90(img, k=rotation // 90)  # counter-clockwise turns
    assert full.shape == (2,) + want.shape
    assert np.abs(full[0].astype(int) - want).mean() < 6
    # The other three orientations are far off: the check can tell a wrong turn.
    for k in {0, 1, 2, 3} - {rotation // 90}:
        other = np.rot90(img, k=k)
        if other.shape == want.shape:
            assert np.abs(full[0].astype(int) - other).mean() > 30


def test_display_matrix_rotation_matches_ffmpeg_convention():
    # A phone's portrait video: 16.16 matrix [0, 1, 0; -1, 0, 0; 0, 0, 1] (tag rotate=90, i.e. turn
    # clockwise 90 to display): FFmpeg's av_display_rotation_get says -90, i.e. 270 counter-clockwise.
    portrait = [0, 65536, 0, -65536, 0, 0, 0, 0, 1 << 30]
    assert media.rotation_from_display_matrix(portrait) == 270
    assert media.rotation_from_display_matrix([65536, 0, 0, 0, 65536, 0, 0, 0, 1 << 30]) == 0
    assert media.rotation_from_display_matrix([-65536, 0, 0, 0, -65536, 0, 0, 0, 1 << 30]) == 180
    img = np.arange(6).reshape(2, 3, 1)
    # 90 counter-clockwise: the top row becomes the left column, read bottom-up.
    np.testing.assert_array_equal(media.rotate_image(img, 90)[:, 0, 0], [2, 1, 0])


def test_squash_keeps_the_whole_picture_centre_crop_keeps_the_middle(tmp_path):
    img = np.zeros((32, 64, 3), np.uint8)
    img[:, :16] = (230, 20, 20)  # left quarter red
    img[:, 16:48] = (20, 230, 20)  # middle half green
    img[:, 48:] = (20, 20, 230)  # right quarter blue
    path = tmp_path / "wide.mp4"
    media.write_video(path, np.stack([img] * 3), fps=10)
    sq = media.read_frames(path, 0, 0.3, 1, size=16, resize="squash")[0].astype(int)
    cc = media.read_frames(path, 0, 0.3, 1, size=16, resize="center_crop")[0].astype(int)
    assert sq[8, 1].argmax() == 0 and sq[8, 8].argmax() == 1 and sq[8, 14].argmax() == 2
    assert (cc[:, 1:15].argmax(axis=-1) == 1).all()
    with pytest.raises(Action2SoundError):
        media.read_frames(path, 0, 0.3, 1, size=16, resize="stretch")


# ------------------------------------------------------------------------------------------------- audio


def test_click_train_through_write_video_comes_back_on_its_samples(tmp_path):
    clicks = np.array([800, 5_000, 16_000, 31_999, 47_500, 70_001, 95_000])
    path = tmp_path / "clicks.mp4"
    media.write_video(path, index_frames(150), fps=25, audio=click_train(6 * SR, clicks), sample_rate=SR)
    info = media.probe(path)
    assert (info.has_audio, info.sample_rate, info.duration) == (True, SR, 6.0)

    whole = media.read_audio_file(path, SR)
    assert whole.shape == (6 * SR,) and whole.dtype == np.float32
    err = find_clicks(whole, clicks, 1024) - clicks
    assert np.abs(err).max() <= CLICK_TOL, err

    # A window far into the file goes through the seek path.
    start, dur = 3.0, 1.5
    win = media.read_audio(path, start, dur, SR)
    assert win.shape == (24_000,)
    inside = clicks[(clicks >= start * SR + 1024) & (clicks < (start + dur) * SR - 1024)]
    assert inside.size >= 1
    err = find_clicks(win, inside - int(start * SR), 1024) - (inside - int(start * SR))
    assert np.abs(err).max() <= CLICK_TOL, err

    # Resampled to 22,050 Hz the click lands on its scaled position.
    up = media.read_audio(path, 0.0, 2.0, 22_050)
    assert up.shape == (44_100,)
    scaled = np.round(clicks[clicks < 2 * SR - 1024] * 22_050 / SR).astype(int)
    assert np.abs(find_clicks(up, scaled, 1024) - scaled).max() <= CLICK_TOL

    # Past the end: zero-padded on the right, still exactly round(duration * rate) samples.
    tail = media.read_audio(path, 5.5, 2.0, SR)
    assert tail.shape == (32_000,) and np.all(tail[SR:] == 0)


def test_audio_is_mono_mean_of_channels(tmp_path):
    stereo = np.zeros((SR, 2), np.float32)
    stereo[100, 0] = 0.8
    stereo[200, 1] = -0.6
    path = tmp_path / "stereo.wav"
    soundfile.write(path, stereo, SR, subtype="FLOAT")
    x = media.read_audio_file(path, SR)
    assert x.shape == (SR,)
    np.testing.assert_allclose(x[[100, 200]], [0.4, -0.3], atol=1e-6)
    assert np.abs(np.delete(x, [100, 200])).max() == 0


def test_resample_keeps_a_tone_and_its_timing():
    rate_in, rate_out = 16_000, 22_050
    t = np.arange(rate_in) / rate_in
    tone = np.sin(2 * np.pi * 1000.0 * t)  # float64 in: taken as float32, as every caller gets
    y = media.resample(tone, rate_in, rate_out)
    assert y.dtype == np.float32 and y.shape == (rate_out,)
    assert np.array_equal(y, media.resample(tone.astype(np.float32), rate_in, rate_out))
    # Output sample j sits at input time j / rate_out (soxr removes its filter delay): away from the edges
    # the resampled tone is the tone sampled at the new rate.
    want = np.sin(2 * np.pi * 1000.0 * np.arange(rate_out) / rate_out)
    assert np.abs(y[500:-500] - want[500:-500]).max() < 1e-3
    same = media.resample(tone[:, None], rate_in, rate_in)  # [T, 1] reads as mono [T]; equal rates copy nothing new
    assert same.shape == (rate_in,) and np.array_equal(same, tone.astype(np.float32))
    with pytest.raises(Action2SoundError, match="mono"):
        media.resample(np.zeros((100, 2)), rate_in, rate_out)


def test_the_extension_lists_cover_what_we_read():
    audio_tested = {".wav", ".flac", ".ogg", ".mp3", ".m4a"}  # test_audio_only_files
    video_tested = {".mp4", ".mkv", ".webm", ".avi", ".mov", ".ts"}  # test_other_containers and the rest
    assert audio_tested <= set(media.AUDIO_EXTENSIONS) and video_tested <= set(media.VIDEO_EXTENSIONS)
    assert media.VIDEO_EXTENSIONS[0] == ".mp4"  # looked up by stem in this order: EPIC ships .MP4
    every = media.VIDEO_EXTENSIONS + media.AUDIO_EXTENSIONS
    assert len(set(every)) == len(every) and all(e == e.lower() and e.startswith(".") for e in every)
    assert set(media.AUDIO_WRITE_EXTENSIONS) <= set(media.AUDIO_EXTENSIONS)


@pytest.mark.parametrize("name,codec,rate,tol", [
    ("a.wav", None, SR, 0), ("a.flac", None, SR, 0), ("a.ogg", "libopus", 48_000, CLICK_TOL),
    ("a.mp3", "libmp3lame", 44_100, CLICK_TOL),
    ("a.m4a", "aac", 44_100, CLICK_TOL),
])
def test_audio_only_files(tmp_path, name, codec, rate, tol):
    clicks = np.array([int(0.25 * rate), int(0.61 * rate), int(1.3 * rate)])
    wave = click_train(2 * rate, clicks)
    path = tmp_path / name
    if codec is None:
        media.write_audio(path, wave, rate)
    else:
        write_audio_pyav(path, wave, rate, codec)
    x = media.read_audio(path, 0.0, 2.0, rate)
    assert x.shape == (2 * rate,)
    err = find_clicks(x, clicks, 1024) - clicks
    assert np.abs(err).max() <= tol, f"{name} {codec}: {err}"
    with pytest.raises(Action2SoundError, match="no video stream"):
        media.read_frames(path, 0, 1, 2, 16)


def test_write_audio_clips_and_checks_extension(tmp_path):
    path = tmp_path / "x.wav"
    media.write_audio(path, np.array([0.5, 2.0, -3.0], np.float32), SR)
    back, rate = soundfile.read(path, dtype="float32")
    assert rate == SR and soundfile.info(path).subtype == "PCM_16"
    np.testing.assert_allclose(back, [0.5, 32767 / 32768, -1.0], atol=1 / 32768)
    with pytest.raises(Action2SoundError, match="x.mp3"):
        media.write_audio(tmp_path / "x.mp3", np.zeros(4), SR)
    assert sorted(os.listdir(tmp_path)) == ["x.wav"]


def test_no_audio_stream_raises_when_required_else_zeros(tmp_path):
    path = tmp_path / "silent.mp4"
    media.write_video(path, index_frames(10), fps=10)
    assert not media.probe(path).has_audio
    with pytest.raises(Action2SoundError, match="silent.mp4.*no audio stream"):
        media.read_audio(path, 0, 1, SR)
    z = media.read_audio(path, 0, 1.5, SR, required=False)
    assert z.shape == (24_000,) and not z.any()


# -------------------------------------------------------------------------------------------------- mux


def test_mux_aligns_the_track_and_copies_the_video_stream(tmp_path):
    src = tmp_path / "src.mp4"
    original = click_train(4 * SR, [8_000], amplitude=0.5)
    media.write_video(src, index_frames(100), fps=25, audio=original, sample_rate=SR)
    clicks = np.array([1_000, 12_345, 33_333, 50_001, 63_000])
    # Longer than the 4 s video: must be trimmed to it.
    track = click_train(5 * SR, np.concatenate([clicks, [70_000]]))
    out = tmp_path / "out.mp4"
    media.mux_audio(src, track, SR, out)

    assert packets(out, "video") == packets(src, "video")  # byte-identical, same timestamps: copied
    got = media.read_audio_file(out, SR)
    assert got.shape == (4 * SR,)
    err = find_clicks(got, clicks, 1024) - clicks
    print(f"mux alignment error (samples at {SR} Hz): {err.tolist()}")
    assert np.abs(err).max() <= CLICK_TOL, err
    assert np.abs(got[7_000:9_000]).max() < 0.05  # "replace": the source's click is gone
    assert sorted(os.listdir(tmp_path)) == ["out.mp4", "src.mp4"]  # no temp file left

    mixed = tmp_path / "mix.mp4"
    media.mux_audio(src, track, SR, mixed, keep_original_audio="mix")
    m = media.read_audio_file(mixed, SR)
    assert np.abs(find_clicks(m, [8_000] + clicks.tolist(), 512) - ([8_000] + clicks.tolist())).max() <= CLICK_TOL

    both = tmp_path / "add.mp4"
    media.mux_audio(src, track, SR, both, keep_original_audio="add")
    assert packets(both, "video") == packets(src, "video")
    import av

    with av.open(str(both)) as c:
        assert len(c.streams.audio) == 2
        second = [bytes(p) for p in c.demux(c.streams.audio[1]) if p.size]
    assert second == [p[0] for p in packets(src, "audio")]  # the original track, copied


@pytest.mark.parametrize("name", ["src.ts", "src.mkv"])
def test_mux_from_containers_without_stream_durations(tmp_path, name):
    # .ts: the video starts at 0.08 s on the file clock, the audio priming earlier. .mkv: the container's
    # duration is the audio's (with AAC end padding), not the video's.
    src = tmp_path / name
    media.write_video(src, index_frames(50), fps=25, audio=click_train(2 * SR, [5_000]), sample_rate=SR)
    out = tmp_path / "out.mp4"
    clicks = np.array([2_000, 17_777])
    media.mux_audio(src, click_train(2 * SR, clicks), SR, out)
    got = media.read_audio_file(out, SR)
    assert got.shape == (2 * SR,)
    assert np.abs(find_clicks(got, clicks, 1024) - clicks).max() <= CLICK_TOL
    images = media.read_frames(out, 0.0, 2.0, 4, size=16)
    np.testing.assert_array_equal(frame_index(images), [6, 18, 31, 43])  # 0.25 s .. 1.75 s at 25 fps


def test_mux_keeps_rotation_and_refuses_to_overwrite(tmp_path):
    src = tmp_path / "rot.mp4"
    media.write_video(src, np.stack([asymmetric_picture()] * 10), fps=10, rotation=90)
    out = tmp_path / "rot_out.mp4"
    media.mux_audio(src, click_train(SR, [4_000]), SR, out)
    info = media.probe(out)
    assert (info.rotation, info.width, info.height, info.has_audio) == (90, 32, 48, True)
    with pytest.raises(Action2SoundError, match="overwrite"):
        media.mux_audio(src, np.zeros(SR), SR, src)


# ----------------------------------------------------------------------------------------- containers


@pytest.mark.parametrize("name,codec,rate", [
    ("v.mkv", "libx264", SR), ("v.webm", "libvpx-vp9", 48_000), ("v.webm", "libvpx", 48_000),
    ("v.avi", "mpeg4", SR), ("v.avi", "mjpeg", SR), ("v.mov", "libx264", SR), ("v.mkv", "mpeg4", SR),
    # MPEG-TS: timestamps do not start at 0 and the AAC priming is not skipped on decode.
    ("v.ts", "libx264", SR),
])
def test_other_containers(tmp_path, name, codec, rate):
    clicks = np.array([int(0.3 * rate), int(1.1 * rate)])
    path = tmp_path / name
    media.write_video(path, index_frames(20), fps=10, audio=click_train(2 * rate, clicks), sample_rate=rate,
                      codec=codec)
    info = media.probe(path)
    assert (info.has_video, info.has_audio, info.fps, info.width, info.height) == (True, True, 10.0, 48, 32)
    images, picked = media.read_frames(path, 0.0, 2.0, 10, size=16, return_times=True)
    want = np.arange(1, 20, 2)  # targets 0.1, 0.3, ... fall exactly on frames 1, 3, ...
    np.testing.assert_array_equal(frame_index(images), want)
    np.testing.assert_allclose(picked, want / 10, atol=1e-3)
    x = media.read_audio(path, 0.0, 2.0, rate)
    err = find_clicks(x, clicks, 1024) - clicks
    assert np.abs(err).max() <= CLICK_TOL, f"{name} {codec}: {err}"


# -------------------------------------------------------------------------------------------- bad input


def _bad_files(tmp_path):
    good = tmp_path / "good.mp4"
    media.write_video(good, np.random.default_rng(0).integers(0, 255, (20, 64, 64, 3), np.uint8), fps=10)
    data = good.read_bytes()
    (tmp_path / "truncated.mp4").write_bytes(data[: len(data) // 2])  # index (moov) at the end: lost
    fast = tmp_path / "fast.mp4"
    write_faststart_mp4(fast, np.random.default_rng(1).integers(0, 255, (20, 64, 64, 3), np.uint8), 10)
    fdata = fast.read_bytes()
    (tmp_path / "cut_faststart.mp4").write_bytes(fdata[: len(fdata) * 2 // 3])  # index intact, data cut
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "notes.mp4").write_text("these are my notes, not a video\n" * 20)
    return {
        "missing.mp4": "not found", "empty.mp4": "empty", "truncated.mp4": "truncated",
        "cut_faststart.mp4": "truncated", "notes.mp4": "not a media file",
    }


def test_bad_inputs_name_the_file(tmp_path):
    cases = _bad_files(tmp_path)
    calls = {
        "probe": lambda p: media.probe(p),
        "frames": lambda p: media.read_frames(p, 0, 1, 4, 16),
        "audio": lambda p: media.read_audio(p, 0, 1, SR, required=False),
        "mux": lambda p: media.mux_audio(p, np.zeros(SR), SR, tmp_path / "o.mp4"),
    }
    for name, what in cases.items():
        for call_name, call in calls.items():
            with pytest.raises(Action2SoundError) as info:
                call(tmp_path / name)
            msg = str(info.value)
            assert name in msg and what in msg and "\n" not in msg, (name, call_name, msg)
    assert not (tmp_path / "o.mp4").exists()
    wav = tmp_path / "only_sound.wav"
    media.write_audio(wav, np.zeros(SR), SR)
    for call in (lambda: media.read_frames(wav, 0, 1, 4, 16), lambda: media.mux_audio(wav, np.zeros(SR), SR,
                                                                                       tmp_path / "o.mp4")):
        with pytest.raises(Action2SoundError, match="only_sound.wav.*no video stream"):
            call()


def test_write_video_rejects_what_it_cannot_encode_and_leaves_nothing(tmp_path):
    frames = index_frames(3)
    bad = [
        (tmp_path / "a.webm", dict(), "does not support"),  # libx264 cannot go in webm
        (tmp_path / "b.webm", dict(codec="libvpx", audio=np.zeros(100), sample_rate=22_050), "could not be written"),
        (tmp_path / "c.mp4", dict(audio=np.zeros(100)), "sample_rate"),
    ]
    for path, kw, what in bad:
        with pytest.raises(Action2SoundError, match=what) as info:
            media.write_video(path, frames, 10, **kw)
        assert path.name in str(info.value)
    with pytest.raises(Action2SoundError, match="even"):
        media.write_video(tmp_path / "d.mp4", np.zeros((2, 15, 16, 3), np.uint8), 10)
    with pytest.raises(Action2SoundError, match="uint8"):
        media.write_video(tmp_path / "e.mp4", np.zeros((2, 16, 16, 3), np.float32), 10)
    assert os.listdir(tmp_path) == []
