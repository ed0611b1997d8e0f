"""Generation: the sound of any video, window by window, with the ambient chosen by the audio condition.

`Pipeline.generate` is the inference path, in numbered steps:

1. probe each video and read the frames of every model window (any container, codec, variable frame rate,
   rotation; the timeline of `media`: t = 0 is the first frame);
2. run the video tower once per window: per-frame tokens (the video condition) and the video embedding
   (the retrieval query);
3. resolve the first window's audio condition (`ambient`, see `conditions`: retrieved, quiet, random, none
   or a file), skipping the input's own long video when the input is one of the indexed clips (matched by
   id); a caller may pass resolved conditions instead;
4. sample each window's latent with separate video and audio guidance (`sampling.guided`, the guided passes
   in one batched call); windows after the first take the previous window's generated latent as their audio
   condition, so the ambient carries across seams (not for ``none``, whose windows are independent);
5. VAE decode -> mel -> vocoder (the model directory's HiFi-GAN, or Griffin-Lim with a warning) -> waves;
6. assemble: overlapping windows joined by equal-power cross-fades, trimmed to the video's exact length.

The output has exactly round(duration * sample_rate) samples, where duration is the video stream's length
as `media.mux_audio` measures it, so the muxed track ends with the picture.
"""

from __future__ import annotations

import hashlib
import os
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import __version__, media, mel_bridge, sampling
from .conditions import NULL, Condition, ConditionResolver, ambient_mode, unused
from .config import Preset
from .errors import Action2SoundError
from .indexing import INDEX_DIRNAME, Retrieval, load_retrieval
from .mel import mel_to_vocoder_input
from .models.fast_vocoder import load_fast_vocoder
from .models.sync_stream import sync_frame_times
from .models.vae import latents_to_mels
from .models.vocoder import HifiGanRunner, cpu_has_amx, for_cpu_inference, load_universal_hifigan, vocode
from .options import GenerateOptions, VOCODERS
from .outputs import GenerationResult
from .weights import COMPONENTS, load_model_dir, read_model_json
from .windows import assemble_windows, plan_windows, window_length


# ============================================================================================== media helpers
def _batched(items: Sequence, size: int) -> Iterator[Sequence]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


