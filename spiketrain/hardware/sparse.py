"""Sparse spike kernels: ``spikes @ W^T`` that pay only for the active inputs.

``spike_linear(spikes [..., n_in], weight [n_out, n_in], mode)``:

- ``"dense"``: one matmul over every element.
- ``"sparse"``: ``torch.nn.functional.embedding_bag`` (mode ``sum``) over the active
  indices: each output row is the sum of the weight columns of its active inputs (values
  other than 1 are used as per-sample weights, so any sparse tensor works). The weight
  gradient is again an embedding-bag sum, this time of output-gradient rows grouped by
  input unit, so the backward pass is sparse too.
- ``"auto"``: sparse when the measured spike rate is at most :data:`SPARSE_MAX_RATE`,
  a crossover calibrated by ``benchmarks/kernels.py`` (override with
  :func:`set_sparse_max_rate` or ``SPIKETRAIN_SPARSE_MAX_RATE``).
"""
from __future__ import annotations

import os

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .compiled import as_numpy as _np
from .compiled import available, chunk_range, jit, numba

MODES = ("auto", "sparse", "dense")

# Crossover spike rate measured by benchmarks/kernels.py on the CPU (forward + weight
# gradient, 32x700 -> 256, T=1000, compiled index and scatter): sparse wins clearly up to
# 10% (1.85x), breaks even between 15% and 20%.
SPARSE_MAX_RATE = float(os.environ.get("SPIKETRAIN_SPARSE_MAX_RATE", 0.10))


def set_sparse_max_rate(rate: float) -> None:
    """Set the spike rate up to which ``mode="auto"`` takes the sparse path."""
    global SPARSE_MAX_RATE
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"rate must be in [0, 1], got {rate}")
    SPARSE_MAX_RATE = float(rate)


