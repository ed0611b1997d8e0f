"""AV-Sync scoring: a trained sync classifier (`models.sync_classifier`) loaded from its weights file."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ..errors import Action2SoundError
from ..models.sync_classifier import SyncClassifier
from ..weights import load_state_strict, read_weights


def load_sync(path: str | os.PathLike, device: str | torch.device = "cpu") -> SyncClassifier:
    """A trained classifier from `RUN/sync/weights.safetensors` (strict), in eval mode."""
    path = Path(path)
    if path.is_dir():
        for candidate in (path / "weights.safetensors", path / "sync" / "weights.safetensors"):
            if candidate.is_file():
                path = candidate
                break
    if not path.is_file():
        raise Action2SoundError(f"--sync {path}: no sync classifier there; train one with `action2sound train sync "
                                "--data BENCHMARK --out RUN` and pass RUN/sync/weights.safetensors")
    tensors, preset = read_weights(path, "sync")
    model = SyncClassifier(preset)
    load_state_strict(model, tensors, str(path))
    return model.to(device).eval()
