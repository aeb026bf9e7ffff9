"""Eligibility traces carried forward in time, evaluated one chunk of ``K`` steps at a time.

For neuron ``i`` of batch row ``b`` and a weight ``W[i, j]`` with presynaptic signal
``q_t[b, j]`` (input ``x_t``, a lower layer's ``z_t``, or the layer's own ``z_{t-1}`` for
recurrent weights) the trace ``u_t`` (``R`` values per synapse and batch row: the traces
``e_t = dh_t / dW[i, j]`` of the state components that are kept, last the readout-filtered
spike trace ``ebar_t = kappa ebar_{t-1} + e^z_t``) obeys a per-neuron linear recursion::

    u_t = A_t u_{t-1} + c_t q_t[b, j]          (A_t: R x R, c_t: R, per neuron)
    grad W[i, j] += sum_b L_t[b, i] ebar_t[b, i, j]

Within a chunk the sums are regrouped exactly (no approximation): a backward sweep over the
chunk's per-neuron matrices (:func:`.kernels.sweep`) gives ``delta`` (weight of ``q_s`` in
the chunk's gradient), ``rho`` and ``Phi`` (``u_end = Phi u_start + sum_s rho_s q_s``) and
``lam0`` (weight of ``u_start`` in the gradient). So per step only per-neuron ``[B, H]``
values are touched; the per-synapse trace ``[B, R, n_pre, H]`` is read and written once per
chunk, and presynaptic events (spikes) add one ``[H]`` row each.

Factorised case (:class:`FactorisedTrace`): when the traces of the non-spike components
evolve with the same ``A``, ``c`` for every neuron (e.g. a LIF whose reset carries no
gradient: ``e^v_t = beta e^v_{t-1} + q_t``) they do not depend on the postsynaptic neuron:
``e^v_t[b, i, j] = xbar_t[b, j]``, a presynaptic trace filtered with the membrane decay,
and ``e^z_t = psi_t[b, i] xbar_t[b, j]``. Only the readout-filtered ``ebar`` stays per
synapse (it is what carries the leaky readout's memory across chunks exactly), one
component instead of ``R``.
"""
from __future__ import annotations

import torch
from torch import Tensor

from . import kernels


class ChunkSystem:
    """Sweep results for one layer and one chunk (shared by all its weight matrices).

    Args: A ``[K, R, R, B, H]``, c ``[K, R, B, H]``, L ``[K, B, H]`` (learning signal).
    Attributes: delta ``[K, B, H]``, rho ``[K, R, B, H]``, lam0 ``[R, B, H]``,
    Phi ``[R, R, B, H]``.
    """

    def __init__(self, A: Tensor, c: Tensor, L: Tensor):
        K, R, _, B, H = A.shape
        A, c, L = A.contiguous(), c.contiguous(), L.contiguous()
        self.delta = A.new_empty(K, B, H)
        self.rho = A.new_empty(K, R, B, H)
        self.lam0 = A.new_empty(R, B, H)
        self.Phi = A.new_empty(R, R, B, H)
        fn = kernels.sweep2 if R == 2 else kernels.sweep
        fn(A.view(K, R, R, B * H).numpy(), c.view(K, R, B * H).numpy(),
           L.view(K, B * H).numpy(), self.delta.view(K, B * H).numpy(),
           self.rho.view(K, R, B * H).numpy(), self.lam0.view(R, B * H).numpy(),
           self.Phi.view(R, R, B * H).numpy())


def _zeros(pool, shape, dtype, device) -> Tensor:
    """A zero tensor, reusing a buffer from ``pool`` (a list of tensors kept by the strategy
    between calls: no fresh pages for the large traces at every training step)."""
    if pool is not None:
        for i, t in enumerate(pool):
            if t.shape == shape and t.dtype == dtype and t.device == device:
                return pool.pop(i).zero_()
    return torch.zeros(shape, dtype=dtype, device=device)


class Pre:
    """Presynaptic signal of one chunk: ``q [K, B, n]`` and its nonzeros grouped by unit
    (:func:`.kernels.events`, computed once and shared by the current and the traces).

    ``Pre(q)`` for a dense tensor; ``Pre(None, sparse=s, dtype=dt)`` for a SparseSpikes
    chunk, whose events come from its indices (``q`` is densified only if asked for).
    """

    def __init__(self, q: Tensor | None, sparse=None, dtype=None):
        self._q = None if q is None else q.contiguous()
        self.sparse, self.dtype = sparse, dtype
        self._events = None
        self.shape = tuple(q.shape) if q is not None else tuple(sparse.shape)

    @property
    def q(self) -> Tensor:
        if self._q is None:
            self._q = self.sparse.dense(dtype=self.dtype).contiguous()
        return self._q

    @property
    def events(self):
        if self._events is None:
            if self._q is None:
                sp = self.sparse
                K, B, n = self.shape
                ptr, steps, vals = kernels.events_from_index(
                    sp.times.numpy(), sp.batch.numpy(), sp.units.numpy(), K, B, n)
                dt = torch.empty(0, dtype=self.dtype).numpy().dtype
                self._events = ptr, steps, vals.astype(dt)
            else:
                self._events = kernels.events(self._q.numpy())
        return self._events

    def dense(self, below: float) -> bool:
        """Density (fraction of nonzeros) at least ``below``."""
        K, B, n = self.shape
        return K * B * n > 0 and len(self.events[1]) >= below * K * B * n




