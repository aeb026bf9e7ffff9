"""``eprop``: online gradients from eligibility traces; memory independent of sequence length.

``loss = st.unroll(model, x, strategy="eprop", step_loss=fn, targets=y)`` runs the model
forward once, keeping per-synapse eligibility traces instead of the history, and returns
``sum_t fn(o_t, y[t])``; ``loss.backward()`` puts the e-prop gradients into ``.grad``.
:meth:`EProp.run` returns :class:`~spiketrain.strategies.base.OnlineResult` ``(loss,
readout)`` (``st.strategies.unroll_online``), the readout reduced over time by the model's
``readout_reducer()``; nothing of a call is stored on the strategy but its report.

Supported models: stacks of per-neuron layers (``state_names``, ``init_state``,
``input_current``, ``recurrent_current``, ``dynamics``; e.g. LIF, ALIF or a custom neuron)
feeding a leaky readout ``o_t = kappa o_{t-1} + z_t W_out^T + b_out`` (:class:`RSNN`).

Gradients:
- readout ``w_out``, ``b_out``: exact (the readout is linear; its traces are ``[B, H]``).
- ``w_in`` / ``w_rec`` of each layer: e-prop, ``sum_t L_t * F_kappa(e_t)`` with the full
  per-neuron Jacobian (every state component, reset path included) and the learning signal
  ``L_t = d loss_t / d z_t`` through the readout at step ``t`` (symmetric feedback). The
  trace is filtered by the readout decay ``kappa``, which accounts exactly for the readout's
  memory. For one layer without recurrent weights this *is* the BPTT gradient.
- lower layers get ``L`` through the same-step path ``z^l_t -> I^{l+1}_t -> z^{l+1}_t``.

Per chunk of ``chunk`` steps: each layer runs forward (:mod:`.layers`: the layer's compiled
kernel when it offers one, ``layer.eprop_kernel()``, e.g. an unmodified LIF/ALIF layer; the
layer's ``dynamics`` plus autograd Jacobians otherwise), the
readout and losses give the learning signals, and per layer one backward sweep over the
chunk's per-neuron matrices and one pass over each per-synapse trace (:mod:`.traces`,
:mod:`.kernels`) add the chunk's gradient, compiled with numba. A model off the CPU, or any
model with ``SPIKETRAIN_KERNELS=torch``, runs the same computation in plain PyTorch ops
(:mod:`.eager`).
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ...models.snn.readout import leaky_scan
from .. import inputs as inp
from ..base import OnlineResult, Strategy
from ..registry import register
from . import eager
from .layers import CompiledLayer, GenericLayer
from .traces import FactorisedTrace, Pre, SynapseTrace

_LAYER_API = ("state_names", "init_state", "input_current", "recurrent_current", "dynamics")


class _EPropLoss(torch.autograd.Function):
    """Returns the (already computed) loss; backward hands out the accumulated gradients."""

    @staticmethod
    def forward(ctx, grads, loss, *params):
        ctx.grads = grads
        return loss.detach().clone()

    @staticmethod
    def backward(ctx, g):
        return (None, None) + tuple(None if gr is None else g * gr for gr in ctx.grads)


def _param_grads(model, layers, traces, g_out: Tensor, g_b: Tensor):
    """Parameters and their accumulated e-prop gradients, in ``_EPropLoss`` order: per layer
    ``w_in`` (trace 0) and ``w_rec`` (trace 1, if recurrent), then the readout ``w_out, b_out``."""
    params, grads = [], []
    for layer, ts in zip(layers, traces):
        params.append(layer.w_in)
        grads.append(ts[0].grad)
        if len(ts) > 1:
            params.append(layer.w_rec)
            grads.append(ts[1].grad)
    return params + [model.w_out, model.b_out], grads + [g_out, g_b]


def _check_structure(model, o_first: Tensor, o_ref: Tensor) -> None:
    """Refuse a model whose own ``step`` disagrees (first step's readout ``[B, n_out]``) with
    the layers + leaky readout structure e-prop assumes."""
    if not torch.allclose(o_first, o_ref, rtol=1e-4, atol=1e-5):
        raise TypeError(f"eprop: {type(model).__name__}.step does not match the "
                        f"layers + leaky readout structure e-prop assumes; use "
                        f"strategy='bptt' for this model")


def _segment(model, inputs, t0: int, t1: int, dtype) -> Pre:
    """Presynaptic signal of layer 0 over steps ``t0:t1``, from the input adapter: a
    SparseSpikes window's events straight from its indices when the model takes sparse input,
    else the dense segment."""
    w = inp.window(model, inputs, t0, t1, dtype)
    if isinstance(w, Tensor):
        return Pre(w.to(dtype))
    return Pre(None, sparse=w, dtype=dtype)


def readout_reducer(model):
    """The model's running reduction over time (``model.readout_reducer()``), or None."""
    fn = getattr(model, "readout_reducer", None)
    return fn() if fn is not None else None


def check_step_loss(step_loss, targets, T: int) -> None:
    """Refuse a missing online loss or targets that are not time-major with ``T`` steps."""
    if step_loss is None or targets is None:
        raise ValueError("eprop needs an online loss: unroll(model, x, strategy='eprop', "
                         "step_loss=fn, targets=y) with fn(o_t, y[t]) -> scalar")
    if len(targets) != T:
        raise ValueError(f"targets must be time-major with T={T} steps (one per input step), "
                         f"got {len(targets)}; repeat a label over time for per-step loss")


def check_model(model) -> None:
    """Raise a clear error unless e-prop supports ``model`` (layers + leaky readout)."""
    missing = [a for a in ("layers", "w_out", "b_out", "kappa", "init_state", "readout_chunk")
               if not hasattr(model, a)]
    if missing:
        raise TypeError(f"eprop supports models made of per-neuron layers and a leaky readout "
                        f"(like spiketrain.models.RSNN); {type(model).__name__} lacks "
                        f"{missing}. Use strategy='bptt' (or a memory strategy) for this model")
    handled = {id(model.w_out), id(model.b_out)}
    for k, layer in enumerate(model.layers):
        lack = [a for a in _LAYER_API if not hasattr(layer, a)]
        if lack:
            raise TypeError(f"eprop: layer {k} ({type(layer).__name__}) lacks {lack}; a layer "
                            f"needs {list(_LAYER_API)}")
        for n in ("w_in", "w_rec"):
            p = getattr(layer, n, None)
            if p is not None:
                handled.add(id(p))
    other = [n for n, p in model.named_parameters() if p.requires_grad and id(p) not in handled]
    if other:
        raise ValueError(f"eprop computes gradients for w_in, w_rec, w_out and b_out only; "
                         f"parameter(s) {other} require grad: freeze them "
                         f"(p.requires_grad_(False)) or use strategy='bptt'")


@register("eprop")
class EProp(Strategy):
    """Forward-mode e-prop (see the module docstring). Options:

    chunk: steps evaluated together (default 100); memory grows with ``chunk``, never with T
        (the traces are allocated up front, whatever T).
    check: verify on the first chunk that each layer's dynamics is diagonal per neuron, that
        the model's own ``step`` matches the structure e-prop assumes and that compiled
        LIF/ALIF kernels agree with automatic differentiation (default True; done once per
        model and strategy instance, so a training loop pays it on its first batch).
    factorise: ``"auto"`` (default) keeps the factorised trace (presynaptic trace times a
        per-neuron factor, see :class:`.traces.FactorisedTrace`) for every layer whose
        Jacobians allow it; ``True`` requires it; ``False`` never uses it. The eager path
        never factorises: there ``"auto"``/``False`` are the same and ``True`` is refused.
    compiled: run layers that offer a compiled kernel (``layer.eprop_kernel()``, e.g. LIF/ALIF)
        through it (default True); False differentiates their ``dynamics`` like any custom
        neuron. Ignored on the eager path (which always differentiates ``dynamics``).
    """

    online = True

    def __init__(self, budget: dict[str, Any] | None = None, chunk: int = 100, check: bool = True,
                 factorise="auto", compiled: bool = True):
        super().__init__(budget=budget)
        if int(chunk) < 1:
            raise ValueError(f"eprop chunk must be >= 1, got {chunk}")
        if factorise not in ("auto", True, False):
            raise ValueError(f"eprop factorise must be 'auto', True or False, got {factorise!r}")
        self.chunk, self.check, self.factorise = int(chunk), bool(check), factorise
        self.compiled = bool(compiled)
        self._verified: set = set()
        self._vmap_ok: dict = {}  # per step_loss: evaluated for all steps of a chunk at once
        self._pool: list = []  # trace buffers kept between calls (see release())

    # ------------------------------------------------------------------ planning
    def need_bytes(self, model, B: int, n_in: int, itemsize: int = 4, T: int | None = None) -> int:
        """Bytes the traces and one chunk's buffers hold (independent of T beyond one chunk)."""
        total, n_pre = 0, n_in
        K = self.chunk if T is None else max(1, min(self.chunk, T))
        if eager.wanted(model.w_out.device):
            return eager.need_bytes(model, B, n_in, itemsize, K)
        for layer in model.layers:
            H, C = layer.w_in.shape[0], len(layer.state_names)
            # compiled LIF/ALIF: C components; otherwise at most C + 1 (not factorised)
            R = C if self._compiles(layer, model.w_out.device) else C + 1
            pres = [n_pre] + ([H] if getattr(layer, "w_rec", None) is not None else [])
            total += sum(SynapseTrace.nbytes(B, H, R, n, itemsize) + H * n * itemsize
                         for n in pres)
            # chunk buffers: input, current, spikes, previous spikes, A, c, L, readout trace,
            # delta, rho
            total += K * B * (n_pre + H * (R * R + 2 * R + 7)) * itemsize
            n_pre = H
        return total

    def release(self) -> None:
        """Drop the trace buffers kept between calls."""
        self._pool = []

    # ------------------------------------------------------------------ running
    def _compiles(self, layer, device) -> bool:
        return self.compiled and self.factorise is not True and \
            CompiledLayer.supports(layer, device)

    def _engines(self, model, hs, kappa, device):
        out = []
        for layer, h in zip(model.layers, hs):
            if self._compiles(layer, device):
                out.append(CompiledLayer(layer, h, kappa))
            else:
                out.append(GenericLayer(layer, h, kappa, self.factorise))
        return out

    def _traces(self, eng, B: int, dtype, device):
        layer = eng.layer
        H = layer.w_in.shape[0]
        pres = [layer.w_in.shape[1]] + ([H] if eng.rec_w else [])
        if eng.factorised:
            return [FactorisedTrace(B, H, eng.C - 1, n, dtype, device, self._pool) for n in pres]
        return [SynapseTrace(B, H, eng.R, n, dtype, device, self._pool) for n in pres]

    def run(self, model, inputs, state=None, *, step_loss=None, targets=None) -> OnlineResult:
        """e-prop over ``inputs [T, B, n_in]`` with ``step_loss(o_t, targets[t]) -> scalar``
        and time-major ``targets``: ``OnlineResult(loss, readout [B, C] or None)``."""
        T, B = int(inputs.shape[0]), int(inputs.shape[1])
        check_step_loss(step_loss, targets, T)
        check_model(model)
        dtype = model.w_out.dtype
        device = model.w_out.device
        if eager.wanted(device):  # off the CPU or SPIKETRAIN_KERNELS=torch: plain PyTorch ops
            return eager.run(self, model, inputs, state, step_loss, targets)
        need = self.need_bytes(model, B, int(inputs.shape[2]), torch.finfo(dtype).bits // 8, T)
        self.check_budget({"device": need})
        if state is None:
            state = model.init_state(B)
        *hs, o = state
        o = o.detach()
        layers = list(model.layers)
        kappa = float(model.kappa)
        engines = self._engines(model, hs, kappa, device)
        traces = [self._traces(e, B, dtype, device) for e in engines]  # up front: flat in T
        w_out = model.w_out.detach()
        g_out = torch.zeros_like(w_out)
        g_b = torch.zeros_like(model.b_out)
        zbar = torch.zeros_like(hs[-1][-1]).reshape(1, -1)
        mbar = 0.0
        total = o.new_zeros(())
        reducer = readout_reducer(model)
        key = (id(model), tuple(id(l) for l in layers), dtype)
        verify = self.check and key not in self._verified
        for t0 in range(0, T, self.chunk):
            t1 = min(T, t0 + self.chunk)
            first, last = t0 == 0, t1 == T
            x = _segment(model, inputs, t0, t1, dtype)  # presynaptic signal of layer 0
            y = targets[t0:t1]
            if verify:
                with torch.no_grad():
                    _, o_ref = model.step((*[e.state() for e in engines], o), x.q[0])
            # ---- forward, layer by layer over the chunk (no autograd graph)
            pre = [x]
            for k, eng in enumerate(engines):
                q = eng.forward(pre[k], record=verify)
                pre.append(Pre(q))
            z_top = q
            K = t1 - t0
            oc = model.readout_chunk(o, z_top)  # [K, B, C], the model's own readout
            o = oc[-1].clone()
            if verify:
                _check_structure(model, oc[0], o_ref)
            # ---- per-step losses and their gradient wrt the readout
            loss_c, g = self._losses(oc, y, step_loss, verify)
            total = total + loss_c
            if reducer is not None:
                reducer.update(oc)
            # ---- readout (exact): o_t = sum_s kappa^{t-s} (W z_s + b)
            zb = leaky_scan(z_top.reshape(K, 1, -1), zbar, kappa).view(K, -1)
            zbar = zb[-1:].clone()
            mb = []
            for _ in range(K):
                mbar = kappa * mbar + 1.0
                mb.append(mbar)
            gf = g.reshape(-1, g.shape[-1])
            g_out.addmm_(gf.t(), zb.view(K * B, -1))
            g_b += (g.sum(1) * g.new_tensor(mb).unsqueeze(1)).sum(0)
            # ---- learning signals, top layer down
            L = g @ w_out
            for k in range(len(layers) - 1, -1, -1):
                eng = engines[k]
                sys = eng.system(L, verify)
                if getattr(eng, "changed", False):  # first chunk overruled the probe
                    traces[k] = self._traces(eng, B, dtype, device)
                traces[k][0].step_chunk(sys, pre[k], first, last)
                if len(traces[k]) > 1:
                    traces[k][1].step_chunk(sys, Pre(eng.z_prev), first, last)
                if k > 0:  # same-step path z^{k-1}_t -> I^k_t -> z^k_t
                    L = (L * eng.c_z) @ layers[k].w_in.detach()
                del sys
            del pre, L, zb, oc, g, gf, x, z_top, q  # nothing of this chunk outlives it
            if verify:
                self._verified.add(key)
            verify = False
        params, grads = _param_grads(model, layers, traces, g_out, g_b)
        self.report.steps = T
        self.report.peak_bytes = {"device": need}
        self.report.notes = {"chunk": self.chunk,
                             "exact": len(layers) == 1 and len(traces[0]) == 1,
                             "factorised": [bool(e.factorised) for e in engines],
                             "trace_bytes": sum(t.nbytes_held() for ts in traces for t in ts),
                             "compiled": [isinstance(e, CompiledLayer) for e in engines],
                             "eager": False}
        # keep the large trace buffers for the next call (a training loop reuses them)
        self._pool = [t.u if isinstance(t, SynapseTrace) else t.ebar for ts in traces for t in ts]
        return OnlineResult(_EPropLoss.apply(grads, total, *params),
                            None if reducer is None else reducer.value())

    def _losses(self, oc: Tensor, y, step_loss, verify: bool = False) -> tuple[Tensor, Tensor]:
        """Summed per-step loss of the chunk and its gradient ``[K, B, n_out]`` wrt outputs.

        All steps at once with ``torch.func.vmap`` when ``step_loss`` allows it (checked
        against the step-by-step loop on the first chunk), else step by step."""
        known = self._vmap_ok.get(step_loss)
        if isinstance(y, Tensor) and known is not False:
            try:
                from torch.func import grad_and_value, vmap
                g, lv = vmap(grad_and_value(step_loss))(oc.detach(), y)
                ok = lv.shape == (oc.shape[0],)
            except Exception:  # not vmappable (data-dependent control flow, .item(), ...)
                ok = False
            if ok and (verify or known is None):
                ref_l, ref_g = self._loop_losses(oc, y, step_loss)
                ok = torch.allclose(g, ref_g, rtol=1e-5, atol=1e-7) and \
                    torch.allclose(lv.sum(), ref_l, rtol=1e-5, atol=1e-6)
            if len(self._vmap_ok) > 64:  # step losses made afresh per call: keep it small
                self._vmap_ok.clear()
            self._vmap_ok[step_loss] = ok
            if ok:
                return lv.sum().detach(), g.detach()
        return self._loop_losses(oc, y, step_loss)

    @staticmethod
    def _loop_losses(oc: Tensor, y, step_loss) -> tuple[Tensor, Tensor]:
        with torch.enable_grad():
            leaf = oc.detach().requires_grad_(True)
            ys = y.unbind(0) if isinstance(y, Tensor) else list(y)
            total = 0.0
            for o_t, y_t in zip(leaf.unbind(0), ys):
                l_t = step_loss(o_t, y_t)
                if not isinstance(l_t, Tensor) or l_t.numel() != 1:
                    raise ValueError("eprop step_loss(o_t, y_t) must return a scalar tensor "
                                     "per step")
                total = total + l_t.reshape(())
            if not total.requires_grad:
                raise ValueError("eprop step_loss does not depend on the model output o_t")
            (g,) = torch.autograd.grad(total, leaf)
        return total.detach(), g.detach()