class _Clock:
    """Accumulated wall-clock seconds per named step."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t0

    def add(self, name: str, seconds: float) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds


# ============================================================================================== model steps
def sample_windows(
    ldm: torch.nn.Module, video_tokens: torch.Tensor, audio_latents: list[torch.Tensor | None],
    noise: torch.Tensor, options: GenerateOptions, preset: Preset, sync: torch.Tensor | None = None,
) -> torch.Tensor:
    """Sample scaled latents [B, C, F, W] for B windows: video tokens [B, T, D], audio condition per window.

    A None audio condition is the learned null. Separate video / audio guidance (`sampling.guided`); the
    audio pass is skipped when no window of the batch has an audio condition (it would equal the full one).
    sync [B, W, D_s]: the sync stream's column features of each window (None: a model without the stream, or
    none to give); guidance's null-video pass gets the zero stream (`LatentDiffusion.guided_model_fn`).
    """
    b, dev = video_tokens.shape[0], video_tokens.device
    has_audio = ldm.conditioner.audio is not None and any(a is not None for a in audio_latents)
    audio, missing = None, None
    if has_audio:
        zeros = torch.zeros(preset.latent_shape, device=dev)
        audio = torch.stack([a.to(dev) if a is not None else zeros for a in audio_latents])  # [B, C, F, W]
        missing = torch.tensor([a is None for a in audio_latents], device=dev)
    w_audio = options.audio_guidance if has_audio else 1.0
    full, null_video, null_audio = ldm.guidance_contexts(video_tokens, audio, missing, null_audio=w_audio != 1.0)
    if options.sampler in sampling.RELEASE_SAMPLERS:  # the release's own sampling: one weight, an all-zero null
        return sampling.sample_release(sampling.release_guided(ldm, full, options.video_guidance),
                                       (b, *preset.latent_shape), options.sampler, options.steps,
                                       noise=noise.to(dev), diffusion=preset.diffusion, device=dev)
    w_sync = options.sync_guidance if sync is not None else 1.0
    model_fn = ldm if sync is None else ldm.guided_model_fn(sync.to(dev), options.video_guidance, w_audio, w_sync)
    denoiser = sampling.guided(model_fn, full, null_video, null_audio, options.video_guidance, w_audio, w_sync)
    return sampling.sample(denoiser, (b, *preset.latent_shape), options.sampler, options.steps, noise=noise.to(dev),
                  diffusion=preset.diffusion, device=dev)


def mels_to_waves(vocoder: torch.nn.Module | None, mel: torch.Tensor, preset: Preset, seed: int = 0) -> np.ndarray:
    """Normalised mels [B, n_mels, num_frames] -> waves float32 [B, window_length] (HiFi-GAN, or Griffin-Lim)."""
    p, n = preset.audio, window_length(preset)
    if vocoder is None:
        waves = [mel_bridge.griffinlim(m, p, seed=seed) for m in mel.float().cpu().numpy()]
        return np.stack(waves)[:, :n].astype(np.float32)
    param = next(vocoder.parameters())
    wave = vocode(vocoder, mel_to_vocoder_input(mel.to(param.device, param.dtype), p))  # [B, frames * hop]
    wave = wave.float().cpu().numpy()
    if wave.shape[-1] < n:
        wave = np.pad(wave, ((0, 0), (0, n - wave.shape[-1])))
    return wave[:, :n].astype(np.float32)


@dataclass
class _Job:
    """One input video on its way through generate()."""

    slot: int
    path: Path
    duration: float
    total: int  # output samples
    starts: list[int]
    info: dict[str, Any]
    tokens: torch.Tensor  # [n_windows, T, D] on the device
    query: np.ndarray  # [E] unit video embedding (mean over windows)
    noise: torch.Tensor  # [n_windows, C, F, W] on the CPU
    clock: _Clock
    sync: torch.Tensor | None = None  # [n_windows, W, D_s]: the sync stream's column features, when the model has it
    chained: bool = False
    conds: list[torch.Tensor | None] = field(default_factory=list)
    latents: list[torch.Tensor | None] = field(default_factory=list)
    condition: dict[str, Any] = field(default_factory=dict)


# ============================================================================================== the pipeline
class Pipeline:
    """The networks of a model directory on one device, plus an optional retrieval index; see `generate`."""

    def __init__(self, preset: Preset, av: torch.nn.Module, vae: torch.nn.Module, ldm: torch.nn.Module,
                 vocoder: torch.nn.Module | None, device: str | torch.device = "cpu",
                 retrieval: Retrieval | None = None, model_info: dict[str, Any] | None = None,
                 sync_encoder: torch.nn.Module | None = None):
        if av is None:
            raise Action2SoundError("the model has no AV model (video tower): generation needs one; export a run "
                                    "that trained the av stage")
        self.preset, self.device = preset, torch.device(device)
        self.av, self.vae, self.ldm = av.to(self.device).eval(), vae.to(self.device).eval(), ldm.to(self.device).eval()
        self.vocoder = vocoder.to(self.device).eval() if vocoder is not None else None
        if self.device.type == "cpu":  # HiFi-GAN in oneDNN's layout, mixed precision where AMX makes it pay
            self.vocoder = for_cpu_inference(self.vocoder)
        self._runners = [m for m in self.vocoder.modules() if isinstance(m, HifiGanRunner)] if self.vocoder else []
        # The sync stream's encoder (models/sync_stream.py), used only by an ldm that has the stream: without
        # one such an ldm gets the null stream, and a model without the stream computes exactly as before.
        self.sync_encoder = sync_encoder.to(self.device).eval() \
            if sync_encoder is not None and getattr(ldm, "sync", None) is not None else None
        self.retrieval = retrieval
        self.model_info = dict(model_info or {})

    @property
    def sample_rate(self) -> int:
        return self.preset.audio.sample_rate

    def _autocast(self, opts: GenerateOptions):
        if opts.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return nullcontext()

    def _vocoder_mixed(self, opts: GenerateOptions) -> bool:
        return bool(self._runners) and opts.precision == "auto" and cpu_has_amx()

    @contextmanager
    def _vocoder_precision(self, opts: GenerateOptions):
        """A CPU HiFi-GAN's mixed precision (`HifiGanRunner.mixed`) on for "auto" where AMX has it, off else."""
        before, mixed = [r.mixed for r in self._runners], self._vocoder_mixed(opts)
        for r in self._runners:
            r.mixed = mixed
        try:
            yield
        finally:
            for r, m in zip(self._runners, before):
                r.mixed = m

    # ------------------------------------------------------------------------------------------- generate
    @torch.no_grad()
    def generate(self, videos: Sequence[str | os.PathLike], options: GenerateOptions = GenerateOptions(),
                 conditions: Sequence[Condition] | None = None,
                 progress: Callable[[int, int], None] | None = None) -> list[GenerationResult | Action2SoundError]:
        """One result per video, in order: a GenerationResult, or the Action2SoundError that input raised.

        `conditions`: one resolved condition per video (`self.conditions`) to use instead of `options.ambient`
        (whose value then only labels the run), e.g. an evaluation's random clip keyed by the clip's id.
        progress(done, total) is called as windows are sampled (all videos' windows together).
        """
        opts = options.resolved(self.preset)
        if self.sync_encoder is None:  # no stream to guide (sample_windows gets none): the record says so
            opts = replace(opts, sync_guidance=1.0)
        if conditions is not None and len(conditions) != len(videos):
            raise Action2SoundError(f"generate got {len(conditions)} conditions for {len(videos)} videos; "
                                    "pass one per video or none")
        results: list[GenerationResult | Action2SoundError | None] = [None] * len(videos)

        # 1-2. Probe, read each window's frames, video tower -> tokens + embedding (a bad input fails alone).
        jobs: list[_Job] = []
        for slot, video in enumerate(videos):
            try:
                jobs.append(self._read_and_encode(slot, Path(video), opts))
            except Exception as err:  # noqa: BLE001 - one bad input must not stop the batch
                results[slot] = _as_user_error(video, err)

        # 3. The audio condition of each first window.
        for job, error in zip(list(jobs), self._choose_conditions(jobs, opts, conditions)):
            if error is not None:
                results[job.slot] = _as_user_error(job.path, error)
                jobs.remove(job)

        # 4. Sample every window; a chained window waits for its predecessor's latent.
        self._sample(jobs, opts, progress)

        # 5-6. Decode, vocode, assemble.
        for job in jobs:
            results[job.slot] = self._finish(job, opts)
        return results  # type: ignore[return-value]

    def _windows(self, duration: float, opts: GenerateOptions) -> tuple[int, list[int]]:
        """Output samples of a video of `duration` s and the first sample of each model window."""
        p = self.preset.audio
        total = int(round(duration * p.sample_rate))
        return total, plan_windows(total, window_length(self.preset), int(round(opts.overlap * p.sample_rate)))

    def count_windows(self, video: str | os.PathLike, options: GenerateOptions = GenerateOptions()) -> int:
        """How many model windows generate() samples for `video` (what its progress counts)."""
        return len(self._windows(media.video_duration(video), options)[1])

    # ------------------------------------------------------------------------------------------- step 1-2
    @torch.no_grad()
    def _read_and_encode(self, slot: int, path: Path, opts: GenerateOptions) -> _Job:
        clock = _Clock()
        p, v = self.preset.audio, self.preset.video
        with clock("read"):
            info = media.probe(path)
            if not info.has_video:
                raise Action2SoundError(f"{path}: has no video stream; generate needs a video (for an audio file, "
                                        "use it as --ambient instead)")
            duration = media.video_duration(path)
            if duration <= 0:
                raise Action2SoundError(f"{path}: its video stream has no duration; re-export the video")
        total, starts = self._windows(duration, opts)
        tokens, embs, syncs = [], [], []
        for chunk in _batched(starts, opts.batch_size):
            # Each window's frames spread over the model's clip length from its first output sample, as training
            # saw them (media.clip_frame_times); frames past the video's end hold its last frame.
            times = np.concatenate([media.clip_frame_times(s / p.sample_rate, p.duration, v.num_frames)
                                    for s in chunk])
            requests = [(times, v.size)]
            if self.sync_encoder is not None:  # the stream's dense frames come from the same decoding pass
                ss, sync_times = self.preset.sync_stream, self._sync_times(chunk)
                requests += [(sync_times, size) for size in (ss.size, ss.appearance_size) if size]
            with clock("read"):
                frames, *dense = media.read_frames_at_sizes(path, requests, resize=v.resize)  # [B*T, S, S, 3]
            with clock("video_tower"), self._autocast(opts):
                frames = torch.from_numpy(frames).view(len(chunk), v.num_frames, v.size, v.size, 3).to(self.device)
                tok, emb = self.av.encode_frames(frames)  # [B, T, D], [B, E]
                tokens.append(tok.float())
                embs.append(emb.cpu())
                if dense:
                    syncs.append(self._sync_features(dense, len(chunk)))
        # The query of a long video is its windows' mean direction: its ambient is the whole video's.
        query = torch.nn.functional.normalize(torch.cat(embs).mean(0), dim=0).numpy()
        g = torch.Generator("cpu").manual_seed(int(opts.seed))
        # Noise drawn on the CPU in window order: a seed gives the same noise on any device and in any batch.
        noise = torch.randn((len(starts), *self.preset.latent_shape), generator=g)
        job_info = {"fps": info.fps, "width": info.width, "height": info.height, "rotation": info.rotation,
                    "has_audio": info.has_audio}
        return _Job(slot, path, duration, total, starts, job_info, torch.cat(tokens), query, noise, clock,
                    latents=[None] * len(starts), conds=[None] * len(starts),
                    sync=torch.cat(syncs) if syncs else None)

    def _sync_times(self, chunk: Sequence[int]) -> np.ndarray:
        """The sync stream's frame times of windows starting at output samples `chunk` (s, concatenated).

        Each window's start + sync_frame_times, as the store read them for training; a video slower than the
        stream's rate gives its nearest frames (media.read_frames_at), so the stream carries the video's own
        rate; frames past its end hold its last frame.
        """
        rel = sync_frame_times(self.preset)
        return np.concatenate([s / self.preset.audio.sample_rate + rel for s in chunk])

    def _sync_features(self, dense: list[np.ndarray], windows: int) -> torch.Tensor:
        """Dense frames uint8 [B*N, s, s, 3] of B windows (and the same at the appearance's size, when the stream
        has it) -> the stream's column features [B, W, D]."""
        frames = [torch.from_numpy(f).view(windows, -1, *f.shape[1:]).to(self.device) for f in dense]
        return self.sync_encoder.stream_features(*frames).float()

    # ------------------------------------------------------------------------------------------- step 3
    @property
    def conditions(self) -> ConditionResolver:
        """The resolver of ambient conditions for this model and its index (`conditions`)."""
        return ConditionResolver(self.preset, self.vae, self.device, self.retrieval)

    def _choose_conditions(self, jobs: list[_Job], opts: GenerateOptions,
                           given: Sequence[Condition] | None = None) -> list[Exception | None]:
        """Set each job's first audio condition and its record; per-job errors come back (None: fine).

        `given`: conditions resolved by the caller, one per input slot, instead of resolving `opts.ambient`.
        """
        errors: list[Exception | None] = [None] * len(jobs)
        if not jobs:
            return errors
        mode = ambient_mode(opts.ambient)
        if self.ldm.conditioner.audio is None:
            for job in jobs:
                job.condition = unused(mode).record()
            return errors
        t0 = time.perf_counter()
        resolver = self.conditions
        if opts.sampler in sampling.RELEASE_SAMPLERS:  # the release conditions on a posterior sample, not the mean
            resolver = ConditionResolver(self.preset, self.vae, self.device, self.retrieval, posterior_seed=opts.seed)
        conds: list[Condition | Exception]
        if given is not None:
            conds = [given[job.slot] for job in jobs]
        elif mode == "none":
            conds = [NULL] * len(jobs)
        elif mode == "file":
            conds = [resolver.file(opts.ambient, opts.ambient_offset)] * len(jobs)
        else:
            r = resolver.need_index(f"--ambient {mode}")
            own = [r.own_video(j.path) if opts.exclude_own_video else None for j in jobs]
            conds = resolver.from_index(mode, np.stack([j.query for j in jobs]), own, opts.quiet_quantile,
                                        keys=[j.path.stem for j in jobs], seed=opts.seed)
        for i, (job, cond) in enumerate(zip(jobs, conds)):
            if isinstance(cond, Exception):
                errors[i] = cond
                continue
            # A window conditioned on a latent hands its own latent to the next one (step 4): the ambient
            # carries across seams. Under the learned null, windows are independent.
            job.conds[0], job.chained, job.condition = cond.latent, cond.latent is not None, cond.record()
        share = (time.perf_counter() - t0) / len(jobs)
        for job in jobs:
            job.clock.add("condition", share)
        return errors

    # ------------------------------------------------------------------------------------------- step 4
    def _sample(self, jobs: list[_Job], opts: GenerateOptions, progress: Callable[[int, int], None] | None = None
                ) -> None:
        total = sum(len(job.starts) for job in jobs)
        done = 0
        if progress is not None:
            progress(done, total)
        while True:
            ready: list[tuple[_Job, int]] = []
            for job in jobs:
                todo = [k for k, z in enumerate(job.latents) if z is None]
                if not todo:
                    continue
                # A chained window needs its predecessor's latent; independent windows are all ready at once.
                ready += [(job, todo[0])] if job.chained else [(job, k) for k in todo]
            if not ready:
                return
            for chunk in _batched(ready, opts.batch_size):
                t0 = time.perf_counter()
                tokens = torch.stack([job.tokens[k] for job, k in chunk])
                noise = torch.stack([job.noise[k] for job, k in chunk])
                # Only a model with the stream gets the keyword: without it the call is the one it always was.
                stream = {"sync": torch.stack([job.sync[k] for job, k in chunk])} \
                    if chunk[0][0].sync is not None else {}
                with self._autocast(opts):
                    z = sample_windows(self.ldm, tokens, [job.conds[k] for job, k in chunk], noise, opts,
                                       self.preset, **stream).float()
                for (job, k), zk in zip(chunk, z):
                    job.latents[k] = zk
                    if job.chained and k + 1 < len(job.starts):
                        job.conds[k + 1] = zk  # the ambient carries over the seam
                share = (time.perf_counter() - t0) / len(chunk)
                for job, _ in chunk:
                    job.clock.add("sample", share)
                done += len(chunk)
                if progress is not None:
                    progress(done, total)

    # ------------------------------------------------------------------------------------------- step 5-6
    def _finish(self, job: _Job, opts: GenerateOptions) -> GenerationResult:
        p = self.preset.audio
        waves = []
        for chunk in _batched(list(range(len(job.starts))), opts.batch_size):
            z = torch.stack([job.latents[k] for k in chunk])
            with job.clock("decode"):
                mel = latents_to_mels(self.vae, z, self.preset)  # [B, n_mels, num_frames]
            with job.clock("vocode"), self._autocast(opts), self._vocoder_precision(opts):
                waves.extend(mels_to_waves(self.vocoder, mel, self.preset, seed=opts.seed))
        fade = int(round(opts.overlap * p.sample_rate))
        with job.clock("assemble"):
            audio = assemble_windows(waves, job.starts, job.total, fade)
        length = window_length(self.preset)
        windows = []
        for k, s in enumerate(job.starts):
            w = {"start": round(s / p.sample_rate, 6), "end": round(min(s + length, job.total) / p.sample_rate, 6),
                 "condition": ("previous window" if k and job.chained else
                               job.condition.get("mode") if k == 0 else "learned null")}
            if k:
                ov = job.starts[k - 1] + length - s
                w["crossfade_centre"] = round((s + ov / 2) / p.sample_rate, 6)
            windows.append(w)
        timings = {k: round(v, 4) for k, v in job.clock.seconds.items()}
        timings["total"] = round(sum(job.clock.seconds.values()), 4)
        settings = {k: v for k, v in vars(opts).items()}
        settings["ambient"] = str(opts.ambient)
        settings["device"] = str(self.device)
        settings["total_guidance"] = opts.video_guidance + opts.audio_guidance + opts.sync_guidance - 2.0
        # Whether the vocoder's middle stages ran in bf16 (precision "auto" on a CPU with AMX): the same settings
        # give a slightly different wave on a machine without it.
        settings["vocoder_bf16_stages"] = self._vocoder_mixed(opts)
        metadata = {
            "input": str(job.path), "duration": job.duration, "num_samples": int(audio.size),
            "sample_rate": p.sample_rate, "video": job.info, "settings": settings, "model": self.model_info,
            "index": self._index_info(), "condition": job.condition, "windows": windows,
            "crossfade_seconds": opts.overlap, "peak": round(float(np.max(np.abs(audio))) if audio.size else 0.0, 6),
            "timings": timings, "versions": {"action2sound": __version__, "torch": torch.__version__},
        }
        if getattr(self.ldm, "sync", None) is not None:
            # "encoder": the video's sync stream was fed; "null": the model has the stream but no encoder for it.
            metadata["sync_stream"] = "encoder" if job.sync is not None else "null"
        return GenerationResult(audio, p.sample_rate, metadata, job.path)

    def _index_info(self) -> dict[str, Any] | None:
        r = self.retrieval
        if r is None:
            return None
        return {"path": str(r.folder), "kind": r.index.kind, "clips": len(r.index),
                "store": str(r.store.path) if r.store is not None else None}


