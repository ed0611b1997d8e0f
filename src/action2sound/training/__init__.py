"""Training: one LightningModule per stage, the data module, callbacks, and `train()` (see run.py)."""

from .run import STAGES, TrainResult, train

__all__ = ["STAGES", "TrainResult", "train"]
