"""Data-parallel training on Ray Train: one ``TorchTrainer`` worker per process, DDP over gloo
(CPU) or NCCL (GPU), each worker running the configured memory strategy on its batch shard.

The glue is independent of what is trained. A *job* is built inside each worker by
``make_job(rank, world_size, device)`` and exposes::

    job.epochs: int
    job.start_epoch: int               # optional (default 0): where a fresh start begins
    job.wrap_model(fn)                 # fn(model) -> DDP(model); the job trains the wrapper
    job.train_epoch(epoch) -> dict     # metrics of the epoch (already averaged over ranks)
    job.save_snapshot(dir)             # weights, optimizer, epoch, RNG into dir
    job.load_snapshot(dir) -> epoch    # restore; returns the next epoch to run

Snapshots travel as Ray Train checkpoints: after every ``report_every`` epochs each rank calls
``ray.train.report(metrics, checkpoint=...)`` (a barrier, so never per step) with rank 0
supplying the directory; a restarted worker group (``FailureConfig(max_failures)``) resumes
from ``ray.train.get_checkpoint()``.
"""
from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .ray_session import RayLaunchError, check_workers, ray_session


@dataclass
class RayRunResult:
    """What a Ray run returns: rank-0 ``metrics`` of the last report, the last snapshot
    directory and the run directory."""

    metrics: dict[str, Any]
    snapshot: str | None = None
    path: str | None = None


def _write_worker_file(worker_dir: str | None, rank: int, **info: Any) -> None:
    """``worker_dir/rank{r}.json``: pid and progress of each worker (for ``status`` and tests)."""
    if not worker_dir:
        return
    p = Path(worker_dir)
    p.mkdir(parents=True, exist_ok=True)
    tmp = p / f".rank{rank}.json.tmp"
    tmp.write_text(json.dumps({"rank": rank, "pid": os.getpid(), "time": time.time(), **info}))
    tmp.replace(p / f"rank{rank}.json")


def ddp_wrapper(device) -> Callable:
    """``fn(model) -> DistributedDataParallel(model)`` for the current process group."""
    import torch
    from torch.nn.parallel import DistributedDataParallel as DDP

    def wrap(model):
        if device is not None and torch.device(device).type == "cuda":
            return DDP(model, device_ids=[torch.device(device).index])
        return DDP(model)

    return wrap


def _worker_loop(cfg: dict) -> None:
    """Body of every Ray Train worker (see the module docstring for the job protocol)."""
    import ray.train as rt
    import torch
    import torch.distributed as dist

    # Ray Train logs "Reporting training result ..." at INFO on a logger named after its file,
    # outside the ray.train loggers that LoggingConfig quiets: one line per report otherwise
    report_log = sys.modules.get("ray.train.v2._internal.execution.context")
    if report_log is not None:
        logging.getLogger(report_log.__file__).setLevel(logging.WARNING)
    ctx = rt.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    import ray

    from .ray_console import prefix_rank
    prefix_rank(rank)   # every line this worker prints starts with [rank R]
    node = ray.get_runtime_context().get_node_id()
    torch.set_num_threads(max(1, int(cfg.get("threads_per_worker", 1))))
    from ray.train.torch import get_device

    device = get_device()
    job = cfg["make_job"](rank, world, device)
    if world > 1 and dist.is_initialized():
        job.wrap_model(ddp_wrapper(device))
    start, resumed_from = int(getattr(job, "start_epoch", 0)), None
    ckpt = rt.get_checkpoint()
    if ckpt is not None:
        with ckpt.as_directory() as d:
            start = resumed_from = job.load_snapshot(d)
    _write_worker_file(cfg.get("worker_dir"), rank, epoch=start, resumed_from=resumed_from,
                       node=node)
    every = max(1, int(cfg.get("report_every", 1)))
    for epoch in range(start, job.epochs):
        metrics = dict(job.train_epoch(epoch))
        metrics.update(epochs_done=epoch + 1, world_size=world,
                       resumed_from=-1 if resumed_from is None else resumed_from)
        last = epoch + 1 == job.epochs
        if (epoch + 1) % every and not last:
            continue
        with tempfile.TemporaryDirectory() as d:
            checkpoint = None
            if rank == 0:
                job.save_snapshot(d)
                checkpoint = rt.Checkpoint.from_directory(d)
            rt.report(metrics, checkpoint=checkpoint)
        _write_worker_file(cfg.get("worker_dir"), rank, epoch=epoch + 1,
                           resumed_from=resumed_from, node=node)


