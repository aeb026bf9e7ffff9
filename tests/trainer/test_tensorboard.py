"""``trainer.tensorboard``: every epoch's row lands in TensorBoard event files."""
from __future__ import annotations

import math

from spiketrain.trainer.tensorboard import TensorBoardLogger, read_scalars, scalars


class _T:
    is_main = True


def test_rows_become_scalars_in_event_files(tmp_path):
    log = TensorBoardLogger(tmp_path / "tb")
    rows = [{"epoch": e, "global_step": 3 * (e + 1), "train_loss": 1.0 / (e + 1),
             "test_acc": 0.5 + 0.1 * e, "peak_bytes_device": 1024 * (e + 1),
             "test_loss": math.nan, "strategy": "bptt"} for e in range(3)]
    for r in rows:
        log(_T(), r)
    log.close()
    got = read_scalars(tmp_path / "tb")
    assert [s for s, _ in got["train/loss"]] == [3, 6, 9]   # stored as float32
    assert all(math.isclose(v, w, rel_tol=1e-7) for (_, v), w in zip(got["train/loss"],
                                                                   [1.0, 0.5, 1 / 3]))
    assert [s for s, _ in got["test/acc"]] == [3, 6, 9]
    assert got["memory/peak_bytes_device"][-1] == (9, 3072.0)
    assert "test/loss" not in got and "strategy" not in got  # NaN and strings are left out
    assert set(scalars(rows[0])) == {"global_step", "train/loss", "test/acc",
                                     "memory/peak_bytes_device"}


def test_default_dir_is_the_run_folder(tmp_path):
    class T:
        is_main, out_dir, out_uri = True, tmp_path / "run", None
    log = TensorBoardLogger()
    log(T(), {"epoch": 0, "global_step": 1, "train_loss": 2.0})
    log.close()
    assert read_scalars(tmp_path / "run" / "tensorboard")["train/loss"] == [(1, 2.0)]
