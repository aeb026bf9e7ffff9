"""Memory tiers (``device``, ``host``, ``disk``) with exact byte accounting.

Strategies put and get tensors only through a tier. Each tier knows its capacity and
counts the bytes it currently holds (``current``), the most it ever held (``peak``),
how many records it holds (``count``/``peak_count``) and the bytes copied in and out
(``moved``). Besides stored tensors a tier can be *charged* for memory that lives
elsewhere but belongs to it (e.g. what autograd saves for one recomputed segment on the
device): :meth:`Tier.charge` / :meth:`Tier.release`.

- ``DeviceTier``: keeps references (no copy) on the compute device.
- ``HostTier``: CPU memory next to an accelerator; on CUDA copies go to pinned buffers
  with ``non_blocking=True``; on a CPU-only machine it keeps references (same RAM).
- ``DiskTier``: one scratch file per tier in a scratch folder; records are written with
  ``pwrite`` and read back with ``pread`` (the page cache stays out of the process RSS),
  freed regions are reused; the file is unlinked right after opening (the descriptor keeps
  it usable), so a crash leaves nothing, and :meth:`Tier.close` releases the space.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .units import format_size, parse_size

TIER_NAMES = ("device", "host", "disk")


class TierFullError(MemoryError):
    """A tier was asked to hold more than its capacity."""


class Tier:
    """Base tier: a keyed store of tensors with exact current/peak byte accounting."""

    name = "tier"

    def __init__(self, capacity: int | str | None = None):
        self.capacity = None if capacity is None else parse_size(capacity)
        self.current = 0
        self.peak = 0
        self.count = 0
        self.peak_count = 0
        self.moved = 0
        self._items: dict[Any, tuple[Any, int]] = {}

    # accounting -------------------------------------------------------------------------
    def charge(self, nbytes: int, records: int = 0) -> None:
        """Account ``nbytes`` (and ``records``) held in this tier; raises TierFullError."""
        new = self.current + int(nbytes)
        if self.capacity is not None and new > self.capacity:
            raise TierFullError(f"tier {self.name!r} over capacity: {format_size(new)} > "
                                f"{format_size(self.capacity)}")
        self.current = new
        self.count += records
        self.peak = max(self.peak, self.current)
        self.peak_count = max(self.peak_count, self.count)

    def release(self, nbytes: int, records: int = 0) -> None:
        """Undo :meth:`charge`."""
        self.current -= int(nbytes)
        self.count -= records
        assert self.current >= 0 and self.count >= 0, "tier accounting went negative"

    # storage ----------------------------------------------------------------------------
    def put(self, key: Any, tensors: list[Tensor]) -> int:
        """Store a list of tensors under ``key``; returns the bytes stored."""
        if key in self._items:
            raise KeyError(f"tier {self.name!r} already holds {key!r}")
        nbytes = sum(t.numel() * t.element_size() for t in tensors)
        self.charge(nbytes, 1)
        try:
            self._items[key] = (self._store(tensors), nbytes)
        except BaseException:
            self.release(nbytes, 1)
            raise
        return nbytes

    def get(self, key: Any, device: torch.device | None = None, pop: bool = False) -> list[Tensor]:
        """The tensors stored under ``key`` (on ``device``); ``pop`` also frees them."""
        handle, nbytes = self._items[key]
        out = self._load(handle, device)
        if pop:
            self.free(key)
        return out

    def free(self, key: Any) -> None:
        """Drop the record ``key``."""
        handle, nbytes = self._items.pop(key)
        self._drop(handle)
        self.release(nbytes, 1)

    def __contains__(self, key: Any) -> bool:
        return key in self._items

    def keys(self) -> list[Any]:
        return list(self._items)

    def clear(self) -> None:
        for k in list(self._items):
            self.free(k)

    def close(self) -> None:
        """Free every record and any backing resources."""
        self.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    # to override ------------------------------------------------------------------------
    def _store(self, tensors: list[Tensor]) -> Any:
        return list(tensors)

    def _load(self, handle: Any, device) -> list[Tensor]:
        return [t if device is None else t.to(device) for t in handle]

    def _drop(self, handle: Any) -> None:
        pass

    def __repr__(self) -> str:
        cap = "unbounded" if self.capacity is None else format_size(self.capacity)
        return (f"{type(self).__name__}(capacity={cap}, current={format_size(self.current)}, "
                f"peak={format_size(self.peak)})")


def compact(t: Tensor) -> Tensor:
    """``t`` itself, or a compact copy when it is a view into a larger storage (a state slice
    of a ``[T, B, H]`` buffer would otherwise keep the whole buffer alive)."""
    if t.untyped_storage().nbytes() > t.numel() * t.element_size():
        return t.clone()
    return t


class DeviceTier(Tier):
    """Fast memory on the compute device: stores references (compacted views), no copies."""

    name = "device"

    def _store(self, tensors):
        return [compact(t) for t in tensors]


class HostTier(Tier):
    """Host RAM. With a CUDA compute device tensors are copied to pinned CPU buffers with
    non-blocking copies (``moved`` counts those bytes); on CPU it keeps references."""

    name = "host"

    def _store(self, tensors):
        out = []
        for t in tensors:
            if t.device.type == "cuda":
                buf = torch.empty(t.shape, dtype=t.dtype, device="cpu", pin_memory=True)
                buf.copy_(t, non_blocking=True)
                self.moved += t.numel() * t.element_size()
                out.append(buf)
            else:
                out.append(compact(t))
        return out

    def _load(self, handle, device):
        out = []
        for t in handle:
            if device is not None and torch.device(device).type == "cuda":
                self.moved += t.numel() * t.element_size()
                out.append(t.to(device, non_blocking=True))
            else:
                out.append(t)
        return out


class DiskTier(Tier):
    """Scratch-file storage: one file, records written with ``pwrite`` at an offset and read
    back with ``pread``; freed regions are reused (same-size records are the common case).
    The file (and a temporary ``folder`` made for it) is unlinked right after opening, so
    nothing is left on disk after a crash; :meth:`close` releases the space."""

    name = "disk"

    def __init__(self, capacity: int | None = None, folder: str | None = None):
        super().__init__(capacity)
        self._own_folder = folder is None
        self.folder = tempfile.mkdtemp(prefix="spiketrain-scratch-") if folder is None else folder
        os.makedirs(self.folder, exist_ok=True)
        self.path = os.path.join(self.folder, f"tier-{os.getpid()}-{id(self):x}.bin")
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        # unlinked at once: the open descriptor keeps the file usable, and no crash or
        # kill -9 can leave it (or its temporary folder) behind
        os.unlink(self.path)
        if self._own_folder:
            os.rmdir(self.folder)
        self._end = 0
        self._holes: dict[int, list[int]] = {}

    def _alloc(self, n: int) -> int:
        holes = self._holes.get(n)
        if holes:
            return holes.pop()
        off = self._end
        self._end += n
        return off

    def _store(self, tensors):
        recs = []
        for t in tensors:
            a = t.detach().to("cpu").contiguous()
            # reshape(-1) first: a 0-d tensor cannot be viewed as bytes
            arr = a.reshape(-1).view(torch.uint8).numpy() if a.numel() else np.empty(0, np.uint8)
            n = arr.nbytes
            off = self._alloc(n)
            mv = memoryview(arr.reshape(-1))
            done = 0
            while done < n:
                done += os.pwrite(self._fd, mv[done:], off + done)
            self.moved += n
            recs.append((off, n, a.dtype, tuple(a.shape)))
        return recs

    def _load(self, handle, device):
        out = []
        for off, n, dtype, shape in handle:
            buf = bytearray(n)
            mv = memoryview(buf)
            done = 0
            while done < n:
                got = os.preadv(self._fd, [mv[done:]], off + done)
                if got <= 0:
                    raise IOError(f"short read from {self.path}")
                done += got
            t = torch.frombuffer(buf, dtype=torch.uint8) if n else torch.empty(0, dtype=torch.uint8)
            t = t.view(dtype).reshape(shape)
            self.moved += n
            out.append(t if device is None else t.to(device))
        return out

    def _drop(self, handle):
        for off, n, _, _ in handle:
            self._holes.setdefault(n, []).append(off)

    def close(self) -> None:
        super().close()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._own_folder and os.path.isdir(self.folder):
            shutil.rmtree(self.folder, ignore_errors=True)

    def __del__(self):  # last resort; close() is the normal path
        try:
            if getattr(self, "_fd", None) is not None:
                self.close()
        except Exception:
            pass


class Tiers:
    """The three tiers of one run, built from a budget ``{tier: bytes}`` (missing = unbounded).

    Strategies get theirs from :meth:`spiketrain.hardware.backends.Backend.tiers`, which
    bounds them by the backend's capacities; which tier is the slow one (coarse
    checkpoints) is the backend's to say (:attr:`Backend.slow_tier`).
    """

    def __init__(self, budget: dict[str, int] | None = None, device: torch.device | str = "cpu",
                 scratch: str | None = None):
        budget = dict(budget or {})
        unknown = set(budget) - set(TIER_NAMES)
        if unknown:
            raise ValueError(f"unknown tier(s) {sorted(unknown)} in budget; tiers are {TIER_NAMES}")
        self.compute_device = torch.device(device)
        self.device = DeviceTier(budget.get("device"))
        self.host = HostTier(budget.get("host"))
        self._disk_args = (budget.get("disk"), scratch)
        self._disk: DiskTier | None = None

    @property
    def disk(self) -> DiskTier:
        if self._disk is None:  # created on first use: no scratch file unless needed
            self._disk = DiskTier(*self._disk_args)
        return self._disk

    def __getitem__(self, name: str) -> Tier:
        if name not in TIER_NAMES:
            raise KeyError(f"unknown tier {name!r}; tiers are {TIER_NAMES}")
        return getattr(self, name)

    def capacity(self, name: str) -> int | None:
        """Bytes tier ``name`` may hold (None: unbounded), without creating the disk tier."""
        if name == "disk" and self._disk is None:
            cap = self._disk_args[0]
            return None if cap is None else parse_size(cap)
        return self[name].capacity

    def over_capacity(self, need: dict[str, int]) -> dict[str, tuple[int, int]]:
        """``{tier: (needed, capacity)}`` for every tier ``need`` exceeds (empty: it fits)."""
        out = {}
        for name, n in need.items():
            cap = self.capacity(name)
            if cap is not None and n > cap:
                out[name] = (int(n), cap)
        return out

    def used(self) -> list[Tier]:
        out = [self.device, self.host]
        if self._disk is not None:
            out.append(self._disk)
        return out

    def peak_bytes(self) -> dict[str, int]:
        return {t.name: t.peak for t in self.used() if t.peak or t.name == "device"}

    def bytes_moved(self) -> int:
        return sum(t.moved for t in self.used())

    def close(self) -> None:
        for t in self.used():
            t.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False
