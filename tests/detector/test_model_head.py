"""Head, loss, assignment, NMS and decoding; the head overfits a fixed batch."""
import pytest
import torch

from spiketrain.models.detector import HybridDetector, assign, batched_nms, box_iou, giou, make_anchors, nms
from spiketrain.models.detector.loss import xywh_to_xyxy


def test_nms_and_batched_nms():
    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 9.0]])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.95])
    keep = nms(boxes, scores, 0.5)
    assert keep.tolist() == [3, 2]
    classes = torch.tensor([0, 1, 0, 0])
    assert sorted(batched_nms(boxes, scores, classes, 0.5).tolist()) == [1, 2, 3]
    assert torch.allclose(box_iou(boxes[:1], boxes[1:2]), torch.tensor([[81 / 119]]))


def test_giou():
    a = torch.tensor([[0, 0, 2, 2.0], [0, 0, 1, 1.0]])
    b = torch.tensor([[0, 0, 2, 2.0], [2, 0, 3, 1.0]])
    assert torch.allclose(giou(a, b), torch.tensor([1.0, -1.0 / 3.0]))


def test_assignment_levels_and_nearest_cell():
    anchors = make_anchors([(8, 8), (4, 4), (2, 2)], (8, 16, 32))
    gt = xywh_to_xyxy(torch.tensor([[3.0, 3.0, 4.0, 4.0],       # tiny: no cell centre inside
                                    [0.0, 0.0, 64.0, 60.0],    # large: stride 16
                                    [20.0, 20.0, 24.0, 24.0]]))  # stride 8
    idx = assign(anchors, gt, (8, 16, 32))
    s = anchors[:, 2]
    assert int((idx == 0).sum()) == 1 and float(s[idx == 0][0]) == 8
    assert bool((s[idx == 1] == 16).all()) and int((idx == 1).sum()) > 1
    assert bool((s[idx == 2] == 8).all()) and int((idx == 2).sum()) >= 4
    assert bool((assign(anchors, torch.zeros(0, 4), (8, 16, 32)) == -1).all())


@pytest.fixture
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)   # tiny convolutions: threads only add overhead on a shared machine
    yield
    torch.set_num_threads(n)


def test_head_overfits_fixed_batch_and_decode_recovers_boxes(one_thread):
    torch.manual_seed(0)
    model = HybridDetector(input_size=(64, 64), bins=4, channels=(8, 8, 16, 16), ann_width=16,
                           head_depth=1)
    targets = [torch.tensor([[0, 6.0, 8.0, 24.0, 14.0], [1, 40.0, 30.0, 10.0, 22.0]]),
               torch.tensor([[1, 20.0, 36.0, 12.0, 20.0]])]
    x = torch.zeros(4, 2, 2, 64, 64)
    for b, tgt in enumerate(targets):       # events on the box edges
        for c, bx, by, bw, bh in tgt.tolist():
            x0, y0, x1, y1 = int(bx), int(by), int(bx + bw) - 1, int(by + bh) - 1
            x[:, b, int(c), y0:y1 + 1, x0] = x[:, b, int(c), y0:y1 + 1, x1] = 1
            x[:, b, int(c), y0, x0:x1 + 1] = x[:, b, int(c), y1, x0:x1 + 1] = 1
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    losses = []
    for _ in range(150):
        opt.zero_grad()
        loss = model.detection_loss(model.detect(model(x)), targets)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] / 10, (losses[0], losses[-1])
    with torch.no_grad():
        dets = model.decode(model.detect(model(x)), conf=0.3, iou=0.5)
    for d, tgt in zip(dets, targets):
        gt = xywh_to_xyxy(tgt[:, 1:])
        for g, c in zip(gt, tgt[:, 0]):
            match = d[d[:, 5] == c]
            assert len(match) > 0
            assert float(box_iou(g[None], match[:, :4]).max()) > 0.6
        assert len(d) <= 2 * len(tgt)
