"""``detection``: boxes from an event window, the detector's loss, COCO mAP.

Batches ``(x [T, B, 2, H, W], targets)`` with ``targets`` a list of ``B`` float tensors
``[n_i, 5]`` = ``(class, x, y, w, h)`` (top-left corner, input-grid pixels; ``n_i`` may be 0).
The model brings the detection maths (``spiketrain.models.detector``)::

    raw = model.detect(outputs)                 # outputs [T, B, ...] -> raw head output
    loss = model.detection_loss(raw, targets)   # scalar
    dets = model.decode(raw)                    # B tensors [k, 6] = (x1, y1, x2, y2, score, class)

Metrics: COCO mAP@[.5:.95] (``map``) and mAP@.5 (``map50``) by pycocotools over every
image the metrics saw (:mod:`.detection_coco`). e-prop has no per-step loss here: the head
sees the whole window once.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .base import Task
from .detection_coco import DetectionMetrics, coco_map
from .registry import register_task

__all__ = ["Detection", "DetectionMetrics", "coco_map"]

_NEEDS = ("detect", "detection_loss", "decode")


@register_task("detection")
class Detection(Task):
    """Object detection on event windows (Gen1-style): the model's detection loss, COCO mAP.

    Args:
        conf, iou, max_det: decoding options passed to ``model.decode`` (score threshold,
            NMS IoU, detections per image) when the model accepts them.
        n_classes: classes scored by COCO eval (None: those in the ground truth, or the
            model's ``num_classes`` once :meth:`check` saw it).
    """

    metric_names = ("map", "map50")
    main_metric = "map50"

    def __init__(self, conf: float = 0.05, iou: float = 0.6, max_det: int = 100,
                 n_classes: int | None = None):
        if not 0 <= conf < 1 or not 0 < iou <= 1 or int(max_det) <= 0:
            raise ValueError(f"need 0 <= conf < 1, 0 < iou <= 1, max_det > 0; got conf={conf}, "
                             f"iou={iou}, max_det={max_det}")
        self.conf, self.iou, self.max_det = float(conf), float(iou), int(max_det)
        self.n_classes = int(n_classes) if n_classes else None
        self._cache: tuple[Tensor, Any] | None = None

    # ------------------------------------------------------------ batch layout
    def split(self, batch):
        x, targets = super().split(batch)
        if isinstance(targets, Tensor) or not isinstance(targets, (list, tuple)):
            raise ValueError(f"detection needs a list of per-sample box tensors [n_i, 5] "
                             f"(class, x, y, w, h); got {type(targets).__name__}")
        if len(targets) != int(x.shape[1]):
            raise ValueError(f"detection: {len(targets)} box tensors for a batch of "
                             f"{int(x.shape[1])} inputs")
        out = []
        for i, t in enumerate(targets):
            t = torch.as_tensor(t, dtype=torch.float32)
            if t.numel() == 0:
                t = t.reshape(0, 5)
            if t.dim() != 2 or t.shape[1] != 5:
                raise ValueError(f"detection target {i} has shape {tuple(t.shape)}; boxes are "
                                 f"[n, 5] rows (class, x, y, w, h)")
            out.append(t)
        return x, out

    def batch_size(self, inputs, targets) -> int:
        return len(targets)

    def check(self, model, data) -> None:
        missing = [n for n in _NEEDS if not callable(getattr(model, n, None))]
        if missing:
            raise ValueError(f"task detection needs a detector model with {', '.join(_NEEDS)} "
                             f"(e.g. model: hybrid_detector); {type(model).__name__} lacks "
                             f"{', '.join(missing)}")
        nc_model = getattr(model, "num_classes", None)
        nc_data = getattr(data, "n_classes", None)
        if nc_model is not None and nc_data is not None and int(nc_model) < int(nc_data):
            raise ValueError(f"model.num_classes={nc_model} but the data has {nc_data} classes; "
                             f"set model.num_classes: {nc_data}")
        size, shape = getattr(model, "input_size", None), getattr(data, "shape", None)
        if size is not None and shape is not None and tuple(size) != tuple(shape[-2:]):
            raise ValueError(f"model.input_size={list(size)} but the data's grid is "
                             f"{list(shape[-2:])} (H, W); set model.input_size: "
                             f"{list(shape[-2:])}")
        bins, T = getattr(model, "bins", None), getattr(data, "T", None)
        if bins is not None and T is not None and int(bins) != int(T):
            raise ValueError(f"model.bins={bins} but the data has {T} bins per window; set "
                             f"model.bins: {T}")
        if self.n_classes is None and nc_model is not None:
            self.n_classes = int(nc_model)

    # ------------------------------------------------------------ loss and metrics
    def _raw(self, model, outputs):
        return model.detect(outputs)

    def loss(self, model, outputs, targets) -> Tensor:
        """``model.detection_loss(model.detect(outputs), targets)`` (a scalar)."""
        raw = self._raw(model, outputs)
        if isinstance(outputs, Tensor) and isinstance(raw, Tensor):
            self._cache = (outputs.detach(), raw.detach())   # reused by predict on this batch
        loss = model.detection_loss(raw, targets)
        if isinstance(loss, dict):
            loss = loss["loss"]
        return loss

    def predict(self, model, outputs) -> list[Tensor]:
        """B tensors ``[k, 6]`` = (x1, y1, x2, y2, score, class), from ``model.decode``."""
        raw = None
        if self._cache is not None and isinstance(outputs, Tensor):
            ref, cached = self._cache
            if (ref.data_ptr() == outputs.data_ptr() and ref.shape == outputs.shape
                    and ref.stride() == outputs.stride() and ref.device == outputs.device):
                raw = cached
        self._cache = None
        if raw is None:
            with torch.no_grad():
                raw = self._raw(model, outputs)
        try:
            return model.decode(raw, conf=self.conf, iou=self.iou, max_det=self.max_det)
        except TypeError:            # a decode without these options
            return model.decode(raw)

    def new_metrics(self) -> DetectionMetrics:
        return DetectionMetrics(self.n_classes, self.max_det)

    def __repr__(self) -> str:
        return f"Detection(conf={self.conf}, iou={self.iou}, max_det={self.max_det})"
