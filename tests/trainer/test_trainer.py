"""Trainer: learns, writes Parquet metrics, resumes to identical weights, snapshots atomically."""
import math
import os

import pyarrow.parquet as pq
import pytest
import torch

from spiketrain.trainer import Trainer, load_snapshot, read_metrics, save_snapshot
from spiketrain.trainer import snapshot as snapshot_mod
from spiketrain.trainer.trainer import Trainer as _Trainer

from .conftest import small_model

FAST = dict(lr=0.01, batch_size=16, clip_grad=1.0, progress=False, verbose=False, threads=1)


def _weights(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_short_run_learns_above_bar(small_data, tmp_path):
    model = small_model()
    row = Trainer(model, small_data, epochs=4, out_dir=tmp_path, **FAST).fit()
    assert row["epoch"] == 3
    assert row["test_acc"] >= 0.85, row          # 4 classes: chance is 0.25
    assert row["train_loss"] < math.log(4)


def test_metrics_parquet_has_one_row_per_epoch(small_data, tmp_path):
    Trainer(small_model(), small_data, epochs=2, out_dir=tmp_path, **FAST).fit()
    table = pq.read_table(tmp_path / "metrics.parquet")
    expected = {"epoch", "global_step", "train_loss", "train_acc", "test_loss", "test_acc",
                "sec_per_step", "peak_bytes_device", "recomputed_steps", "bytes_moved", "strategy"}
    assert expected <= set(table.column_names)
    rows = table.to_pylist()
    assert [r["epoch"] for r in rows] == [0, 1]
    assert rows[-1]["global_step"] == 2 * math.ceil(128 / 16)
    assert all(r["peak_bytes_device"] > 0 and r["sec_per_step"] > 0 for r in rows)
    assert all(0.0 <= r["test_acc"] <= 1.0 for r in rows)
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_resume_gives_identical_weights_and_metrics(small_data, tmp_path):
    straight = small_model()
    Trainer(straight, small_data, epochs=2, out_dir=tmp_path / "a", **FAST).fit()

    first = small_model()
    Trainer(first, small_data, epochs=1, out_dir=tmp_path / "b", **FAST).fit()
    resumed = small_model(seed=123)             # different init: everything comes from the snapshot
    Trainer(resumed, small_data, epochs=2, out_dir=tmp_path / "b", resume=tmp_path / "b",
            **FAST).fit()

    a, b = _weights(straight), _weights(resumed)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs after resume"
    ra, rb = read_metrics(tmp_path / "a"), read_metrics(tmp_path / "b")
    assert len(ra) == len(rb) == 2
    for x, y in zip(ra, rb):
        for k in ("train_loss", "train_acc", "test_loss", "test_acc", "global_step"):
            assert x[k] == y[k], k


def test_resume_mid_epoch_from_step_snapshot(small_data, tmp_path, monkeypatch):
    straight = small_model()
    Trainer(straight, small_data, epochs=2, out_dir=tmp_path / "a", **FAST).fit()

    class Crash(Exception):
        pass

    orig = _Trainer._on_step

    def crashing(self, res):
        orig(self, res)
        if self.global_step == 11:              # snapshot at step 10 (epoch 2), crash at 11
            raise Crash

    monkeypatch.setattr(_Trainer, "_on_step", crashing)
    with pytest.raises(Crash):
        Trainer(small_model(), small_data, epochs=2, out_dir=tmp_path / "b", snapshot_every=5,
                **FAST).fit()
    monkeypatch.setattr(_Trainer, "_on_step", orig)
    snap = torch.load(tmp_path / "b" / "snapshot.pt", weights_only=True)
    assert (snap["global_step"], snap["epoch"], snap["epoch_done"]) == (10, 1, False)

    resumed = small_model(seed=7)
    Trainer(resumed, small_data, epochs=2, out_dir=tmp_path / "b", resume=tmp_path / "b",
            snapshot_every=5, **FAST).fit()
    a, b = _weights(straight), _weights(resumed)
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs after mid-epoch resume"
    assert [r["train_loss"] for r in read_metrics(tmp_path / "a")] == \
        [r["train_loss"] for r in read_metrics(tmp_path / "b")]


def test_snapshot_write_is_atomic(tmp_path, monkeypatch):
    model = small_model()
    opt = torch.optim.Adam(model.parameters())
    save_snapshot(tmp_path, model, opt, epoch=0, global_step=3)
    before = (tmp_path / "snapshot.pt").read_bytes()

    def broken_save(obj, f, *a, **k):
        f.write(b"partial garbage")
        raise OSError("disk full")

    monkeypatch.setattr(snapshot_mod.torch, "save", broken_save)
    with torch.no_grad():
        next(model.parameters()).add_(1.0)
    with pytest.raises(OSError, match="disk full"):
        save_snapshot(tmp_path, model, opt, epoch=1, global_step=6)
    monkeypatch.undo()
    assert (tmp_path / "snapshot.pt").read_bytes() == before       # old snapshot intact
    assert os.listdir(tmp_path) == ["snapshot.pt"]                  # no temp file left behind
    fresh = small_model(seed=5)
    snap = load_snapshot(tmp_path, fresh, torch.optim.Adam(fresh.parameters()))
    assert snap["global_step"] == 3 and snap["epoch"] == 0
    assert torch.equal(next(fresh.parameters()), next(small_model().parameters()))


def test_rng_states_round_trip(tmp_path):
    import random

    import numpy as np

    model = small_model()
    save_snapshot(tmp_path, model, None, epoch=0, global_step=0)
    expect = (torch.rand(3), np.random.rand(3), random.random())
    torch.rand(10), np.random.rand(10), random.random()
    load_snapshot(tmp_path, model)
    got = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(expect[0], got[0])
    assert np.array_equal(expect[1], got[1]) and expect[2] == got[2]


def test_resume_without_snapshot_names_the_fix(small_data, tmp_path):
    with pytest.raises(FileNotFoundError, match="snapshot"):
        Trainer(small_model(), small_data, epochs=1, out_dir=tmp_path, resume=tmp_path / "none",
                **FAST).fit()


def test_online_strategy_uses_per_step_loss(small_data, tmp_path):
    """e-prop: the loss is the per-step cross-entropy vs the label at every step, summed by the
    strategy and reported divided by T; the Trainer learns with it."""
    import torch.nn.functional as F

    from spiketrain import strategies
    from spiketrain.data import SpikeLoader
    from spiketrain.trainer import batch_loss

    model = small_model()
    x, y = next(iter(SpikeLoader(small_data[0], 8, shuffle=False)))
    strat = strategies.get("eprop")
    assert strat.online
    total, value, logits = batch_loss(model, x, y, strat)
    with torch.no_grad():
        out = model(x)
        expect = torch.stack([F.cross_entropy(o, y) for o in out.unbind(0)]).mean()
    # the online strategy's running readout gives train accuracy: the model's own reduction
    torch.testing.assert_close(logits, model.logits(out), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(value, expect, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(total.detach(), expect * x.shape[0], rtol=1e-5, atol=1e-5)

    row = Trainer(small_model(), small_data, strategy="eprop", epochs=3, out_dir=tmp_path,
                  **FAST).fit()
    assert 0.0 <= row["train_acc"] <= 1.0
    assert row["test_acc"] >= 0.8, row
