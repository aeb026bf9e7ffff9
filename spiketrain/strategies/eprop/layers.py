"""One layer over one chunk: forward states, spikes and the per-neuron trace system ``(A, c)``.

Two sources of the per-neuron matrices, same result:

- :class:`GenericLayer` (any neuron): the layer's own ``dynamics`` in a loop over time, then
  the Jacobians by automatic differentiation over the whole chunk
  (:func:`.jacobian.neuron_jacobians`). The trace keeps every state component
  (``R = C + 1``), or, when the Jacobians show it (:func:`factorisable`), only the
  readout-filtered spike trace per synapse (:class:`.traces.FactorisedTrace`).
- :class:`CompiledLayer` (a layer whose ``eprop_kernel()`` is not None, e.g. an unmodified
  ``LIFLayer`` / ``ALIFLayer``): the layer's compiled kernel does the forward and writes the
  Jacobians of the same update, with the spike's trace eliminated (``R = C``). On the first
  chunk the strategy checks them against the automatic ones (:meth:`CompiledLayer.check`).
"""
from __future__ import annotations

import torch
from torch import Tensor

from ...hardware.compiled import compiled_on
from . import kernels
from .jacobian import check_diagonal, neuron_jacobians
from .traces import ChunkSystem, Pre


class NotFactorisableError(ValueError):
    """``factorise=True`` asked for a layer whose trace does not factorise."""


def input_current(layer, pre: Pre) -> Tensor:
    """``q [K, B, n] -> [K, B, H]``: event-driven for sparse (spiking) ``q`` into a layer
    whose ``input_weight()`` says its ``input_current`` is the plain ``q W_in^T``."""
    w_in = layer.input_weight() if hasattr(layer, "input_weight") else None
    if w_in is not None and compiled_on(w_in.device) and not pre.dense(0.1):
        K, B, _ = pre.shape
        out = w_in.new_zeros(K, B, w_in.shape[0])
        w_t = w_in.detach().t().contiguous()
        kernels.project(*pre.events, w_t.numpy(), out.numpy())
        return out
    with torch.no_grad():
        return layer.input_current(pre.q)


def full_system(A: Tensor, c: Tensor, kappa: float) -> tuple[Tensor, Tensor]:
    """Trace system of every state component plus ``ebar`` (``R = C + 1``) from the
    Jacobians ``A [K, C, C, B, H]``, ``c [K, C, B, H]``."""
    K, C, _, B, H = A.shape
    Ah = A.new_zeros(K, C + 1, C + 1, B, H)
    Ah[:, :C, :C] = A
    Ah[:, C, :C] = A[:, C - 1]
    Ah[:, C, C] = kappa
    ch = torch.cat([c, c[:, C - 1:]], 1)
    return Ah, ch


def factorisable(A: Tensor, c: Tensor) -> bool:
    """True when the non-spike components' traces are the same for every neuron: the spike
    feeds back into none of them nor into itself (``A[:, z] == 0``) and their Jacobian block
    and input column are uniform over steps, batch rows and neurons."""
    C = A.shape[1]
    if C < 2:
        return False
    P = C - 1
    if bool(A[:, :, P].ne(0).any()):
        return False
    blk = A[:, :P, :P]
    cn = c[:, :P]
    ref_a = blk[:1, :, :, :1, :1]
    ref_c = cn[:1, :, :1, :1]
    return bool(blk.eq(ref_a).all()) and bool(cn.eq(ref_c).all())


def factorised_system(A: Tensor, c: Tensor, kappa: float) -> tuple[Tensor, Tensor]:
    """Trace system ``(xbar components, ebar)`` (``R = C``) of a factorisable layer."""
    K, C, _, B, H = A.shape
    P = C - 1
    Ah = A.new_zeros(K, C, C, B, H)
    Ah[:, :P, :P] = A[:, :P, :P]
    Ah[:, P, :P] = A[:, P, :P]
    Ah[:, P, P] = kappa
    ch = torch.cat([c[:, :P], c[:, P:]], 1)
    return Ah, ch


