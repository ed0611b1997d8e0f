"""The outputs of an evaluation run: the model through the pipeline, or a baseline (the retrieved clip's audio,
the ground truth, the ground truth through the model's own VAE and vocoder). Conditions come from `conditions`
(the pipeline's own resolver): the `random` ablation and a FILE are resolved here, keyed by the clip, and handed
to the pipeline; the retrieval baseline uses the same retrieval as the `retrieved` ambient."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..api import make_options
from ..conditions import Condition, ambient_mode
from ..errors import Action2SoundError
from ..mel import fit_wave
from ..pipeline import Pipeline, latents_to_mels, mels_to_waves
from .measure import ClipContext
from .settings import EvalSettings, rounded


@dataclass(frozen=True)
class Output:
    """One output wave and what conditioned it."""

    wave: np.ndarray
    condition: dict[str, Any]


def condition_record(meta: dict[str, Any], given: Condition | None = None) -> dict[str, Any]:
    """The `condition` of an output's record: from a condition resolved here, else from the pipeline's record."""
    if given is not None:
        rec: dict[str, Any] = {"mode": given.mode}
        if given.clips:
            rec["clip_id"] = given.clips[0].clip_id
        if given.file is not None:
            rec["file"] = given.file
        rec["ambient_db"] = rounded(given.ambient_db)
        return rec
    cond = meta.get("condition", {}) or {}
    rec = {"mode": cond.get("mode")}
    clips = cond.get("clips") or []
    if clips:
        rec["clip_id"] = clips[0].get("clip_id")
        rec["ambient_db"] = clips[0].get("ambient_db")
    if cond.get("file"):
        rec["file"] = cond["file"]
    return rec


class Generator:
    """Makes the outputs of a run: the model through the pipeline, or a baseline."""

    def __init__(self, settings: EvalSettings, pipeline: Pipeline):
        self.s, self.pipe = settings, pipeline
        self.preset = pipeline.preset
        self.conditions = pipeline.conditions
        self._file: Condition | None = None

    def _fit(self, wave: np.ndarray) -> np.ndarray:
        return fit_wave(np.asarray(wave, dtype=np.float32), self.preset.audio)

    def outputs(self, ctxs: Sequence[ClipContext], seed: int) -> list[Output | Exception]:
        s = self.s
        if s.baseline == "groundtruth":
            return [Output(c.gt_wave, {"mode": "groundtruth"}) for c in ctxs]
        if s.baseline == "retrieval":
            return [self._retrieval(c) for c in ctxs]
        if s.baseline == "codec":
            return self._codec(ctxs)
        if s.ambient == "random":
            # One clip per call, as the runs of docs/RESULTS.md were made.
            return [out for c in ctxs for out in self._generate([c], seed, [self._random(c, seed)])]
        if ambient_mode(s.ambient) == "file":
            if self._file is None:  # one window of one file: resolved once per run
                self._file = self.conditions.file(s.ambient)
            return self._generate(ctxs, seed, [self._file] * len(ctxs))
        return self._generate(ctxs, seed)

    def _generate(self, ctxs: Sequence[ClipContext], seed: int,
                  given: Sequence[Condition | Exception] | None = None) -> list[Output | Exception]:
        opts = {**self.s.generate_options(), "ambient": self.s.ambient, "seed": seed, "batch_size": self.s.batch_size}
        out: list[Output | Exception | None] = [None] * len(ctxs)
        todo = list(range(len(ctxs)))
        if given is not None:  # a condition that failed fails its clip alone
            for i, g in enumerate(given):
                if isinstance(g, Exception):
                    out[i] = g
            todo = [i for i in todo if out[i] is None]
        if todo:
            results = self.pipe.generate([ctxs[i].path for i in todo], make_options(**opts),
                                         [given[i] for i in todo] if given is not None else None)
            for i, r in zip(todo, results):
                out[i] = r if isinstance(r, Exception) else Output(
                    self._fit(r.audio), condition_record(r.metadata, given[i] if given is not None else None))
        return out  # type: ignore[return-value]

    def _random(self, ctx: ClipContext, seed: int) -> Condition | Exception:
        """A random indexed clip of another long video, drawn per (seed, clip id) (the paper's ablation)."""
        clip = ctx.item.clip
        try:
            return self.conditions.random(clip.clip_id, seed, clip.video_id)
        except Exception as err:  # noqa: BLE001 - a clip whose condition fails fails alone
            return err

    def _codec(self, ctxs: Sequence[ClipContext]) -> list[Output]:
        """The ground truth encoded by the model's VAE (as a condition of that audio would be: `wave_latent`)
        and decoded by its VAE and vocoder (as `Pipeline` decodes): the best any latent the diffusion model makes
        can sound, so every metric's ceiling for this model. Deterministic: every seed gets the same output."""
        p = self.pipe
        with torch.no_grad():
            z = torch.stack([self.conditions.wave_latent(c.gt_wave) for c in ctxs])
            waves = mels_to_waves(p.vocoder, latents_to_mels(p.vae, z, self.preset), self.preset)
        return [Output(self._fit(w), {"mode": "codec"}) for w in waves]

    def _retrieval(self, ctx: ClipContext) -> Output | Exception:
        """The audio of the clip `retrieved` chooses for this video (own long video excluded)."""
        try:
            r = self.conditions.need_index("--baseline retrieval")
            own = r.own_video(ctx.path) or ctx.item.clip.video_id
            (choice,) = self.conditions.choose("retrieved", ctx.video_emb[None].astype(np.float32), [own])
            wave = self.conditions.clip_wave(choice.row)
        except Action2SoundError as err:
            return err
        return Output(self._fit(wave), {"mode": "retrieval", "clip_id": choice.clip_id,
                                        "ambient_db": rounded(choice.ambient_db)})
