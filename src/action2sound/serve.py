"""The web UI (`action2sound serve`): upload a video, choose its ambient, get it back with sound.

The page takes a video, the ambient (retrieved / quiet / none / a reference recording from an offset), the
video and audio guidance, the sampler steps and the seed; while it works it shows a progress bar that counts
sampled windows; then the video playing with its new sound, the spectrogram under the frames, the retrieved
clip(s) with their scores, and downloads: the wav, the mp4 and the JSON record `generate` writes.

What keeps it safe to leave running:
- it listens on 127.0.0.1 unless told another host;
- one job at a time (Gradio's queue, concurrency 1): a generation takes every core there is;
- only files under its own temporary folder are ever served: Gradio's upload cache is that folder, no other
  path is allowed, and the folder is deleted when the server stops;
- uploads are limited in size (checked by the browser and again here) and in duration.

The preview is WebM (VP9 + Opus) because Chromium as Linux distributions build it plays no H.264; the
download stays the mp4 of `generate` (the picture copied when mp4 takes it, else H.264).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import Action2SoundError

AMBIENTS = ("retrieved", "quiet", "none", "reference recording")
KEEP_JOBS_S = 3600  # a job's files stay downloadable this long (and while the server runs: at least the last one)
INSTALL_HINT = 'pip install "action2sound[ui]" (or, in a checkout, pip install -e ".[ui]")'


@dataclass(frozen=True)
class ServeSettings:
    """Everything `action2sound serve` is started with."""

    model: str | None = None  # a model directory; None: the packaged default model
    index: str | None = None  # a retrieval index folder; None: MODEL/index when there is one
    host: str = "127.0.0.1"
    port: int = 7860
    device: str = "auto"
    max_upload_mb: float = 200.0
    max_seconds: float = 120.0  # longest video accepted (generation on a CPU takes about its length or more)
    max_queue: int = 8  # jobs waiting behind the running one; more are turned away

    def check(self) -> None:
        if not 0 < self.port < 65536:
            raise Action2SoundError(f"--port must be in 1..65535, got {self.port}")
        if not self.max_upload_mb > 0 or not self.max_seconds > 0 or self.max_queue < 1:
            raise Action2SoundError("--max-upload-mb and --max-seconds must be > 0 and --max-queue >= 1, got "
                                    f"{self.max_upload_mb}, {self.max_seconds} and {self.max_queue}")


@dataclass(frozen=True)
class JobRequest:
    """One submission of the form (paths are uploads in the server's folder)."""

    video: Path
    ambient: str = "retrieved"  # one of AMBIENTS
    reference: Path | None = None  # the reference recording, for ambient "reference recording"
    offset: float = 0.0  # seconds into the reference recording
    video_guidance: float | None = None
    audio_guidance: float | None = None
    sync_guidance: float | None = None
    steps: int | None = None
    seed: int = 0


@dataclass(frozen=True)
class JobResult:
    """What the page shows after a job: the files (all inside the job folder) and what to say about them."""

    preview: Path  # WebM: plays in any browser
    video: Path  # the mp4 download
    audio: Path
    image: Path
    record: Path
    clips: list[list[Any]]  # rows: clip id, long video, score, ambient dB
    summary: str


# ----------------------------------------------------------------------------------------------- the work


def _name(path: Path) -> str:
    """The name the user gave the file (Gradio keeps it as the upload's file name)."""
    return path.name


def _as_user_error(err: Exception, *uploads: Path | None) -> Action2SoundError:
    """An error whose message names the user's files, not the server's temporary paths."""
    msg = str(err) if isinstance(err, Action2SoundError) else f"{type(err).__name__}: {err}"
    for up in uploads:
        if up is not None:
            msg = msg.replace(str(up), _name(up))
    return Action2SoundError(msg)


def check_upload(video: Path, settings: ServeSettings) -> float:
    """The video's duration in seconds, or an error naming the file and the limit it broke."""
    from . import media

    size_mb = video.stat().st_size / 2**20 if video.is_file() else 0.0
    if size_mb > settings.max_upload_mb:
        raise Action2SoundError(f"{_name(video)}: {size_mb:.0f} MB is over this server's {settings.max_upload_mb:g} "
                                "MB limit; cut the video shorter, or start the server with a larger --max-upload-mb")
    try:
        info = media.probe(video)
    except Action2SoundError as err:
        raise _as_user_error(err, video) from None
    if not info.has_video:
        raise Action2SoundError(f"{_name(video)}: has no video stream; upload a video (a recording goes in the "
                                "reference recording box)")
    duration = media.video_duration(video)
    if duration > settings.max_seconds:
        raise Action2SoundError(f"{_name(video)}: {duration:.1f} s is longer than this server's "
                                f"{settings.max_seconds:g} s limit; cut it shorter, or start the server with a "
                                "larger --max-seconds")
    return duration


def _safe_stem(name: str) -> str:
    stem = re.sub(r"[^\w .()-]+", "_", Path(name).stem).strip(" ._")
    return stem[:60] or "video"


def _prune(jobs: Path, max_age_s: float) -> None:
    """Delete job folders older than max_age_s: a server left running must not fill its disk."""
    import time

    if not jobs.is_dir():
        return
    for job in jobs.iterdir():
        if time.time() - job.stat().st_mtime > max_age_s:
            shutil.rmtree(job, ignore_errors=True)


def run_job(model, request: JobRequest, workdir: Path, settings: ServeSettings,
            progress: Callable[[int, int], None] | None = None) -> JobResult:
    """Generate one job into a fresh folder under `workdir` -> JobResult; errors name the user's files."""
    import time

    from . import media
    from .api import make_options

    t0 = time.perf_counter()
    duration = check_upload(request.video, settings)
    if request.ambient not in AMBIENTS:
        raise Action2SoundError(f"unknown ambient {request.ambient!r}; choose one of {', '.join(AMBIENTS)}")
    ambient: str = request.ambient
    if ambient == "reference recording":
        if request.reference is None:
            raise Action2SoundError("the reference recording ambient needs a recording: upload one, or choose "
                                    "another ambient")
        ambient = str(request.reference)
    try:
        opts = make_options(ambient=ambient, ambient_offset=float(request.offset or 0.0), seed=int(request.seed),
                            steps=None if request.steps is None else int(request.steps),
                            video_guidance=request.video_guidance, audio_guidance=request.audio_guidance,
                            sync_guidance=request.sync_guidance)
        media.plan_mux(request.video)  # a video that cannot be written fails before the work
        _prune(workdir / "jobs", KEEP_JOBS_S)
        job = workdir / "jobs" / uuid.uuid4().hex[:12]
        (result,) = model.pipeline.generate([request.video], opts, progress=progress)
        if isinstance(result, Exception):
            raise result
        stem = _safe_stem(_name(request.video))
        paths = result.save(job, stem)
        preview = job / f"{stem}.preview.webm"
        media.mux_audio(request.video, result.audio, result.sample_rate, preview)
    except Exception as err:  # noqa: BLE001 - every failure reaches the page as one line
        raise _as_user_error(err, request.video, request.reference) from None
    cond = result.metadata.get("condition", {})
    clips = [[c.get("clip_id"), c.get("video_id"), c.get("score"), c.get("ambient_db")] for c in cond.get("clips", [])]
    if cond.get("mode") == "file":
        source = f"the reference recording from {cond.get('offset', 0):g} s"
    elif clips:
        source = f"{cond.get('mode')}: clip {clips[0][0]} (similarity {clips[0][2]:.3f})"
    else:
        source = str(cond.get("mode", request.ambient))
    s = result.metadata["settings"]
    summary = (f"**{_name(request.video)}**: {duration:.2f} s, {len(result.metadata.get('windows', []))} window(s); "
               f"ambient {source}; {s['steps']} steps, video guidance {s['video_guidance']:g}, audio guidance "
               f"{s['audio_guidance']:g}, sync guidance {s['sync_guidance']:g}, seed {s['seed']}; "
               f"{time.perf_counter() - t0:.1f} s.")
    return JobResult(preview, paths["video"], paths["audio"], paths["image"], paths["json"], clips, summary)


# ------------------------------------------------------------------------------------------------ the page


def _defaults(model) -> dict[str, float]:
    """The sliders' starting values: the model's own (the embedded default model stores audio guidance 8)."""
    d = model.pipeline.preset.diffusion
    return {"steps": int(d.sample_steps), "video_guidance": float(d.guidance_scale),
            "audio_guidance": float(d.audio_guidance_scale), "sync_guidance": float(d.sync_guidance_scale)}


def build_app(model, workdir: Path, settings: ServeSettings):
    """The Gradio Blocks of the page (not yet queued or launched)."""
    import gradio as gr

    dflt = _defaults(model)
    has_index = model.pipeline.retrieval is not None

    def generate(video, ambient, reference, offset, video_guidance, audio_guidance, sync_guidance, steps, seed,
                 progress=gr.Progress()):
        if not video:
            raise gr.Error("upload a video first")
        progress(0.0, desc="reading the video")

        def on_window(done: int, total: int) -> None:
            progress((done, total), desc="sampling windows", unit="windows")

        try:
            r = run_job(model, JobRequest(
                video=Path(video), ambient=ambient, reference=Path(reference) if reference else None,
                offset=offset or 0.0, video_guidance=video_guidance, audio_guidance=audio_guidance,
                sync_guidance=sync_guidance, steps=steps, seed=int(seed or 0)), workdir, settings, on_window)
        except Action2SoundError as err:
            raise gr.Error(str(err)) from None
        return (str(r.preview), str(r.image), r.clips, [str(r.video), str(r.audio), str(r.record)], r.summary)

    # System fonts: the page must not fetch anything from outside (a server may have no internet).
    theme = gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"],
                              font_mono=["ui-monospace", "monospace"])
    with gr.Blocks(title="Action2Sound", analytics_enabled=False, delete_cache=(3600, 3600)) as app:
        gr.Markdown("# Action2Sound\nThe sounds of the actions in a video, with the ambient under your control. "
                    f"Videos up to {settings.max_seconds:g} s and {settings.max_upload_mb:g} MB; one job at a time.")
        with gr.Row():
            with gr.Column():
                video = gr.Video(label="Video", sources=["upload"], elem_id="video-in")
                ambient = gr.Radio(list(AMBIENTS), value="retrieved" if has_index else "none", label="Ambient",
                                   info="retrieved: the sound of the closest training clip; quiet: a low-ambient "
                                        "one (the action alone); none: the learned null; or your own recording",
                                   elem_id="ambient")
                with gr.Row():
                    reference = gr.File(label="Reference recording (audio or video)", file_types=["audio", "video"],
                                        elem_id="reference")
                    offset = gr.Number(value=0.0, minimum=0.0, label="Offset into it (s)", elem_id="offset")
                video_guidance = gr.Slider(0.0, 10.0, value=dflt["video_guidance"], step=0.1,
                                           label="Video guidance", elem_id="video-guidance")
                audio_guidance = gr.Slider(0.0, 10.0, value=dflt["audio_guidance"], step=0.1,
                                           label="Audio guidance (the ambient dial)", elem_id="audio-guidance")
                sync_guidance = gr.Slider(1.0, 8.0, value=dflt["sync_guidance"], step=0.1,
                                          label="Sync guidance (the timing dial)", elem_id="sync-guidance",
                                          visible=getattr(model.pipeline.ldm, "sync", None) is not None)
                with gr.Row():
                    steps = gr.Slider(1, 100, value=dflt["steps"], step=1, label="Steps", elem_id="steps")
                    seed = gr.Number(value=0, precision=0, label="Seed", elem_id="seed")
                run = gr.Button("Generate", variant="primary", elem_id="generate")
            with gr.Column():
                preview = gr.Video(label="Result (preview)", interactive=False, elem_id="preview")
                summary = gr.Markdown(elem_id="summary")
                image = gr.Image(label="Spectrogram under the frames", type="filepath", interactive=False,
                                 elem_id="spectrogram")
                clips = gr.Dataframe(headers=["clip", "long video", "score", "ambient dB"], label="Retrieved clip",
                                     interactive=False, elem_id="clips")
                files = gr.File(label="Downloads (mp4, wav, json)", file_count="multiple", interactive=False,
                                elem_id="downloads")
        run.click(generate, [video, ambient, reference, offset, video_guidance, audio_guidance, sync_guidance, steps,
                             seed],
                  [preview, image, clips, files, summary])
    return app, theme


