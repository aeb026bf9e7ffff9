"""Deformable 2-d convolution (Dai et al. 2017) with the sampling done by ``grid_sample``.

For output pixel ``p`` and kernel point ``k`` (offset ``p_k`` on the regular ``K x K``
grid) the input is read bilinearly at ``p + p_k + dp_k(p)`` (zero outside the image), then
weighted by ``w_k`` like an ordinary convolution. With all offsets ``dp = 0`` this equals
``F.conv2d(x, w, b, padding=K // 2, groups=groups)`` (stride 1, same-size output).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _base_grid(K: int, H: int, W: int, like: Tensor) -> tuple[Tensor, Tensor]:
    """Regular sampling positions ``[K*K, H, W]`` (y, x) in input pixels."""
    r = torch.arange(K, dtype=like.dtype, device=like.device) - (K // 2)
    ky, kx = torch.meshgrid(r, r, indexing="ij")
    ys = torch.arange(H, dtype=like.dtype, device=like.device).view(1, H, 1)
    xs = torch.arange(W, dtype=like.dtype, device=like.device).view(1, 1, W)
    return ky.reshape(-1, 1, 1) + ys, kx.reshape(-1, 1, 1) + xs


def deform_conv2d(x: Tensor, offset: Tensor, weight: Tensor, bias: Tensor | None = None,
                  groups: int = 1) -> Tensor:
    """``x [N, C_in, H, W]``, ``offset [N, 2 * G_off * K * K, H, W]`` ((dy, dx) per kernel
    point, ``G_off`` offset groups splitting the input channels), ``weight [C_out, C_in /
    groups, K, K]`` -> ``[N, C_out, H, W]`` (stride 1, same-size output)."""
    N, C, H, W = x.shape
    C_out, cg, K, K2 = weight.shape
    if K != K2 or K % 2 == 0:
        raise ValueError(f"deformable kernel must be square and odd, got {K}x{K2}")
    KK = K * K
    G_off = offset.shape[1] // (2 * KK)
    if offset.shape[1] != 2 * G_off * KK or C % G_off or C % groups or cg * groups != C:
        raise ValueError(f"offset channels {offset.shape[1]} / groups {groups} do not fit "
                         f"input channels {C} and kernel {K}")
    by, bx = _base_grid(K, H, W, x)
    off = offset.view(N, G_off, KK, 2, H, W)
    py = by + off[:, :, :, 0]                   # [N, G_off, KK, H, W] in pixels
    px = bx + off[:, :, :, 1]
    # pixel -> normalised coordinates of grid_sample(align_corners=False): (2 p + 1) / size - 1
    gy = (2.0 * py + 1.0) / H - 1.0
    gx = (2.0 * px + 1.0) / W - 1.0
    grid = torch.stack((gx, gy), -1).view(N * G_off, KK * H, W, 2)
    xin = x.reshape(N * G_off, C // G_off, H, W)
    cols = F.grid_sample(xin, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    cols = cols.view(N, C, KK, H * W)          # sampled input per channel and kernel point
    cols = cols.view(N, groups, cg * KK, H * W)
    wg = weight.view(groups, C_out // groups, cg * KK)
    out = torch.einsum("gok,ngkp->ngop", wg, cols).reshape(N, C_out, H, W)
    if bias is not None:
        out = out + bias.view(1, -1, 1, 1)
    return out


class DeformConv2d(nn.Module):
    """Deformable convolution whose offsets come from a small 3x3 convolution of its input
    (zero-initialised: it starts as the plain convolution). ``x [N, C_in, H, W] -> [N,
    C_out, H, W]``."""

    def __init__(self, c_in: int, c_out: int, kernel: int = 5, groups: int = 1,
                 offset_groups: int = 1, bias: bool = True):
        super().__init__()
        self.kernel, self.groups = kernel, groups
        self.weight = nn.Parameter(torch.empty(c_out, c_in // groups, kernel, kernel))
        nn.init.kaiming_uniform_(self.weight, a=5 ** 0.5)
        self.bias = nn.Parameter(torch.zeros(c_out)) if bias else None
        self.offset = nn.Conv2d(c_in, 2 * offset_groups * kernel * kernel, 3, 1, 1)
        nn.init.zeros_(self.offset.weight)
        nn.init.zeros_(self.offset.bias)

    def forward(self, x: Tensor) -> Tensor:
        return deform_conv2d(x, self.offset(x), self.weight, self.bias, self.groups)
