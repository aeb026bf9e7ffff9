"""A self-contained training job for the Ray glue: an RSNN on a seeded synthetic spike
classification task (class-specific Poisson rates), sharded by rank.

It implements the job protocol of :mod:`spiketrain.trainer.ray_train` and is what the Ray
tests, the sweep and ``benchmarks/ray_overhead.py`` train when no data file is involved:
the data of every epoch depends only on ``(seed, epoch)``, so a resumed run replays exactly.
"""
from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ..models import build as build_model, unwrap
from ..strategies import get as get_strategy, last_report, unroll

DEFAULTS: dict[str, Any] = {
    "model": {"name": "rsnn", "n_in": 20, "hidden": 16, "n_out": 4},
    "data": {"T": 50, "samples": 64, "batch_size": 8, "rate": 0.05, "seed": 0},
    "strategy": {"name": "bptt"},
    "trainer": {"epochs": 2, "steps_per_epoch": 4, "optimizer": "adam", "lr": 1e-2, "seed": 0,
                "engine": "torch"},
}


def merge(base: dict, override: dict | None) -> dict:
    """Deep-merge ``override`` into a copy of ``base``."""
    out = copy.deepcopy(base)
    for k, v in (override or {}).items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def synthetic_spikes(T: int, samples: int, n_in: int, n_out: int, rate: float, seed: int):
    """Seeded task: ``x [T, samples, n_in]`` Poisson spikes whose per-unit rate depends on the
    class, ``y [samples]`` labels."""
    g = torch.Generator().manual_seed(seed)
    profile = torch.rand(n_out, n_in, generator=g) * 2 * rate + rate / 4
    y = torch.arange(samples) % n_out
    p = profile[y].unsqueeze(0).expand(T, samples, n_in)
    x = (torch.rand(T, samples, n_in, generator=g) < p).float()
    return x, y


class SpikeJob:
    """Train ``model`` with ``strategy`` on the synthetic task on shard ``rank`` of
    ``world_size``. ``config`` overrides :data:`DEFAULTS` (same sections as a run config)."""

    def __init__(self, config: dict | None = None, rank: int = 0, world_size: int = 1,
                 device=None):
        self.config = cfg = merge(DEFAULTS, config)
        self.rank, self.world = rank, world_size
        self.device = torch.device(device or "cpu")
        tr, data = cfg["trainer"], cfg["data"]
        B = int(data["batch_size"])
        if B % world_size:
            raise ValueError(f"batch_size {B} is not divisible by {world_size} workers; pick a "
                             f"batch size that is a multiple of the worker count")
        self.local_batch = B // world_size
        self.epochs, self.steps = int(tr["epochs"]), int(tr["steps_per_epoch"])
        torch.manual_seed(int(tr["seed"]))
        m = dict(cfg["model"])
        self.model = build_model(m.pop("name", "rsnn"), **m).to(self.device)
        self.net = self.model  # what forward runs through (DDP wrapper when wrapped)
        s = dict(cfg["strategy"])
        self.strategy_name, self.strategy_opts = s.pop("name", "bptt"), s
        self.x, self.y = synthetic_spikes(int(data["T"]), int(data["samples"]), int(m["n_in"]),
                                          int(m["n_out"]), float(data["rate"]), int(data["seed"]))
        opt = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD}[tr.get("optimizer", "adam")]
        self.optimizer = opt(self.model.parameters(), lr=float(tr["lr"]))
        self.engine = None
        if tr.get("engine", "torch") == "deepspeed":
            from .deepspeed_engine import DeepSpeedEngine
            self.engine = DeepSpeedEngine(self.model, self.optimizer, cfg.get("deepspeed"))
            self.optimizer = self.engine.optimizer

    def wrap_model(self, fn) -> None:
        """Train through ``fn(model)`` (e.g. DistributedDataParallel)."""
        if self.engine is None:
            self.net = fn(self.model)

    def batches(self, epoch: int):
        """This rank's ``(x [T, b, n_in], y [b])`` for each step of ``epoch``."""
        n = self.x.shape[1]
        g = torch.Generator().manual_seed(int(self.config["data"]["seed"]) * 7919 + epoch)
        order = torch.randperm(n, generator=g)
        B, b = self.local_batch * self.world, self.local_batch
        for s in range(self.steps):
            idx = order[torch.arange(s * B, (s + 1) * B) % n][self.rank * b:(self.rank + 1) * b]
            yield self.x[:, idx].to(self.device), self.y[idx].to(self.device)

    def loss(self, x, y):
        """Mean cross-entropy of this shard (the DDP average equals the whole-batch mean)."""
        strat = get_strategy(self.strategy_name, **self.strategy_opts)
        out = unroll(self.engine.module if self.engine else self.net, x, strategy=strat)
        logits = unwrap(self.model).logits(out)
        return F.cross_entropy(logits, y), logits

    def train_epoch(self, epoch: int) -> dict[str, float]:
        """One epoch; metrics averaged over ranks: loss, accuracy, s/step, peak bytes."""
        tot = torch.zeros(3, dtype=torch.float64)
        t0 = time.perf_counter()
        for x, y in self.batches(epoch):
            loss, logits = self.loss(x, y)
            if self.engine is not None:
                self.engine.backward(loss)
                self.engine.step()
            else:
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
            tot += torch.tensor([loss.item(), (logits.argmax(1) == y).float().mean().item(), 1.0],
                                dtype=torch.float64)
        secs = time.perf_counter() - t0
        self._done = epoch + 1
        if self.world > 1 and torch.distributed.is_initialized():
            torch.distributed.all_reduce(tot)
            tot /= self.world
        rep = last_report()
        out = {"loss": tot[0].item() / tot[2].item(), "accuracy": tot[1].item() / tot[2].item(),
               "s_per_step": secs / max(1, self.steps)}
        if rep is not None:
            out.update({f"peak_bytes_{k}": float(v) for k, v in rep.peak_bytes.items()})
            out["recomputed_steps"] = float(rep.recomputed_steps)
        return out

    def save_snapshot(self, directory) -> None:
        """Weights, optimizer state, next epoch and torch RNG into ``directory/snapshot.pt``."""
        torch.save({"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                    "epoch": self._done, "rng": torch.get_rng_state()},
                   Path(directory) / "snapshot.pt")

    def load_snapshot(self, directory) -> int:
        """Restore from :meth:`save_snapshot`; returns the next epoch to run."""
        snap = torch.load(Path(directory) / "snapshot.pt", weights_only=False)
        self.model.load_state_dict(snap["model"])
        self.optimizer.load_state_dict(snap["optimizer"])
        torch.set_rng_state(snap["rng"])
        self._done = int(snap["epoch"])
        return self._done

    _done = 0

    def fit(self) -> list[dict[str, float]]:
        """In-process training (no Ray): every epoch's metrics."""
        history = []
        for epoch in range(self._done, self.epochs):
            history.append(self.train_epoch(epoch))
        return history
