"""What feeds a fused LIF/ALIF layer (:mod:`.fused`): its input chunk as a dense tensor, the
binary spikes of the layer below, or a SparseSpikes train, with the three things the fused
pass needs of it per block of steps: the input current, the dense rows, and the input
weight gradient. Time-major: inputs ``[T, B, n_in]``, currents ``[n, B, H]``.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ...hardware.bits import SpikeStore
from ...hardware.sparse import SparseIndex, project


class LayerInput:
    """What feeds a layer: a dense chunk (``kind="dense"``, kept by reference), binary
    spikes of the layer below (``"spikes"``, kept as its SpikeStore) or a SparseSpikes
    train (``"sparse"``, indices only)."""

    def __init__(self, kind: str, mode: str, store: SpikeStore | None = None, sparse=None):
        self.kind, self.mode, self.store, self.sparse = kind, mode, store, sparse
        self.cached: SparseIndex | None = None  # whole-chunk index of a dense input
        self.B = 0
        self._ptr = self._ptr_of = None  # row pointer [R + 1] of ``cached`` (and which index)

    def index(self, t0: int, t1: int, x: Tensor | None) -> SparseIndex:
        if self.cached is not None:
            if (t0, t1) == (0, self.cached.shape[0] // self.B):
                return self.cached
            return self._slice(t0 * self.B, t1 * self.B)
        if self.kind == "sparse":
            sp = self.sparse.slice(t0, t1) if (t0, t1) != (0, self.sparse.shape[0]) else self.sparse
            B, N = sp.shape[1], sp.shape[2]
            rows = sp.times * B + sp.batch
            return SparseIndex.from_rows(rows, sp.units, ((t1 - t0) * B, N))
        xb = x[t0:t1] if self.kind == "dense" else self.store.load_range(t0, t1, torch.bool)
        return SparseIndex.from_dense(xb.reshape(-1, xb.shape[-1]),
                                      binary=True if self.kind == "spikes" else None)

    def _slice(self, r0: int, r1: int) -> SparseIndex:
        """Rows ``r0:r1`` of the whole-chunk index, rebased to row 0, with their embedding-bag
        offsets: read off one row pointer of the chunk (made once), not searched and counted
        per block."""
        c = self.cached
        ptr = self._ptr
        if ptr is None or self._ptr_of is not c:
            counts = torch.bincount(c.rows.long(), minlength=c.shape[0]) if c.nnz else \
                torch.zeros(c.shape[0], dtype=torch.long, device=c.rows.device)
            ptr = torch.zeros(c.shape[0] + 1, dtype=torch.long, device=c.rows.device)
            torch.cumsum(counts, 0, out=ptr[1:])
            self._ptr, self._ptr_of = ptr, c
        a, b = int(ptr[r0]), int(ptr[r1])
        vals = None if c.vals is None else c.vals[a:b]
        sub = SparseIndex(c.rows[a:b] - r0, c.cols[a:b], vals, (r1 - r0, c.shape[1]))
        sub._row_offsets = (ptr[r0:r1] - a).to(sub.rows.dtype)
        return sub

    def block(self, t0: int, t1: int, x: Tensor | None, dtype) -> Tensor:
        """Dense rows ``t0:t1`` of the input, ``[n, B, n_in]``."""
        if self.kind == "dense":
            return x[t0:t1]
        if self.kind == "spikes":
            return self.store.load_range(t0, t1, dtype)
        return self.sparse.slice(t0, t1).dense(dtype=dtype)

    def current(self, t0: int, t1: int, x: Tensor | None, w_in: Tensor, B: int) -> Tensor:
        """Input current of steps ``t0:t1``: ``[n, B, H]``."""
        n = t1 - t0
        if self.mode == "sparse":
            key = (w_in.data_ptr(), w_in._version)
            if getattr(self, "_wt_key", None) != key:  # one transposed copy per pass, not per block
                self._wt, self._wt_key = w_in.t().contiguous(), key
            return self.index(t0, t1, x).project(w_in, self._wt).view(n, B, -1)
        return project(self.block(t0, t1, x, w_in.dtype), w_in, "dense")

    def grad_weight(self, t0: int, t1: int, x: Tensor | None, g: Tensor,
                    acc_t: Tensor | None = None) -> Tensor | None:
        """``sum_t g_t^T x_t`` over the block: ``g [n, B, H] -> [H, n_in]``; with ``acc_t``
        (contiguous ``[n_in, H]``, sparse mode on CPU) it is added into ``acc_t`` instead and
        None is returned."""
        g2 = g.reshape(-1, g.shape[-1])
        if self.mode == "sparse":
            if acc_t is not None:
                self.index(t0, t1, x).grad_weight(g2, out=acc_t)
                return None
            return self.index(t0, t1, x).grad_weight(g2)
        xb = self.block(t0, t1, x, g.dtype)
        return g2.t() @ xb.reshape(-1, xb.shape[-1])