def _stopper(workdir: Path):
    """The handler of Ctrl-C and SIGTERM: remove the server's folder and end the process at once.

    Gradio's own shutdown waits on its server threads and was seen to hang for minutes on a loaded machine;
    a stopped server has nothing left to save, so the process ends without waiting for them."""
    def stop(signum, frame) -> None:
        shutil.rmtree(workdir, ignore_errors=True)
        os._exit(0)
    return stop


def serve(settings: ServeSettings) -> None:
    """Load the model and serve the page until interrupted; the temporary folder goes with the server."""
    settings.check()
    workdir = Path(tempfile.mkdtemp(prefix="action2sound-serve-")).resolve()
    # Gradio keeps uploads and returned files in its cache and serves only what is there (or in allowed
    # paths, of which we give none): pointing the cache at our folder keeps the server inside it.
    os.environ["GRADIO_TEMP_DIR"] = str(workdir)
    os.environ["GRADIO_EXAMPLES_CACHE"] = str(workdir / "examples")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    try:
        try:
            import gradio  # noqa: F401
        except ImportError:
            raise Action2SoundError(f"serve needs Gradio: {INSTALL_HINT}") from None
        from .api import Action2Sound

        model = Action2Sound.from_pretrained(settings.model, device=settings.device, index=settings.index)
        app, theme = build_app(model, workdir, settings)
        app.queue(default_concurrency_limit=1, max_size=settings.max_queue)
        # Ctrl-C, and a service manager's SIGTERM, stop the server the same way.
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, _stopper(workdir))
        app.launch(server_name=settings.host, server_port=settings.port, allowed_paths=[],
                   max_file_size=f"{settings.max_upload_mb:g}mb", theme=theme, ssr_mode=False, share=False,
                   footer_links=[], show_error=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
