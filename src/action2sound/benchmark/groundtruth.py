"""Reading a built benchmark's ground truth back: a clip's stems and events, and a digest of all of them."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile

from ..errors import Action2SoundError
from .config import STEMS


@dataclass(frozen=True)
class ClipGroundTruth:
    """A clip's ground truth as written: float32 stems [samples], the mix, and the events."""

    action: np.ndarray
    ambient: np.ndarray
    offscreen: np.ndarray
    mix: np.ndarray
    sample_rate: int
    events: list[dict]


def load_clip_groundtruth(folder: str | Path) -> ClipGroundTruth:
    """Read groundtruth/<clip_id>/ -> ClipGroundTruth."""
    folder = Path(folder)
    if not (folder / "events.json").is_file():
        raise Action2SoundError(f"{folder} is not a benchmark ground-truth folder (no events.json); pass "
                                "OUT/groundtruth/<clip_id>")
    waves, rate = {}, 0
    for name in (*STEMS, "mix"):
        waves[name], rate = soundfile.read(str(folder / f"{name}.wav"), dtype="float32")
    return ClipGroundTruth(waves["action"], waves["ambient"], waves["offscreen"], waves["mix"], rate,
                           json.loads((folder / "events.json").read_text()))


def stems_digest(root: str | Path) -> str:
    """SHA-256 over every stem, events file and scene file of a built benchmark (not the mp4s, which are lossy)."""
    root = Path(root)
    h = hashlib.sha256()
    for p in sorted(list((root / "episodes").glob("*.wav")) + list((root / "episodes").glob("*.json"))
                    + list((root / "groundtruth").rglob("*.wav")) + list((root / "groundtruth").rglob("*.json"))):
        h.update(p.relative_to(root).as_posix().encode())
        if p.suffix == ".wav":
            h.update(soundfile.read(str(p), dtype="float32")[0].tobytes())
        else:
            h.update(p.read_bytes())
    return h.hexdigest()
