"""The ambient condition: the audio latent a video's first window is conditioned on, and where it came from.

The paper's core idea (SPEC §1, §2): the ambient of the generated sound follows an audio condition, chosen
by cross-modal retrieval at test time. One `Condition` value carries the chosen latent (the scaled VAE
posterior mean [C, F, W], or None for the learned null) and its record (mode, source, clips with ids,
scores and ambient levels, or the file). The modes (`AMBIENT_MODES`, or a file path):

- ``retrieved``: the clip whose *audio* embedding is closest to the query video's embedding, skipping the
  query's own long video;
- ``quiet``: the visually closest clip among the index's lowest-ambient ones (the action alone);
- ``random``: a random indexed clip of another long video (the paper's ablation), drawn from a generator
  seeded by (seed, crc32 of a key naming the video), so a run is repeatable;
- ``none``: the learned null audio condition;
- a FILE: one window of that file's audio from an offset, mel -> VAE posterior mean.

A clip's latent comes from the index (its latents.npy), else from the store the index names, else from the
clip's audio. `ConditionResolver` makes every kind; the pipeline consumes them, and the evaluator's
baselines reuse the same retrieval (`ConditionResolver.choose`) and clip audio (`clip_wave`).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import media
from .config import Preset
from .errors import Action2SoundError
from .indexing import Retrieval
from .levels import ambient_level_db
from .mel import fit_wave, wave_to_mel
from .models.vae import encode_mel, sample_latent

AMBIENT_MODES = ("retrieved", "quiet", "none", "random")  # or the path of an audio or video file
INDEX_MODES = ("retrieved", "quiet", "random")  # the modes that need a retrieval index


def ambient_mode(ambient: str) -> str:
    """The mode of an --ambient value: one of AMBIENT_MODES, or "file" for anything else (a path)."""
    return ambient if ambient in AMBIENT_MODES else "file"


@dataclass(frozen=True)
class ClipChoice:
    """An indexed clip chosen as the condition: its index row, ids, retrieval score and ambient level."""

    row: int
    clip_id: str
    video_id: str
    ambient_db: float  # the index's ambient_level_db of the clip's audio
    score: float | None = None  # cosine of the query (None for a random draw)

    def record(self) -> dict[str, Any]:
        d: dict[str, Any] = {"clip_id": self.clip_id, "video_id": self.video_id}
        if self.score is not None:
            d["score"] = round(self.score, 6)
        d["ambient_db"] = round(self.ambient_db, 3)
        return d


@dataclass(frozen=True, eq=False)
class Condition:
    """One resolved ambient condition: the latent (None: the learned null) and its record."""

    mode: str  # one of AMBIENT_MODES or "file"
    source: str  # index | store | audio (a clip's latent), file, learned null, or why it is unused
    latent: torch.Tensor | None = None  # scaled VAE posterior mean [C, F, W]
    clips: tuple[ClipChoice, ...] = ()
    excluded_video: str | None = None  # the long video the choice skipped
    quantile: float | None = None  # quiet: the fraction of the index chosen among
    file: str | None = None
    offset: float | None = None  # seconds into file
    file_ambient_db: float | None = None  # ambient_level_db of the file's window

    @property
    def ambient_db(self) -> float | None:
        """The condition's ambient level (dB): the chosen clip's, or the file window's; None for the null."""
        if self.clips:
            return self.clips[0].ambient_db
        return self.file_ambient_db

    def record(self) -> dict[str, Any]:
        """The JSON record of a generation's `condition`."""
        d: dict[str, Any] = {"mode": self.mode, "source": self.source}
        if self.file is not None:
            d.update(file=self.file, offset=self.offset, ambient_db=round(self.file_ambient_db, 3))
        if self.clips:
            d["excluded_video"] = self.excluded_video
            d["clips"] = [c.record() for c in self.clips]
        if self.quantile is not None:
            d["quantile"] = self.quantile
        return d


NULL = Condition("none", "learned null")


def unused(mode: str) -> Condition:
    """The record of a model without an audio condition (whatever was asked for is ignored)."""
    return Condition(mode, "unused: this model has no audio condition")