def probe_factorisable(layer, B: int, H: int, dtype, device, generator=None) -> bool:
    """Jacobians at random states (spikes 0/1) must show the factorised structure too."""
    C = len(layer.state_names)
    g = generator or torch.Generator().manual_seed(0)
    hs = [torch.randn(1, B, H, generator=g, dtype=dtype) for _ in range(C - 1)]
    hs.append((torch.rand(1, B, H, generator=g) < 0.5).to(dtype))
    cur = torch.randn(1, B, H, generator=g, dtype=dtype)
    A, c = neuron_jacobians(layer, [h.to(device) for h in hs], cur.to(device))
    return factorisable(A, c)


class GenericLayer:
    """Any per-neuron layer: ``dynamics`` looped in torch, Jacobians by autograd."""

    def __init__(self, layer, h, kappa: float, factorise):
        self.layer, self.kappa = layer, kappa
        self.h = tuple(t.detach() for t in h)
        self.C = len(self.h)
        self.rec_w = getattr(layer, "w_rec", None) is not None
        self.factorise = factorise  # "auto" | True | False
        self.first = True
        # decided before the first chunk (so the traces can be allocated up front) from the
        # Jacobians at random states; confirmed on every chunk
        B, H = self.h[-1].shape
        self.factorised = factorise is not False and probe_factorisable(
            layer, B, H, self.h[-1].dtype, self.h[-1].device)
        if factorise is True and not self.factorised:
            self._refuse()

    def _refuse(self):
        raise NotFactorisableError(
            f"eprop factorise=True: the trace of {type(self.layer).__name__} does not "
            f"factorise (its spike feeds back into its state, or the state's Jacobian "
            f"differs between neurons); use factorise='auto' or False")

    def forward(self, pre: Pre, record: bool = False) -> Tensor:
        """Run over the chunk ``pre.q [K, B, n]``; returns spikes ``[K, B, H]``."""
        layer, h = self.layer, self.h
        # drop the previous chunk's records before making this chunk's
        self.h_prev = self.cur = self.z = self.z_prev = self.c_z = None
        with torch.no_grad():
            i_in = input_current(layer, pre)
            h_prev = [[] for _ in h]
            curs, zs = [], []
            for i_t in i_in.unbind(0):
                cur = i_t + layer.recurrent_current(h[-1]) if self.rec_w else i_t
                for lst, comp in zip(h_prev, h):
                    lst.append(comp)
                curs.append(cur)
                h = tuple(layer.dynamics(h, cur))
                zs.append(h[-1])
        self.h = h
        self.h_prev = [torch.stack(l) for l in h_prev]
        self.cur = torch.stack(curs)
        self.z = torch.stack(zs)
        self.z_prev = self.h_prev[-1]
        return self.z

    def system(self, L: Tensor, verify: bool) -> ChunkSystem:
        """The chunk's trace system and its sweep with learning signal ``L [K, B, H]``."""
        A, c = neuron_jacobians(self.layer, self.h_prev, self.cur)
        if verify:
            check_diagonal(self.layer, self.h_prev, self.cur, A, c)
        self.changed = False
        if self.factorised and not factorisable(A, c):
            if self.first and self.factorise == "auto":
                self.factorised, self.changed = False, True  # no trace touched yet
            elif self.factorise is True and self.first:
                self._refuse()
            else:
                raise NotFactorisableError(
                    f"eprop: the Jacobians of {type(self.layer).__name__} lost the factorised "
                    f"structure found on the first chunk; pass factorise=False for this model")
        self.first = False
        self.c_z = c[:, -1]
        Ah, ch = factorised_system(A, c, self.kappa) if self.factorised else \
            full_system(A, c, self.kappa)
        return ChunkSystem(Ah, ch, L)

    @property
    def R(self) -> int:
        return self.C if self.factorised else self.C + 1

    def state(self):
        return self.h


