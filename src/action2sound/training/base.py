"""What every stage's LightningModule shares: the step counter, per-step randomness, AdamW + warm-up."""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch

from ..config import Preset, StageTrainConfig
from ..weights import load_state_strict

# Large odd constants mixing (seed, step, rank) into one generator seed (any fixed odd numbers would do).
_MIX = (0x9E3779B1, 0x85EBCA77, 0xC2B2AE3D)


class StageModule(L.LightningModule):
    """Base of the stage modules. Subclasses set `component` and implement `export_tensors`.

    `batches_seen` counts training batches over the whole run (every optimiser of a batch together); it is
    saved in checkpoints and tells the data module where a resumed stream starts. Randomness inside a step
    comes from `step_generator()`, a pure function of (seed, batch, rank), so a resumed run draws the same
    noise as an uninterrupted one.
    """

    component = ""
    # Optimiser steps per batch: Lightning's global_step counts each optimiser (2 for a GAN).
    optimizer_steps_per_batch = 1

    def __init__(self, preset: Preset, train_cfg: StageTrainConfig, seed: int = 0, train_size: int = 1):
        super().__init__()
        self.preset, self.train_cfg, self.seed = preset, train_cfg, seed
        # Clips in one data epoch, for the per-epoch lr decay.
        self.train_size = max(1, train_size)
        self.batches_seen = 0

    # ----------------------------------------------------------------------------------- randomness, state
    def step_generator(self, device: torch.device | str | None = None, salt: int = 0) -> torch.Generator:
        """A generator for this batch's random draws, seeded from (seed, batches_seen, rank, salt)."""
        device = torch.device(device or self.device)
        g = torch.Generator(device=device)
        rank = self.global_rank if self._trainer is not None else 0
        key = (self.seed * _MIX[0] + self.batches_seen * _MIX[1] + rank * _MIX[2] + salt) % (2**63 - 1)
        return g.manual_seed(key)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["a2s_batches_seen"] = self.batches_seen

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.batches_seen = int(checkpoint.get("a2s_batches_seen", 0))

    # ------------------------------------------------------------------------------------------- optimiser
    def lr_factor(self, step: int) -> float:
        """Linear warm-up over warmup_steps, then constant, times lr_decay per data epoch."""
        cfg = self.train_cfg
        warm = min(1.0, (step + 1) / cfg.warmup_steps) if cfg.warmup_steps > 0 else 1.0
        if cfg.lr_decay == 1.0:
            return warm
        epoch = (step * cfg.batch_size) // self.train_size
        return warm * math.pow(cfg.lr_decay, epoch)

    def make_optimizer(self, params) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
        cfg = self.train_cfg
        opt = torch.optim.AdamW(params, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)
        return opt, torch.optim.lr_scheduler.LambdaLR(opt, self.lr_factor)

    def trainable(self) -> torch.nn.Module:
        """The module whose parameters the (first) optimiser trains."""
        raise NotImplementedError

    def configure_optimizers(self):
        opt, sched = self.make_optimizer([p for p in self.trainable().parameters() if p.requires_grad])
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def init_from(self, tensors: dict[str, torch.Tensor], source: str) -> None:
        """Start from existing weights of this stage's component (strict: every key, every shape)."""
        load_state_strict(self.trainable(), tensors, source)

    # ------------------------------------------------------------------------------------------------ export
    def export_tensors(self) -> dict[str, torch.Tensor]:
        """The inference weights of this stage's component (a state dict the component loads strictly)."""
        raise NotImplementedError

    def export_preset(self) -> Preset:
        """The preset to store beside the weights (a stage may refine it, e.g. the VAE's scaling factor)."""
        return self.preset