def spike_rate(x: Tensor, max_rows: int = 64) -> float:
    """Fraction of nonzero elements of ``x``, estimated from at most ``max_rows`` evenly
    spaced entries of its leading (time) dimension when it is longer."""
    if x.dim() > 1 and x.shape[0] > max_rows:
        x = x[:: -(-x.shape[0] // max_rows)]
    n = x.numel()
    return float(x.count_nonzero()) / n if n else 0.0


def choose_mode(x: Tensor | None, mode: str = "auto", rate: float | None = None) -> str:
    """``"sparse"`` or ``"dense"`` for input ``x`` (auto: by measured spike rate)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if mode != "auto":
        return mode
    if rate is None:
        rate = spike_rate(x)
    return "sparse" if rate <= SPARSE_MAX_RATE else "dense"


class SparseIndex:
    """Active entries of a 2-D ``[R, n_in]`` input, grouped by row (for the projection)
    (the weight gradient is a sparse COO matmul). ``vals`` is None when all
    active values are 1."""

    def __init__(self, rows: Tensor, cols: Tensor, vals: Tensor | None, shape):
        self.vals = vals
        self.shape = (int(shape[0]), int(shape[1]))
        idx_t = torch.int32 if max(self.shape) < 2**31 - 1 else torch.int64
        self.rows, self.cols = rows.to(idx_t), cols.to(idx_t)
        self._row_offsets = None

    @classmethod
    def from_dense(cls, x: Tensor, binary: bool | None = None) -> "SparseIndex":
        """``x [R, n_in]`` -> its nonzero entries (row-major). ``binary=True`` skips reading
        the active values (bool inputs are binary)."""
        if available(x if x.dtype != torch.bool else None) and x.device.type == "cpu":
            rows, cols, vals = nonzero_index(x, binary)
            return cls(rows, cols, vals, x.shape)
        n_in = x.shape[1]
        flat = x.reshape(-1)
        nz = flat.nonzero().squeeze(1)
        rows, cols = nz.div(n_in, rounding_mode="floor"), nz.remainder(n_in)
        vals = None
        if not (binary or x.dtype == torch.bool):
            vals = flat.take(nz)
            if binary is None and (vals.numel() == 0 or bool((vals == 1).all())):
                vals = None
        return cls(rows, cols, vals, x.shape)

    def slice_rows(self, r0: int, r1: int) -> "SparseIndex":
        """Entries of rows ``r0:r1``, rebased to start at row 0."""
        bounds = torch.searchsorted(self.rows, torch.tensor([r0, r1], dtype=self.rows.dtype))
        a, b = int(bounds[0]), int(bounds[1])
        vals = None if self.vals is None else self.vals[a:b]
        return SparseIndex(self.rows[a:b] - r0, self.cols[a:b], vals, (r1 - r0, self.shape[1]))

    def tensors(self) -> list[Tensor]:
        """Compact form to keep for backward: column indices and per-row counts, int16 when
        ``n_in < 32768`` (2 bytes per active entry + 2 per row), plus values if not binary."""
        small = self.shape[1] < 2**15
        counts = torch.bincount(self.rows.long(), minlength=self.shape[0])
        dt = torch.int16 if small else torch.int32
        return [self.cols.to(dt), counts.to(dt)] + ([] if self.vals is None else [self.vals])

    @classmethod
    def from_tensors(cls, ts, shape) -> "SparseIndex":
        """Inverse of :meth:`tensors`."""
        cols, counts = ts[0], ts[1].long()
        rows = torch.repeat_interleave(torch.arange(counts.numel(), device=counts.device), counts)
        return cls(rows, cols, ts[2] if len(ts) > 2 else None, shape)

    @classmethod
    def from_rows(cls, rows: Tensor, cols: Tensor, shape, vals: Tensor | None = None) -> "SparseIndex":
        """From (row, col) pairs in any order (sorted by row here)."""
        if rows.numel() and not bool((rows[1:] >= rows[:-1]).all()):
            order = torch.argsort(rows, stable=True)
            rows, cols = rows[order], cols[order]
            vals = None if vals is None else vals[order]
        return cls(rows, cols, vals, shape)

    @property
    def nnz(self) -> int:
        return self.rows.numel()

    def _offsets(self, keys: Tensor, n: int) -> Tensor:
        counts = torch.bincount(keys.long(), minlength=n)
        return (torch.cumsum(counts, 0) - counts).to(keys.dtype)

    def project(self, weight: Tensor, weight_t: Tensor | None = None) -> Tensor:
        """``x @ weight^T``: ``weight [n_out, n_in] -> [R, n_out]`` (``weight_t``: a contiguous
        ``weight.t()`` to reuse across calls)."""
        R = self.shape[0]
        if self.nnz == 0:
            return weight.new_zeros(R, weight.shape[0])
        if self._row_offsets is None:
            self._row_offsets = self._offsets(self.rows, R)
        if weight_t is None:
            weight_t = weight.t().contiguous()
        return F.embedding_bag(self.cols, weight_t, self._row_offsets, mode="sum",
                               per_sample_weights=self.vals)

    def grad_weight(self, grad_out: Tensor, out: Tensor | None = None) -> Tensor:
        """``grad_out^T @ x``: ``grad_out [R, n_out] -> [n_out, n_in]``. ``out``: a contiguous
        ``[n_in, n_out]`` accumulator to add ``(grad_out^T @ x)^T`` into instead (returned
        transposed, compiled path only: see :func:`scatter_grad`)."""
        n_in = self.shape[1]
        if out is not None and self.nnz == 0:
            return out.t()
        if self.nnz == 0:
            return grad_out.new_zeros(grad_out.shape[1], n_in)
        if available(grad_out):
            return scatter_grad(self.rows, self.cols, self.vals, grad_out, n_in, out=out)
        idx = torch.stack([self.cols.long(), self.rows.long()])
        vals = self.vals if self.vals is not None else grad_out.new_ones(self.nnz)
        xt = torch.sparse_coo_tensor(idx, vals.to(grad_out.dtype), (n_in, self.shape[0]),
                                     check_invariants=False)
        return torch.sparse.mm(xt, grad_out.contiguous()).t()


def project(x: Tensor, weight: Tensor, mode: str) -> Tensor:
    """No-grad helper: ``x [..., n_in] @ weight^T`` by ``mode`` (sparse or dense)."""
    if mode == "dense":
        return x @ weight.t()
    lead = x.shape[:-1]
    return SparseIndex.from_dense(x.reshape(-1, x.shape[-1])).project(weight).view(*lead, -1)


class _SpikeLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, mode: str):
        lead = x.shape[:-1]
        x2 = x.reshape(-1, x.shape[-1])
        ctx.mode, ctx.lead = mode, lead
        y = project(x2, weight, mode)
        ctx.save_for_backward(weight, x2)
        return y.view(*lead, weight.shape[0])

    @staticmethod
    def backward(ctx, gy: Tensor):
        weight, *rest = ctx.saved_tensors
        g2 = gy.reshape(-1, gy.shape[-1])
        gx = gw = None
        if ctx.needs_input_grad[0]:
            gx = (g2 @ weight).view(*ctx.lead, weight.shape[1])
        if ctx.needs_input_grad[1]:
            if ctx.mode == "sparse":
                gw = SparseIndex.from_dense(rest[0]).grad_weight(g2)
            else:
                gw = g2.t() @ rest[0]
        return gx, gw, None


def spike_linear(spikes: Tensor, weight: Tensor, mode: str = "auto") -> Tensor:
    """``spikes [..., n_in] @ weight [n_out, n_in]^T -> [..., n_out]`` with autograd.

    ``mode``: ``"sparse"`` (embedding-bag over active inputs), ``"dense"`` (matmul) or
    ``"auto"`` (sparse when the spike rate is <= :data:`SPARSE_MAX_RATE`). Both paths give
    the same outputs and gradients (to float rounding) for any input values.
    """
    if spikes.shape[-1] != weight.shape[1]:
        raise ValueError(f"spikes have {spikes.shape[-1]} inputs but weight expects {weight.shape[1]}")
    m = choose_mode(spikes, mode)
    return _SpikeLinear.apply(spikes, weight, m)


# ---------------------------------------------------------------- compiled CPU kernels (numba)
@jit
def _scan(x, rows, cols, vals, keep_vals):
    R, N = x.shape
    m = 0
    binary = True
    for r in range(R):
        for i in range(N):
            xi = x[r, i]
            if xi != 0:
                rows[m] = r
                cols[m] = i
                if keep_vals:
                    vals[m] = xi
                    if xi != 1:
                        binary = False
                m += 1
    return m, binary


@jit
def _count(x):
    R, N = x.shape
    m = 0
    for r in range(R):
        for i in range(N):
            if x[r, i] != 0:
                m += 1
    return m


@jit
def _scatter_rows(gT, rows, cols, vals, g, has_vals, c0, c1):
    # accumulator rows c0:c1 (input units); each element summed in entry order
    for q in range(rows.shape[0]):
        c = cols[q]
        if c >= c0 and c < c1:
            d, s = gT[c], g[rows[q]]
            if has_vals:
                w = vals[q]
                for i in range(d.shape[0]):
                    d[i] += w * s[i]
            else:
                for i in range(d.shape[0]):
                    d[i] += s[i]


@jit(parallel=True)
def _scatter(gT, rows, cols, vals, g, has_vals, nchunk):
    # the accumulator's rows split in nchunk ranges, one per thread
    N = gT.shape[0]
    for ch in numba.prange(nchunk):
        c0, c1 = chunk_range(ch, N, nchunk)
        if c1 > c0:
            _scatter_rows(gT, rows, cols, vals, g, has_vals, c0, c1)


def nonzero_index(x: Tensor, binary: bool | None = None):
    """Entries of ``x [R, N]`` (CPU) that are not zero, row-major, in one compiled pass:
    ``(rows int32, cols int32, vals or None)``; ``vals`` is None for bool inputs, when
    ``binary`` is True, or (``binary`` None) when every active value is 1."""
    xn = _np(x.contiguous())
    if x.dtype == torch.bool:
        xn = xn.view(np.uint8)
    nnz = _count(xn)
    rows = np.empty(nnz, dtype=np.int32)
    cols = np.empty(nnz, dtype=np.int32)
    keep = not (binary or x.dtype == torch.bool)
    vals = np.empty(nnz if keep else 0, dtype=xn.dtype)
    _, all_one = _scan(xn, rows, cols, vals, keep)
    v = torch.from_numpy(vals) if keep and not (binary is None and all_one) else None
    return torch.from_numpy(rows), torch.from_numpy(cols), v


def scatter_grad(rows: Tensor, cols: Tensor, vals: Tensor | None, g: Tensor,
                 n_in: int, out: Tensor | None = None) -> Tensor:
    """``g^T @ x`` for a sparse ``x`` given by ``(rows, cols, vals)`` (CPU): ``g [R, H] ->
    [H, n_in]`` (a transposed view of a contiguous ``[n_in, H]`` accumulator: a new one, or
    ``out`` added into in place, which saves a fresh accumulator and a strided add per
    call). Rows of the accumulator (input units) run in parallel over
    ``torch.get_num_threads()`` threads, bit-identical to one."""
    gT = torch.zeros(n_in, g.shape[1], dtype=g.dtype) if out is None else out
    has = vals is not None
    vn = _np(vals.to(g.dtype)) if has else np.empty(0, dtype=_np(g).dtype)
    n = max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS, n_in))
    args = (_np(gT), _np(rows), _np(cols), vn, _np(g.contiguous()), has)
    if n > 1:
        if numba.get_num_threads() != n:
            numba.set_num_threads(n)
        _scatter(*args, n)
    else:  # one thread: the serial kernel, same arithmetic
        _scatter_rows(*args, 0, n_in)
    return gT.t()