class SynapseTrace:
    """Per-synapse trace ``u [B, R, n_pre, H]`` of one weight ``[H, n_pre]`` and its gradient.

    ``step_chunk(sys, pre, first, last)`` advances over one chunk with presynaptic signal
    ``pre.q [K, B, n_pre]``. Sparse presynaptic activity (density below ``sparse_below``) is
    consumed event by event in the same pass that carries the trace over the chunk (work
    proportional to the number of spikes); denser activity through matrix products. The
    trace is allocated up front (zero), so memory does not depend on T.
    """

    sparse_below = 0.1

    def __init__(self, B: int, H: int, R: int, n_pre: int, dtype, device, pool=None):
        self.B, self.H, self.R, self.n_pre = B, H, R, n_pre
        self.u = _zeros(pool, (B, R, n_pre, H), dtype, device)
        self.grad_t = torch.zeros(n_pre, H, dtype=dtype, device=device)

    @property
    def grad(self) -> Tensor:
        """Accumulated gradient ``[H, n_pre]`` (the weight's layout)."""
        return self.grad_t.t()

    @staticmethod
    def nbytes(B: int, H: int, R: int, n_pre: int, itemsize: int) -> int:
        return R * B * H * n_pre * itemsize

    def nbytes_held(self) -> int:
        """Bytes of the trace and gradient tensors."""
        return sum(t.numel() * t.element_size() for t in (self.u, self.grad_t))

    def _update(self, sys: ChunkSystem, events, carry_in: bool, advance: bool) -> None:
        fn = kernels.update2 if self.R == 2 else kernels.update
        fn(self.u.numpy(), sys.lam0.numpy(), sys.Phi.numpy(), *events, sys.delta.numpy(),
           sys.rho.numpy(), self.grad_t.numpy(), carry_in, advance)

    def step_chunk(self, sys: ChunkSystem, pre: Pre, first: bool, last: bool) -> None:
        """Gradient of the chunk; the trace is advanced unless ``last``."""
        if pre.dense(self.sparse_below):
            q = pre.q
            K, B, n = q.shape
            if not first:
                self._update(sys, kernels.events(q[:0].numpy()), True, not last)
            self.grad_t.addmm_(q.reshape(K * B, n).t(), sys.delta.reshape(K * B, self.H))
            if not last:
                qb = q.permute(1, 2, 0)  # [B, n, K]
                for m in range(self.R):
                    self.u[:, m].baddbmm_(qb, sys.rho[:, m].transpose(0, 1))
        else:
            self._update(sys, pre.events, not first, not last)


class FactorisedTrace:
    """Factorised trace of one weight: presynaptic traces ``xbar [B, P, n_pre]`` (the ``P``
    non-spike components, the same for every postsynaptic neuron) and the per-synapse
    readout-filtered trace ``ebar [B, n_pre, H]``; nothing ``[B, n_pre, H]`` per step.

    The chunk system has ``R = P + 1`` components (``P`` presynaptic, last ``ebar``); its
    ``P x P`` block and input column are uniform over neurons (checked by the strategy).
    """

    sparse_below = SynapseTrace.sparse_below

    def __init__(self, B: int, H: int, P: int, n_pre: int, dtype, device, pool=None):
        self.B, self.H, self.P, self.n_pre = B, H, P, n_pre
        self.xbar = torch.zeros(B, P, n_pre, dtype=dtype, device=device)
        self.ebar = _zeros(pool, (B, n_pre, H), dtype, device)
        self.grad_t = torch.zeros(n_pre, H, dtype=dtype, device=device)

    grad = SynapseTrace.grad

    @staticmethod
    def nbytes(B: int, H: int, P: int, n_pre: int, itemsize: int) -> int:
        return B * n_pre * (H + P) * itemsize

    def nbytes_held(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.ebar, self.xbar, self.grad_t))

    def step_chunk(self, sys: ChunkSystem, pre: Pre, first: bool, last: bool) -> None:
        """Gradient of the chunk; the trace is advanced unless ``last``."""
        P, B, H = self.P, self.B, self.H
        K, _, n = pre.shape
        if not first:  # presynaptic components: sum_{b,p} lam0[p, b, i] xbar[b, p, j]
            self.grad_t.addmm_(self.xbar.transpose(0, 1).reshape(P * B, n).t(),
                               sys.lam0[:P].reshape(P * B, H))
        rho_e = sys.rho[:, P].contiguous()  # [K, B, H]
        dense = pre.dense(self.sparse_below)
        ptr, steps, vals = kernels.events(pre.q[:0].numpy()) if dense else pre.events
        kernels.update_factorised(self.ebar.numpy(), self.xbar.numpy(),
                                  sys.lam0[P].contiguous().numpy(),
                                  sys.Phi[P, P].contiguous().numpy(),
                                  sys.Phi[P, :P].contiguous().numpy(), ptr, steps, vals,
                                  sys.delta.numpy(), rho_e.numpy(), self.grad_t.numpy(),
                                  not first, not last)
        if dense:
            q = pre.q
            self.grad_t.addmm_(q.reshape(K * B, n).t(), sys.delta.reshape(K * B, H))
            if not last:
                self.ebar.baddbmm_(q.permute(1, 2, 0), rho_e.transpose(0, 1))
        if not last:
            # uniform over neurons: read neuron (0, 0)
            phi = sys.Phi[:P, :P, 0, 0]                      # [P, P]
            r = sys.rho[:, :P, 0, 0]                         # [K, P]
            new = torch.einsum("pk,bkj->bpj", phi, self.xbar).contiguous()
            kernels.presyn(*pre.events, r.contiguous().numpy(), new.numpy())
            self.xbar = new
