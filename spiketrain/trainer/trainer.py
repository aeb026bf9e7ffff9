"""``Trainer``: the local training loop (optimizer, clipping, eval, metrics, snapshots, resume).

The loop is built from pieces in :mod:`.loop` (``train_epoch``, ``evaluate``), :mod:`.optim`
(``build_optimizer``), :mod:`.snapshot` and :mod:`.metrics`, so a distributed worker can run the
same code on a wrapped model and a sharded loader (``rank``/``world_size``; only rank 0
writes files) and report through ``callbacks`` at the end of each epoch.
"""
from __future__ import annotations

import datetime as _dt
import importlib
import os
import random
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from .. import strategies as st_strategies
from ..hardware import get_backend
from ..models.base import unwrap
from .guard import NonFiniteError, NonFiniteGuard, advice, nonfinite_weights
from .loop import EpochResult, evaluate, train_epoch
from .metrics import MetricsLog, format_row
from .optim import build_optimizer
from .snapshot import load_snapshot, remove_stale_temp_files, save_snapshot, snapshot_path
from .storage import is_uri, stage_dir

EpochCallback = Callable[["Trainer", dict], None]


def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Seed torch, numpy and python ``random``; optionally ask torch for deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")   # deterministic cuBLAS
        torch.use_deterministic_algorithms(True, warn_only=True)
        if hasattr(torch.backends, "cudnn"):
            torch.backends.cudnn.benchmark = False


def _is_loader(obj: Any) -> bool:
    """A loader yields batches; a dataset is indexed (``__getitem__``)."""
    return hasattr(obj, "__iter__") and not hasattr(obj, "__getitem__")


def make_loader(data: Any, batch_size: int, *, shuffle: bool, seed: int = 0, rank: int = 0,
                world_size: int = 1, **options: Any):
    """A loader from a dataset (``spiketrain.data.SpikeLoader``); a loader is returned as is."""
    if data is None or _is_loader(data):
        return data
    from ..data import SpikeLoader
    return SpikeLoader(data, batch_size, shuffle=shuffle, seed=seed, rank=rank,
                       world_size=world_size, **options)


def default_out_dir(stem: str = "run") -> Path:
    """``runs/<stem>-<YYYYmmdd-HHMMSS-microseconds>-<4 hex>``: unique even within one second."""
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    return Path("runs") / f"{stem}-{stamp}-{os.urandom(2).hex()}"


