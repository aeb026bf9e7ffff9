"""One Ray session for a run: join a cluster (``address`` / ``RAY_ADDRESS``) or start an
embedded local Ray for the duration of a ``with`` block and shut it down after.

The embedded Ray listens on 127.0.0.1 only (:func:`loopback_only`), and a reaper process
(:mod:`.ray_reaper`) kills its agents when the driver ends, however it ends.

Every error here is one line naming the fix (:class:`RayLaunchError`); the commands turn it
into exit code 2.
"""
from __future__ import annotations

import contextlib
import functools
import logging
import os
import socket
from typing import Iterator
from urllib.parse import urlparse

from .ray_reaper import start as start_reaper

# Ray's single-machine switch (made for macOS/Windows, honoured on Linux): the node address
# is the loopback one, and the GCS, raylet, agents and workers listen on it only.
_LOOPBACK = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


@contextlib.contextmanager
def loopback_only() -> Iterator[None]:
    """Within the block, a Ray started here listens on 127.0.0.1 only (its processes inherit
    the setting through the environment; this process's Ray read it at import, so the
    imported constant is set too). Both are restored after the block, so a cluster started
    later from this process (e.g. ``ray start`` in a subprocess) is not affected."""
    saved_env = {k: os.environ.get(k) for k in _LOOPBACK}
    os.environ.update(_LOOPBACK)
    try:
        from ray._private import ray_constants
    except ImportError:  # another Ray layout: the environment still applies
        ray_constants = None
    saved = getattr(ray_constants, "ENABLE_RAY_CLUSTER", None)
    if ray_constants is not None and saved is not None:
        ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        if ray_constants is not None and saved is not None:
            ray_constants.ENABLE_RAY_CLUSTER = saved

# ray.train.report is a barrier on every rank; Ray Train polls its workers at this interval.
# The 2 s default makes every report cost seconds on small runs.
_FAST_POLL = {"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.1"}
# Ray Train's print patch tees a worker's print to stdout *and* logs it whenever sys.stdout is
# wrapped, which Ray's own workers always do: every line printed in a worker shows twice.
_ONE_PRINT = {"RAY_TRAIN_ENABLE_PRINT_PATCH": "0"}
# An embedded local Ray has no preemption watcher: one node that goes away only with the run.
_LOCAL_QUIET = {"RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0"}


def _quiet_cleaner_hook():
    """Ray worker process setup for an embedded local Ray. Ray Train's placement-group cleaner
    asks the State API, which lives in the dashboard this Ray does not start, every second and
    warns each time it fails (it can do nothing else without it): its logger is raised to
    ERROR. A partial of ``Logger.setLevel``, so Ray's worker processes only import ``logging``
    to run it (a function from this package would make each of them import torch)."""
    hook = functools.partial(logging.Logger.setLevel, logging.getLogger(
        "ray.train.v2._internal.execution.controller.placement_group_cleaner"), logging.ERROR)
    hook.__name__ = "quiet_placement_group_cleaner"  # Ray names the hook by it
    return hook


def _not_auth_notice(record: logging.LogRecord) -> bool:
    """Drop Ray's notice that token auth is on (its default, nothing to act on) at every start;
    the warning that it is off stays."""
    return not record.getMessage().startswith("Token authentication is enabled")


class RayLaunchError(ValueError):
    """A Ray run cannot start as asked (unreachable address, too many workers, ...)."""


def resolve_address(address: str | None) -> str | None:
    """``address`` or ``$RAY_ADDRESS``; ``None`` means an embedded local Ray."""
    address = address or os.environ.get("RAY_ADDRESS") or None
    return address


def _host_port(address: str, default_port: int) -> tuple[str, int] | None:
    if address in ("auto", "local"):
        return None
    url = urlparse(address if "://" in address else f"tcp://{address}")
    if not url.hostname:
        raise RayLaunchError(f"bad Ray address {address!r}; use HOST:PORT, ray://HOST:10001 or "
                             f"http://HOST:8265")
    return url.hostname, url.port or default_port


def check_reachable(address: str, default_port: int = 6379, timeout: float = 3.0) -> None:
    """Raise :class:`RayLaunchError` unless a TCP connection to ``address`` opens within
    ``timeout`` seconds (so a wrong address fails fast instead of hanging in ``ray.init``)."""
    hp = _host_port(address, default_port)
    if hp is None:
        return
    try:
        with socket.create_connection(hp, timeout=timeout):
            pass
    except OSError as e:
        reason = getattr(e, "strerror", None) or type(e).__name__
        raise RayLaunchError(f"cannot reach Ray at {address} ({reason}); start a head with "
                             f"`ray start --head` or leave --address out to run on a local "
                             f"embedded Ray") from None


def check_workers(workers: int, cpus_per_worker: float = 1.0, available: float | None = None) -> None:
    """Refuse ``workers`` that cannot all be placed (``available`` CPUs; default: this machine)."""
    if workers < 1:
        raise RayLaunchError(f"--workers must be >= 1, got {workers}")
    cpus = available if available is not None else float(os.cpu_count() or 1)
    need = workers * cpus_per_worker
    if need > cpus:
        raise RayLaunchError(f"--workers {workers} needs {need:g} CPUs but only {cpus:g} are "
                             f"available; use --workers {max(1, int(cpus // cpus_per_worker))} or "
                             f"join a bigger cluster with --address")


@contextlib.contextmanager
def ray_session(address: str | None = None, num_cpus: int | None = None,
                fast_reports: bool = True) -> Iterator[dict]:
    """Connect to Ray for the duration of the block; yields ``ray.cluster_resources()``.

    With no address (and no ``RAY_ADDRESS``) an embedded local Ray is started with
    ``num_cpus`` (default: all cores) and shut down at the end. An already initialised Ray
    (e.g. inside a Ray job, or a test's shared session) is reused and left running.
    """
    import ray

    for k, v in {**(_FAST_POLL if fast_reports else {}), **_ONE_PRINT}.items():
        os.environ.setdefault(k, v)
    reaper = None
    if ray.is_initialized():
        yield ray.cluster_resources()
        return
    address = resolve_address(address)
    if address:
        if address.startswith(("http://", "https://")):
            raise RayLaunchError(f"{address} is a Ray Jobs (dashboard) address: submit to it with "
                                 f"`spiketrain submit --address {address}`, or give the cluster "
                                 f"address HEAD:6379 / ray://HEAD:10001 here")
        check_reachable(address, default_port=10001 if address.startswith("ray://") else 6379)
        try:
            ray.init(address=address, log_to_driver=True)
        except ConnectionError as e:
            raise RayLaunchError(f"cannot join Ray at {address}: {str(e).splitlines()[0]}; check "
                                 f"the address and that the cluster runs") from None
    else:
        for k, v in _LOCAL_QUIET.items():
            os.environ.setdefault(k, v)
        logging.getLogger("ray._private.authentication.authentication_token_setup").addFilter(
            _not_auth_notice)
        with loopback_only():
            ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=True,
                     logging_level=logging.WARNING,  # no "Started a local Ray instance"
                     runtime_env={"worker_process_setup_hook": _quiet_cleaner_hook()})
        reaper = start_reaper()     # the agents die with this process, even after kill -9
    from .ray_console import install_driver_filter
    install_driver_filter()   # each worker line once, with its rank; Ray's notices out
    try:
        yield ray.cluster_resources()
    finally:
        ray.shutdown()
        if reaper is not None:
            reaper.stop()
