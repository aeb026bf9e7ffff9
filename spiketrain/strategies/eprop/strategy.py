"""``eprop``: online gradients from eligibility traces; memory independent of sequence length.

``loss = st.unroll(model, x, strategy="eprop", step_loss=fn, targets=y)`` runs the model
forward once, keeping per-synapse eligibility traces instead of the history, and returns
``sum_t fn(o_t, y[t])``; ``loss.backward()`` puts the e-prop gradients into ``.grad``.

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
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..base import Strategy
from ..registry import register
from .jacobian import check_diagonal, neuron_jacobians
from .traces import ChunkAdjoint, SynapseTrace

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


def _segment(inputs, t0: int, t1: int, dtype) -> Tensor:
    if isinstance(inputs, Tensor):
        return inputs.detach()[t0:t1].to(dtype)
    return inputs.dense(t0, t1, dtype=dtype)


def _readout(model):
    def f(o: Tensor, z: Tensor) -> Tensor:
        return model.kappa * o + z @ model.w_out.t() + model.b_out
    return f


def check_model(model) -> None:
    """Raise a clear error unless e-prop supports ``model`` (layers + leaky readout)."""
    missing = [a for a in ("layers", "w_out", "b_out", "kappa", "init_state") if not hasattr(model, a)]
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

    chunk: steps evaluated together (default 50); memory grows with ``chunk``, never with T
        (the trace is carried over from the second chunk on, so it is flat for T >= 2 chunk).
    check: verify on the first chunk that each layer's dynamics is diagonal per neuron and that
        the model's own ``step`` matches the structure e-prop assumes (default True; done once
        per model and strategy instance, so a training loop pays it on its first batch).
    """

    online = True

    def __init__(self, budget: dict[str, Any] | None = None, chunk: int = 50, check: bool = True):
        super().__init__(budget=budget)
        if int(chunk) < 1:
            raise ValueError(f"eprop chunk must be >= 1, got {chunk}")
        self.chunk, self.check = int(chunk), bool(check)
        self.step_loss = self.targets = None
        self.logits = None
        self._verified: set = set()

    # ------------------------------------------------------------------ planning
    def need_bytes(self, model, B: int, n_in: int, itemsize: int = 4) -> int:
        """Bytes the traces and one chunk's buffers hold (independent of T)."""
        total, n_pre, K = 0, n_in, self.chunk
        for layer in model.layers:
            H, C = layer.w_in.shape[0], len(layer.state_names)
            M = C + 1
            pres = [n_pre] + ([H] if getattr(layer, "w_rec", None) is not None else [])
            total += sum(SynapseTrace.nbytes(B, H, M, n, itemsize) for n in pres)
            # chunk buffers: inputs; states, Jacobians A and c, their vjp results, rho (C+1);
            # current, spikes, previous spikes, delta, learning signal
            total += K * B * (n_pre + H * (C * C + 4 * C + 6)) * itemsize
            n_pre = H
        return total

    # ------------------------------------------------------------------ running
    def run(self, model, inputs, state=None):
        if self.step_loss is None or self.targets is None:
            raise ValueError("eprop needs an online loss: unroll(model, x, strategy='eprop', "
                             "step_loss=fn, targets=y) with fn(o_t, y[t]) -> scalar")
        check_model(model)
        T, B = int(inputs.shape[0]), int(inputs.shape[1])
        if len(self.targets) != T:
            raise ValueError(f"targets must be time-major with T={T} steps (one per input step), "
                             f"got {len(self.targets)}; repeat a label over time for per-step loss")
        dtype = model.w_out.dtype
        need = self.need_bytes(model, B, int(inputs.shape[2]), torch.finfo(dtype).bits // 8)
        self.check_budget({"device": need})
        if state is None:
            state = model.init_state(B)
        *hs, o = state
        hs = [tuple(c.detach() for c in h) for h in hs]
        o = o.detach()
        layers = list(model.layers)
        kappa = float(model.kappa)
        traces = []
        for layer, h in zip(layers, hs):
            H, C = h[-1].shape[-1], len(h)
            n_pre = layer.w_in.shape[1]
            ts = [SynapseTrace(B, H, C + 1, n_pre, dtype, o.device)]
            if getattr(layer, "w_rec", None) is not None:
                ts.append(SynapseTrace(B, H, C + 1, H, dtype, o.device))
            traces.append(ts)
        g_out = torch.zeros_like(model.w_out)
        g_b = torch.zeros_like(model.b_out)
        zbar = torch.zeros_like(hs[-1][-1])
        mbar = 0.0
        total = o.new_zeros(())
        logit = None
        key = (id(model), tuple(id(l) for l in layers), dtype)
        verify = self.check and key not in self._verified
        for t0 in range(0, T, self.chunk):
            t1 = min(T, t0 + self.chunk)
            x = _segment(inputs, t0, t1, dtype)
            y = self.targets[t0:t1]
            if verify:
                with torch.no_grad():
                    _, o_ref = model.step((*hs, o), x[0])
            # ---- forward, layer by layer over the chunk (no autograd graph)
            fwd = []
            q = x
            for k, (layer, h) in enumerate(zip(layers, hs)):
                h_new, rec = self._forward(layer, h, q)
                fwd.append((q, rec))
                hs[k] = h_new
                q = rec["z"]
            z_top = q
            with torch.no_grad():
                os_ = []
                readout = getattr(model, "_readout", None) or _readout(model)
                for z_t in z_top.unbind(0):
                    o = readout(o, z_t)
                    os_.append(o)
                oc = torch.stack(os_)
            if verify:
                if not torch.allclose(oc[0], o_ref, rtol=1e-4, atol=1e-5):
                    raise TypeError(f"eprop: {type(model).__name__}.step does not match the "
                                    f"layers + leaky readout structure e-prop assumes; use "
                                    f"strategy='bptt' for this model")
            # ---- per-step losses and their gradient wrt the readout
            loss_c, g = self._losses(oc, y)
            total = total + loss_c
            logit = self._reduce(model, oc, logit, t0 == 0)
            # ---- readout (exact): o_t = sum_s kappa^{t-s} (W z_s + b)
            zb, mb = [], []
            for z_t in z_top.unbind(0):
                zbar = kappa * zbar + z_t
                mbar = kappa * mbar + 1.0
                zb.append(zbar)
                mb.append(mbar)
            gf = g.reshape(-1, g.shape[-1])
            g_out.addmm_(gf.t(), torch.stack(zb).reshape(-1, zbar.shape[-1]))
            g_b += (g.sum(1) * g.new_tensor(mb).unsqueeze(1)).sum(0)
            # ---- learning signals, top layer down
            L = g @ model.w_out.detach()
            for k in range(len(layers) - 1, -1, -1):
                q, rec = fwd[k]
                A, c = neuron_jacobians(layers[k], rec["h_prev"], rec["cur"])
                if verify:
                    check_diagonal(layers[k], rec["h_prev"], rec["cur"], A, c)
                adj = ChunkAdjoint(A, c, kappa, L)
                traces[k][0].step_chunk(adj, q)
                if len(traces[k]) > 1:
                    traces[k][1].step_chunk(adj, rec["z_prev"])
                if k > 0:  # same-step path z^{k-1}_t -> I^k_t -> z^k_t
                    L = (L * c[:, -1]) @ layers[k].w_in.detach()
                del A, c, adj
            if verify:
                self._verified.add(key)
            verify = False
        if getattr(model, "readout", None) == "mean":
            logit = logit / T
        self.logits = logit
        params, grads = [], []
        for layer, ts in zip(layers, traces):
            params.append(layer.w_in)
            grads.append(ts[0].grad)
            if len(ts) > 1:
                params.append(layer.w_rec)
                grads.append(ts[1].grad)
        params += [model.w_out, model.b_out]
        grads += [g_out, g_b]
        self.report.steps = T
        self.report.peak_bytes = {"device": need}
        self.report.notes = {"chunk": self.chunk,
                             "exact": len(layers) == 1 and len(traces[0]) == 1}
        self.final_state = (*hs, o)
        return _EPropLoss.apply(grads, total, *params)

    @staticmethod
    def _forward(layer, h, q: Tensor):
        """Run one layer over a chunk. ``q [K, B, n_pre]`` -> new state and per-step records."""
        rec_w = getattr(layer, "w_rec", None) is not None
        with torch.no_grad():
            i_in = layer.input_current(q)
            h_prev = [[] for _ in h]
            curs, zs, z_prev = [], [], []
            for i_t in i_in.unbind(0):
                if rec_w:
                    z_prev.append(h[-1])
                cur = i_t + layer.recurrent_current(h[-1]) if rec_w else i_t
                for lst, comp in zip(h_prev, h):
                    lst.append(comp)
                curs.append(cur)
                h = tuple(layer.dynamics(h, cur))
                zs.append(h[-1])
            rec = {"h_prev": [torch.stack(l) for l in h_prev], "cur": torch.stack(curs),
                   "z": torch.stack(zs)}
            if rec_w:
                rec["z_prev"] = torch.stack(z_prev)
        return h, rec

    def _losses(self, oc: Tensor, y) -> tuple[Tensor, Tensor]:
        """Summed per-step loss of the chunk and its gradient ``[K, B, n_out]`` wrt outputs."""
        with torch.enable_grad():
            leaf = oc.detach().requires_grad_(True)
            ys = y.unbind(0) if isinstance(y, Tensor) else list(y)
            total = 0.0
            for o_t, y_t in zip(leaf.unbind(0), ys):
                l_t = self.step_loss(o_t, y_t)
                if not isinstance(l_t, Tensor) or l_t.numel() != 1:
                    raise ValueError("eprop step_loss(o_t, y_t) must return a scalar tensor per step")
                total = total + l_t.reshape(())
            if not total.requires_grad:
                raise ValueError("eprop step_loss does not depend on the model output o_t")
            (g,) = torch.autograd.grad(total, leaf)
        return total.detach(), g.detach()

    @staticmethod
    def _reduce(model, oc: Tensor, prev, first: bool):
        """Running logits [B, C] with the model's readout reduction (online)."""
        how = getattr(model, "readout", "max")
        if how == "max":
            cur = oc.max(0).values
            return cur if first else torch.maximum(prev, cur)
        if how in ("sum", "mean"):
            cur = oc.sum(0)
            return cur if first else prev + cur
        return oc[-1]