class ConditionResolver:
    """Resolves ambient conditions for one model: its VAE (to encode audio) and its optional retrieval index.

    `posterior_seed`: None gives the posterior *mean* (our models' condition, as in training); an int gives a
    posterior *sample* drawn with that seed, which is what the public release feeds its model (release-exact
    sampling, `sampling.RELEASE_SAMPLERS`). A sample needs the posterior's std: from the store, else the clip's
    audio is encoded again (an index's latents.npy holds means only).
    """

    def __init__(self, preset: Preset, vae: torch.nn.Module, device: torch.device, retrieval: Retrieval | None,
                 posterior_seed: int | None = None):
        self.preset, self.vae, self.device, self.retrieval = preset, vae, device, retrieval
        self.posterior_seed = posterior_seed

    def _scaled(self, mean: torch.Tensor, std: torch.Tensor | None) -> torch.Tensor:
        """Unscaled posterior [C, F, W] -> the scaled condition latent: the mean, or a seeded sample."""
        sf = self.preset.vae.scaling_factor
        if self.posterior_seed is None:
            return (mean * sf).float()
        g = torch.Generator(device=mean.device).manual_seed(self.posterior_seed)
        return sample_latent(mean[None], std[None], sf, g)[0].float()

    def need_index(self, what: str) -> Retrieval:
        if self.retrieval is None:
            raise Action2SoundError(f"{what} needs a retrieval index: pass --index INDEX (build one with "
                                    "`action2sound index build`), or use --ambient none or --ambient FILE")
        return self.retrieval

    # ------------------------------------------------------------------------------------------- files
    @torch.no_grad()
    def wave_latent(self, wave: np.ndarray) -> torch.Tensor:
        """One window of audio [samples] -> the scaled VAE posterior mean (or seeded sample) [C, F, W]."""
        mel = torch.from_numpy(wave_to_mel(fit_wave(wave, self.preset.audio), self.preset.audio)).to(self.device)
        mean, std = encode_mel(self.vae, mel[None])
        return self._scaled(mean[0], std[0])

    def file(self, path: str | Path, offset: float = 0.0) -> Condition:
        """The condition of one window of an audio or video file from `offset` seconds."""
        path, p = Path(path), self.preset.audio
        if not path.exists():
            raise Action2SoundError(f"--ambient {path}: no such file, and not one of {', '.join(AMBIENT_MODES)}; "
                                    "pass an audio or video file")
        wave = media.read_audio(path, offset, p.duration, p.sample_rate)
        return Condition("file", "file", self.wave_latent(wave), file=str(path), offset=offset,
                         file_ambient_db=ambient_level_db(wave, p.sample_rate))

    # ------------------------------------------------------------------------------------------- indexed clips
    def choice(self, row: int, score: float | None = None) -> ClipChoice:
        meta = self.need_index("an indexed clip").index.meta
        return ClipChoice(int(row), str(meta.clip_id[row]), str(meta.video_id[row]), float(meta.ambient_db[row]),
                          score)

    def choose(self, mode: str, queries: np.ndarray, own: Sequence[str | None],
               quantile: float = 0.1) -> list[ClipChoice]:
        """The top clip of each unit query embedding [B, E] for `retrieved` or `quiet`, own long videos skipped."""
        r = self.need_index(f"--ambient {mode}")
        if mode == "retrieved":
            hits = r.index.query(queries, k=1, exclude_video_ids=list(own))
        elif mode == "quiet":
            hits = r.index.quiet(queries, k=1, quantile=quantile, exclude_video_ids=list(own))
        else:
            raise Action2SoundError(f"choose: mode {mode!r} is not a retrieval mode; use retrieved or quiet")
        return [ClipChoice(top[0].index, top[0].clip_id, top[0].video_id,
                           float(r.index.meta.ambient_db[top[0].index]), top[0].score) for top in hits]

    def random_choice(self, key: str, seed: int, exclude_video: str | None) -> ClipChoice:
        """A clip of another long video than `exclude_video`, drawn with (seed, crc32(key)) (the paper's ablation)."""
        meta = self.need_index("--ambient random").index.meta
        rows = np.arange(len(meta)) if exclude_video is None else np.flatnonzero(meta.video_id != exclude_video)
        if rows.size == 0:
            raise Action2SoundError(f"{key}: the index holds no clip of another long video")
        rng = np.random.default_rng([seed, zlib.crc32(key.encode())])
        return self.choice(int(rows[rng.integers(rows.size)]))

    def clip_wave(self, row: int) -> np.ndarray:
        """An indexed clip's audio at the model's rate (at most one window) -> float32 [samples]."""
        r, p = self.need_index("an indexed clip's audio"), self.preset.audio
        meta = r.index.meta
        start, end = float(meta.media_start[row]), float(meta.media_end[row])
        return media.read_audio(r.media_path(row), start, min(end - start, p.duration), p.sample_rate)

    def clip_latent(self, row: int) -> tuple[torch.Tensor, str]:
        """An indexed clip's scaled latent and its source: the posterior mean the index or store holds, else
        its audio -> VAE."""
        r = self.need_index("an indexed clip's latent")
        if r.latents is not None and self.posterior_seed is None:
            mean = torch.from_numpy(np.array(r.latents[row], dtype=np.float32))  # a copy: the index is memory-mapped
            return self._scaled(mean.to(self.device), None), "index"
        srow = r.store_row(row)
        if srow is not None:
            mean = torch.from_numpy(r.store.get("latent_mean", srow).astype(np.float32)).to(self.device)
            std = torch.from_numpy(r.store.get("latent_std", srow).astype(np.float32)).to(self.device)
            return self._scaled(mean, std), "store"
        return self.wave_latent(self.clip_wave(row)), "audio"

    def of_clip(self, mode: str, choice: ClipChoice, excluded_video: str | None,
                quantile: float | None = None) -> Condition:
        """The condition of a chosen clip (its latent read or encoded now)."""
        latent, source = self.clip_latent(choice.row)
        return Condition(mode, source, latent, (choice,), excluded_video, quantile)

    def random(self, key: str, seed: int, exclude_video: str | None) -> Condition:
        """The condition of a random clip of another long video (`random_choice`), its latent read now."""
        return self.of_clip("random", self.random_choice(key, seed, exclude_video), exclude_video)

    def from_index(self, mode: str, queries: np.ndarray, own: Sequence[str | None], quantile: float = 0.1,
                   keys: Sequence[str] = (), seed: int = 0) -> list[Condition | Exception]:
        """Conditions of B queries [B, E] for a mode of INDEX_MODES; a clip whose latent fails gives its error.

        `random` ignores the queries and draws per video with (seed, crc32(keys[i])) among the clips of other
        long videos than own[i].
        """
        out: list[Condition | Exception] = []
        if mode == "random":
            for key, video in zip(keys, own):
                try:
                    out.append(self.random(key, seed, video))
                except Exception as err:  # noqa: BLE001 - one clip's unreadable audio fails that video alone
                    out.append(err)
            return out
        for choice, video in zip(self.choose(mode, queries, own, quantile), own):
            try:
                out.append(self.of_clip(mode, choice, video, quantile if mode == "quiet" else None))
            except Exception as err:  # noqa: BLE001
                out.append(err)
        return out
