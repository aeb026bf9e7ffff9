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
import sys
import threading

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



@jit(fastmath={"contract"})
def add_rows(c, w, jl, vl, m):
    """``c += sum_e vl[e] w[jl[e]]`` for ``e = 0 .. m-1``, in that order for every element of
    ``c [H]`` (rows ``jl`` of ``w [*, H]``, weights ``vl``), four rows of ``w`` per pass over
    ``c``, each product fused into its add (an FMA: a weight of 1 adds ``w`` exactly, so
    binary spikes give the bits of plain additions)."""
    H = c.shape[0]
    m4 = m - m % 4
    for e in range(0, m4, 4):
        g0, g1, g2, g3 = vl[e], vl[e + 1], vl[e + 2], vl[e + 3]
        w0, w1, w2, w3 = w[jl[e]], w[jl[e + 1]], w[jl[e + 2]], w[jl[e + 3]]
        for i in range(H):
            c[i] = (((c[i] + g0 * w0[i]) + g1 * w1[i]) + g2 * w2[i]) + g3 * w3[i]
    for e in range(m4, m):
        g0 = vl[e]
        w0 = w[jl[e]]
        for i in range(H):
            c[i] += g0 * w0[i]


@jit(inline="always")
def lowest_set_byte(x):
    """``(k, rest)`` for a nonzero uint64 word ``x`` of 0/1 bytes read little-endian: ``k``
    (0-7) the lowest byte that is 1, ``rest`` the word without it. ``x & -x`` isolates bit
    ``8k``, and multiplying by 0x0706050403020100 puts ``7 - k`` in the top byte."""
    b = x & (~x + np.uint64(1))
    return 7 - np.int64((b * np.uint64(0x0706050403020100)) >> np.uint64(56)), x ^ b


def byte_words(a: np.ndarray) -> np.ndarray:
    """``a`` (bool/uint8, C-contiguous) as uint64 words of 8 bytes along its last axis, for
    :func:`lowest_set_byte` scans; an empty array of the same rank where that view does not
    exist (last axis not a multiple of 8, empty, big-endian): the kernel scans bytes then."""
    a = a.view(np.uint8)
    if a.size and a.shape[-1] % 8 == 0 and sys.byteorder == "little":
        return a.view(np.uint64)
    return np.empty((0,) * a.ndim, dtype=np.uint64)


# buffers at least this large come from (and go back to) the pool of kernel_buffer
POOL_MIN_BYTES = 32 << 20
# free pooled bytes kept for reuse beyond this are unmapped (oldest first)
POOL_MAX_FREE_BYTES = 2 << 30
_pool: list = []  # [mmap, weak reference to the storage of the tensor using it (or None)]
_pool_lock = threading.Lock()


def kernel_buffer(shape, dtype: torch.dtype) -> torch.Tensor:
    """An uninitialised CPU tensor for a compiled kernel to fill (as ``torch.empty``). From
    :data:`POOL_MIN_BYTES` up (the ``[T, B, H]`` stores of a long chunk) its memory is an
    anonymous mapping taken from a pool: a mapping of the same size whose last tensor (every
    view of it included) has been freed is reused, so a training step's stores do not fault
    in and zero fresh pages each step (a fresh 262 MB buffer filled: 0.11-0.15 s; a reused
    one: 0.016 s, on the 2-core benchmark machine). Free mappings beyond
    :data:`POOL_MAX_FREE_BYTES` are unmapped; :func:`release_buffers` unmaps all free ones."""
    n = 1
    for d in shape:
        n *= int(d)
    nbytes = n * torch.empty((), dtype=dtype).element_size()
    if nbytes < POOL_MIN_BYTES or os.name != "posix":
        return torch.empty(tuple(shape), dtype=dtype)
    from torch.multiprocessing.reductions import StorageWeakRef
    with _pool_lock:
        entry = next((e for e in _pool if len(e[0]) == nbytes and _free(e)), None)
        if entry is None:
            entry = [mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS), None]
            _pool.append(entry)
            _trim(keep=entry)
        else:  # most recently used last
            _pool.remove(entry)
            _pool.append(entry)
        t = torch.frombuffer(entry[0], dtype=dtype, count=n).view(tuple(shape))
        entry[1] = StorageWeakRef(t.untyped_storage())
    return t


def _free(entry) -> bool:
    return entry[1] is None or entry[1].expired()


def _trim(keep=None, limit: int | None = None) -> None:
    limit = POOL_MAX_FREE_BYTES if limit is None else limit
    free = sum(len(e[0]) for e in _pool if e is not keep and _free(e))
    for e in list(_pool):  # oldest first
        if free <= limit:
            break
        if e is not keep and _free(e):
            size = len(e[0])
            try:
                e[0].close()
            except BufferError:  # still exported after all: keep it
                continue
            _pool.remove(e)
            free -= size


def release_buffers() -> int:
    """Unmap every pooled buffer no tensor uses; returns the bytes released."""
    with _pool_lock:
        before = sum(len(e[0]) for e in _pool)
        _trim(limit=0)
        return before - sum(len(e[0]) for e in _pool)
