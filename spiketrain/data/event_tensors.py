"""Events to tensors, and the Gen1 box filter.

An event ``(t, x, y, p)`` of a window ``[t_end - T * bin, t_end)`` falls into bin
``(t - t_start) // bin`` and, after downsampling by an integer ``factor``, into pixel
``(x // factor, y // factor)`` of an ``H x W`` grid (``H = ceil(height / factor)``). The
histogram ``[T, B, 2, H, W]`` counts events per (bin, sample, polarity, pixel): channel 0 is
OFF (p = 0), channel 1 is ON (p = 1). Every event of the window is counted exactly once.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from ..hardware.spikes import SparseSpikes


def grid_size(width: int, height: int, factor: int = 1) -> tuple[int, int]:
    """``(H, W)`` of the input grid of a ``width x height`` sensor downsampled by ``factor``."""
    return math.ceil(height / factor), math.ceil(width / factor)


def event_keys(t, x, y, p, t_start: int, bin_us: int, T: int, H: int, W: int,
               factor: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """``(bin int64 [n], feature int64 [n])`` of the events of one sample's window, where
    ``feature = (p * H + y // factor) * W + x // factor`` indexes the flattened ``[2, H, W]``.
    Events outside ``[t_start, t_start + T * bin_us)`` or the grid are dropped."""
    t = np.asarray(t, dtype=np.int64) - int(t_start)
    b = t // int(bin_us)
    xx = np.asarray(x, dtype=np.int64) // factor
    yy = np.asarray(y, dtype=np.int64) // factor
    keep = (t >= 0) & (b < T) & (xx < W) & (yy < H)
    pp = np.asarray(p, dtype=np.int64)[keep]
    return b[keep], (pp * H + yy[keep]) * W + xx[keep]


def histogram(bins: list[np.ndarray], feats: list[np.ndarray], T: int, H: int, W: int,
              binary: bool = False) -> torch.Tensor:
    """Dense float32 ``[T, B, 2, H, W]`` event counts of ``B`` samples (``bins[i]``,
    ``feats[i]`` from :func:`event_keys`); ``binary=True`` clips counts to 1."""
    B, F = len(bins), 2 * H * W
    flat = np.concatenate([(bk * B + i) * F + fk for i, (bk, fk) in enumerate(zip(bins, feats))]) \
        if B else np.zeros(0, np.int64)
    counts = np.bincount(flat, minlength=T * B * F).astype(np.float32)
    if binary:
        np.minimum(counts, 1.0, out=counts)
    return torch.from_numpy(counts).view(T, B, 2, H, W)


def sparse_spikes(bins: list[np.ndarray], feats: list[np.ndarray], T: int, H: int,
                  W: int) -> SparseSpikes:
    """The binary ``SparseSpikes`` of the same batch (one entry per distinct (bin, sample,
    polarity, pixel): ``SparseSpikes`` is a 0/1 container, so several events of one pixel in
    one bin are one spike), shape ``[T, B, 2, H, W]``, ``units`` the flat ``(p, y, x)`` index."""
    B, F = len(bins), 2 * H * W
    flat = np.concatenate([(bk * B + i) * F + fk for i, (bk, fk) in enumerate(zip(bins, feats))]) \
        if B else np.zeros(0, np.int64)
    flat = np.unique(flat)                    # sorted: by bin, then sample, then feature
    t = torch.from_numpy(flat // (B * F))
    b = torch.from_numpy(flat // F % B)
    f = torch.from_numpy(flat % F)
    return SparseSpikes(t, b, f, (T, B, 2, H, W), check=False)


def filter_boxes(boxes: np.ndarray, skip_first_us: int = 500_000, min_diag: float = 30.0,
                 min_side: float = 10.0) -> np.ndarray:
    """The Gen1 box filter: drop boxes before ``skip_first_us`` and boxes with diagonal
    ``< min_diag`` or a side ``< min_side`` (sensor pixels; 0 disables a rule)."""
    w, h = boxes["w"].astype(np.float64), boxes["h"].astype(np.float64)
    keep = boxes["t"] >= skip_first_us
    if min_diag:
        keep &= np.sqrt(w ** 2 + h ** 2) >= min_diag
    if min_side:
        keep &= (w >= min_side) & (h >= min_side)
    return boxes[keep]


def box_targets(boxes: np.ndarray, width: int, height: int, factor: int = 1) -> torch.Tensor:
    """float32 ``[n, 5]`` rows ``(class, x, y, w, h)`` in input-grid pixels (top-left corner),
    each box clipped to the sensor first; boxes left with no area are dropped."""
    x0 = np.clip(boxes["x"].astype(np.float64), 0, width)
    y0 = np.clip(boxes["y"].astype(np.float64), 0, height)
    x1 = np.clip(boxes["x"].astype(np.float64) + boxes["w"], 0, width)
    y1 = np.clip(boxes["y"].astype(np.float64) + boxes["h"], 0, height)
    keep = (x1 > x0) & (y1 > y0)
    out = np.stack([boxes["class_id"].astype(np.float64), x0, y0, x1 - x0, y1 - y0], 1)[keep]
    out[:, 1:] /= factor
    return torch.from_numpy(out.astype(np.float32)).reshape(-1, 5)