def _as_user_error(path: str | os.PathLike, err: Exception) -> Action2SoundError:
    if isinstance(err, Action2SoundError):
        return err
    return Action2SoundError(f"{os.fspath(path)}: failed ({type(err).__name__}: {err})")


# ============================================================================================== loading
def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """'auto' -> cuda when available, else cpu; 'cuda' without a GPU is an error."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise Action2SoundError("--device cuda: no CUDA device is available here; use --device cpu or auto")
    return dev


def load_pipeline(model_dir: str | os.PathLike, device: str | torch.device = "auto",
                  index: str | os.PathLike | None = None, vocoder: str = "auto") -> Pipeline:
    """A Pipeline from a model directory; `index` defaults to MODEL_DIR/index when that exists.

    vocoder: "auto" (the model directory's: a trained HiFi-GAN, the universal one; without one, the bridge to
    the universal HiFi-GAN for another profile, else Griffin-Lim with a warning), "model" (the model
    directory's own, or an error), "bridge" (`mel_bridge.BridgeVocoder`), "fast" (the shipped distilled
    `models.fast_vocoder.FastVocoder`, bridged for another profile) or "griffinlim" (force it, no warning).
    """
    if vocoder not in VOCODERS:
        raise Action2SoundError(f"vocoder must be one of {', '.join(VOCODERS)}, got {vocoder!r}")
    model_dir = Path(model_dir)
    dev = resolve_device(device)
    manifest = read_model_json(model_dir)
    # Only "auto" and "model" can use the model directory's own vocoder; the others need not load it.
    components = tuple(c for c in COMPONENTS if c != "vocoder" or vocoder in ("auto", "model"))
    md = load_model_dir(model_dir, dev, components=components)
    chosen_vocoder, kind = _choose_vocoder(model_dir, md, vocoder, dev)
    preset, release_sampler = md.preset, sampling.default_sampling_for(manifest)
    if release_sampler is not None:  # the release's model samples the release's way by default
        preset = replace(preset, diffusion=replace(preset.diffusion, sampler=release_sampler))
    av_hash = manifest.get("files", {}).get("av", {}).get("sha256", "")
    info = {
        "dir": str(model_dir), "hash": hashlib.sha256((model_dir / "model.json").read_bytes()).hexdigest()[:16],
        "av_sha256": av_hash, "preset": md.preset.name, "profile": md.preset.audio.name, "vocoder": kind,
    }
    folder = Path(index) if index is not None else model_dir / INDEX_DIRNAME
    retrieval = None
    if index is not None or folder.is_dir():
        retrieval = load_retrieval(folder, av_hash, md.preset)
    return Pipeline(preset, md.av, md.vae, md.ldm, chosen_vocoder, dev, retrieval, info,
                    sync_encoder=md.sync_encoder)


def _choose_vocoder(model_dir: Path, md: Any, vocoder: str, dev: torch.device) -> tuple[torch.nn.Module | None, str]:
    """(the vocoder module or None for Griffin-Lim, its kind for the metadata) for a `load_pipeline` choice."""
    profile = md.preset.audio
    if vocoder == "griffinlim":
        return None, "griffinlim"
    if vocoder == "model":
        if md.vocoder is None:
            raise Action2SoundError(f"{model_dir}: has no vocoder of its own; use --vocoder bridge or griffinlim, "
                                    "or train one with `action2sound train vocoder`")
        return md.vocoder, md.vocoder_kind
    if vocoder == "auto" and md.vocoder is not None:
        return md.vocoder, md.vocoder_kind
    if vocoder == "fast":
        fast = load_fast_vocoder().to(dev)
        if not mel_bridge.bridge_applies(profile):
            return fast, "fast"
        return mel_bridge.BridgeVocoder(fast, profile), "bridge-fast"
    if not mel_bridge.bridge_applies(profile):
        if vocoder == "bridge":
            raise Action2SoundError(f"{model_dir}: its {profile.name} mel is the universal HiFi-GAN's own; there is "
                                    "nothing to bridge (use --vocoder model or griffinlim)")
    else:
        try:
            return mel_bridge.BridgeVocoder(load_universal_hifigan().to(dev).eval(), profile), "bridge"
        except Action2SoundError:
            if vocoder == "bridge":
                raise
    warnings.warn(f"{model_dir}: no HiFi-GAN for the {profile.name} profile, so the sound is made with Griffin-Lim "
                  "(far lower quality); train one with `action2sound train vocoder` and re-export the model "
                  "directory", stacklevel=3)
    return None, "griffinlim"
