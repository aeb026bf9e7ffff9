"""``SpikeLoader``: deterministic, resumable, shardable batches of time-major spike trains.

The order of epoch ``e`` is a permutation drawn from ``(seed, e)`` only, so it is the same
on every data-parallel rank and after a resume. Rank ``r`` of ``w`` takes every ``w``-th
index of the permutation (after cutting it to a multiple of ``w``): the shards are disjoint
and of equal size.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np
import torch

from ..hardware.spikes import SparseSpikes, batch_stack


class SpikeLoader:
    """Iterate ``(x, labels)``: ``x`` float32 ``[T, B, n_in]`` (or ``SparseSpikes`` with
    ``sparse=True``), ``labels`` int64 ``[B]``.

    Iterating runs the rest of the current epoch (from the saved position) and then advances
    to the next epoch. ``state_dict()`` holds the epoch and the number of batches already
    handed out in it; ``load_state_dict`` continues exactly there.

    Args:
        dataset: ``len(ds)`` and ``ds[i] -> (sample, label)``; a ``get_batch(indices, sparse)``
            method (as :class:`SHDDataset` has) is used when present.
        batch_size: samples per batch (per rank).
        shuffle: a new permutation per epoch from ``(seed, epoch)``; else dataset order.
        seed: the data-order seed.
        drop_last: drop the last, smaller batch of an epoch.
        sparse: yield ``SparseSpikes`` instead of dense tensors.
        rank, world_size: this worker's shard of each epoch.
    """

    def __init__(self, dataset, batch_size: int, shuffle: bool = True, seed: int = 0,
                 drop_last: bool = False, sparse: bool = False, rank: int = 0,
                 world_size: int = 1):
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, "
                             f"world_size={world_size}")
        if len(dataset) < world_size:
            raise ValueError(f"{len(dataset)} samples cannot be shared by {world_size} workers; "
                             "use fewer workers or more data")
        self.dataset, self.batch_size, self.shuffle = dataset, batch_size, bool(shuffle)
        self.seed, self.drop_last, self.sparse = int(seed), bool(drop_last), bool(sparse)
        self.rank, self.world_size = int(rank), int(world_size)
        self.epoch, self.position = 0, 0

    # ------------------------------------------------------------------ order
    @property
    def shard_size(self) -> int:
        """Samples per rank and epoch."""
        return len(self.dataset) // self.world_size

    def __len__(self) -> int:
        """Batches per epoch on this rank."""
        n = self.shard_size
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def epoch_indices(self, epoch: int | None = None) -> np.ndarray:
        """This rank's sample indices of ``epoch`` (default: the current one), in order."""
        epoch = self.epoch if epoch is None else int(epoch)
        n = len(self.dataset)
        if self.shuffle:
            perm = np.random.default_rng([self.seed, epoch]).permutation(n)
        else:
            perm = np.arange(n)
        return perm[: self.shard_size * self.world_size][self.rank::self.world_size]

    def set_epoch(self, epoch: int) -> None:
        """Go to the start of ``epoch``; a no-op if already in ``epoch`` (so a resumed
        position survives a trainer that calls ``set_epoch`` at every epoch start)."""
        epoch = int(epoch)
        if epoch != self.epoch:
            self.epoch, self.position = epoch, 0

    # ------------------------------------------------------------------ batches
    def _batch(self, idx: np.ndarray):
        ds = self.dataset
        if hasattr(ds, "get_batch"):
            return ds.get_batch(idx, sparse=self.sparse)
        items = [ds[int(i)] for i in idx]
        xs = [s for s, _ in items]
        ys = torch.as_tensor([int(y) for _, y in items], dtype=torch.int64)
        if all(isinstance(s, SparseSpikes) for s in xs):
            x = batch_stack(xs)
            return (x if self.sparse else x.dense()), ys
        dense = [s.dense()[:, 0] if isinstance(s, SparseSpikes) else torch.as_tensor(s) for s in xs]
        x = torch.stack(dense, 1).float()
        return (SparseSpikes.from_dense(x) if self.sparse else x), ys

    def __iter__(self) -> Iterator:
        idx = self.epoch_indices()
        n_batches = len(self)
        while self.position < n_batches:
            b = self.position
            batch_idx = idx[b * self.batch_size:(b + 1) * self.batch_size]
            self.position = b + 1          # counted as handed out before it is used
            yield self._batch(batch_idx)
        self.epoch, self.position = self.epoch + 1, 0

    # ------------------------------------------------------------------ resume
    def state_dict(self) -> dict:
        """Plain ints/bools: the epoch, batches handed out in it, and what fixes the order."""
        return {"epoch": self.epoch, "position": self.position, "seed": self.seed,
                "shuffle": self.shuffle, "batch_size": self.batch_size,
                "world_size": self.world_size, "rank": self.rank, "n_samples": len(self.dataset)}

    def load_state_dict(self, state: dict) -> None:
        """Continue from ``state``; refuse one whose data order would differ."""
        for key in ("seed", "shuffle", "batch_size", "world_size", "n_samples"):
            mine = len(self.dataset) if key == "n_samples" else getattr(self, key)
            if key in state and _plain(state[key]) != mine:
                raise ValueError(f"loader state has {key}={_plain(state[key])} but this loader has "
                                 f"{mine}; resume with the same data settings")
        self.epoch, self.position = int(_plain(state["epoch"])), int(_plain(state["position"]))
        if not 0 <= self.position <= len(self):
            raise ValueError(f"loader state position {self.position} outside 0..{len(self)}")


def _plain(v):
    return v.item() if hasattr(v, "item") else v
