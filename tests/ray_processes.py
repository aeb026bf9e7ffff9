"""Helpers shared by the tests that start Ray with ``ray start`` (heads, second nodes): free
ports, the processes of one started node (by a mark in their command line, and their
descendants), and stopping exactly those by pid (``ray stop`` would stop every Ray on the
machine)."""
from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path

import pytest


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def processes() -> dict[int, tuple[int, str]]:
    """``{pid: (parent pid, command line)}`` of every process readable in /proc."""
    out = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            out[int(d.name)] = (ppid, cmd)
    return out


def pids(marks: list[str]) -> set[int]:
    """Pids whose command line names one of ``marks`` and all their descendants (never this
    process)."""
    procs = processes()
    found = {pid for pid, (_, cmd) in procs.items() if any(m in cmd for m in marks)}
    while True:
        kids = {pid for pid, (ppid, _) in procs.items() if ppid in found} - found
        if not kids:
            return found - {os.getpid()}
        found |= kids


def stop(marks: list[str], grace: float = 5.0) -> None:
    """SIGTERM, then SIGKILL, the processes :func:`pids` finds for ``marks``."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids(marks):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        t_end = time.time() + grace
        while time.time() < t_end and pids(marks):
            time.sleep(0.2)


def skip_without_job_agent(rc: int, capsys) -> None:
    """A freshly started head whose job agent never came up (seen on a loaded 2-core machine
    after many Ray sessions in one test process) cannot run a job: skip, saying so; any
    other failure (exit 2) fails the test with its message."""
    if rc == 2:
        err = capsys.readouterr().err
        if "job agent did not come up" in err:
            pytest.skip("the test head's Ray job agent did not start: " + err.strip()[:200])
        pytest.fail(err)
