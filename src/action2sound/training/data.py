"""Training data: the clip and store datasets, a resumable sample stream, and the LightningDataModule.

Training reads one endless stream of samples: epoch e is a permutation of the training set drawn from
(seed, e), and the stream is those permutations one after another. Rank r of W takes, from global batch b, the
positions [b G + r B, b G + (r + 1) B) (G = W B). The stream is a pure function of (seed, position), so a
resumed run restarts it at the batch it had reached (`start_batch`, from the module's own counter) and sees
exactly the samples an uninterrupted run would have seen: no fault-tolerant loader machinery is needed.
Every item is an (index, epoch) pair, so a dataset can make per-epoch choices (the ldm's neighbour).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ..data.manifest import ClipTable
from ..data.neighbours import Neighbours
from ..data.store import ClipDataset, Store
from ..errors import Action2SoundError

# ClipDataset (decoded frames + audio of a clip table) lives with the store, which decodes the same way.
__all__ = ["ClipDataset", "StageData", "StoreDataset", "StreamSampler", "epoch_order"]


def epoch_order(n: int, seed: int, epoch: int, groups: np.ndarray | None = None, group_size: int = 1) -> np.ndarray:
    """The permutation of range(n) for one epoch [n], a pure function of (seed, epoch).

    With `groups` [n] (a long-video code per item) and group_size g > 1, the order is made of runs of up to g
    items of the same group (shuffled within the group, runs shuffled): a batch then holds clips of the same
    long video, the hard negatives of the contrastive model.
    """
    rng = np.random.default_rng([seed, epoch])
    if groups is None or group_size <= 1:
        return rng.permutation(n)
    runs: list[np.ndarray] = []
    for g in np.unique(groups):
        members = rng.permutation(np.flatnonzero(groups == g))
        runs.extend(members[i:i + group_size] for i in range(0, len(members), group_size))
    order = rng.permutation(len(runs))
    return np.concatenate([runs[k] for k in order])


class StreamSampler(Sampler):
    """Yields (index, epoch) for batches start_batch .. total_batches-1 of this rank (module docstring)."""

    def __init__(self, n: int, batch_size: int, total_batches: int, seed: int = 0, start_batch: int = 0,
                 rank: int = 0, world: int = 1, groups: np.ndarray | None = None, group_size: int = 1):
        if n < 1:
            raise Action2SoundError("the training set is empty; check --data and its split")
        self.n, self.batch_size, self.total_batches = n, batch_size, total_batches
        self.seed, self.start_batch, self.rank, self.world = seed, start_batch, rank, world
        self.groups, self.group_size = groups, group_size
        self._cache: tuple[int, np.ndarray] | None = None

    def _order(self, epoch: int) -> np.ndarray:
        if self._cache is None or self._cache[0] != epoch:
            self._cache = (epoch, epoch_order(self.n, self.seed, epoch, self.groups, self.group_size))
        return self._cache[1]

    def position(self, batch: int, j: int) -> int:
        """Stream position of item j of this rank's batch `batch`."""
        return (batch * self.world + self.rank) * self.batch_size + j

    def __iter__(self) -> Iterator[tuple[int, int]]:
        for b in range(self.start_batch, self.total_batches):
            for j in range(self.batch_size):
                epoch, k = divmod(self.position(b, j), self.n)
                yield int(self._order(epoch)[k]), int(epoch)

    def __len__(self) -> int:
        return max(0, self.total_batches - self.start_batch) * self.batch_size


class StoreDataset(Dataset):
    """The ldm stage's data, read from the store only (no video is decoded).

    Item (i, epoch) -> video_tokens [T, D] float32, latent_mean / latent_std [C, F, W], and the neighbour's
    cond_mean / cond_std [C, F, W] with has_cond True; a clip with no neighbour gets zeros and has_cond False
    (training then gives it the learned null audio condition). A store with the sync stream's features adds
    sync_features [W, D_s] float32.
    """

    def __init__(self, store: Store, rows: np.ndarray | None = None, neighbours_k: int = 10, seed: int = 0,
                 audio: bool = True):
        self.store = store
        self.rows = np.arange(len(store)) if rows is None else np.asarray(rows, dtype=np.int64)
        self.audio = audio
        # Neighbours within the same split only: the table given is the store's, restricted to these rows.
        self.neighbours = Neighbours(ClipTable(store.table[int(r)] for r in self.rows), k=neighbours_k, seed=seed) \
            if audio else None
        self.latent_shape = store.fields["latent_mean"][0]

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, item: int | tuple[int, int]) -> dict[str, Any]:
        k, epoch = item if isinstance(item, tuple) else (item, 0)
        i = int(self.rows[k])
        out: dict[str, Any] = {
            "index": i,
            "video_tokens": self.store.get("video_tokens", i).astype(np.float32),
            "latent_mean": self.store.get("latent_mean", i).astype(np.float32),
            "latent_std": self.store.get("latent_std", i).astype(np.float32),
        }
        if "sync_features" in self.store.fields:
            out["sync_features"] = self.store.get("sync_features", i).astype(np.float32)
        if self.audio:
            j = self.neighbours.choose(k, epoch)
            if j is None:
                zeros = np.zeros(self.latent_shape, dtype=np.float32)
                out.update(cond_mean=zeros, cond_std=zeros, has_cond=False)
            else:
                n = int(self.rows[j])
                out.update(cond_mean=self.store.get("latent_mean", n).astype(np.float32),
                           cond_std=self.store.get("latent_std", n).astype(np.float32), has_cond=True)
        return out


class StageData(L.LightningDataModule):
    """Train stream + sequential validation loader over any of the datasets above.

    The training loader is made when Lightning asks for it, after a checkpoint is restored, so it starts at
    the batch the module has reached (`module.batches_seen`).
    """

    def __init__(self, train: Dataset, val: Dataset | None, batch_size: int, total_batches: int, seed: int = 0,
                 workers: int = 0, groups: np.ndarray | None = None, group_size: int = 1,
                 val_batch_size: int | None = None):
        super().__init__()
        self.train_set, self.val_set = train, val
        self.batch_size, self.total_batches, self.seed, self.workers = batch_size, total_batches, seed, workers
        self.groups, self.group_size = groups, group_size
        self.val_batch_size = val_batch_size or batch_size

    def _loader(self, dataset: Dataset, sampler: Sampler | None, batch_size: int) -> DataLoader:
        return DataLoader(dataset, batch_size=batch_size, sampler=sampler, shuffle=False, num_workers=self.workers,
                          pin_memory=torch.cuda.is_available(), persistent_workers=False)

    def train_dataloader(self) -> DataLoader:
        trainer = self.trainer
        start = int(getattr(trainer.lightning_module, "batches_seen", 0)) if trainer is not None else 0
        rank = trainer.global_rank if trainer is not None else 0
        world = trainer.world_size if trainer is not None else 1
        sampler = StreamSampler(len(self.train_set), self.batch_size, self.total_batches, self.seed, start, rank,
                                world, self.groups, self.group_size)
        return self._loader(self.train_set, sampler, self.batch_size)

    def val_dataloader(self) -> DataLoader | list:
        if self.val_set is None or len(self.val_set) == 0:
            return []
        return self._loader(self.val_set, None, self.val_batch_size)
