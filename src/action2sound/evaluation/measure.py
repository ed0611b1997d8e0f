"""Measuring an output: what every output of a clip is compared with (`ClipContext`), the networks that score
it (`Measurer`: the AV model, the sync classifier, the sync encoder that measures offsets, the FAD embedder, the
event-kind classifier)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import media
from ..config import Preset
from ..benchmark.groundtruth import load_clip_groundtruth
from ..data.readers import read_ego4d_sounds
from ..data.store import decode_clip
from ..errors import Action2SoundError
from ..levels import ambient_level_db
from ..mel import fit_wave
from ..models.sync_classifier import clip_in_sync, data_preset, half_probabilities
from ..pipeline import Pipeline
from ..weights import load_sync_encoder
from . import benchmark_metrics as bm
from .clips import EvalClip, clip_media
from ..media import resample
from .embedders import EmbedderSpec, audio_embedding, build_embedder, embed_waves
from .settings import EvalSettings, rounded
from .sync import load_sync


@dataclass
class ClipContext:
    """What every output of a clip is measured against (computed once per clip and run)."""

    item: EvalClip
    path: Path  # the media file generate reads
    gt_wave: np.ndarray  # [num_samples] at the model's rate: the benchmark mix, else the clip's own audio
    gt_rate: int
    events: list[dict] | None
    action_stem: np.ndarray | None  # at gt_stem_rate
    gt_stem_rate: int
    video_emb: np.ndarray  # [E] unit
    sync_frames: np.ndarray | None  # uint8 [2T, S, S, 3] of the sync classifier's preset
    offset_frames: np.ndarray | None = None  # uint8 [N, S, S, 3] at the offset judge's sync_frame_times


@dataclass
class Measurer:
    """The networks and classifiers that score an output (built once per run)."""

    preset: Preset
    av: torch.nn.Module
    device: torch.device
    sync: torch.nn.Module | None = None
    offsets: torch.nn.Module | None = None  # a SyncEncoder: the DeSync-like offset of each output
    embedder: Any = None
    kinds: bm.KindClassifier | None = None
    stats: dict[str, float] = field(default_factory=dict)

    @property
    def rate(self) -> int:
        return self.preset.audio.sample_rate

    def context(self, item: EvalClip, cache: Path) -> ClipContext:
        clip = item.clip
        path = clip_media(clip, cache)
        events, stem, stem_rate = None, None, self.rate
        if item.groundtruth is not None:
            gt = load_clip_groundtruth(item.groundtruth)
            wave = fit_wave(resample(gt.mix, gt.sample_rate, self.rate), self.preset.audio)
            events, stem, stem_rate = gt.events, gt.action, gt.sample_rate
        else:
            wave = fit_wave(media.read_audio(clip.media_path, clip.media_start, clip.duration, self.rate,
                                             required=False), self.preset.audio)
        frames = decode_clip(clip, self.preset, frames=True, audio=False)["frames"]
        with torch.no_grad():
            pixels = self.av.pixels(torch.from_numpy(frames)[None].to(self.device))
            video_emb = self.av.embed_video(pixels).float().cpu().numpy()[0]
        sync_frames = None
        if self.sync is not None:
            sync_frames = decode_clip(clip, data_preset(self.sync.preset), frames=True, audio=False)["frames"]
        offset_frames = None
        if self.offsets is not None:
            enc = self.offsets
            offset_frames = media.read_frames_at(clip.media_path, clip.media_start + enc.frame_times,
                                                 size=enc.cfg.size, resize=self.preset.video.resize)
        return ClipContext(item, path, wave, self.rate, events, stem, stem_rate, video_emb, sync_frames,
                           offset_frames)

    def measure(self, ctx: ClipContext, wave: np.ndarray) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """Metrics of one output wave [num_samples] at the model's rate -> (record fields, arrays to save)."""
        rec: dict[str, Any] = {}
        arrays: dict[str, np.ndarray] = {}
        duration = wave.size / self.rate
        rec["ambient_db"] = rounded(ambient_level_db(wave, self.rate))
        a = audio_embedding(self.av, [wave], self.preset.audio, self.device).numpy()[0]
        arrays["av_audio"] = a
        arrays["video"] = ctx.video_emb
        rec["av_sim"] = rounded(float(a @ ctx.video_emb))
        if self.sync is not None:
            sp = self.sync.preset
            w = resample(wave, self.rate, sp.audio.sample_rate)
            w = np.pad(w, (0, max(0, sp.audio.num_samples - w.size)))[: sp.audio.num_samples]
            probs = half_probabilities(self.sync, torch.from_numpy(ctx.sync_frames)[None],
                                       torch.from_numpy(w)[None]).numpy()
            rec["sync_p"] = [rounded(float(x)) for x in probs[0]]
            rec["in_sync"] = bool(clip_in_sync(probs)[0])
        if ctx.offset_frames is not None:
            # DeSync-like: how late the sound is against the picture by the judge's sync encoder (ms, signed).
            late = bm.sync_offsets_s(self.offsets, ctx.offset_frames[None], [wave], self.rate)[0]
            rec["sync_offset_ms"] = rounded(1000.0 * float(late), 2)
        if self.embedder is not None:
            arrays["fad"] = embed_waves(self.embedder, [wave], self.rate)[0]
        if ctx.events is not None:
            onsets = bm.detect_onsets(wave, self.rate)
            score = bm.contact_onset_score(onsets, ctx.events, duration)
            rec["onset"] = {"precision": rounded(score.precision), "recall": rounded(score.recall),
                            "f1": rounded(score.f1), "hits": score.hits, "n_reference": score.n_reference,
                            "n_estimated": score.n_estimated}
            rec["onsets"] = [round(float(t), 4) for t in onsets]
            rec["hallucinated"] = bm.hallucinated_onsets(onsets, ctx.events)
            # Issue 10's metrics that can tell sync: F1 at +-50 / +-100 ms, AP, contacts away from the centre,
            # and the centre impulse's scores on the same clip (any score it matches cannot show sync).
            rec["onset_tol"] = {f"{round(tol * 1000)}ms": [s.hits, s.n_reference, s.n_estimated]
                                for tol, s in bm.contact_onset_scores(onsets, ctx.events, duration).items()}
            times, strengths = bm.scored_onsets(wave, self.rate)
            rec["onset_ap"] = rounded(bm.onset_ap(bm.visible_contacts(ctx.events, duration), times, strengths))
            rec["off_centre"] = list(bm.off_centre_recall(onsets, ctx.events, duration))
            rec["centre_impulse"] = {k: rounded(v) for k, v in bm.centre_impulse_scores(ctx.events, duration).items()}
            rec["seconds"] = round(duration, 4)
            stem_rate_wave = resample(wave, self.rate, ctx.gt_stem_rate)
            rec["leakage"] = rounded(bm.ambient_leakage(stem_rate_wave, ctx.action_stem, ctx.gt_stem_rate))
            if self.kinds is not None:
                rec["kind"] = list(bm.kind_accuracy(self.kinds, stem_rate_wave, ctx.gt_stem_rate, ctx.events))
        return rec, arrays


