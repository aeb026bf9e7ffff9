"""Keep the process heap from growing with T on long unrolls (glibc on Linux).

glibc serves allocations below a *dynamic* mmap threshold from its heap; after a large
buffer is freed the threshold rises (up to 32 MiB), so the per-segment buffers of a long
unroll (dense input chunks, spike blocks, bytes read back from disk) land in the heap
between small long-lived allocations and cannot be given back: the process RSS then grows
with T although the strategy holds O(1) bytes (measured: ``offload`` to disk at
T = 15,000 grew 1.1 GiB with the default, 0.13 GiB with a fixed 64 KiB threshold).

:func:`bound_heap` fixes the threshold (``mallopt(M_MMAP_THRESHOLD)``) once per process,
so buffers of ``threshold`` bytes and more are mapped and unmapped directly, and
:func:`trim` gives free heap pages back (``malloc_trim``). Both do nothing where glibc is
absent or when ``SPIKETRAIN_HEAP=keep`` is set (e.g. when ``MALLOC_MMAP_THRESHOLD_`` is
already set by the user).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
import time

M_MMAP_THRESHOLD = -3
DEFAULT_THRESHOLD = 1 << 16  # per-step tensors of the SHD model ([32, 256] float = 32 KiB) stay below

_libc = None
_bounded = False


def _glibc():
    global _libc
    if _libc is None:
        _libc = False
        if sys.platform.startswith("linux"):
            try:
                lib = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
                if hasattr(lib, "mallopt") and hasattr(lib, "malloc_trim"):
                    _libc = lib
            except OSError:
                pass
    return _libc


def _enabled() -> bool:
    return (os.environ.get("SPIKETRAIN_HEAP", "bound") != "keep"
            and "MALLOC_MMAP_THRESHOLD_" not in os.environ)


def bound_heap(threshold: int = DEFAULT_THRESHOLD) -> bool:
    """Serve allocations of ``threshold`` bytes or more with mmap from now on (once per
    process); True if the setting is in effect."""
    global _bounded
    if _bounded:
        return True
    lib = _glibc()
    if not lib or not _enabled():
        return False
    _bounded = bool(lib.mallopt(M_MMAP_THRESHOLD, int(threshold)))
    return _bounded


def trim() -> None:
    """Return free heap pages to the system (no-op without glibc)."""
    lib = _glibc()
    if lib and _enabled():
        lib.malloc_trim(0)


def rss_bytes() -> int:
    """Current resident set size of this process (0 where /proc is absent)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


class Trimmer:
    """Calls :func:`trim` when the RSS has grown ``slack`` bytes since the last trim: bounds
    what heap fragmentation adds to the RSS to about ``slack`` while trimming rarely (pages
    given back are faulted in again when reused, which costs system time)."""

    def __init__(self, slack: int = 256 << 20, every: float = 0.05):
        self.slack, self.every = slack, every
        self.active = bool(_glibc()) and _enabled()
        self.mark = rss_bytes() if self.active else 0
        self.trims = 0
        self._next = 0.0

    def __call__(self) -> None:
        """Check the RSS (at most every ``every`` seconds) and trim if it grew ``slack``."""
        if not self.active:
            return
        t = time.monotonic()
        if t < self._next:
            return
        self._next = t + self.every
        now = rss_bytes()
        if now > self.mark + self.slack:
            trim()
            self.trims += 1
            self.mark = rss_bytes()
        elif now < self.mark:
            self.mark = now
