"""What benchmarks/seqlen.py runs on: the SHD-shape model, its seeded Poisson input (generated
per block as sparse indices, never as a dense ``[T, B, N]`` tensor beyond what a caller asks
for) and the ``torch.utils.checkpoint`` reference unroll."""
from __future__ import annotations

import math
import os
import resource
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from spiketrain.hardware.spikes import SparseSpikes  # noqa: E402
from spiketrain.hardware.units import format_size  # noqa: E402
from spiketrain.models import RSNN  # noqa: E402

N_IN, HIDDEN, N_OUT, BATCH, RATE = 700, 256, 20, 32, 0.02
MATERIALIZE_MAX_T = 30_000  # up to here the input is one SparseSpikes (10.7 MB per 1000 steps)


class PoissonSource:
    """Seeded Poisson spike train ``[T, B, N]`` generated per ``block`` steps on demand, held
    as sparse indices (never as a dense ``[T, B, N]`` tensor): ``.slice(t0, t1)`` returns a
    :class:`SparseSpikes` window and ``.dense(t0, t1)`` its dense form, the same values every
    time (recomputation is exact). ``materialize()`` returns the whole train as one
    SparseSpikes (3 int64 per spike: about 1 GiB per 100,000 steps at this shape)."""

    def __init__(self, T, B=BATCH, N=N_IN, rate=RATE, seed=0, block=100, progress=0):
        self.shape = torch.Size((T, B, N))
        self.progress = progress  # print a line to stderr every `progress` steps
        self.T, self.B, self.N, self.rate, self.seed, self.block = T, B, N, rate, seed, block
        self._cache: dict[int, SparseSpikes] = {}
        self.gen_s = 0.0  # CPU seconds spent generating blocks

    def dim(self):
        return 3

    def _block(self, k: int) -> SparseSpikes:
        if k not in self._cache:
            c0 = time.process_time()
            L = min(self.block, self.T - k * self.block)
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + k)
            n = L * self.B * self.N
            idx = torch.unique(torch.randint(n, (int(round(n * self.rate)),), generator=g))
            t, rest = idx.div(self.B * self.N, rounding_mode="floor"), idx.remainder(self.B * self.N)
            b, u = rest.div(self.N, rounding_mode="floor"), rest.remainder(self.N)
            if len(self._cache) >= 8:
                self._cache.pop(next(iter(self._cache)))
            self._cache[k] = SparseSpikes(t, b, u, (L, self.B, self.N), check=False)
            self.gen_s += time.process_time() - c0
        return self._cache[k]

    def slice(self, t0=0, t1=None) -> SparseSpikes:
        t1 = self.T if t1 is None else t1
        if self.progress and t0 // self.progress != getattr(self, "_last", -1):
            self._last = t0 // self.progress
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
            print(f"[{time.strftime('%H:%M:%S')}] slice({t0}, {t1}) peak RSS {format_size(rss)}",
                  file=sys.stderr, flush=True)
        parts = []
        for k in range(t0 // self.block, (t1 - 1) // self.block + 1):
            b = self._block(k)
            a, e = max(t0 - k * self.block, 0), min(t1 - k * self.block, b.shape[0])
            parts.append((k * self.block + a - t0, b.slice(a, e)))
        if len(parts) == 1:
            return parts[0][1]
        times = torch.cat([p.times + off for off, p in parts])
        return SparseSpikes(times, torch.cat([p.batch for _, p in parts]),
                            torch.cat([p.units for _, p in parts]), (t1 - t0, self.B, self.N),
                            check=False)

    def dense(self, t0=0, t1=None, dtype=torch.float32):
        return self.slice(t0, t1).dense(dtype=dtype)

    def materialize(self) -> SparseSpikes:
        return self.slice(0, self.T)


def make_model(seed=0):
    torch.manual_seed(seed)
    return RSNN(N_IN, HIDDEN, N_OUT, layers=1, neuron="lif")


def tuc_unroll(model, x, reentrant: bool):
    """torch.utils.checkpoint over ceil(sqrt(T)) segments of model.chunk (the reference)."""
    from torch.utils.checkpoint import checkpoint
    from spiketrain.models.base import state_flatten, state_unflatten
    T = x.shape[0]
    seg = max(1, math.ceil(math.sqrt(T)))
    state = model.init_state(x.shape[1])
    leaves, spec = state_flatten(state)
    leaves = [t.requires_grad_(True) for t in leaves]  # reentrant needs a grad-requiring input

    def f(xs, *ls):
        s, y = model.chunk(state_unflatten(list(ls), spec), xs)
        return (y, *state_flatten(s)[0])

    ys = []
    for t0 in range(0, T, seg):
        y, *leaves = checkpoint(f, x[t0:t0 + seg], *leaves, use_reentrant=reentrant)
        ys.append(y)
    return torch.cat(ys)
