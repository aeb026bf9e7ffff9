"""Tasks: a user task defined here trains through Trainer.fit and the CLI with no Trainer
change; its metric reaches the Parquet rows; bad task specs are refused in one line."""
import math

import pyarrow.parquet as pq
import pytest
import torch
import torch.nn.functional as F

from spiketrain.launch.cli import main as cli_main
from spiketrain.trainer import Trainer
from spiketrain.trainer.tasks import MeanMetric, Task, get_task

from .conftest import small_model

FAST = dict(lr=0.01, batch_size=16, clip_grad=1.0, progress=False, verbose=False, threads=1)


class MAE(MeanMetric):
    def __init__(self):
        super().__init__("mae")

    def update(self, preds, targets):
        self.add("mae", float((preds - targets).abs().mean(-1).sum()), int(targets.shape[0]))


class Regression(Task):
    """Regress a target vector ``scale * one_hot(label)`` from the time-mean readout."""

    metric_names = ("mae",)
    main_metric = "mae"
    lower_is_better = ("mae",)

    def __init__(self, scale: float = 1.0, n_out: int = 4):
        self.scale, self.n_out = float(scale), int(n_out)

    def split(self, batch):
        x, labels = batch
        return x, self.scale * F.one_hot(labels, self.n_out).float()

    def loss(self, model, outputs, targets):
        return F.mse_loss(self.predict(model, outputs), targets)

    def predict(self, model, outputs):
        return outputs.mean(0)

    def new_metrics(self):
        return MAE()


def test_user_task_trains_through_trainer_fit(small_data, tmp_path):
    task = Regression(scale=2.0)
    first = Trainer(small_model(), small_data, task=task, epochs=1, out_dir=tmp_path / "a",
                    **FAST).fit()
    row = Trainer(small_model(), small_data, task=task, epochs=4, out_dir=tmp_path / "b",
                  **FAST).fit()
    assert "test_acc" not in row and "train_acc" not in row
    # the untrained readout is far from 2 * one-hot; training brings the error down
    assert row["test_mae"] < first["test_mae"] and row["test_mae"] < 0.35, row
    cols = set(pq.read_table(tmp_path / "b" / "metrics.parquet").column_names)
    assert {"train_loss", "train_mae", "test_loss", "test_mae"} <= cols


def test_user_task_by_class_path_in_a_config(write_cfg, tmp_path, capsys):
    path = write_cfg(f"task: {{class: '{__name__}:Regression', scale: 2.0}}\n")
    out = tmp_path / "run"
    assert cli_main(["train", str(path), "--out", str(out), "--set", "trainer.epochs=2"]) == 0
    rows = pq.read_table(out / "metrics.parquet").to_pylist()
    assert len(rows) == 2 and all(math.isfinite(r["test_mae"]) for r in rows)
    assert "final test mae" in capsys.readouterr().out


@pytest.mark.parametrize("spec, msg", [
    ({"class": "os:system"}, "not a task"),
    ({"class": "collections:OrderedDict"}, "not a task"),
    ("no_such_task", "unknown task"),
])
def test_bad_task_specs_are_refused(spec, msg):
    with pytest.raises(ValueError, match=msg):
        get_task(spec)


def test_online_strategy_with_a_task_without_step_loss_is_refused(small_data, tmp_path):
    t = Trainer(small_model(), small_data, task=Regression(), strategy="eprop", epochs=1,
                out_dir=tmp_path, **FAST)
    with pytest.raises(ValueError, match="per-step loss"):
        t.fit()


def test_classification_eprop_accuracy_comes_from_the_result_not_the_strategy(small_data,
                                                                              tmp_path):
    t = Trainer(small_model(), small_data, strategy="eprop", epochs=1, out_dir=tmp_path, **FAST)
    row = t.fit()
    assert 0.0 <= row["train_acc"] <= 1.0
    assert not hasattr(t.strategy, "logits") and not hasattr(t.strategy, "targets")
