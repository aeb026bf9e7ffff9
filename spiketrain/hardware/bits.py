"""Binary storage for spikes: ``bool`` (1 byte per spike) or bit-packed (1 bit per spike).

Spikes are 0/1 by construction, so keeping them for the backward pass in float32 wastes
31 of 32 bits. :func:`pack_bits` turns a bool tensor into ``uint8`` with 8 spikes per
byte (bit ``i`` of byte ``j`` is element ``8 j + i`` of the flattened tensor);
:func:`unpack_bits` inverts it. :class:`SpikeStore` wraps the choice.
"""
from __future__ import annotations

import torch
from torch import Tensor

STORAGES = ("bits", "bool", "float")


def _i64(c: int) -> int:
    c &= (1 << 64) - 1
    return c - (1 << 64) if c >= (1 << 63) else c


# Multiplying 8 bytes that are each 0/1 by this gathers their low bits into the top byte.
_GATHER = _i64(0x0102040810204080)
# Spreading one byte over 8: replicate it, keep bit i in byte i.
_SPREAD = _i64(0x0101010101010101)
_SELECT = _i64(0x8040201008040201)


def pack_bits(z: Tensor) -> Tensor:
    """Bool or 0/1 tensor (any shape, ``numel`` padded to a multiple of 8) -> ``uint8
    [ceil(numel/8)]``."""
    b = z if z.dtype == torch.bool else z != 0
    b = b.reshape(-1)
    pad = (-b.numel()) % 8
    if pad:
        b = torch.cat([b, b.new_zeros(pad)])
    x = b.contiguous().view(torch.uint8).view(-1, 8).view(torch.int64).view(-1)
    return ((x * _GATHER) >> 56).to(torch.uint8)


def unpack_bits(packed: Tensor, shape, dtype: torch.dtype = torch.bool) -> Tensor:
    """Inverse of :func:`pack_bits`: ``uint8 [n] -> tensor of `shape``` (bool or ``dtype``)."""
    shape = tuple(shape)
    n = 1
    for s in shape:
        n *= s
    y = (packed.to(torch.int64) * _SPREAD) & _SELECT
    b = y.view(torch.uint8).view(-1)[:n] != 0
    b = b.view(shape)
    return b if dtype == torch.bool else b.to(dtype)


class SpikeStore:
    """Holds a binary tensor in ``storage`` form: ``"bits"`` (1 bit), ``"bool"`` (1 byte) or
    ``"float"`` (as given). ``.tensor`` is what is stored (save it for backward);
    :meth:`load` returns it as ``dtype`` in the original shape."""

    def __init__(self, z: Tensor, storage: str = "bool"):
        if storage not in STORAGES:
            raise ValueError(f"spike storage must be one of {STORAGES}, got {storage!r}")
        self.shape, self.storage = tuple(z.shape), storage
        if storage == "bits":
            self.tensor = pack_bits(z)
        elif storage == "bool":
            self.tensor = z if z.dtype == torch.bool else z != 0
        else:
            self.tensor = z.float() if z.dtype == torch.bool else z

    @classmethod
    def wrap(cls, tensor: Tensor, shape, storage: str) -> "SpikeStore":
        """A store around an already-stored ``tensor`` (e.g. one restored in backward)."""
        s = cls.__new__(cls)
        s.tensor, s.shape, s.storage = tensor, tuple(shape), storage
        return s

    def load(self, dtype: torch.dtype = torch.float32) -> Tensor:
        if self.storage == "bits":
            return unpack_bits(self.tensor, self.shape, dtype)
        return self.tensor if self.tensor.dtype == dtype else self.tensor.to(dtype)

    def load_range(self, t0: int, t1: int, dtype: torch.dtype = torch.float32) -> Tensor:
        """Rows ``t0:t1`` of the leading (time) dimension as ``dtype``."""
        if self.storage != "bits":
            return self.tensor[t0:t1].to(dtype)
        per = 1
        for s in self.shape[1:]:
            per *= s
        if per % 8 == 0:
            part = self.tensor[t0 * per // 8:t1 * per // 8]
            return unpack_bits(part, (t1 - t0,) + self.shape[1:], dtype)
        return self.load(dtype)[t0:t1]

    @property
    def nbytes(self) -> int:
        return self.tensor.numel() * self.tensor.element_size()
