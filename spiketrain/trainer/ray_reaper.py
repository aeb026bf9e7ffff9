"""Reaper of an embedded local Ray: its processes die with the driver, even after ``kill -9``.

Ray shares the fate of ``gcs_server`` and ``raylet`` with the driver that started them, but
the agents the raylet starts (``ray::DashboardAgent``, ``ray::RuntimeEnvAgent``) outlive a
killed driver and keep listening. :func:`start` runs this file as a separate process (by path,
so it imports neither torch nor this package) in a session of its own. It watches the driver's
descendants whose command line names Ray, and when the driver's end of its stdin pipe closes
(a normal exit, or the driver killed) it sends SIGKILL to those still running.

Usage (done by :func:`spiketrain.trainer.ray_session.ray_session`)::

    reaper = start()      # after ray.init(); keep the object alive
    ...
    reaper.stop()         # after ray.shutdown()
"""
from __future__ import annotations

import os
import subprocess
import sys
import threading


def _is_ray(proc) -> bool:
    try:
        text = " ".join(proc.cmdline()) or proc.name()
    except Exception:
        return False
    return "ray" in text.lower() or "gcs_server" in text


def _watch(driver: int, poll: float = 1.0) -> None:
    """The reaper process: collect the driver's Ray descendants until stdin closes, then
    SIGKILL the ones still running (same pid and start time, so no reused pid is hit)."""
    import psutil

    seen: dict[int, float] = {}
    done = threading.Event()

    def wait_stdin():
        try:
            sys.stdin.buffer.read()
        finally:
            done.set()

    threading.Thread(target=wait_stdin, daemon=True).start()
    while True:
        try:
            for p in psutil.Process(driver).children(recursive=True):
                if p.pid not in seen and p.pid != os.getpid() and _is_ray(p):
                    seen[p.pid] = p.create_time()
        except psutil.Error:
            pass
        if done.wait(poll):
            break
    victims = []
    for pid, t0 in seen.items():
        try:
            p = psutil.Process(pid)
            if abs(p.create_time() - t0) < 1e-3:
                p.kill()
                victims.append(p)
        except psutil.Error:
            pass
    psutil.wait_procs(victims, timeout=5)


class Reaper:
    """Handle of a running reaper: :meth:`stop` closes its pipe (it then reaps and exits)."""

    def __init__(self, proc: subprocess.Popen):
        self.proc = proc

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc.stdin and not self.proc.stdin.closed:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def start(driver: int | None = None) -> Reaper | None:
    """Start the reaper for ``driver`` (default: this process); None if psutil is missing."""
    try:
        import psutil  # noqa: F401  (Ray depends on it)
    except ImportError:
        return None
    proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), str(driver or os.getpid())],
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True)
    return Reaper(proc)


if __name__ == "__main__":
    _watch(int(sys.argv[1]))
