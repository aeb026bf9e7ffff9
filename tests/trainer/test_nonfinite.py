"""The non-finite guard: a NaN/inf loss or gradient norm stops training before the update and
before any snapshot (the last good snapshot stays intact), or skips the batch on request."""
import math

import pytest
import torch

from spiketrain.launch.cli import main
from spiketrain.trainer import Trainer, read_metrics
from spiketrain.trainer.guard import NonFiniteError, NonFiniteGuard
from spiketrain.trainer.tasks.classification import Classification

from .conftest import small_model

FAST = dict(lr=0.01, batch_size=16, progress=False, verbose=False, threads=1)


class NaNLossAt(Classification):
    """Classification whose loss is NaN at the given (1-based) training calls."""

    def __init__(self, bad=(3,)):
        self.bad, self.calls = set(bad), 0

    def loss(self, model, outputs, targets):
        loss = super().loss(model, outputs, targets)
        if torch.is_grad_enabled():
            self.calls += 1
            if self.calls in self.bad:
                return loss * float("nan")
        return loss


def _weights(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_stop_keeps_last_good_snapshot(small_data, tmp_path):
    model = small_model()
    trainer = Trainer(model, small_data, epochs=1, out_dir=tmp_path, snapshot_every=1,
                      task=NaNLossAt(bad=(3,)), **FAST)
    with pytest.raises(NonFiniteError) as err:
        trainer.fit()
    msg = str(err.value)
    assert "\n" not in msg and "step 3" in msg and "trainer.lr" in msg and "clip_grad" in msg
    assert trainer.global_step == 2                   # the bad batch made no update
    snap = torch.load(tmp_path / "snapshot.pt", weights_only=True)
    assert snap["global_step"] == 2                   # the snapshot of step 2 is the last one
    for k, v in _weights(model).items():              # and it holds the weights as they are
        assert torch.isfinite(v).all() and torch.equal(snap["model"][k], v), k
    assert not (tmp_path / "metrics.parquet").exists()


def test_skip_batch_drops_the_update_and_goes_on(small_data, tmp_path):
    task = NaNLossAt(bad=(2, 5))
    row = Trainer(small_model(), small_data, epochs=1, out_dir=tmp_path, task=task,
                  on_nonfinite="skip_batch", **FAST).fit()
    assert row["skipped_batches"] == 2
    assert row["steps"] == 8 - 2 and row["global_step"] == 6
    assert math.isfinite(row["train_loss"]) and math.isfinite(row["test_loss"])
    assert read_metrics(tmp_path)[-1]["skipped_batches"] == 2


def test_skip_batch_still_stops_when_every_batch_fails(small_data, tmp_path):
    task = NaNLossAt(bad=range(1, 100))
    with pytest.raises(NonFiniteError, match="in a row"):
        Trainer(small_model(), small_data, epochs=2, out_dir=tmp_path, task=task,
                on_nonfinite="skip_batch", **FAST).fit()


def test_nonfinite_gradient_with_finite_loss_is_caught(small_data, tmp_path):
    model = small_model()
    calls = {"n": 0}
    first = next(model.parameters())

    def poison(grad):
        calls["n"] += 1
        return grad * float("inf") if calls["n"] == 2 else grad

    first.register_hook(poison)
    before = None
    trainer = Trainer(model, small_data, epochs=1, out_dir=tmp_path, **FAST)
    trainer.setup()
    before = _weights(model)
    with pytest.raises(NonFiniteError, match=r"gradient norm .* at step 2"):
        trainer.fit()
    assert trainer.global_step == 1
    assert all(torch.isfinite(v).all() for v in _weights(model).values())
    assert any(not torch.equal(before[k], v) for k, v in _weights(model).items())


def test_snapshot_refuses_nonfinite_weights(small_data, tmp_path):
    model = small_model()
    trainer = Trainer(model, small_data, epochs=1, out_dir=tmp_path, **FAST)
    trainer.fit()
    good = (tmp_path / "snapshot.pt").read_bytes()
    with torch.no_grad():
        next(model.parameters())[0, 0] = float("nan")
    with pytest.raises(NonFiniteError, match="snapshot not written"):
        trainer.save_snapshot()
    assert (tmp_path / "snapshot.pt").read_bytes() == good


def test_guard_unit():
    lin = torch.nn.Linear(2, 1)
    lin(torch.ones(1, 2)).sum().backward()
    g = NonFiniteGuard(lin, "skip_batch", max_skips=2)
    assert g(torch.tensor(1.0)) is True
    assert g(torch.tensor(float("nan"))) is False
    assert g(torch.tensor(0.5)) is True and g.in_a_row == 0     # a good batch resets the run
    with pytest.raises(ValueError, match="on_nonfinite"):
        NonFiniteGuard(lin, "ignore")


NAN_TASK = """
import torch
from spiketrain.trainer.tasks.classification import Classification

class NaNAtThree(Classification):
    calls = 0

    def loss(self, model, outputs, targets):
        loss = super().loss(model, outputs, targets)
        if torch.is_grad_enabled():
            type(self).calls += 1
            if type(self).calls == 3:
                return loss * float("nan")
        return loss
"""


def test_cli_nan_stops_with_one_line(write_cfg, tmp_path, capsys, monkeypatch):
    """Through the CLI, a task given by class path whose loss goes NaN at step 3, with a
    snapshot every step: exit 2, one line naming step 3, and the snapshot of step 2 intact."""
    (tmp_path / "nan_task_mod.py").write_text(NAN_TASK)
    monkeypatch.syspath_prepend(str(tmp_path))
    out = tmp_path / "run"
    cfg = write_cfg("task: {class: 'nan_task_mod:NaNAtThree'}\n")
    rc = main(["train", str(cfg), "--out", str(out), "--set", "trainer.snapshot_every=1"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "at step 3" in err, err
    assert "trainer.lr" in err and "Traceback" not in err
    snap = torch.load(out / "snapshot.pt", weights_only=True)
    assert snap["global_step"] == 2
    assert all(torch.isfinite(v).all() for v in snap["model"].values())


@pytest.mark.parametrize("lr", [".inf", ".nan", "1e300", "1e37", "-1"])
def test_cli_refuses_unusable_lr_before_running(write_cfg, tmp_path, capsys, lr):
    out = tmp_path / "run"
    assert main(["train", str(write_cfg()), "--out", str(out), "--set", f"trainer.lr={lr}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: trainer.lr") and "\n" not in err
    assert not out.exists()
