"""The recurrent-model contract: explicit state, one pure `step` per time step.

Every model in spiketrain is a cell stepped over time::

    state = model.init_state(batch_size)
    state, y_t = model.step(state, x_t)        # x_t [B, ...] -> y_t [B, ...]

`step` must be a pure function of (parameters, state, x_t): no hidden mutable module
state and no unseeded Python randomness. That is what makes recomputation exact, so
every memory strategy gives the same gradients as plain BPTT.
"""
from __future__ import annotations

from typing import Any, Callable, Union

import torch
from torch import Tensor, nn
from torch.utils import _pytree as pytree

State = Union[Tensor, tuple, list, dict]


def state_flatten(state: State) -> tuple[list[Tensor], Any]:
    """Flatten a state (tensor or nested tuple/list/dict of tensors) to a list of leaves."""
    return pytree.tree_flatten(state)


def state_unflatten(leaves: list[Tensor], spec: Any) -> State:
    """Inverse of :func:`state_flatten`."""
    return pytree.tree_unflatten(list(leaves), spec)


def state_map(fn: Callable[[Tensor], Tensor], state: State) -> State:
    """Apply ``fn`` to every tensor of a state, keeping its structure."""
    return pytree.tree_map(fn, state)


def state_nbytes(state: State) -> int:
    """Bytes held by the tensors of a state."""
    leaves, _ = state_flatten(state)
    return sum(t.numel() * t.element_size() for t in leaves if isinstance(t, Tensor))


def state_detach(state: State, requires_grad: bool = False) -> State:
    """Detached copy-free view of a state; optionally marked as requiring grad (floats only)."""

    def _d(t: Tensor) -> Tensor:
        d = t.detach()
        if requires_grad and d.is_floating_point():
            d.requires_grad_(True)
        return d

    return state_map(_d, state)


class RecurrentModel(nn.Module):
    """Base class of every spiketrain model: a cell stepped over time.

    Subclasses implement :meth:`init_state` and :meth:`step`; they may override
    :meth:`chunk` with a faster multi-step path that returns exactly what the step
    loop returns. Inputs and outputs are time-major: ``x [T, B, ...] -> y [T, B, ...]``.

    Capabilities strategies may ask for (never the model's type):

    - ``fast_paths`` (default True): a model with hand-written kernels (e.g. a fused
      multi-step autograd node) uses them in :meth:`chunk`; :meth:`set_fast_paths` (False)
      makes it run its plain step ops instead, for backends that differentiate those
      themselves (IPU).
    - ``takes_sparse_input`` (default False): :meth:`chunk` accepts a
      :class:`~spiketrain.hardware.spikes.SparseSpikes` window as well as a dense tensor.
    """

    fast_paths: bool = True
    takes_sparse_input: bool = False

    def set_fast_paths(self, enabled: bool) -> "RecurrentModel":
        """Use (True) or bypass (False) this model's own fast kernels; returns the model."""
        self.fast_paths = bool(enabled)
        return self

    def init_state(self, batch_size: int) -> State:  # pragma: no cover - abstract
        """Initial state for a batch of ``batch_size`` sequences."""
        raise NotImplementedError

    def step(self, state: State, x_t: Tensor) -> tuple[State, Tensor]:  # pragma: no cover
        """One time step: ``x_t [B, ...] -> (new_state, y_t [B, ...])``."""
        raise NotImplementedError

    def chunk(self, state: State, x: Tensor) -> tuple[State, Tensor]:
        """Several steps at once: ``x [T, B, ...] -> (state, y [T, B, ...])``.

        The default loops :meth:`step` over ``x.unbind(0)`` (never ``x[t]``, whose
        backward is quadratic in T).
        """
        ys = []
        for x_t in x.unbind(0):
            state, y_t = self.step(state, x_t)
            ys.append(y_t)
        return state, torch.stack(ys, 0)

    def per_neuron_state(self) -> Any:
        """Optional: which state components are per-neuron (used by e-prop). None = unknown."""
        return None

    def forward(self, inputs: Tensor, _runner: Callable | None = None, state: State | None = None):
        """``inputs [T, B, ...] -> outputs [T, B, ...]``.

        A plain call keeps everything for backward (BPTT). :func:`spiketrain.unroll`
        passes its strategy as ``_runner`` so wrappers such as DistributedDataParallel
        see an ordinary forward call.
        """
        if _runner is not None:
            return _runner(self, inputs, state)
        if state is None:
            state = self.init_state(inputs.shape[1])
        _, y = self.chunk(state, inputs)
        return y


def unwrap(model: nn.Module) -> nn.Module:
    """The RecurrentModel inside DDP/DataParallel-style wrappers (``.module``)."""
    while not isinstance(model, RecurrentModel) and hasattr(model, "module"):
        model = model.module
    return model