def fit_ray(make_job: Callable, workers: int = 2, *, run_dir: str | os.PathLike = "runs",
            name: str = "ray_run", use_gpu: bool = False, max_failures: int = 0,
            report_every: int = 1, address: str | None = None, cpus_per_worker: float = 1.0,
            keep_snapshots: int = 2) -> RayRunResult:
    """Train ``make_job`` on ``workers`` Ray Train workers and return the final report.

    Runs inside the current Ray session if one is initialised, otherwise joins ``address``
    (or ``$RAY_ADDRESS``) or starts an embedded local Ray for the duration of the call.
    Raises :class:`RayLaunchError` for runs that cannot be placed.
    """
    import ray
    from ray.train import (CheckpointConfig, FailureConfig, LoggingConfig, RunConfig,
                           ScalingConfig)
    from ray.train.torch import TorchTrainer

    from .storage import is_uri, stage_dir

    # a storage URI (s3://...): Ray Train's checkpoints go there, so a worker group restarted
    # on any node finds them; the worker files stay in the URI's local stage folder
    remote = is_uri(run_dir)
    run_dir = str(run_dir) if remote else Path(run_dir).resolve()
    worker_dir = (stage_dir(run_dir) if remote else run_dir) / name / "workers"
    cfg = {"make_job": make_job, "report_every": report_every, "worker_dir": str(worker_dir),
           "threads_per_worker": max(1, int(cpus_per_worker))}
    # an embedded local Ray has this machine's cores and GPUs and nothing more; a cluster may
    # still grow (autoscaler), so there Ray Train waits for the resources instead
    local = not ray.is_initialized() and not (address or os.environ.get("RAY_ADDRESS"))
    if local:
        check_workers(workers, cpus_per_worker)
    with ray_session(address) as resources:
        if local and use_gpu and resources.get("GPU", 0) < workers:
            raise RayLaunchError(f"--workers {workers} with GPUs needs {workers} GPUs, the "
                                 f"cluster has {resources.get('GPU', 0):g}; use fewer workers "
                                 f"or set use_gpu false")
        storage = {"storage_path": str(run_dir)}
        if remote:
            # resolved here, where the endpoint settings (environment, URI options) are: the
            # filesystem object travels to Ray Train's controller and workers with them
            import pyarrow.fs as pafs
            fs, path = pafs.FileSystem.from_uri(str(run_dir))
            storage = {"storage_path": path, "storage_filesystem": fs}
        trainer = TorchTrainer(
            _worker_loop, train_loop_config=cfg,
            scaling_config=ScalingConfig(num_workers=workers, use_gpu=use_gpu,
                                         resources_per_worker={"CPU": cpus_per_worker}),
            run_config=RunConfig(
                name=name, **storage,
                failure_config=FailureConfig(max_failures=max_failures),
                checkpoint_config=CheckpointConfig(num_to_keep=keep_snapshots),
                # Ray Train's own INFO lines (resources, process group, one "checkpoint
                # created" and one "reporting result" per epoch) stay in its log files
                logging_config=LoggingConfig(log_level="WARNING")))
        result = trainer.fit()
    if result.error is not None:
        raise result.error
    snap = result.checkpoint.path if result.checkpoint is not None else None
    return RayRunResult(metrics=dict(result.metrics or {}), snapshot=snap,
                        path=str(result.path) if getattr(result, "path", None) else None)


# --------------------------------------------------------------------------- the Trainer on Ray
def _averaged(task) -> list[str]:
    """Row keys averaged over ranks (equal shards): the loss and the step time. Same order on
    every rank. The task's metrics are merged from every rank's state instead
    (:func:`_merged_metrics`), so non-additive ones such as mAP are exact."""
    return ["train_loss", "sec_per_step"]


def _merged_metrics(trainer) -> dict:
    """``train_<metric>`` of the whole batch: every rank's metric state gathered and merged."""
    import torch.distributed as dist

    res = getattr(trainer, "last_result", None)
    if res is None:
        return {}
    states = [None] * trainer.world_size
    dist.all_gather_object(states, res.metrics.state_dict())
    merged = trainer.task.new_metrics()
    for state in states:
        merged.merge(state)
    return {f"train_{k}": v for k, v in merged.compute().items()}


