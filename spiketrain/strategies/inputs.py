"""The one input adapter of the strategies: a dense Tensor ``[T, B, ...]`` or a sparse/lazy
spike train, handed to a model as it declares it wants it.

Anything with ``.shape`` (``[T, B, ...]``) and ``.dense(t0, t1) -> Tensor [t1-t0, B, ...]``
(e.g. :class:`spiketrain.hardware.spikes.SparseSpikes`, or a spike source that generates
its segments on demand) is densified one segment at a time, so a T = 1,000,000 input is
never materialised as a dense tensor. A model whose ``takes_sparse_input`` is True gets a
SparseSpikes window (``.slice(t0, t1)``) instead: no dense copy at all.
"""
from __future__ import annotations

import torch
from torch import Tensor


def is_dense(inputs) -> bool:
    return isinstance(inputs, Tensor)


def check_inputs(inputs) -> None:
    """Raise a clear error unless ``inputs`` is a time-major tensor or a spike train."""
    if is_dense(inputs):
        if inputs.dim() < 2:
            raise ValueError(f"inputs must be time-major [T, B, ...], got shape {tuple(inputs.shape)}")
        return
    if not (hasattr(inputs, "dense") and hasattr(inputs, "shape")):
        raise TypeError(f"inputs must be a Tensor [T, B, ...] or a spike train with .shape and "
                        f".dense(t0, t1) (e.g. SparseSpikes), got {type(inputs).__name__}")


def length(inputs) -> int:
    """Number of time steps T."""
    return int(inputs.shape[0])


def batch_size(inputs) -> int:
    return int(inputs.shape[1])


def segment(inputs, t0: int, t1: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """Dense ``[t1 - t0, B, ...]`` slice (a view for dense inputs, detached)."""
    if is_dense(inputs):
        return inputs.detach()[t0:t1]
    return inputs.dense(t0, t1, dtype=dtype)


def takes_spike_trains(model) -> bool:
    """True for models whose ``chunk`` takes a SparseSpikes window directly: they declare it
    with ``takes_sparse_input = True`` (e.g. the RSNN, whose fused layers project sparse
    inputs from the indices, bit-identical to the dense path)."""
    return bool(getattr(model, "takes_sparse_input", False))


def window(model, inputs, t0: int, t1: int, dtype: torch.dtype = torch.float32):
    """Model input of steps ``t0:t1``: a view of a dense input; for a spike train, a
    SparseSpikes window when the model takes one (no dense ``[t1 - t0, B, N]`` copy), else
    its dense form."""
    if is_dense(inputs):
        return inputs.detach()[t0:t1]
    if hasattr(inputs, "slice") and takes_spike_trains(model):
        return inputs.slice(t0, t1)
    return inputs.dense(t0, t1, dtype=dtype)


def whole(model, inputs, dtype: torch.dtype = torch.float32):
    """The whole input for one ``model.chunk`` call (keeps autograd for dense inputs)."""
    if is_dense(inputs):
        return inputs
    if hasattr(inputs, "slice") and takes_spike_trains(model):
        return inputs if hasattr(inputs, "time_ptr") else inputs.slice(0, length(inputs))
    return inputs.dense(0, length(inputs), dtype=dtype)


def dense_all(inputs, dtype: torch.dtype = torch.float32) -> Tensor:
    """The whole input as a dense tensor (keeps autograd for dense inputs)."""
    if is_dense(inputs):
        return inputs
    return inputs.dense(0, length(inputs), dtype=dtype)
