"""ANN part and YOLOX-style detection head, box decoding and NMS.

ANN part: Conv-BN-ReLU blocks (s1, s2, s1, s2) on the bridge's dense map at stride 8 give
features at strides 8, 16 and 32. Head (YOLOX, decoupled, anchor-free): per level a 1x1
stem, a classification branch and a regression branch (``depth`` 3x3 Conv-BN-ReLU each);
the regression branch predicts the box ``(dx, dy, dw, dh)`` and the objectness logit.

Raw head output ``[B, A, 5 + num_classes]`` = ``(dx, dy, dw, dh, obj, cls...)`` for the
``A`` grid cells of all levels (level by level, row-major); cell ``a`` has centre
``(cx_a, cy_a)`` and stride ``s_a`` and predicts the box centre ``c_a + s_a (dx, dy)`` and
size ``s_a exp(dw, dh)`` in input pixels.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor, nn


def conv_bn_relu(c_in: int, c_out: int, kernel: int = 3, stride: int = 1) -> nn.Sequential:
    """Conv (no bias) -> BatchNorm -> ReLU, 'same' padding."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, bias=False),
                         nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class ANNPart(nn.Module):
    """``[B, C_in, H/8, W/8] -> [P8, P16, P32]`` with blocks s1, s2, s1, s2 of ``width``."""

    def __init__(self, c_in: int, width: int):
        super().__init__()
        self.b1 = conv_bn_relu(c_in, width, 3, 1)
        self.b2 = conv_bn_relu(width, width, 3, 2)
        self.b3 = conv_bn_relu(width, width, 3, 1)
        self.b4 = conv_bn_relu(width, width, 3, 2)

    def forward(self, x: Tensor) -> list[Tensor]:
        p8 = self.b1(x)
        p16 = self.b3(self.b2(p8))
        p32 = self.b4(p16)
        return [p8, p16, p32]


class YOLOXHead(nn.Module):
    """Decoupled head, one per level: ``features [B, C, h_l, w_l] -> [B, h_l w_l, 5 + nc]``
    per level, concatenated over levels to ``[B, A, 5 + nc]``."""

    def __init__(self, c_in: int, width: int, num_classes: int, levels: int = 3, depth: int = 2,
                 prior: float = 0.01):
        super().__init__()
        self.num_classes = num_classes
        self.stems = nn.ModuleList(conv_bn_relu(c_in, width, 1) for _ in range(levels))

        def branch():
            return nn.Sequential(*[conv_bn_relu(width, width, 3) for _ in range(depth)])

        self.cls_convs = nn.ModuleList(branch() for _ in range(levels))
        self.reg_convs = nn.ModuleList(branch() for _ in range(levels))
        self.cls_preds = nn.ModuleList(nn.Conv2d(width, num_classes, 1) for _ in range(levels))
        self.reg_preds = nn.ModuleList(nn.Conv2d(width, 4, 1) for _ in range(levels))
        self.obj_preds = nn.ModuleList(nn.Conv2d(width, 1, 1) for _ in range(levels))
        b = -math.log((1 - prior) / prior)  # YOLOX: start with low object/class probability
        for m in list(self.cls_preds) + list(self.obj_preds):
            nn.init.constant_(m.bias, b)

    def forward(self, feats: Sequence[Tensor]) -> Tensor:
        outs = []
        for k, f in enumerate(feats):
            x = self.stems[k](f)
            c = self.cls_convs[k](x)
            r = self.reg_convs[k](x)
            o = torch.cat([self.reg_preds[k](r), self.obj_preds[k](r), self.cls_preds[k](c)], 1)
            outs.append(o.flatten(2).transpose(1, 2))
        return torch.cat(outs, 1)


def make_anchors(shapes: Sequence[tuple[int, int]], strides: Sequence[int]) -> Tensor:
    """Cell centres and strides ``[A, 3] = (cx, cy, s)`` for level maps ``(h, w)``."""
    rows = []
    for (h, w), s in zip(shapes, strides):
        ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32),
                                torch.arange(w, dtype=torch.float32), indexing="ij")
        st = torch.full((h * w,), float(s))
        rows.append(torch.stack([(xs.reshape(-1) + 0.5) * s, (ys.reshape(-1) + 0.5) * s, st], 1))
    return torch.cat(rows, 0)


def decode_boxes(reg: Tensor, anchors: Tensor) -> Tensor:
    """``reg [..., A, 4]`` (dx, dy, dw, dh) -> boxes ``[..., A, 4]`` (x1, y1, x2, y2) in pixels."""
    s = anchors[:, 2]
    cx = anchors[:, 0] + reg[..., 0] * s
    cy = anchors[:, 1] + reg[..., 1] * s
    w = torch.exp(reg[..., 2].clamp(max=8.0)) * s
    h = torch.exp(reg[..., 3].clamp(max=8.0)) * s
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1)


def box_iou(a: Tensor, b: Tensor) -> Tensor:
    """Pairwise IoU of ``a [N, 4]`` and ``b [M, 4]`` (x1, y1, x2, y2) -> ``[N, M]``."""
    area_a = (a[:, 2] - a[:, 0]).clamp(min=0) * (a[:, 3] - a[:, 1]).clamp(min=0)
    area_b = (b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(min=0)
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    return inter / (area_a[:, None] + area_b[None, :] - inter).clamp(min=1e-9)


def nms(boxes: Tensor, scores: Tensor, iou: float) -> Tensor:
    """Greedy non-maximum suppression: indices of kept ``boxes [N, 4]``, by falling score."""
    order = scores.argsort(descending=True)
    boxes = boxes[order]
    ious = box_iou(boxes, boxes)
    keep = torch.ones(len(order), dtype=torch.bool, device=boxes.device)
    for i in range(len(order)):
        if keep[i]:
            keep[i + 1:] &= ious[i, i + 1:] <= iou
    return order[keep]


def batched_nms(boxes: Tensor, scores: Tensor, classes: Tensor, iou: float) -> Tensor:
    """NMS within each class (boxes of different classes never suppress each other)."""
    if boxes.numel() == 0:
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    shift = classes.to(boxes.dtype)[:, None] * (boxes.max() - boxes.min() + 1.0)
    return nms(boxes + shift, scores, iou)


@torch.no_grad()
def decode(raw: Tensor, anchors: Tensor, num_classes: int, conf: float = 0.05,
           iou: float = 0.6, max_det: int = 100, pre_nms: int = 1000) -> list[Tensor]:
    """Raw head output ``[B, A, 5 + nc]`` -> per sample ``[k, 6]`` = (x1, y1, x2, y2, score,
    class), score = sigmoid(obj) * sigmoid(cls) of the best class, ``score > conf``,
    class-wise NMS at ``iou``, at most ``max_det`` by falling score."""
    boxes = decode_boxes(raw[..., :4], anchors)
    probs = torch.sigmoid(raw[..., 4:5]) * torch.sigmoid(raw[..., 5:5 + num_classes])
    score, cls = probs.max(-1)
    out = []
    for b in range(raw.shape[0]):
        m = score[b] > conf
        bx, sc, cl = boxes[b][m], score[b][m], cls[b][m]
        if sc.numel() > pre_nms:
            top = sc.topk(pre_nms).indices
            bx, sc, cl = bx[top], sc[top], cl[top]
        keep = batched_nms(bx, sc, cl, iou)[:max_det]
        out.append(torch.cat([bx[keep], sc[keep, None], cl[keep, None].to(bx.dtype)], 1))
    return out
