"""One clean console for a Ray run: each worker line once, with its rank; Ray's own noise out.

* In a worker, :func:`prefix_rank` makes every line it prints start with ``[rank R]``.
* In the driver, :func:`install_driver_filter` wraps Ray's handler of the worker output
  streamed to the driver (``log_to_driver``): a line already shown from the same process is
  dropped (on one machine every node's log monitor may tail the same files, which printed
  each worker line twice); a ``[rank R]`` line is printed as is, without Ray's
  ``(RayTrainWorker pid=...)`` prefix; the Ray Train controller's transient notices (a
  resource request that timed out on a busy machine, the State API the placement-group
  cleaner cannot reach without a dashboard) and their tracebacks are left out. Everything
  else is passed to Ray's own printer unchanged.

Ray's stream dispatcher is internal API: if it is missing or changes, nothing is filtered.
"""
from __future__ import annotations

import io
import re
import sys
import threading
import time
from collections import OrderedDict

RANK_LINE = re.compile(r"^\[rank \d+\] ")
#: controller/cleaner notices that say nothing a user can act on
NOISE = ("Failed to send resource request", "Failed to query Ray Train Controller actor state",
         "has constructor arguments in the object store and max_restarts > 0",
         # the cleaner's monitor thread dies when it cannot find the State API (no dashboard,
         # or several Rays on one machine); the run goes on
         "Exception in thread PlacementGroupCleanerMonitor")
NOISY_ACTORS = ("TrainController", "PlacementGroupCleaner")
_TRACE = re.compile(r"^(\s|Traceback |\^|[\w.]+(Error|Exception|Exit)\b)")


class _RankPrefixed(io.TextIOBase):
    """A text stream that starts every line written to ``stream`` with ``prefix``."""

    def __init__(self, stream, prefix: str):
        self.stream, self.prefix, self._at_start = stream, prefix, True

    def write(self, s: str) -> int:
        out = []
        for part in s.splitlines(keepends=True):
            if self._at_start:
                out.append(self.prefix)
            out.append(part)
            self._at_start = part.endswith("\n")
        self.stream.write("".join(out))
        return len(s)

    def flush(self) -> None:
        self.stream.flush()

    def isatty(self) -> bool:
        return False

    @property
    def encoding(self):
        return getattr(self.stream, "encoding", "utf-8")

    def fileno(self) -> int:
        return self.stream.fileno()


def prefix_rank(rank: int) -> None:
    """In a Ray Train worker: every line printed to stdout from now on starts ``[rank R] ``."""
    if not isinstance(sys.stdout, _RankPrefixed):
        sys.stdout = _RankPrefixed(sys.stdout, f"[rank {int(rank)}] ")


class DriverFilter:
    """Wraps Ray's driver-side printer of worker output (see the module docstring)."""

    def __init__(self, inner, window_s: float = 120.0, max_keys: int = 20000):
        self.inner, self.window_s, self.max_keys = inner, window_s, max_keys
        self._seen: OrderedDict = OrderedDict()
        self._in_noise: set = set()
        self._lock = threading.Lock()
        self.dropped = 0

    def _duplicate(self, key) -> bool:
        now = time.monotonic()
        while self._seen:
            k, t = next(iter(self._seen.items()))
            if now - t <= self.window_s and len(self._seen) <= self.max_keys:
                break
            self._seen.popitem(last=False)
        if key in self._seen:
            return True
        self._seen[key] = now
        return False

    def __call__(self, data: dict) -> None:
        lines = data.get("lines") or []
        pid, actor = data.get("pid"), str(data.get("actor_name") or "")
        keep, ranked = [], []
        with self._lock:
            for line in lines:
                if self._duplicate((data.get("ip"), pid, data.get("is_err"), line)):
                    self.dropped += 1
                    continue
                if actor.startswith(NOISY_ACTORS):
                    if any(n in line for n in NOISE):
                        self._in_noise.add(pid)
                        continue
                    if pid in self._in_noise and _TRACE.match(line):
                        continue
                    self._in_noise.discard(pid)
                if RANK_LINE.match(line):
                    ranked.append(line)
                else:
                    keep.append(line)
        if ranked:
            stream = sys.stderr if data.get("is_err") else sys.stdout
            stream.write("".join(ln + "\n" for ln in ranked))
            stream.flush()
        if keep:
            self.inner({**data, "lines": keep})


def install_driver_filter() -> DriverFilter | None:
    """Wrap Ray's ``ray_print_logs`` handler in this (driver) process with a
    :class:`DriverFilter`; idempotent. Returns the filter, or None when Ray's internals
    differ from what this expects (output then stays as Ray prints it)."""
    try:
        from ray._private.ray_logging import global_worker_stdstream_dispatcher as disp
    except ImportError:
        return None
    handlers = getattr(disp, "handlers", None)
    lock = getattr(disp, "_lock", None)
    if not isinstance(handlers, list) or lock is None:
        return None
    with lock:
        for i, (name, fn) in enumerate(disp.handlers):
            if name == "ray_print_logs":
                if isinstance(fn, DriverFilter):
                    return fn
                wrapped = DriverFilter(fn)
                disp.handlers = disp.handlers[:i] + [(name, wrapped)] + disp.handlers[i + 1:]
                return wrapped
    return None
