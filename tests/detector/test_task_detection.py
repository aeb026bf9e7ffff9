"""The detection task: COCO mAP through pycocotools, the metric state, the task's calls."""
import math

import pytest
import torch
import torch.nn.functional as F

from spiketrain.models.base import RecurrentModel
from spiketrain.trainer.tasks import get_task
from spiketrain.trainer.tasks.detection import Detection, DetectionMetrics, coco_map


def as_dets(gt, score=1.0, dx=0.0):
    """Ground truth ``[n, 5]`` (class, x, y, w, h) -> detections ``[n, 6]``, shifted by dx."""
    c, x, y, w, h = gt.unbind(1)
    return torch.stack([x + dx, y, x + w + dx, y + h, torch.full_like(x, score), c], 1)


GT = [torch.tensor([[0, 10, 10, 20, 10], [1, 30, 5, 8, 20]], dtype=torch.float32),
      torch.tensor([[0, 2, 2, 16, 8]], dtype=torch.float32),
      torch.zeros(0, 5)]


def test_ground_truth_as_predictions_scores_one():
    m = coco_map([as_dets(g) for g in GT], GT, n_classes=2)
    assert m["map"] == pytest.approx(1.0) and m["map50"] == pytest.approx(1.0)


def test_shifted_boxes_score_less():
    # shift by 2 px: IoU of the 20x10 box 18/22 = 0.82, of the 8x20 box 6/10 = 0.6,
    # of the 16x8 box 14/18 = 0.78: all count at IoU .5, not at the stricter thresholds
    m = coco_map([as_dets(g, dx=2.0) for g in GT], GT, n_classes=2)
    assert m["map50"] == pytest.approx(1.0)
    assert 0.2 < m["map"] < 0.9
    # shifted by 6 px: the 8-px-wide box is missed at every threshold (IoU 2/14)
    far = coco_map([as_dets(g, dx=6.0) for g in GT], GT, n_classes=2)
    assert far["map50"] < m["map50"] and far["map"] < m["map"]
    # right boxes, wrong classes: nothing matches
    wrong = [as_dets(g) for g in GT]
    for d in wrong:
        d[:, 5] = 1 - d[:, 5]
    assert coco_map(wrong, GT, n_classes=2)["map50"] == 0.0


def test_false_positive_ranked_above_lowers_precision():
    extra = [torch.cat([as_dets(g, score=0.5), torch.tensor([[60, 60, 70, 70, 0.9, 0.0]])])
             for g in GT[:2]] + [as_dets(GT[2])]
    m = coco_map(extra, GT, n_classes=2)
    assert m["map50"] < 1.0


def test_empty_cases():
    assert math.isnan(coco_map([torch.zeros(0, 6)], [torch.zeros(0, 5)])["map"])
    assert coco_map([torch.zeros(0, 6)], [GT[0]])["map50"] == 0.0


def test_metrics_merge_equals_one_accumulator():
    preds = [as_dets(g, dx=1.0) for g in GT]
    whole = DetectionMetrics(n_classes=2)
    whole.update(preds, GT)
    a, b = DetectionMetrics(n_classes=2), DetectionMetrics(n_classes=2)
    a.update(preds[:1], GT[:1])
    b.update(preds[1:], GT[1:])
    state = b.state_dict()
    assert all(isinstance(v, list) for v in state.values())     # plain lists: gatherable
    a.merge(state)
    assert a.compute() == whole.compute()
    c = DetectionMetrics(n_classes=2)
    c.load_state_dict(a.state_dict())
    assert c.compute() == whole.compute()


