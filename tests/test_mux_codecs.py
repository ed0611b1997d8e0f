"""Any video in, a playable video out: streams mp4 cannot hold are re-encoded on their own clock.

Inputs are made with PyAV's own encoders (cinepak, MS-MPEG4 v2/v3, raw video in AVI, as old cameras and
Windows tools wrote them); every check is against the source's own frames, timestamps and a click train.
"""

from __future__ import annotations

import av
import numpy as np
import pytest

from action2sound import media
from action2sound.errors import Action2SoundError
from media_factory import click_train, find_clicks, frame_index, index_frames, packets

SR = 16_000
CLICK_TOL = 2  # samples: AAC keeps an isolated click's peak on its sample, resampling may move it by one
FPS = 12
N_FRAMES = 30  # 2.5 s


def _avi(tmp_path, codec: str):
    """A 48x32 AVI of index frames in `codec` -> path."""
    path = tmp_path / f"{codec}.avi"
    media.write_video(path, index_frames(N_FRAMES), fps=FPS, codec=codec)
    with av.open(str(path)) as c:
        assert c.streams.video[0].codec_context.name == codec  # the test really made what it names
    return path


def _odd_raw_avi(tmp_path) -> object:
    """A 47x33 bgr24 raw-video AVI (sizes 4:2:0 cannot hold) with a pcm track clicking at 0.5 s -> path."""
    path = tmp_path / "odd.avi"
    frames = index_frames(N_FRAMES, 33, 47)
    wave = (click_train(int(N_FRAMES / FPS * SR), [SR // 2], amplitude=0.5) * 32767).astype(np.int16)
    with av.open(str(path), "w") as out:
        vs = out.add_stream("rawvideo", rate=FPS)
        vs.width, vs.height, vs.pix_fmt = 47, 33, "bgr24"
        aus = out.add_stream("pcm_s16le", rate=SR)
        aus.layout = "mono"
        for i, img in enumerate(frames):
            f = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="bgr24")
            f.pts = i
            out.mux(vs.encode(f))
        a = av.AudioFrame.from_ndarray(wave[None], format="s16", layout="mono")
        a.sample_rate, a.pts = SR, 0
        out.mux(aus.encode(a))
        out.mux(aus.encode(None))
        out.mux(vs.encode(None))
    return path


def _frame_pts(path) -> list[float]:
    with av.open(str(path)) as c:
        vs = c.streams.video[0]
        return [float(f.pts * f.time_base) for f in c.decode(vs)]


@pytest.mark.parametrize("codec", ["cinepak", "msmpeg4v2", "msmpeg4", "rawvideo"])
def test_streams_mp4_refuses_are_reencoded_with_the_same_timing_and_the_track_aligned(tmp_path, codec):
    src = _avi(tmp_path, codec)
    plan = media.plan_mux(src, "mp4")
    assert not plan.copy_video and plan.encoder == "libx264" and codec in plan.reason
    clicks = np.array([700, 13_001, 37_777])
    out = tmp_path / "out.mp4"
    used = media.mux_audio(src, click_train(3 * SR, clicks), SR, out)
    assert used == plan
    with av.open(str(out)) as c:
        v = c.streams.video[0].codec_context
        assert (v.name, v.pix_fmt, v.width, v.height) == ("h264", "yuv420p", 48, 32)
    assert media.video_duration(out) == pytest.approx(media.video_duration(src), abs=1e-3)
    np.testing.assert_allclose(_frame_pts(out), _frame_pts(src), atol=1e-3)
    images = media.read_frames_at(out, (np.arange(N_FRAMES) + 0.5) / FPS, size=16)
    np.testing.assert_array_equal(frame_index(images), np.arange(N_FRAMES))  # each picture at its own time
    got = media.read_audio_file(out, SR)
    assert got.shape == (int(N_FRAMES / FPS * SR),)  # trimmed to the picture
    err = find_clicks(got, clicks, 1024) - clicks
    print(f"{codec} -> h264: alignment error (samples at {SR} Hz) {err.tolist()}")
    assert np.abs(err).max() <= CLICK_TOL, err


def test_h264_mp4_is_still_copied(tmp_path):
    src = tmp_path / "src.mp4"
    media.write_video(src, index_frames(20), fps=10)
    plan = media.plan_mux(src)
    assert plan.copy_video and plan.reason == "" and plan.record()["video"] == "copied"
    out = tmp_path / "out.mp4"
    media.mux_audio(src, np.zeros(2 * SR), SR, out, plan=plan)
    assert packets(out) == packets(src)


def test_mkv_keeps_a_stream_it_takes_and_reencodes_one_it_does_not(tmp_path):
    v3 = _avi(tmp_path, "msmpeg4")  # MS-MPEG4 v3 has a Matroska codec id: kept bit-exact
    out = tmp_path / "v3.mkv"
    plan = media.mux_audio(v3, click_train(3 * SR, [8_000]), SR, out)
    assert plan.copy_video and plan.container == "matroska"
    assert [p[0] for p in packets(out)] == [p[0] for p in packets(v3)]
    got = media.read_audio_file(out, SR)
    assert abs(find_clicks(got, [8_000], 512)[0] - 8_000) <= CLICK_TOL

    cinepak = _avi(tmp_path, "cinepak")
    plan = media.mux_audio(cinepak, np.zeros(SR), SR, tmp_path / "c.mkv")
    assert not plan.copy_video and plan.encoder == "libx264"
    np.testing.assert_allclose(_frame_pts(tmp_path / "c.mkv"), _frame_pts(cinepak), atol=1e-3)


def test_webm_preview_is_vp9_and_opus_with_the_track_aligned(tmp_path):
    src = tmp_path / "src.mp4"
    media.write_video(src, index_frames(25), fps=10)
    out = tmp_path / "preview.webm"
    plan = media.mux_audio(src, click_train(int(2.5 * 22_050), [5_000, 40_000]), 22_050, out)
    assert plan.encoder == "libvpx-vp9"
    with av.open(str(out)) as c:
        assert c.streams.video[0].codec_context.name == "vp9"
        assert (c.streams.audio[0].codec_context.name, c.streams.audio[0].rate) == ("opus", 48_000)
    got = media.read_audio_file(out, 48_000)
    want = np.round(np.array([5_000, 40_000]) * 48_000 / 22_050).astype(int)
    err = find_clicks(got, want, 2048) - want
    assert np.abs(err).max() <= 3, err  # 48 kHz samples: the 22.05 kHz tolerance, resampled
    images = media.read_frames_at(out, (np.arange(25) + 0.5) / 10, size=16)
    np.testing.assert_array_equal(frame_index(images), np.arange(25))


def test_odd_sized_raw_video_and_its_pcm_track_kept_as_a_second_track(tmp_path):
    src = _odd_raw_avi(tmp_path)
    plan = media.plan_mux(src, "mp4", keep_original_audio="add")
    assert not plan.copy_video and plan.copy_original_audio is not None
    out = tmp_path / "out.mp4"
    media.mux_audio(src, click_train(3 * SR, [20_000]), SR, out, keep_original_audio="add", plan=plan)
    with av.open(str(out)) as c:
        assert (c.streams.video[0].width, c.streams.video[0].height) == (46, 32)  # even for 4:2:0
        assert len(c.streams.audio) == 2
    first = media.read_audio(out, 0.0, 2.5, SR)
    assert abs(find_clicks(first, [20_000], 512)[0] - 20_000) <= CLICK_TOL
    assert abs(_second_track_peak(out) - 0.5) < 0.01  # the AVI's own sound, copied

    web = tmp_path / "out.webm"  # webm takes no pcm: the original track is re-encoded (opus) beside ours
    plan = media.mux_audio(src, np.zeros(3 * SR), SR, web, keep_original_audio="add")
    assert plan.copy_original_audio is False and plan.record()["original_audio"] == "re-encoded"
    assert abs(_second_track_peak(web) - 0.5) < 0.01


def _second_track_peak(path) -> float:
    """Seconds from the first frame to the loudest sample of the second audio track."""
    with av.open(str(path)) as c:
        a = c.streams.audio[1]
        start = float(c.streams.video[0].start_time * c.streams.video[0].time_base)
        frames = [(float(f.pts * f.time_base), f.to_ndarray()[0].astype(np.float64)) for f in c.decode(a)]
    t, _ = max(((t0 + int(np.argmax(np.abs(x))) / a.rate, np.abs(x).max()) for t0, x in frames),
                     key=lambda tx: tx[1])
    return t - start


def test_plan_errors_name_the_input(tmp_path):
    wav = tmp_path / "only_sound.wav"
    media.write_audio(wav, np.zeros(SR), SR)
    with pytest.raises(Action2SoundError, match="only_sound.wav.*no video stream"):
        media.plan_mux(wav)
    src = _avi(tmp_path, "cinepak")
    with pytest.raises(Action2SoundError, match="unknown output container 'avi'"):
        media.plan_mux(src, "avi")
    with pytest.raises(Action2SoundError, match=r"out\.avi.*use one of \.mp4"):
        media.mux_audio(src, np.zeros(SR), SR, tmp_path / "out.avi")
    assert not (tmp_path / "out.avi").exists()


def test_a_plan_made_for_another_mode_or_container_is_not_used(tmp_path):
    src = tmp_path / "src.mp4"
    media.write_video(src, index_frames(20), fps=10, audio=click_train(2 * SR, [4_000]), sample_rate=SR)
    replace_plan = media.plan_mux(src, "mp4")
    assert replace_plan.copy_original_audio is None
    out = tmp_path / "add.mp4"
    used = media.mux_audio(src, np.zeros(2 * SR), SR, out, keep_original_audio="add", plan=replace_plan)
    assert used.copy_original_audio is True
    with av.open(str(out)) as c:
        assert len(c.streams.audio) == 2  # the original track was not dropped
    used = media.mux_audio(src, np.zeros(2 * SR), SR, tmp_path / "o.webm", plan=replace_plan)
    assert used.container == "webm" and used.encoder == "libvpx-vp9"


def test_a_rotated_video_reencoded_for_the_browser_comes_out_upright(tmp_path):
    from media_factory import asymmetric_picture

    src = tmp_path / "phone.mp4"
    media.write_video(src, np.stack([asymmetric_picture()] * 10), fps=10, rotation=90)
    want = media.read_frames_at(src, [0.05], size=None)[0]  # upright, as players show it: [48, 32, 3]
    out = tmp_path / "preview.webm"
    media.mux_audio(src, np.zeros(SR), SR, out)
    info = media.probe(out)
    assert (info.rotation, info.width, info.height) == (0, 32, 48)
    got = media.read_frames_at(out, [0.05], size=None)[0]
    assert got.shape == want.shape and np.abs(got.astype(int) - want.astype(int)).mean() < 12
