"""Cluster runs through Ray Jobs: submit a training run, ask its status, fetch its logs.

``submit`` stages the validated config (overrides applied) as ``config.yaml`` in a fresh
``working_dir`` and ships the ``spiketrain`` package with ``py_modules``, so the cluster runs
exactly the local code and config; the entrypoint is ``python -m spiketrain.launch.cli train
config.yaml ...`` (Ray Train workers joined to the cluster when ``--workers`` is given).
"""
from __future__ import annotations

import os
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from ..trainer.ray_session import RayLaunchError, check_reachable

DEFAULT_ADDRESS = "http://127.0.0.1:8265"
TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")
PROBE = "spiketrain_probe.py"


def jobs_address(address: str | None) -> str:
    """The Ray Jobs (dashboard) address: ``address``, an http ``$RAY_ADDRESS``, or the local
    default ``http://127.0.0.1:8265``."""
    env = os.environ.get("RAY_ADDRESS", "")
    address = address or (env if env.startswith("http") else "") or DEFAULT_ADDRESS
    if "://" not in address:
        address = f"http://{address}"
    return address


def client(address: str | None):
    """A ``JobSubmissionClient`` for a reachable cluster, else a one-line RayLaunchError."""
    from ray.job_submission import JobSubmissionClient

    address = jobs_address(address)
    check_reachable(address, default_port=8265)
    try:
        return JobSubmissionClient(address)
    except Exception as e:  # connection/auth problems: one line
        raise RayLaunchError(f"cannot talk to Ray Jobs at {address}: "
                             f"{str(e).strip().splitlines()[0]}") from None


def stage(cfg_dict: dict, directory: str | Path | None = None) -> Path:
    """A working_dir holding ``config.yaml`` (the resolved config)."""
    d = Path(directory or tempfile.mkdtemp(prefix="spiketrain-job-"))
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.yaml").write_text(yaml.safe_dump(cfg_dict, sort_keys=False))
    from . import probe   # the job's first command: one line if the cluster lacks a dependency
    (d / PROBE).write_text(Path(probe.__file__).read_text())
    return d


def submit(cfg_dict: dict, address: str | None = None, train_args: list[str] | None = None,
           pip: list[str] | None = None, env: dict[str, str] | None = None,
           submission_id: str | None = None) -> str:
    """Submit a training run of ``cfg_dict``; returns the job id."""
    import spiketrain

    c = client(address)
    wd = stage(cfg_dict)
    runtime_env: dict[str, Any] = {"working_dir": str(wd),
                                   "py_modules": [str(Path(spiketrain.__file__).parent)],
                                   "env_vars": {"PYTHONUNBUFFERED": "1", **(env or {})}}
    if pip:
        runtime_env["pip"] = list(pip)
    entry = ["python", "-m", "spiketrain.launch.cli", "train", "config.yaml", "--no-progress",
             *(train_args or [])]
    # A head that has just started answers HTTP before its job agent is up ("No available
    # agent to submit job, please try again later"): retry that for a while, nothing else.
    deadline = time.monotonic() + float(os.environ.get("SPIKETRAIN_SUBMIT_WAIT_S", "90"))
    while True:
        try:
            return c.submit_job(entrypoint=f"python {PROBE} && {shlex.join(entry)}",
                                runtime_env=runtime_env,
                                submission_id=submission_id)
        except RuntimeError as e:
            if "No available agent" not in str(e):
                raise
            if time.monotonic() > deadline:
                raise RayLaunchError(
                    f"the Ray head at {jobs_address(address)} answers but its job agent did not "
                    f"come up in time (Ray: no available agent); check the head with `ray "
                    f"status` and its dashboard_agent log, or retry (SPIKETRAIN_SUBMIT_WAIT_S "
                    f"sets the wait)") from None
            time.sleep(2.0)


def status(job_id: str, address: str | None = None) -> dict[str, Any]:
    """``{"job": id, "status": ..., "message": ..., "entrypoint": ...}`` of a submitted job."""
    c = client(address)
    try:
        info = c.get_job_info(job_id)
    except RuntimeError as e:
        raise RayLaunchError(f"no job {job_id!r} at {jobs_address(address)} "
                             f"({str(e).strip().splitlines()[0][:120]}); list jobs with "
                             f"`ray job list --address {jobs_address(address)}`") from None
    return {"job": job_id, "status": str(getattr(info.status, "value", info.status)),
            "message": info.message or "", "entrypoint": info.entrypoint,
            "start_time": info.start_time, "end_time": info.end_time}


def wait(job_id: str, address: str | None = None, timeout: float = 3600.0,
         poll: float = 1.0) -> str:
    """Poll until the job ends (or ``timeout`` seconds); returns its final status."""
    t_end = time.time() + timeout
    while True:
        s = status(job_id, address)["status"]
        if s in TERMINAL or time.time() > t_end:
            return s
        time.sleep(poll)


def missing_line(log_text: str) -> str | None:
    """The probe's one line (what the cluster's Python lacks, how to fix it) in a job's logs."""
    from .probe import MARK
    for line in log_text.splitlines():
        if line.startswith(MARK):
            return line.strip()
    return None


def logs(job_id: str, address: str | None = None) -> str:
    """All logs of the job so far."""
    status(job_id, address)  # a clear error for an unknown job
    return client(address).get_job_logs(job_id)


def follow(job_id: str, address: str | None = None, out=sys.stdout) -> None:
    """Stream the job's logs until it ends."""
    import asyncio

    async def _tail():
        async for chunk in client(address).tail_job_logs(job_id):
            out.write(chunk)
            out.flush()

    asyncio.run(_tail())