class Trainer:
    """Train a RecurrentModel on a task (batches ``(inputs [T, B, ...], targets)``).

    Args:
        model: a RecurrentModel (or a wrapped one, e.g. DDP).
        data: ``(train, test)`` datasets (batched with ``SpikeLoader``) or loaders; test may be None.
        task: what is learned: ``"classification"`` (default: cross-entropy of
            ``model.logits(outputs)``, accuracy), ``"detection"``, ``"language_model"``, a
            class path, a ``{name|class: ..., **options}`` mapping or a Task instance. The task
            owns the batch layout, the loss, the online per-step loss (e-prop) and the metrics.
        strategy: memory strategy name, class path or instance; ``strategy_options`` go to its
            constructor. It is resolved once, here, and the same instance runs every batch.
        optimizer: ``adam`` / ``adamw`` / ``sgd`` / ``rmsprop`` or an optimizer instance.
        clip_grad: max gradient norm (None = no clipping).
        hardware: backend name (``auto``, ``cpu``, ``cuda``, ...).
        workers, engine: ``workers > 1`` or ``engine != "torch"`` hands ``fit`` to the Ray Train
            glue (``spiketrain.trainer.ray_train.fit(trainer)``).
        out_dir: run folder for ``metrics.parquet`` and ``snapshot.pt`` (default runs/run-<time>).
        snapshot_every: also write a snapshot every N optimizer steps (0 = end of epoch only).
        resume: a run folder (or snapshot file) to continue from.
        callbacks: ``fn(trainer, row)`` called at the end of every epoch with its metrics row.
        rank, world_size: this worker's place in a data-parallel group (rank 0 writes files).
        loader_options: extra keyword arguments for ``SpikeLoader`` when data are datasets.
        threads: CPU threads for torch (None: torch's default). One thread per process is
            fastest on a small, shared machine.
        on_nonfinite: ``"stop"`` (default) ends training with one line at the first NaN/inf
            loss or gradient norm, before the update and before any snapshot; ``"skip_batch"``
            drops that batch's update and goes on (see :mod:`spiketrain.trainer.guard`).
    """

    def __init__(self, model, data, strategy: Any = "bptt", optimizer: Any = "adam", lr: float = 1e-3,
                 epochs: int = 10, batch_size: int = 32, clip_grad: float | None = None,
                 weight_decay: float = 0.0, hardware: str = "auto", workers: int = 1,
                 engine: str = "torch", out_dir: str | os.PathLike | None = None, seed: int = 0,
                 deterministic: bool = True, progress: bool = True,
                 strategy_options: dict | None = None, snapshot_every: int = 0,
                 resume: str | os.PathLike | None = None,
                 callbacks: Sequence[EpochCallback] = (), rank: int = 0, world_size: int = 1,
                 verbose: bool = True, loader_options: dict | None = None,
                 threads: int | None = None, task: Any = None, on_nonfinite: str = "stop"):
        if epochs < 0 or batch_size <= 0:
            raise ValueError(f"epochs must be >= 0 and batch_size > 0 (got {epochs}, {batch_size})")
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.model, self.data = model, data
        from .tasks import get_task
        self.strategy = st_strategies.get(strategy, **dict(strategy_options or {}))
        self.strategy_name = self.strategy.name
        self.strategy_spec, self.strategy_options = strategy, dict(strategy_options or {})
        self.task = get_task(task if task is not None else "classification")
        self.optimizer_spec, self.lr, self.weight_decay = optimizer, float(lr), float(weight_decay)
        self.epochs, self.batch_size, self.clip_grad = int(epochs), int(batch_size), clip_grad
        self.hardware, self.workers, self.engine = hardware, int(workers), engine
        # a storage URI (s3://, gs://, hdfs://): trained in its local stage folder, every file
        # copied there as written (:meth:`_publish`); Ray Train's checkpoints go there too
        self.out_uri = str(out_dir) if is_uri(out_dir) else None
        self.out_dir = (stage_dir(str(out_dir)) if self.out_uri else Path(out_dir)
                        if out_dir is not None else default_out_dir())
        self.seed, self.deterministic, self.progress = int(seed), bool(deterministic), bool(progress)
        self.snapshot_every, self.resume = int(snapshot_every), resume
        self.callbacks: list[EpochCallback] = list(callbacks)
        self.rank, self.world_size, self.verbose = int(rank), int(world_size), bool(verbose)
        self.loader_options = dict(loader_options or {})
        if threads is not None and int(threads) < 1:
            raise ValueError(f"threads must be >= 1 (or None: torch's default), got {threads}")
        if clip_grad is not None and not float(clip_grad) > 0:
            raise ValueError(f"clip_grad must be > 0 (or None: no clipping), got {clip_grad}")
        self.threads = threads
        self.on_nonfinite = on_nonfinite
        self.guard = NonFiniteGuard(self._live_model, on_nonfinite, step=self._steps_done,
                                    lr=self._current_lr, clip_grad=clip_grad)
        self.resumed_from_step: int | None = None
        self._loaded_from = None
        self.global_step = 0
        self.epoch = 0
        self._ready = False

    # bound methods (not lambdas) for the guard, so a Trainer pickles to Ray workers
    def _live_model(self):
        return self.model

    def _steps_done(self) -> int:
        return self.global_step

    def _current_lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    # ----------------------------------------------------------------- setup pieces
    @property
    def is_main(self) -> bool:
        """Rank 0 writes metrics and snapshots and prints."""
        return self.rank == 0

    def check(self) -> "Trainer":
        """Refuse what cannot train, before any file is written: the hardware backend, and the
        model against the data (the task's ``check``: ``n_in``, ``n_out`` vs classes)."""
        get_backend(self.hardware)
        self.task.check(unwrap(self.model), self.data[0] if isinstance(self.data, (tuple, list))
                        else self.data)
        return self

    def check_resume(self) -> dict:
        """Read the snapshot of ``resume`` and check that its weights fit the model and its
        optimizer state fits the optimizer (one line naming the file if not), before any file
        is written. Returns the snapshot."""
        if self.resume is None:
            return {}
        # an engine's optimizer state (DeepSpeed's ZeRO partitions) is checked by the engine
        # when its workers load it
        opt = build_optimizer(self.optimizer_spec, unwrap(self.model).parameters(), lr=self.lr,
                              weight_decay=self.weight_decay) if self.engine == "torch" else None
        return load_snapshot(self.resume, self.model, opt, restore_rng_state=False)

    def setup(self) -> "Trainer":
        """Seed, pick the device, build loaders, strategy and optimizer (idempotent)."""
        if self._ready:
            return self
        seed_everything(self.seed, self.deterministic)
        if self.threads:
            torch.set_num_threads(int(self.threads))
        self.backend = get_backend(self.hardware)
        self.device = self.backend.device
        self.model.to(self.device)
        self.check()
        train, test = self.data if isinstance(self.data, (tuple, list)) else (self.data, None)
        self.train_loader = make_loader(train, self.batch_size, shuffle=True, seed=self.seed,
                                        rank=self.rank, world_size=self.world_size,
                                        **self.loader_options)
        self.test_loader = make_loader(test, self.batch_size, shuffle=False, seed=self.seed,
                                       **self.loader_options)
        self.optimizer = build_optimizer(self.optimizer_spec, self.model.parameters(), lr=self.lr,
                                         weight_decay=self.weight_decay)
        # a backend that runs the whole training step itself (IPU) compiles it here
        make_step = getattr(self.backend, "training_step", None)
        self.train_step = make_step(self.model, self.optimizer, self.task, self.strategy) \
            if callable(make_step) else None
        self.metrics = MetricsLog(self.out_dir / "metrics.parquet" if self.is_main else None)
        self._partial: EpochResult | None = None
        self._skip = 0
        self._ready = True
        return self

    def add_callback(self, fn: EpochCallback) -> None:
        """Call ``fn(trainer, row)`` at the end of every epoch."""
        self.callbacks.append(fn)

    # ----------------------------------------------------------------- snapshots
    def _loader_state(self):
        sd = getattr(self.train_loader, "state_dict", None)
        return sd() if callable(sd) else None

    def save_snapshot(self, epoch_done: bool = True, partial: EpochResult | None = None) -> Path | None:
        """Write ``out_dir/snapshot.pt`` atomically (rank 0 only); refuse (NonFiniteError) to
        replace the last good snapshot with NaN/inf weights."""
        if not self.is_main:
            return None
        bad = nonfinite_weights(unwrap(self.model))
        if bad:
            raise NonFiniteError(
                f"weights {', '.join(bad[:3])}{' ...' if len(bad) > 3 else ''} became non-finite "
                f"by step {self.global_step}: snapshot not written, the last one is intact; "
                f"{advice(self.optimizer.param_groups[0]['lr'], self.clip_grad)}")
        extra = {"metrics": self.metrics.rows, "partial": partial.state_dict() if partial else None,
                 "strategy": self.strategy_name}
        path = save_snapshot(self.out_dir, self.model, self.optimizer, epoch=self.epoch,
                             global_step=self.global_step, epoch_done=epoch_done,
                             loader_state=self._loader_state(), extra=extra)
        self._publish(path.name)
        return path

    def _publish(self, *names: str) -> None:
        """Copy run files from ``out_dir`` to ``out_uri`` (rank 0 of a run on a storage URI)."""
        if not (getattr(self, "out_uri", None) and self.is_main):
            return
        from .storage import RunStorage
        store = RunStorage(self.out_uri)
        for name in names:
            if (Path(self.out_dir) / name).is_file():
                store.upload(Path(self.out_dir) / name, name)

    def load_snapshot(self, path: str | os.PathLike) -> dict:
        """Restore weights, optimizer, RNG, loader, epoch/step and earlier metrics rows.

        The options that may change on resume (``lr``, ``weight_decay``, ``clip_grad``,
        ``epochs``, the strategy) are this Trainer's: the optimizer's restored learning rate
        and weight decay are replaced by ``lr`` / ``weight_decay``, and the next metrics row
        records ``resumed_from_step``.
        """
        self.setup()
        snap = load_snapshot(path, self.model, self.optimizer, map_location=self.device)
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr
            if "weight_decay" in group:
                group["weight_decay"] = self.weight_decay
        self.resumed_from_step = int(snap["global_step"])
        self._loaded_from = path
        self.global_step = snap["global_step"]
        self.epoch = snap["epoch"] + (1 if snap["epoch_done"] else 0)
        extra = snap.get("extra") or {}
        self.metrics.rows = [dict(r) for r in extra.get("metrics") or []]
        loader = snap.get("loader")
        if loader is not None and hasattr(self.train_loader, "load_state_dict"):
            self.train_loader.load_state_dict(loader)
        if not snap["epoch_done"]:
            self._partial = EpochResult.from_state_dict(extra.get("partial"), self.task)
            # a loader whose state holds its position (SpikeLoader) continues mid-epoch by
            # itself; any other loader is fast-forwarded past the batches already trained on
            native = getattr(self.train_loader, "resumes_mid_epoch",
                             isinstance(loader, dict) and "position" in loader)
            if not native:
                self._skip = self._partial.steps
        return snap

    def _sync_weights(self) -> None:
        """Bring weights trained by a backend's compiled step back to the host model."""
        sync = getattr(self.train_step, "sync", None)
        if callable(sync):
            sync()

    def _on_step(self, res: EpochResult) -> None:
        self.global_step += 1
        if self.snapshot_every and self.global_step % self.snapshot_every == 0:
            self._sync_weights()
            self.save_snapshot(epoch_done=False, partial=res)

    # ----------------------------------------------------------------- loop
    def train_one_epoch(self) -> dict:
        """Train and evaluate epoch ``self.epoch``; write metrics and snapshot; run callbacks."""
        if hasattr(self.train_loader, "set_epoch"):
            self.train_loader.set_epoch(self.epoch)
        t0 = time.perf_counter()
        tag = f"epoch {self.epoch + 1}/{self.epochs}"
        res = train_epoch(self.model, self.train_loader, self.optimizer, self.strategy,
                          task=self.task, clip_grad=self.clip_grad, device=self.device,
                          result=self._partial, skip=self._skip,
                          progress=self.progress and self.is_main, desc=tag,
                          on_step=self._on_step, train_step=self.train_step, guard=self.guard)
        self._partial, self._skip = None, 0
        self.last_result = res          # sums of this rank's shard (metrics merged over ranks)
        self._sync_weights()
        row = {"epoch": self.epoch, "global_step": self.global_step, **res.as_row("train")}
        approx = getattr(unwrap(self.model), "sparse_backward", None)
        if approx is not None:   # an approximate backward is recorded with the run's metrics
            row["sparse_backward"] = float(approx)
        row.update(self.test_row(tag))
        row.update(epoch_seconds=time.perf_counter() - t0, lr=self.optimizer.param_groups[0]["lr"],
                   strategy=self.strategy_name)
        if self.resumed_from_step is not None:   # the first epoch after a resume says so
            row["resumed_from_step"] = self.resumed_from_step
            self.resumed_from_step = None
        self.metrics.append(row)
        if self.is_main:
            self.metrics.write()
            self._publish("metrics.parquet")
            self.save_snapshot(epoch_done=True)
            if self.verbose:
                print(format_row(row, self.epochs), flush=True)
        for cb in self.callbacks:
            cb(self, row)
        return row

    def test_row(self, tag: str = "test") -> dict:
        """``test_loss`` and ``test_<metric>`` on the test loader (NaN without test data)."""
        if self.test_loader is not None:
            ev = evaluate(self.model, self.test_loader, task=self.task, device=self.device,
                          progress=self.progress and self.is_main, desc=f"{tag} test")
            return {"test_loss": ev.loss,
                    **{f"test_{n}": v for n, v in ev.metrics.compute().items()}}
        return {"test_loss": float("nan"),
                **{f"test_{n}": float("nan") for n in self.task.metric_names}}

    def fit(self) -> dict:
        """Train for ``epochs`` (continuing a resumed run); returns the last epoch's metrics row."""
        if self.workers > 1 or self.engine != "torch":
            return self._delegate()
        self.setup()
        if self.resume is not None and self._loaded_from is None:
            self.load_snapshot(self.resume)
        if self.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            remove_stale_temp_files(self.out_dir)
        last: dict = dict(self.metrics.rows[-1]) if self.metrics.rows else {}
        while self.epoch < self.epochs:
            last = self.train_one_epoch()
            self.epoch += 1
        return last

    def _delegate(self) -> dict:
        try:
            glue = importlib.import_module("spiketrain.trainer.ray_train")
        except ImportError as e:
            raise ValueError(f"workers={self.workers}, engine={self.engine!r} need the Ray Train "
                             f"integration (spiketrain.trainer.ray_train, pip install -e '.[ray]'); "
                             f"use workers: 1 and engine: torch to train locally ({e})") from None
        return glue.fit(self)

    @property
    def unwrapped_model(self):
        return unwrap(self.model)
