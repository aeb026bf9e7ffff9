"""Hybrid SNN-ANN event-camera detector (Ahmed, Finkbeiner, Neftci, CVPR 2025, arXiv 2403.10173).

A spiking backbone is stepped over the time bins of a window (a RecurrentModel: any memory
strategy runs it); the bridge turns the window's spike trains into a dense map once per
window; the ANN part and a YOLOX-style head predict boxes::

    outputs = st.unroll(model, x, strategy=...)   # x [T, B, 2, H, W] -> spikes [T, B, C, H/8, W/8]
    raw = model.detect(outputs)                    # [B, A, 5 + num_classes]
    loss = model.detection_loss(raw, targets)      # targets: B tensors [n_i, 5] (class, x, y, w, h)
    boxes = model.decode(raw)                      # B tensors [k, 6] (x1, y1, x2, y2, score, class)
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from ..base import RecurrentModel
from ..registry import register
from .backbone import DEFAULT_CHANNELS, DEFAULT_STRIDES, SpikingBackbone, conv_out
from .bridge import build_bridge
from .head import ANNPart, YOLOXHead, decode, make_anchors
from .loss import detection_loss


def _scaled(c: int, width: float) -> int:
    return max(1, int(round(c * width)))


@register("hybrid_detector")
class HybridDetector(RecurrentModel):
    """Hybrid SNN-ANN detector. State: the backbone's membrane maps ``(v_1, ..., v_4)``.

    Args:
        num_classes: object classes (Gen1: car, pedestrian).
        input_size: ``(H, W)`` of the event histograms ``[T, B, in_channels, H, W]``.
        bins: time bins per detection window (the attention bridge is built for it).
        width: multiplier of the paper's widths (backbone 64-128-256-256, ANN and head 256);
            ``channels`` / ``ann_width`` / ``head_width`` override them one by one.
        bridge: ``"attention"`` (SAT + ERS) or ``"naive"`` (sum over time).
        norm: backbone normalisation, ``"batch"`` (per-step batch statistics, no running
            statistics, see :mod:`.plif`), ``"group"`` or ``"none"``.
        init_tau, v_threshold, surrogate: PLIF neurons.
        head_depth: 3x3 convolutions per head branch; iou_weight, center_radius: the loss.
    """

    takes_sparse_input = False  # strategies hand dense windows [t1 - t0, B, 2, H, W]

    def __init__(self, num_classes: int = 2, input_size: Sequence[int] = (64, 64),
                 bins: int = 10, in_channels: int = 2, width: float = 1.0,
                 channels: Sequence[int] | None = None, ann_width: int | None = None,
                 head_width: int | None = None, head_depth: int = 2,
                 strides: Sequence[int] = DEFAULT_STRIDES, bridge: str = "attention",
                 norm: str = "batch", init_tau: float = 2.0, v_threshold: float = 1.0,
                 surrogate: str = "atan", iou_weight: float = 5.0, center_radius: float = 2.5):
        super().__init__()
        if len(input_size) != 2 or min(int(s) for s in input_size) <= 0:
            raise ValueError(f"input_size must be (H, W), got {input_size!r}")
        if int(bins) <= 0 or int(num_classes) <= 0:
            raise ValueError(f"bins and num_classes must be positive, got {bins}, {num_classes}")
        chans = tuple(int(c) for c in channels) if channels else tuple(
            _scaled(c, width) for c in DEFAULT_CHANNELS)
        ann = int(ann_width) if ann_width else _scaled(256, width)
        hw = int(head_width) if head_width else ann
        self.num_classes, self.bins = int(num_classes), int(bins)
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.iou_weight, self.center_radius = float(iou_weight), float(center_radius)
        self.bridge_kind = bridge
        self.backbone = SpikingBackbone(in_channels, self.input_size, chans, strides, norm,
                                        init_tau, v_threshold, surrogate)
        self.bridge = build_bridge(bridge, self.bins, self.backbone.out_channels)
        self.ann = ANNPart(self.backbone.out_channels, ann)
        self.head = YOLOXHead(ann, hw, self.num_classes, levels=3, depth=head_depth)
        _, h, w = self.backbone.state_shapes[-1]
        shapes = [(h, w)]
        for _ in range(2):
            h, w = conv_out(h, 2), conv_out(w, 2)
            shapes.append((h, w))
        s = self.backbone.stride
        self.strides = (s, 2 * s, 4 * s)
        self.level_shapes = shapes
        self.register_buffer("anchors", make_anchors(shapes, self.strides), persistent=False)

    # --- the recurrent part (what memory strategies run) ----------------------------------------
    def init_state(self, batch_size: int):
        """Zero membranes ``v_k [B, C_k, H_k, W_k]`` of the four backbone blocks."""
        return self.backbone.init_state(batch_size, self.anchors)

    def step(self, state, x_t: Tensor):
        """One bin ``x_t [B, 2, H, W] -> (state, spikes [B, C, H/8, W/8])``. Pure."""
        return self.backbone.step(state, x_t)

    # --- once per window ---------------------------------------------------------------------------
    def features(self, outputs: Tensor) -> list[Tensor]:
        """Backbone spikes ``[T, B, C, H', W']`` -> bridge -> ANN features at strides 8, 16, 32."""
        return self.ann(self.bridge(outputs))

    def detect(self, outputs: Tensor) -> Tensor:
        """Backbone spikes ``[T, B, C, H', W']`` -> raw head output ``[B, A, 5 + num_classes]``
        (see :mod:`.head` for the layout)."""
        raw = self.head(self.features(outputs))
        if raw.shape[1] != self.anchors.shape[0]:
            raise ValueError(f"head gave {raw.shape[1]} cells but input_size {self.input_size} "
                             f"implies {self.anchors.shape[0]}: inputs must be {self.input_size}")
        return raw

    def detection_loss(self, raw: Tensor, targets: Sequence[Tensor]) -> Tensor:
        """Scalar loss for B target tensors ``[n_i, 5]`` = (class, x, y, w, h), (x, y) the
        top-left corner in input pixels (see :mod:`.loss`)."""
        return detection_loss(raw, targets, self.anchors, self.num_classes, self.strides,
                              self.iou_weight, self.center_radius)

    def decode(self, raw: Tensor, conf: float = 0.05, iou: float = 0.6,
               max_det: int = 100) -> list[Tensor]:
        """Raw head output -> B tensors ``[k, 6]`` = (x1, y1, x2, y2, score, class) after NMS."""
        return decode(raw.detach(), self.anchors.to(raw.device, raw.dtype), self.num_classes,
                      conf, iou, max_det)

    def spike_rates(self, inputs: Tensor) -> list[float]:
        """Spike rate of each backbone block over ``inputs [T, B, 2, H, W]`` (no grad)."""
        return self.backbone.spike_rates(inputs)