class StandIn(RecurrentModel):
    """A tiny detector with the task's model API: one conv per bin, mean over time, a 1x1
    conv giving (dx, dy, log w, log h, obj, cls...) per cell of stride 4."""

    def __init__(self, num_classes=2, input_size=(16, 24), bins=4):
        super().__init__()
        self.num_classes, self.input_size, self.bins = num_classes, tuple(input_size), bins
        self.conv = torch.nn.Conv2d(2, 8, 4, stride=4)
        self.out = torch.nn.Conv2d(8, 5 + num_classes, 1)
        self.detect_calls = 0

    def init_state(self, batch_size):
        return torch.zeros(batch_size, 1)

    def step(self, state, x_t):
        return state, torch.relu(self.conv(x_t))

    def detect(self, outputs):
        self.detect_calls += 1
        raw = self.out(outputs.mean(0))                       # [B, 5 + C, h, w]
        return raw.flatten(2).transpose(1, 2)                 # [B, A, 5 + C]

    def _cells(self, raw):
        h, w = self.input_size[0] // 4, self.input_size[1] // 4
        ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        return (xs.flatten() * 4 + 2.0), (ys.flatten() * 4 + 2.0)

    def detection_loss(self, raw, targets):
        cx, cy = self._cells(raw)
        loss = raw.new_zeros(())
        obj_t = torch.zeros(raw.shape[:2])
        for b, t in enumerate(targets):
            for c, x, y, w, h in t.tolist():
                a = int((y + h / 2) // 4) * (self.input_size[1] // 4) + int((x + w / 2) // 4)
                obj_t[b, a] = 1
                reg = torch.tensor([(x + w / 2 - cx[a]) / 4, (y + h / 2 - cy[a]) / 4,
                                    math.log(w / 4), math.log(h / 4)])
                loss = loss + F.l1_loss(raw[b, a, :4], reg) + \
                    F.binary_cross_entropy_with_logits(raw[b, a, 5 + int(c)], torch.tensor(1.0))
        return loss / max(1, len(targets)) + F.binary_cross_entropy_with_logits(raw[..., 4], obj_t)

    def decode(self, raw, conf=0.05, iou=0.6, max_det=100):
        cx, cy = self._cells(raw)
        out = []
        for r in raw.detach():
            x = cx + r[:, 0] * 4
            y = cy + r[:, 1] * 4
            w, h = torch.exp(r[:, 2]) * 4, torch.exp(r[:, 3]) * 4
            score, cls = (torch.sigmoid(r[:, 4:5]) * torch.sigmoid(r[:, 5:])).max(1)
            d = torch.stack([x - w / 2, y - h / 2, x + w / 2, y + h / 2, score, cls.float()], 1)
            d = d[score > conf]
            out.append(d[d[:, 4].argsort(descending=True)][:max_det])
        return out


def batch(B=3, T=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(T, B, 2, 16, 24, generator=g) < 0.1).float()
    targets = [torch.tensor([[b % 2, 2.0 + b, 3.0, 8.0, 6.0]]) for b in range(B)]
    return x, targets


def test_task_calls_the_model_api():
    task = get_task("detection")
    assert isinstance(task, Detection)
    assert task.metric_names == ("map", "map50") and task.main_metric == "map50"
    model = StandIn()
    x, targets = task.split(batch())
    assert task.batch_size(x, targets) == 3
    outputs = model(x)                                      # [T, B, 8, 4, 6]
    loss = task.loss(model, outputs, targets)
    ref = model.detection_loss(model.detect(outputs), targets)
    torch.testing.assert_close(loss, ref)
    loss.backward()
    assert model.conv.weight.grad is not None
    calls = model.detect_calls
    with torch.no_grad():
        preds = task.predict(model, outputs.detach())        # reuses the loss's head output
    assert model.detect_calls == calls
    assert len(preds) == 3 and all(p.shape[1] == 6 for p in preds)
    preds2 = task.predict(model, outputs)                    # no cached head output: runs it
    assert model.detect_calls == calls + 1
    for p, q in zip(preds, preds2):
        torch.testing.assert_close(p, q)
    m = task.new_metrics()
    m.update(preds, targets)
    assert set(m.compute()) == {"map", "map50"}


def test_split_and_check_refuse_bad_input():
    task = Detection()
    x, targets = batch()
    with pytest.raises(ValueError, match="list of per-sample box tensors"):
        task.split((x, torch.zeros(3)))
    with pytest.raises(ValueError, match="2 box tensors for a batch of 3"):
        task.split((x, targets[:2]))
    with pytest.raises(ValueError, match=r"\[n, 5\]"):
        task.split((x, [torch.zeros(1, 4)] * 3))
    assert task.split((x, [torch.zeros(0)] * 3))[1][0].shape == (0, 5)

    class Data:
        n_classes, shape, T = 2, (2, 16, 24), 4

    task.check(StandIn(), Data())
    assert task.n_classes == 2
    with pytest.raises(ValueError, match="input_size"):
        task.check(StandIn(input_size=(32, 32)), Data())
    with pytest.raises(ValueError, match="bins"):
        task.check(StandIn(bins=5), Data())
    with pytest.raises(ValueError, match="num_classes"):
        task.check(StandIn(num_classes=1), Data())
    with pytest.raises(ValueError, match="detect, detection_loss, decode"):
        task.check(torch.nn.Linear(2, 2), Data())
    with pytest.raises(ValueError):
        Detection(conf=1.5)


def test_perfect_head_scores_one_through_the_task():
    """Raw head output built from the ground truth decodes to boxes with mAP 1.0."""
    model, task = StandIn(), Detection()
    _, targets = batch()
    cx, cy = model._cells(None)
    raw = torch.full((3, len(cx), 7), -20.0)
    for b, t in enumerate(targets):
        for c, x, y, w, h in t.tolist():
            a = int((y + h / 2) // 4) * 6 + int((x + w / 2) // 4)
            raw[b, a, :4] = torch.tensor([(x + w / 2 - cx[a]) / 4, (y + h / 2 - cy[a]) / 4,
                                          math.log(w / 4), math.log(h / 4)])
            raw[b, a, 4] = raw[b, a, 5 + int(c)] = 20.0
    model.detect = lambda outputs: raw
    m = task.new_metrics()
    m.update(task.predict(model, torch.zeros(1)), targets)
    assert m.compute()["map"] == pytest.approx(1.0)
