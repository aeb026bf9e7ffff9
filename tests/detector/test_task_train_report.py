"""End to end on tiny synthetic events: config -> Trainer (task detection) -> run folder ->
the boxes picture."""
import numpy as np
import pytest
import torch

import spiketrain.models.detector  # noqa: E402,F401  (registers hybrid_detector)
from spiketrain.launch.build import build_trainer  # noqa: E402
from spiketrain.launch.config import validate  # noqa: E402
from spiketrain.launch.report_boxes import draw_detections, event_frame  # noqa: E402


def tiny_config(cache, out):
    return validate({
        "model": {"name": "hybrid_detector", "num_classes": 2, "input_size": [24, 32],
                  "bins": 4, "width": 0.0625},
        "data": {"kind": "events", "width": 64, "height": 48, "downsample": 2, "bins": 4,
                 "n_train": 1, "n_test": 1, "duration_s": 1.2, "max_objects": 2,
                 "min_box_diag": 0, "min_box_side": 0, "skip_first_s": 0.2,
                 "max_samples": 16, "cache_dir": str(cache)},
        "task": "detection",
        "strategy": "checkpoint",
        "trainer": {"epochs": 1, "batch_size": 8, "lr": 0.002, "out_dir": str(out),
                    "progress": False, "threads": 1},
    })


def test_train_then_draw_boxes(tmp_path):
    cfg = tiny_config(tmp_path / "cache", tmp_path / "run")
    assert cfg.task.name == "detection"
    trainer = build_trainer(cfg)
    (tmp_path / "run").mkdir(exist_ok=True)
    import yaml
    (tmp_path / "run" / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict()))
    trainer.fit()
    row = trainer.metrics.rows[-1]
    for k in ("train_map", "train_map50", "test_map", "test_map50"):
        assert k in row and (np.isnan(row[k]) or 0.0 <= row[k] <= 1.0)
    assert np.isfinite(row["train_loss"])
    from spiketrain.launch.cli import main as cli_main
    assert cli_main(["report", str(tmp_path / "run"), "--plots", str(tmp_path / "rep")]) == 0
    assert (tmp_path / "rep" / "boxes.png").stat().st_size > 0   # report draws the boxes too
    png = draw_detections(tmp_path / "run", out_png=tmp_path / "boxes.png", n=3, conf=0.0)
    import matplotlib.image as mpimg
    img = mpimg.imread(png)
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100
    assert img[..., :3].std() > 0.05                     # not a blank canvas


def test_draw_with_model_and_dataset(tmp_path):
    cfg = tiny_config(tmp_path / "cache", tmp_path / "run")
    from spiketrain.launch.build import build_data, build_model
    model = build_model(cfg)
    _, test = build_data(cfg)
    out = draw_detections(model, test, tmp_path / "p" / "b.png", indices=[0, 1])
    assert out.is_file() and out.stat().st_size > 5000
    with pytest.raises(ValueError, match="needs the dataset"):
        draw_detections(model, None, tmp_path / "x.png")
    x, _ = test.get_batch([0])
    frame = event_frame(x[:, 0])
    assert frame.shape == (24, 32) and frame.sum() == float((x[:, 0, 1] - x[:, 0, 0]).sum())
    assert torch.is_tensor(x)
