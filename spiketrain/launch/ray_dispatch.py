"""How ``spiketrain train`` runs: in this process, or on Ray Train workers.

``--workers N`` trains on N Ray Train workers, on an embedded local Ray started for the run and
shut down after it, or on the cluster of ``--address`` / ``$RAY_ADDRESS``. ``trainer.workers > 1``
or ``trainer.engine: deepspeed`` in the config also go to Ray. Without any of these the run
stays in this process, as does ``--no-ray`` (one worker; DeepSpeed then runs over a gloo
process group of one).
"""
from __future__ import annotations

import argparse
import os

from .config import ConfigError


def add_ray_arguments(p: argparse.ArgumentParser) -> None:
    """``--workers``, ``--address``, ``--no-ray``, ``--max-failures`` on a sub-command."""
    g = p.add_argument_group("Ray")
    g.add_argument("--workers", type=int, metavar="N",
                   help="data-parallel workers on Ray Train (default: trainer.workers); without "
                        "--address an embedded local Ray runs for the duration of the command")
    g.add_argument("--address", help="join a running Ray cluster, e.g. ray://HEAD:10001 or "
                   "HEAD:6379 (default: $RAY_ADDRESS)")
    g.add_argument("--no-ray", action="store_true",
                   help="train in this process without Ray (one worker, for debugging)")
    g.add_argument("--max-failures", type=int, default=1, metavar="N",
                   help="restart the workers from the last snapshot up to N times (default 1)")


def _workers(trainer, args) -> int:
    return args.workers if getattr(args, "workers", None) is not None else trainer.workers


def check(trainer, args: argparse.Namespace) -> None:
    """Refuse, before the run folder is created, what :func:`fit` would refuse late: a bad
    worker count, ``--no-ray`` with workers, an unreachable ``--address``."""
    from ..trainer.ray_session import check_reachable, check_workers, resolve_address

    workers = _workers(trainer, args)
    if workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {workers}")
    if getattr(args, "no_ray", False):
        if workers > 1 or getattr(args, "address", None):
            raise ConfigError(f"--no-ray trains in this process: drop --workers {workers}"
                              f"{' and --address' if args.address else ''}, or drop --no-ray")
        return
    use_ray = (getattr(args, "workers", None) is not None or getattr(args, "address", None)
               or workers > 1 or trainer.engine != "torch")
    address = resolve_address(getattr(args, "address", None)) if use_ray else None
    if address:
        if address.startswith(("http://", "https://")):
            raise ConfigError(f"--address {address} is a Ray Jobs (dashboard) address: submit to "
                              f"it with `spiketrain submit --address {address}`, or give the "
                              f"cluster address HEAD:6379 / ray://HEAD:10001 here")
        check_reachable(address, default_port=10001 if address.startswith("ray://") else 6379)
    elif use_ray:
        import ray
        if not ray.is_initialized():
            check_workers(workers)      # an embedded local Ray has this machine's CPUs
    if use_ray and not address:   # an embedded local Ray has this machine's cores only
        from ..trainer.ray_session import check_workers
        check_workers(workers, 1.0)
    if use_ray and trainer.batch_size % workers:
        raise ConfigError(f"trainer.batch_size {trainer.batch_size} is not divisible by {workers} "
                          f"workers; pick a multiple of the worker count")


def fit(trainer, args: argparse.Namespace) -> dict:
    """Train ``trainer`` as the command line asks; returns the last epoch's metrics row."""
    from ..trainer import ray_train

    workers = args.workers if getattr(args, "workers", None) is not None else trainer.workers
    address = getattr(args, "address", None) or os.environ.get("RAY_ADDRESS") or None
    if workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {workers}")
    if getattr(args, "no_ray", False):
        if workers > 1 or getattr(args, "address", None):
            raise ConfigError(f"--no-ray trains in this process: drop --workers {workers}"
                              f"{' and --address' if args.address else ''}, or drop --no-ray")
        trainer.workers = 1
        if trainer.engine == "torch":
            return trainer.fit()
        return ray_train.fit_local(trainer)
    # $RAY_ADDRESS says where Ray is, not that one worker must go through it (a Ray job's
    # driver has it set): only --workers, --address or the config ask for Ray Train.
    use_ray = (getattr(args, "workers", None) is not None or getattr(args, "address", None)
               or workers > 1 or trainer.engine != "torch")
    if not use_ray:
        return trainer.fit()
    trainer.workers = workers
    return ray_train.fit(trainer, address=address, workers=workers,
                         max_failures=getattr(args, "max_failures", 1))


def _register_sections() -> None:
    from ..trainer.deepspeed_engine import DeepSpeedOptions
    from .config import _SECTIONS, register_section

    if "deepspeed" not in _SECTIONS:
        register_section("deepspeed", DeepSpeedOptions)


_register_sections()
