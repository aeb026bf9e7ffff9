"""Switch for the compiled CPU kernels (numba) of every model and sparse op.

Per-step work of a spiking layer is tiny, so in eager PyTorch it is dominated by dispatch
overhead; compiled loops run a whole block of steps in one call. They run on CPU tensors of
float32/float64 when numba imports; otherwise (CUDA, other dtypes, ``SPIKETRAIN_KERNELS=torch``)
callers take their eager PyTorch path. Models keep their own kernels (in ``models/``); this
module only says whether compiled kernels may run and gives the common ``jit`` decorator.
"""
from __future__ import annotations

import mmap
import os

import numpy as np
import torch

from .backends import backend_for

try:  # numba is a dependency; stay importable without it (eager fallback)
    import numba
except ImportError:  # pragma: no cover - exercised only where numba is missing
    numba = None

if numba is not None and "NUMBA_THREADING_LAYER" not in os.environ:
    # numba's own thread pool for the parallel kernels. Its OpenMP layer would share torch's
    # libgomp (same soname): starting it sets OpenMP's thread count, and with it
    # torch.get_num_threads(), to numba's pool size, so a run told to use one torch thread
    # silently used all cores after the first kernel, and the two pools' spinning workers
    # slowed every torch op that followed (measured: 5x on a 2-core machine).
    numba.config.THREADING_LAYER = "workqueue"

ENV = "SPIKETRAIN_KERNELS"


def enabled() -> bool:
    """True unless numba is missing or ``SPIKETRAIN_KERNELS=torch`` is set."""
    return numba is not None and os.environ.get(ENV, "numba") != "torch"


def available(*tensors: torch.Tensor | None) -> bool:
    """True when the compiled loops can run on these tensors (CPU, float32/float64; None
    entries are ignored)."""
    if not enabled():
        return False
    return all(t is None or (compiled_on(t.device) and t.dtype in (torch.float32, torch.float64))
               for t in tensors)


def compiled_on(device: torch.device) -> bool:
    """True when the backend owning ``device`` runs compiled kernels (its
    ``compiled_kernels`` capability: the CPU backend's)."""
    return backend_for(device).compiled_kernels


def as_numpy(t: torch.Tensor) -> np.ndarray:
    """NumPy view of a CPU tensor (no copy; detached)."""
    return t.detach().numpy()


def jit(fn=None, **options):
    """``numba.njit(cache=True, nogil=True, boundscheck=False)``; the function unchanged
    (never called: :func:`available` is False) when numba is missing."""
    if numba is None:  # pragma: no cover
        return fn if fn is not None else (lambda f: f)
    opts = dict(cache=True, nogil=True, boundscheck=False)
    opts.update(options)
    return numba.njit(**opts)(fn) if fn is not None else numba.njit(**opts)


@jit
def chunk_range(ch, n, nchunk):
    """``(lo, hi)``: the ``ch``-th of ``nchunk`` contiguous ranges splitting ``0..n`` (the
    rows one thread of a parallel kernel owns; empty when ``lo >= hi``)."""
    width = (n + nchunk - 1) // nchunk
    lo = ch * width
    return lo, min(n, lo + width)


# buffers at least this large are mapped for transparent huge pages (see kernel_buffer)
HUGE_MIN_BYTES = 32 << 20


def kernel_buffer(shape, dtype: torch.dtype) -> torch.Tensor:
    """An uninitialised CPU tensor for a compiled kernel to fill (``torch.empty``). From
    :data:`HUGE_MIN_BYTES` up (a ``[T, B, H]`` store of a long chunk) it is an anonymous mapping
    advised for transparent huge pages (Linux, ``madvise`` mode), freed with the tensor: its
    first touch then costs one page fault per 2 MiB instead of per 4 KiB (a fresh 262 MB
    buffer filled: 0.11 s with 4 KiB pages, 0.04 s with huge pages, on the 2-core benchmark
    machine). Elsewhere a plain ``torch.empty``."""
    n = 1
    for d in shape:
        n *= int(d)
    nbytes = n * torch.empty((), dtype=dtype).element_size()
    if nbytes < HUGE_MIN_BYTES or not hasattr(mmap, "MADV_HUGEPAGE"):
        return torch.empty(tuple(shape), dtype=dtype)
    buf = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    buf.madvise(mmap.MADV_HUGEPAGE)
    return torch.frombuffer(buf, dtype=dtype, count=n).view(tuple(shape))