def eprop_kernel(layer, device):
    """The layer's compiled e-prop kernel (``layer.eprop_kernel()``) where the backend owning
    ``device`` runs compiled kernels (the CPU), else None."""
    fn = getattr(layer, "eprop_kernel", None)
    return fn() if (fn is not None and compiled_on(torch.device(device))) else None


class CompiledLayer:
    """A layer with a compiled e-prop kernel (``layer.eprop_kernel()``, CPU)."""

    factorised = False

    @staticmethod
    def supports(layer, device) -> bool:
        return eprop_kernel(layer, device) is not None

    def __init__(self, layer, h, kappa: float, kernel=None):
        self.layer, self.kappa = layer, kappa
        self.kernel = kernel if kernel is not None else layer.eprop_kernel()
        self.C = self.kernel.C
        self.v, self.a, self.z, self.psi = self.kernel.buffers(h)
        self.rec_w = getattr(layer, "w_rec", None) is not None
        self.w_rec_t = (layer.w_rec.detach().t().contiguous() if self.rec_w
                        else self.v.new_zeros(1, 1))

    @property
    def R(self) -> int:
        return self.C

    def forward(self, pre: Pre, record: bool = False) -> Tensor:
        i_in = input_current(self.layer, pre).contiguous()
        K, B, H = i_in.shape
        R = self.C
        consts = getattr(self, "_K", None) != K
        if consts:  # buffers reused chunk after chunk
            self._K = K
            self.z_out = i_in.new_empty(K, B, H)
            self.z_prev = i_in.new_empty(K, B, H)
            self.A = i_in.new_empty(K, R, R, B, H)
            self.c = i_in.new_empty(K, R, B, H)
        kr = K if record else 0
        self.h_rec = i_in.new_empty(kr, 2, B, H)
        self.cur_rec = i_in.new_empty(kr, B, H)
        self.kernel.chunk(i_in, self.w_rec_t, self.rec_w, self.v, self.a, self.z, self.psi,
                          self.kappa, self.z_out, self.z_prev, self.A, self.c, self.h_rec,
                          self.cur_rec, consts)
        return self.z_out

    def system(self, L: Tensor, verify: bool) -> ChunkSystem:
        self.c_z = self.c[:, -1]
        sys = ChunkSystem(self.A, self.c, L)
        if verify:
            self.check(L, sys)
        return sys

    def check(self, L: Tensor, sys: ChunkSystem) -> None:
        """The compiled update and Jacobians equal the layer's ``dynamics`` and autograd's
        (compared through the chunk's gradient weights ``delta``)."""
        K = self.cur_rec.shape[0]
        if K == 0:
            raise RuntimeError("CompiledLayer.check needs forward(record=True)")
        layer = self.layer
        hp = self.kernel.recorded(self.h_rec, self.z_prev)
        with torch.no_grad():
            out = layer.dynamics(tuple(h.reshape(-1, h.shape[-1]) for h in hp),
                                 self.cur_rec.reshape(-1, self.cur_rec.shape[-1]))
        out = [o.view_as(self.z_out) for o in out]
        v_next = out[0]
        thr = self.kernel.threshold(out)
        near = (v_next - thr).abs() < 1e-4 * self.kernel.threshold_scale
        same_z = (out[-1] == self.z_out) | near
        v_ref = torch.cat([hp[0][1:], self.v.unsqueeze(0)])
        if not (bool(same_z.all()) and torch.allclose(v_next, v_ref, rtol=1e-4, atol=1e-5)):
            raise TypeError(f"eprop: the compiled {type(layer).__name__} update does not match "
                            f"its dynamics; pass a custom layer type or strategy='bptt'")
        A, c = neuron_jacobians(layer, hp, self.cur_rec)
        ref = ChunkSystem(*full_system(A, c, self.kappa), L)
        err = (ref.delta - sys.delta).abs().max()
        if err > 1e-3 * ref.delta.abs().max() + 1e-6:
            raise TypeError(f"eprop: compiled Jacobians of {type(layer).__name__} differ from "
                            f"automatic differentiation (max error {float(err):.3g})")

    def state(self):
        return self.kernel.state(self.v, self.a, self.z)
