"""Detection loss: a centre-based assignment, GIoU loss and BCE (objectness, class).

Assignment (deterministic, geometric; simpler than YOLOX's SimOTA, which picks the k
cheapest cells by a cost of predicted IoU and class score). For each ground-truth box of
size ``m = max(w, h)``:

1. its level is the one whose stride ``s`` is closest to ``m / 4`` in log scale (an object
   spans about four cells of its level);
2. on that level its positive cells are those whose centre lies inside the box and within
   ``center_radius * s`` of the box centre (YOLOX's centre prior, radius 2.5), and always
   the cell nearest the box centre (small boxes keep one positive);
3. a cell claimed by several boxes goes to the smallest box (FCOS's rule).

Loss (YOLOX's terms, normalised by the number of positive cells ``N_pos``)::

    L = (w_iou * sum_pos (1 - GIoU(pred, gt)) + sum_all BCE(obj, pos)
         + sum_pos BCE(cls, one_hot(class))) / max(N_pos, 1)
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .head import decode_boxes


def xywh_to_xyxy(b: Tensor) -> Tensor:
    """``[n, 4]`` (x, y, w, h) top-left corner -> (x1, y1, x2, y2)."""
    return torch.cat([b[:, :2], b[:, :2] + b[:, 2:4]], 1)


def giou(a: Tensor, b: Tensor) -> Tensor:
    """Generalised IoU of matching rows of ``a [n, 4]``, ``b [n, 4]`` (x1, y1, x2, y2) -> ``[n]``."""
    area_a = (a[:, 2] - a[:, 0]).clamp(min=0) * (a[:, 3] - a[:, 1]).clamp(min=0)
    area_b = (b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(min=0)
    lt = torch.maximum(a[:, :2], b[:, :2])
    rb = torch.minimum(a[:, 2:], b[:, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    union = (area_a + area_b - inter).clamp(min=1e-9)
    iou = inter / union
    hull = (torch.maximum(a[:, 2:], b[:, 2:]) - torch.minimum(a[:, :2], b[:, :2])).clamp(min=0).prod(-1)
    return iou - (hull - union) / hull.clamp(min=1e-9)


def assign(anchors: Tensor, gt_xyxy: Tensor, strides: Sequence[int],
           center_radius: float = 2.5) -> Tensor:
    """Index of the assigned box per cell ``[A]`` (-1 = background). ``anchors [A, 3]`` =
    (cx, cy, stride), ``gt_xyxy [n, 4]``. See the module docstring."""
    A = anchors.shape[0]
    if gt_xyxy.shape[0] == 0:
        return torch.full((A,), -1, dtype=torch.long, device=anchors.device)
    ax, ay, s = anchors[:, 0], anchors[:, 1], anchors[:, 2]
    wh = (gt_xyxy[:, 2:] - gt_xyxy[:, :2]).clamp(min=1e-3)
    ctr = (gt_xyxy[:, :2] + gt_xyxy[:, 2:]) / 2
    size = wh.max(1).values
    lv = torch.tensor([float(x) for x in strides], device=anchors.device)
    level = (torch.log2(size[:, None] / 4.0) - torch.log2(lv[None, :])).abs().argmin(1)
    on_level = s[None, :] == lv[level][:, None]                              # [n, A]
    inside = ((ax[None] > gt_xyxy[:, 0:1]) & (ax[None] < gt_xyxy[:, 2:3])
              & (ay[None] > gt_xyxy[:, 1:2]) & (ay[None] < gt_xyxy[:, 3:4]))
    r = center_radius * s[None]
    near = ((ax[None] - ctr[:, 0:1]).abs() < r) & ((ay[None] - ctr[:, 1:2]).abs() < r)
    cand = on_level & inside & near
    d2 = (ax[None] - ctr[:, 0:1]) ** 2 + (ay[None] - ctr[:, 1:2]) ** 2
    nearest = torch.where(on_level, d2, torch.full_like(d2, float("inf"))).argmin(1)
    cand[torch.arange(len(nearest), device=cand.device), nearest] = True
    area = wh.prod(1)
    cost = torch.where(cand, area[:, None].expand_as(cand), torch.full_like(d2, float("inf")))
    best, idx = cost.min(0)
    return torch.where(torch.isfinite(best), idx, torch.full_like(idx, -1))


def detection_loss(raw: Tensor, targets: Sequence[Tensor], anchors: Tensor, num_classes: int,
                   strides: Sequence[int], iou_weight: float = 5.0,
                   center_radius: float = 2.5) -> Tensor:
    """Scalar loss of raw head output ``raw [B, A, 5 + nc]`` for ``targets``: B tensors
    ``[n_i, 5]`` = (class, x, y, w, h) with (x, y) the top-left corner, in input pixels."""
    if len(targets) != raw.shape[0]:
        raise ValueError(f"{len(targets)} target tensors for a batch of {raw.shape[0]}")
    anchors = anchors.to(raw.device, raw.dtype)
    obj_t = torch.zeros(raw.shape[:2], dtype=raw.dtype, device=raw.device)
    pred_boxes, gt_boxes, cls_logits, cls_t = [], [], [], []
    for b, tgt in enumerate(targets):
        tgt = torch.as_tensor(tgt, dtype=raw.dtype, device=raw.device).reshape(-1, 5)
        gt = xywh_to_xyxy(tgt[:, 1:5])
        idx = assign(anchors, gt, strides, center_radius)
        pos = idx >= 0
        if not bool(pos.any()):
            continue
        obj_t[b, pos] = 1.0
        pred_boxes.append(decode_boxes(raw[b, pos, :4], anchors[pos]))
        gt_boxes.append(gt[idx[pos]])
        cls_logits.append(raw[b, pos, 5:5 + num_classes])
        cls_t.append(F.one_hot(tgt[idx[pos], 0].long(), num_classes).to(raw.dtype))
    n_pos = max(1, int(obj_t.sum()))
    loss = F.binary_cross_entropy_with_logits(raw[..., 4], obj_t, reduction="sum")
    if pred_boxes:
        pb, gb = torch.cat(pred_boxes), torch.cat(gt_boxes)
        loss = loss + iou_weight * (1.0 - giou(pb, gb)).sum()
        loss = loss + F.binary_cross_entropy_with_logits(torch.cat(cls_logits), torch.cat(cls_t),
                                                         reduction="sum")
    return loss / n_pos
