"""The settings of one `evaluate` run (OUT/settings.json), and the rounding its records use."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from ..conditions import AMBIENT_MODES
from ..errors import Action2SoundError
from ..options import VOCODERS

BASELINES = ("none", "retrieval", "groundtruth", "codec")


@dataclass(frozen=True)
class EvalSettings:
    """Everything one `evaluate` run depends on (saved as OUT/settings.json)."""

    model: str
    data: str
    out: str
    ambient: str = "retrieved"  # one of conditions.AMBIENT_MODES, or an audio/video file
    baseline: str = "none"  # none (the model) | retrieval (the retrieved clip's audio) | groundtruth | codec
    vocoder: str = "auto"  # auto | griffinlim
    seeds: int = 1
    limit: int | None = None
    split: str = "test"  # test | val | train | all
    # Generation settings (None: the model's own); `generate_options` passes them to every output.
    steps: int | None = None
    video_guidance: float | None = None
    audio_guidance: float | None = None
    sync_guidance: float | None = None
    index: str | None = None
    sync: str | None = None  # a `train sync` weights file
    # Whose sync encoder measures the DeSync-like offset (a model directory or training run): the same judge for
    # every row of a study. None: the evaluated model's own encoder, when it has one.
    desync: str | None = None
    shift_test: bool = False  # also run the shift test (evaluation/shift.py) on the clips, seed 0
    fad_embedder: str = "aisfx"  # aisfx | av | vggish | panns | none
    fad_weights: str | None = None  # vggish / panns weight file
    device: str = "auto"
    batch_size: int = 8
    label: str | None = None
    spectrograms: int = 4
    kind_train_clips: int = 400
    progress: bool = True

    def check(self) -> None:
        if self.baseline not in BASELINES:
            raise Action2SoundError(f"--baseline must be one of {', '.join(BASELINES)}, got {self.baseline!r}")
        if self.vocoder not in VOCODERS:
            raise Action2SoundError(f"--vocoder must be one of {', '.join(VOCODERS)}, got {self.vocoder!r}")
        if self.seeds < 1:
            raise Action2SoundError(f"--seeds must be at least 1, got {self.seeds}")
        if self.limit is not None and self.limit < 1:
            raise Action2SoundError(f"--limit must be at least 1, got {self.limit}")
        if self.split not in ("test", "val", "train", "all"):
            raise Action2SoundError(f"--split must be test, val, train or all, got {self.split!r}")
        if self.ambient not in AMBIENT_MODES and not Path(self.ambient).is_file():
            raise Action2SoundError(f"--ambient {self.ambient}: not one of {', '.join(AMBIENT_MODES)} and no such file")

    def generate_options(self) -> dict[str, int | float]:
        """The generation settings this run sets (GenerateOptions fields; the others stay the model's)."""
        chosen = {"steps": self.steps, "video_guidance": self.video_guidance, "audio_guidance": self.audio_guidance,
                  "sync_guidance": self.sync_guidance}
        return {k: v for k, v in chosen.items() if v is not None}

    @property
    def row_label(self) -> str:
        if self.label:
            return self.label
        if self.baseline != "none":
            return f"{self.baseline} baseline"
        parts = [f"ambient {Path(self.ambient).name if self.ambient not in AMBIENT_MODES else self.ambient}"]
        if self.vocoder in ("griffinlim", "bridge"):
            parts.append({"griffinlim": "Griffin-Lim", "bridge": "universal HiFi-GAN bridge"}[self.vocoder])
        return "model, " + ", ".join(parts)


def rounded(x: float | None, nd: int = 6) -> float | None:
    """JSON-safe rounding: NaN / inf become None."""
    if x is None or not math.isfinite(x):
        return None
    return round(float(x), nd)
