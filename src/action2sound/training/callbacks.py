"""Callbacks of every stage: EMA weights and step checkpoints (with the stage's weights file beside them)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lightning as L
import torch

from ..weights import save_weights


class EMA(L.Callback):
    """Exponential moving average of `pl_module.<attr>`'s trainable parameters, in fp32.

    The average lives in the callback (so DDP never sees it) and in its checkpoint state (so a resumed run
    continues it). The decay warms up as min(decay, (1 + n) / (10 + n)) after n updates, so that early
    averages are not dominated by the random initialisation.
    """

    def __init__(self, decay: float, attr: str = "model"):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay, self.attr = decay, attr
        self.shadow: dict[str, torch.Tensor] | None = None
        self.updates = 0

    @property
    def state_key(self) -> str:
        return f"EMA[{self.attr}]"

    def _params(self, pl_module: L.LightningModule) -> dict[str, torch.nn.Parameter]:
        return {k: p for k, p in getattr(pl_module, self.attr).named_parameters() if p.requires_grad}

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        params = self._params(pl_module)
        if self.shadow is None:
            self.shadow = {k: p.detach().float().clone() for k, p in params.items()}
            return
        if set(self.shadow) != set(params):
            raise RuntimeError("the checkpoint's EMA weights do not match the model's parameters")
        self.shadow = {k: v.to(params[k].device) for k, v in self.shadow.items()}

    @torch.no_grad()
    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        d = min(self.decay, (1.0 + self.updates) / (10.0 + self.updates))
        for k, p in self._params(pl_module).items():
            self.shadow[k].lerp_(p.detach().float(), 1.0 - d)
        self.updates += 1

    @contextmanager
    def swapped(self, pl_module: L.LightningModule) -> Iterator[None]:
        """Within the block the module holds the averaged weights (swapped in place: no copy of the model)."""
        params = self._params(pl_module)

        def swap() -> None:
            for k, p in params.items():
                p.data, self.shadow[k] = self.shadow[k], p.data

        swap()
        try:
            yield
        finally:
            swap()

    def averaged_state(self, module: torch.nn.Module) -> dict[str, torch.Tensor]:
        """module.state_dict() with the averaged parameters in place of the live ones."""
        state = module.state_dict()
        for k, v in (self.shadow or {}).items():
            state[k] = v.to(state[k].dtype)
        return state

    def state_dict(self) -> dict[str, Any]:
        return {"decay": self.decay, "updates": self.updates,
                "shadow": {k: v.detach().cpu() for k, v in (self.shadow or {}).items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.updates = int(state["updates"])
        self.shadow = {k: v.clone() for k, v in state["shadow"].items()}


class StepCheckpoint(L.Callback):
    """Every `every` training batches and at the end: `stepNNNNNNNN.ckpt`, `last.ckpt`, and the stage's
    `weights.safetensors` (what `export` collects). `last.ckpt` is replaced only once the new file is whole;
    only the newest `keep` step files stay."""

    def __init__(self, dirpath: str | os.PathLike, weights_path: str | os.PathLike, every: int, keep: int = 3):
        self.dirpath, self.weights_path = Path(dirpath), Path(weights_path)
        self.every, self.keep = every, keep
        self._last_saved = -1

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if self.every > 0 and pl_module.batches_seen % self.every == 0:
            self.save(trainer, pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.save(trainer, pl_module)

    def save(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        n = pl_module.batches_seen
        if n == self._last_saved:
            return
        self._last_saved = n
        path = self.dirpath / f"step{n:08d}.ckpt"
        trainer.save_checkpoint(path)  # every rank takes part; rank zero writes
        if trainer.is_global_zero:
            tmp = self.dirpath / "last.ckpt.partial"
            shutil.copyfile(path, tmp)
            tmp.replace(self.dirpath / "last.ckpt")
            steps = sorted(self.dirpath.glob("step*.ckpt"))
            for old in steps[: max(0, len(steps) - self.keep)]:
                old.unlink()
            save_weights(self.weights_path, pl_module.export_tensors(), pl_module.component,
                         pl_module.export_preset())
        trainer.strategy.barrier()
