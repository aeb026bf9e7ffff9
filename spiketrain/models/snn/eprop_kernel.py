"""The compiled e-prop capability of an unmodified LIF/ALIF layer (``LIFLayer.eprop_kernel()``).

e-prop's compiled path (:class:`spiketrain.strategies.eprop.layers.CompiledLayer`) holds the
chunk buffers and calls :meth:`LIFEPropKernel.chunk`, which runs the layer's update over a
chunk (:func:`.eprop_lif_numba.lif_chunk`, the ops of :func:`.neurons.lif_membrane`) and writes the
reduced per-neuron Jacobians ``A [K, R, R, B, H]``, ``c [K, R, B, H]`` of the trace
``(e_v[, e_a], ebar)`` (``R = 2`` LIF, ``3`` ALIF; the spike's trace is eliminated). All
tensors are CPU float32/float64; state ``[B, H]`` is updated in place.
"""
from __future__ import annotations

import torch
from torch import Tensor

from .eprop_lif_numba import lif_chunk
from .lif_numba import SURROGATES
from .neurons import LIFSpec
from .surrogates import SURROGATE_GRADS


class LIFEPropKernel:
    """Compiled e-prop forward and Jacobians of a LIF/ALIF layer given its :class:`LIFSpec`.

    ``C`` state components (= ``R`` trace components); :meth:`buffers` makes the working
    state ``(v, a, z, psi)`` from a layer state, :meth:`chunk` advances it, :meth:`state`
    turns it back into the layer's state tuple; :meth:`recorded` and :meth:`threshold` serve
    the first chunk's check against ``dynamics`` and autograd.
    """

    def __init__(self, spec: LIFSpec):
        self.spec = spec
        self.C = 3 if spec.alif else 2
        self.kind = SURROGATES[spec.surrogate]
        self.scale = float(SURROGATE_GRADS[spec.surrogate][1])
        self.threshold_scale = max(abs(spec.threshold), 1.0)  # tolerance unit near threshold

    @staticmethod
    def supports(spec: LIFSpec) -> bool:
        return spec.surrogate in SURROGATES

    def buffers(self, h) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Contiguous copies ``(v, a, z, psi)`` of state ``h`` (``a`` zeros for LIF, ``psi``,
        the previous step's ``dz/dv``, zeros)."""
        v = h[0].detach().clone().contiguous()
        z = h[-1].detach().clone().contiguous()
        a = h[1].detach().clone().contiguous() if self.spec.alif else torch.zeros_like(v)
        return v, a, z, torch.zeros_like(v)

    def state(self, v: Tensor, a: Tensor, z: Tensor) -> tuple[Tensor, ...]:
        """The layer's state tuple (copies)."""
        return (v.clone(), a.clone(), z.clone()) if self.spec.alif else (v.clone(), z.clone())

    def chunk(self, i_in: Tensor, w_rec_t: Tensor, recurrent: bool, v, a, z, psi, kappa: float,
              z_out, z_prev, A, c, h_rec, cur_rec, consts: bool) -> None:
        """Run a chunk: ``i_in [K, B, H]`` feed-forward current, ``w_rec_t [H, H]`` (``W_rec^T``
        contiguous). Writes ``z_out``, ``z_prev [K, B, H]``, ``A``, ``c``; records the
        previous ``(v, a)`` ``[K, 2, B, H]`` and current ``[K, B, H]`` into ``h_rec`` /
        ``cur_rec`` when they are not empty. ``consts`` False: constant entries of ``A``/``c``
        are already in place (buffers reused from the previous chunk)."""
        s = self.spec
        lif_chunk(i_in.numpy(), w_rec_t.numpy(), recurrent, v.numpy(), a.numpy(), z.numpy(),
                  psi.numpy(), s.beta, s.threshold, s.reset == "subtract", s.alif,
                  float(s.rho), float(s.adapt), self.kind, self.scale, kappa, z_out.numpy(),
                  z_prev.numpy(), A.numpy(), c.numpy(), h_rec.numpy(), cur_rec.numpy(), consts)

    def recorded(self, h_rec: Tensor, z_prev: Tensor) -> list[Tensor]:
        """State before each recorded step, one ``[K, B, H]`` per component."""
        return [h_rec[:, 0]] + ([h_rec[:, 1]] if self.spec.alif else []) + [z_prev]

    def threshold(self, h_next) -> Tensor | float:
        """Spike threshold of each neuron in state ``h_next`` (after a step)."""
        s = self.spec
        return s.threshold + (s.adapt * h_next[1] if s.alif else 0.0)
