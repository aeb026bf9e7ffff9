"""Run many ``spiketrain`` command lines, each in a process of its own, paying the torch import
once: this script imports the CLI, then forks one child per command line (at most ``jobs`` at a
time). A child is what the console script is after its imports: it changes to its working
folder, takes its environment, writes stdout/stderr to files, calls ``main(argv)`` and exits
with its status; an exception that escapes ``main`` prints its traceback and exits 1, as the
console script would.

Usage (the test drives it): ``python cli_forks.py JOBS < cases.json > results.json`` where
``cases.json`` is ``[{"name", "argv", "cwd", "env"}]`` and ``results.json`` is
``[{"name", "returncode", "stdout", "stderr", "seconds"}]``.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import traceback


def _child(case: dict, out: str, err: str) -> None:
    code = 1
    try:
        os.chdir(case["cwd"])
        os.environ.clear()
        os.environ.update(case["env"])
        for fd, path in ((1, out), (2, err)):
            f = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.dup2(f, fd)
            os.close(f)
        sys.stdin = open(os.devnull)
        from spiketrain.launch.cli import main
        try:
            code = main(case["argv"])
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        except BaseException:  # noqa: BLE001  (what the interpreter would print)
            traceback.print_exc()
            code = 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(int(code or 0))


def _warm() -> None:
    """The imports every child would otherwise repeat: the CLI, what ``train`` builds with,
    and torch's compiler stack, which a torch optimizer imports when first constructed."""
    import importlib

    import torch
    for name in ("spiketrain.launch.cli", "spiketrain.launch.build", "spiketrain.trainer",
                 "spiketrain.data", "h5py", "pyarrow.parquet"):
        importlib.import_module(name)
    torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))])


def run_all(cases: list[dict], jobs: int) -> list[dict]:
    """Fork a child per case, ``jobs`` at a time; their exit status and output."""
    _warm()

    tmp = tempfile.mkdtemp(prefix="cli-forks-")
    pending, running, results = list(cases), {}, []
    while pending or running:
        while pending and len(running) < jobs:
            case = pending.pop(0)
            out = os.path.join(tmp, case["name"] + ".out")
            err = os.path.join(tmp, case["name"] + ".err")
            pid = os.fork()
            if pid == 0:
                _child(case, out, err)
            running[pid] = (case, out, err, time.monotonic())
        pid, status = os.wait()
        case, out, err, t0 = running.pop(pid)
        results.append({"name": case["name"], "returncode": os.waitstatus_to_exitcode(status),
                        "stdout": open(out, errors="replace").read(),
                        "stderr": open(err, errors="replace").read(),
                        "seconds": time.monotonic() - t0})
    return results


if __name__ == "__main__":
    json.dump(run_all(json.load(sys.stdin), int(sys.argv[1])), sys.stdout)