class TrainerJob:
    """The job protocol over a :class:`spiketrain.trainer.Trainer`: the same loop, metrics
    (``out_dir/metrics.parquet``, rank 0) and snapshots as a local run, on this rank's shard."""

    def __init__(self, trainer, rank: int, world_size: int, device=None,
                 deepspeed: dict | None = None):
        t = self.trainer = trainer
        if t.batch_size % world_size:
            raise ValueError(f"trainer.batch_size {t.batch_size} is not divisible by {world_size} "
                             f"workers; pick a multiple of the worker count")
        # the configured batch is the global one: each rank trains on its shard of it
        t.rank, t.world_size, t.workers = rank, world_size, 1
        t.batch_size //= world_size
        t.progress = t.progress and rank == 0
        t.verbose = t.verbose and rank == 0
        self.engine = None
        t.setup()
        if t.engine == "deepspeed":
            from .deepspeed_engine import DeepSpeedEngine
            opts = dict(deepspeed or {})
            opts.setdefault("clip_grad", t.clip_grad or 0.0)
            t.clip_grad = None  # DeepSpeed clips
            self.engine = DeepSpeedEngine(t.model, t.optimizer, opts)
            t.model, t.optimizer = self.engine.module, self.engine.as_optimizer()
        # snapshots are taken for all ranks at once (see _save_snapshot)
        self._epoch_end = False
        t.save_snapshot = self._save_snapshot
        self.epochs = t.epochs
        self.start_epoch = 0
        if t.resume is not None:  # --resume RUN_DIR (a Ray snapshot, if any, wins over it)
            t.load_snapshot(t.resume)
            self.start_epoch = t.epoch

    def wrap_model(self, fn) -> None:
        if self.engine is None:  # a DeepSpeed engine reduces gradients itself
            self.trainer.model = fn(self.trainer.model)

    def train_epoch(self, epoch: int) -> dict:
        import torch
        import torch.distributed as dist

        t = self.trainer
        t.epoch = epoch
        row = t.train_one_epoch()
        if t.world_size > 1 and dist.is_initialized():  # shard metrics -> whole-batch metrics
            keys = _averaged(t.task)
            vals = torch.tensor([float(row.get(k, float("nan"))) for k in keys],
                                dtype=torch.float64)
            dist.all_reduce(vals)
            merged = {k: v / t.world_size for k, v in zip(keys, vals.tolist())}
            merged.update(_merged_metrics(t))
            row.update(merged)
            t.metrics.rows[-1].update(merged)   # the table (and the snapshot) keep the merged row
            if t.is_main:
                t.metrics.write()
                t._publish("metrics.parquet")
        self._epoch_end = True
        try:
            t.save_snapshot(epoch_done=True)
        finally:
            self._epoch_end = False
        t.epoch = epoch + 1
        return {k: v for k, v in row.items() if isinstance(v, (int, float, str))}

    def _save_snapshot(self, epoch_done: bool = True, partial=None):
        """The Trainer's ``save_snapshot``, taken by every rank together: a ZeRO-partitioned
        optimizer state is gathered to rank 0 (a collective), then rank 0 writes the one
        snapshot file. The end-of-epoch snapshot is written by :meth:`train_epoch` once the
        ranks' metrics are merged; the Trainer's own end-of-epoch call (rank 0 only) is
        skipped. Mid-epoch snapshots (``snapshot_every``) come from every rank's step."""
        if epoch_done and not self._epoch_end:
            return None
        gather = getattr(self.trainer.optimizer, "gather", None)
        if callable(gather):
            gather()
        t = self.trainer
        return type(t).save_snapshot(t, epoch_done=epoch_done, partial=partial)

    def save_snapshot(self, directory) -> None:
        import shutil

        from .snapshot import snapshot_path
        shutil.copy2(snapshot_path(self.trainer.out_dir), Path(directory) / "snapshot.pt")

    def load_snapshot(self, directory) -> int:
        self.trainer.load_snapshot(directory)
        return self.trainer.epoch


def deepspeed_options(trainer) -> dict | None:
    """The ``deepspeed:`` config section of a Trainer built from a config, as a dict."""
    import dataclasses

    cfg = getattr(trainer, "config", None)
    sec = getattr(cfg, "sections", {}).get("deepspeed") if cfg is not None else None
    return dataclasses.asdict(sec) if dataclasses.is_dataclass(sec) else sec


def _make_trainer_job(trainer, deepspeed, rank, world_size, device):
    return TrainerJob(trainer, rank, world_size, device, deepspeed=deepspeed)


def fit(trainer, address: str | None = None, workers: int | None = None,
        max_failures: int = 1, use_gpu: bool | None = None, deepspeed: dict | None = None,
        cpus_per_worker: float | None = None) -> dict:
    """Run ``trainer`` (a :class:`spiketrain.trainer.Trainer`) on Ray Train workers and return
    its last epoch's metrics row. ``workers`` defaults to ``trainer.workers``; the run folder
    (metrics, snapshot) is ``trainer.out_dir`` and Ray's own files go to ``out_dir/ray``.
    ``cpus_per_worker`` defaults to this machine's cores shared out on an embedded local Ray
    (one worker uses them all, like a local run) and 1 on a cluster."""
    import functools

    import ray
    import torch

    n = int(workers or trainer.workers)
    if cpus_per_worker is None:
        joined = ray.is_initialized() or address or os.environ.get("RAY_ADDRESS")
        cpus_per_worker = 1 if joined else max(1, (os.cpu_count() or 1) // n)
    if use_gpu is None:
        use_gpu = trainer.hardware in ("cuda", "gpu") or (trainer.hardware == "auto"
                                                          and torch.cuda.is_available())
    out = Path(trainer.out_dir).resolve()
    trainer.out_dir = out
    if deepspeed is None:
        deepspeed = deepspeed_options(trainer)
    job = functools.partial(_make_trainer_job, trainer, deepspeed)
    res = fit_ray(job, workers=n, run_dir=getattr(trainer, "out_uri", None) or out, name="ray",
                  use_gpu=use_gpu,
                  max_failures=max_failures, address=address, cpus_per_worker=cpus_per_worker)
    return res.metrics


def fit_local(trainer, deepspeed: dict | None = None) -> dict:
    """The Ray workers' loop in this process, one worker, no Ray (``--no-ray``); also how
    ``engine: deepspeed`` trains without Ray (a gloo process group of one)."""
    job = TrainerJob(trainer, 0, 1, deepspeed=deepspeed if deepspeed is not None
                     else deepspeed_options(trainer))
    row: dict = {}
    for epoch in range(job.start_epoch, job.epochs):
        row = job.train_epoch(epoch)
    return row
