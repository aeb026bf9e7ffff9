"""COCO mAP of box detections through pycocotools (the reference evaluator).

Ground truth per image: float ``[n, 5]`` rows ``(class, x, y, w, h)`` (top-left corner,
pixels). Detections per image: float ``[k, 6]`` rows ``(x1, y1, x2, y2, score, class)``.
``map`` is COCO mAP@[.5:.95] (``stats[0]``), ``map50`` mAP@.5 (``stats[1]``), both over
all areas with at most ``max_dets`` detections per image.
"""
from __future__ import annotations

import contextlib
import io
import math
from typing import Sequence

import numpy as np
import torch

from .base import Metrics


def _rows(a, width: int) -> list[list[float]]:
    if a is None:
        return []
    if isinstance(a, torch.Tensor):
        a = a.detach().to("cpu", torch.float64).numpy()
    a = np.asarray(a, dtype=np.float64).reshape(-1, width)
    return a.tolist()


def coco_map(detections: Sequence, ground_truth: Sequence, n_classes: int | None = None,
             max_dets: int = 100) -> dict[str, float]:
    """``{"map": mAP@[.5:.95], "map50": mAP@.5}`` of ``detections[i]`` ``[k, 6]`` against
    ``ground_truth[i]`` ``[n, 5]`` (one entry per image). NaN when there is no ground truth;
    0.0 when there are no detections."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gts = [_rows(g, 5) for g in ground_truth]
    dets = [_rows(d, 6) for d in detections]
    if len(gts) != len(dets):
        raise ValueError(f"{len(dets)} detection lists for {len(gts)} images")
    classes = {int(r[0]) for g in gts for r in g}
    if n_classes:
        classes |= set(range(int(n_classes)))
    anns, n_ann = [], 0
    for img, g in enumerate(gts):
        for c, x, y, w, h in g:
            n_ann += 1
            anns.append({"id": n_ann, "image_id": img, "category_id": int(c),
                         "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0})
    if not anns:
        return {"map": math.nan, "map50": math.nan}
    results = [{"image_id": img, "category_id": int(c), "bbox": [x1, y1, x2 - x1, y2 - y1],
                "score": s}
               for img, d in enumerate(dets) for x1, y1, x2, y2, s, c in d]
    if not results:
        return {"map": 0.0, "map50": 0.0}
    gt = COCO()
    gt.dataset = {"images": [{"id": i} for i in range(len(gts))], "annotations": anns,
                  "categories": [{"id": c} for c in sorted(classes)]}
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
        dt = gt.loadRes(results)
        ev = COCOeval(gt, dt, "bbox")
        ev.params.maxDets = [1, 10, int(max_dets)]
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    # -1 marks "no ground truth for this setting" in pycocotools
    return {name: (float(v) if v >= 0 else math.nan)
            for name, v in (("map", ev.stats[0]), ("map50", ev.stats[1]))}


class DetectionMetrics(Metrics):
    """Collects detections and ground truth of every image; :meth:`compute` runs COCO eval.

    The state is two plain lists of per-image row lists, so data-parallel ranks gather and
    :meth:`merge` them before computing.
    """

    def __init__(self, n_classes: int | None = None, max_dets: int = 100):
        self.n_classes, self.max_dets = n_classes, int(max_dets)
        self.detections: list[list[list[float]]] = []
        self.ground_truth: list[list[list[float]]] = []

    def update(self, preds, targets) -> None:
        """``preds``: list of ``[k, 6]`` per image; ``targets``: list of ``[n, 5]``."""
        if preds is None:
            return
        if len(preds) != len(targets):
            raise ValueError(f"{len(preds)} detection lists for {len(targets)} images")
        self.detections += [_rows(d, 6) for d in preds]
        self.ground_truth += [_rows(g, 5) for g in targets]

    def compute(self) -> dict[str, float]:
        if not self.ground_truth:
            return {"map": math.nan, "map50": math.nan}
        return coco_map(self.detections, self.ground_truth, self.n_classes, self.max_dets)

    def state_dict(self) -> dict:
        return {"detections": [list(map(list, d)) for d in self.detections],
                "ground_truth": [list(map(list, g)) for g in self.ground_truth]}

    def load_state_dict(self, state: dict) -> None:
        self.detections = [list(map(list, d)) for d in state.get("detections", [])]
        self.ground_truth = [list(map(list, g)) for g in state.get("ground_truth", [])]

    def merge(self, state: dict) -> None:
        self.detections += [list(map(list, d)) for d in state.get("detections", [])]
        self.ground_truth += [list(map(list, g)) for g in state.get("ground_truth", [])]