def fit_kind_classifier(items: Sequence[EvalClip], max_clips: int = 400) -> bm.KindClassifier | None:
    """The event-kind classifier, fitted on the clean action stems of the benchmark's train clips."""
    roots = sorted({it.groundtruth.parent.parent for it in items if it.groundtruth is not None})
    segments: list[tuple[np.ndarray, str]] = []
    rate = 0
    for root in roots:
        tsv = root / "train.tsv"
        if not tsv.is_file():
            continue
        table, _ = read_ego4d_sounds(tsv, root / "clips", split="train", check_files=False)
        for c in list(table)[:max_clips]:
            folder = root / "groundtruth" / c.clip_id
            if not (folder / "events.json").is_file():
                continue
            gt = load_clip_groundtruth(folder)
            if rate and gt.sample_rate != rate:
                continue
            rate = gt.sample_rate
            segments += bm.event_segments(gt.action, gt.sample_rate, gt.events)
    if len({k for _, k in segments}) < 2:
        return None
    return bm.KindClassifier().fit(segments, rate)


def build_measurer(settings: EvalSettings, pipe: Pipeline, clips: list[EvalClip]) -> Measurer:
    """The Measurer of a run: the pipeline's AV model, plus what the settings and the clips call for."""
    m = Measurer(pipe.preset, pipe.av, pipe.device)
    if settings.sync:
        m.sync = load_sync(settings.sync, pipe.device)
    if settings.desync:
        m.offsets, _ = load_sync_encoder(settings.desync, pipe.device)
        if m.offsets is None:
            raise Action2SoundError(f"--desync {settings.desync}: it has no sync encoder; pass a model directory "
                                    "or run trained with the sync stream")
    else:
        m.offsets = pipe.sync_encoder
    if m.offsets is not None:
        m.offsets.eval()
    if settings.fad_embedder != "none":
        m.embedder = build_embedder(EmbedderSpec(settings.fad_embedder, settings.fad_weights), pipe.av,
                                    pipe.preset.audio, pipe.device)
    if any(it.groundtruth is not None for it in clips):
        m.kinds = fit_kind_classifier(clips, settings.kind_train_clips)
    return m
