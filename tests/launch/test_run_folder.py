"""Run folders and honest resume: unique folders, no silent reuse, nothing left by a late
error, stale temp files removed, the stored config compared before anything is touched, and
the changes a resume may make really applied and recorded."""
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch
import yaml

from spiketrain.launch import run_folder
from spiketrain.launch.cli import main

from .conftest import TINY


def _tree(d: Path) -> dict:
    return {str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(d.rglob("*")) if p.is_file()}


@pytest.fixture
def cfg(write_config, tmp_path):
    return write_config(TINY.replace("CACHE", str(tmp_path / "cache")))


@pytest.fixture
def done_run(cfg, tmp_path, capsys):
    out = tmp_path / "done"
    assert main(["train", str(cfg), "--out", str(out)]) == 0
    capsys.readouterr()
    return out


def test_default_names_are_unique_within_a_second(tmp_path):
    names = {run_folder.unique_run_dir("exp", tmp_path) for _ in range(200)}
    assert len(names) == 200
    a = run_folder.claim(tmp_path / "x-1", unique=True)
    b = run_folder.claim(tmp_path / "x-1", unique=True)          # the same name: a new suffix
    assert a.path != b.path and a.path.is_dir() and b.path.is_dir()


def test_two_runs_started_together_keep_their_own_files(cfg, tmp_path):
    """Two processes of the same config started at once, default folders: two complete runs."""
    env = {**os.environ, "SPIKETRAIN_DEBUG": ""}
    exe = [sys.executable, "-m", "spiketrain.launch.cli", "train", str(cfg)]
    procs = [subprocess.Popen(exe, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
             for _ in range(2)]
    for p in procs:
        p.communicate(timeout=300)
        assert p.returncode == 0
    runs = sorted((tmp_path / "runs").iterdir())
    assert len(runs) == 2
    for r in runs:
        assert {"config.yaml", "snapshot.pt", "metrics.parquet"} <= {p.name for p in r.iterdir()}


def test_out_holding_a_run_is_refused_unless_resume_or_overwrite(cfg, done_run, capsys):
    before = _tree(done_run)
    assert main(["train", str(cfg), "--out", str(done_run)]) == 2
    err = capsys.readouterr().err
    assert "already holds a run" in err and "--resume" in err and "--overwrite" in err
    assert _tree(done_run) == before
    assert main(["train", str(cfg), "--out", str(done_run), "--overwrite",
                 "--set", "trainer.lr=0.02"]) == 0
    assert yaml.safe_load((done_run / "config.yaml").read_text())["trainer"]["lr"] == 0.02
    assert len(pq.read_table(done_run / "metrics.parquet")) == 1


def test_late_error_leaves_no_folder(cfg, tmp_path, capsys, monkeypatch):
    """A failure after validation but before the first snapshot removes the folder it made."""
    from spiketrain.trainer import trainer as trainer_mod

    def boom(self):
        raise OSError(28, "No space left on device", str(self.out_dir / "x"))

    monkeypatch.setattr(trainer_mod.Trainer, "train_one_epoch", boom)
    out = tmp_path / "late"
    assert main(["train", str(cfg), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "No space left on device" in err and "\n" not in err
    assert not out.exists()


def test_stale_snapshot_temp_files_removed_on_resume(cfg, done_run, capsys):
    stale = done_run / ".snapshot.pt-abc123.tmp"
    stale.write_bytes(b"\0" * 1000)
    (done_run / ".metrics-xyz.parquet.tmp").write_bytes(b"x")
    assert main(["train", str(cfg), "--resume", str(done_run), "--set", "trainer.epochs=2"]) == 0
    assert not [p for p in os.listdir(done_run) if p.endswith(".tmp")]


def test_resume_refuses_fixed_keys_before_touching_anything(cfg, done_run, capsys):
    before = _tree(done_run)
    assert main(["train", str(cfg), "--resume", str(done_run), "--set", "model.hidden=64",
                 "--set", "trainer.optimizer=sgd", "--set", "trainer.epochs=2"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "model.hidden" in err and "trainer.optimizer" in err
    assert "trainer.epochs" not in err                 # allowed changes are not listed
    assert _tree(done_run) == before                   # config.yaml not rewritten


def test_resume_applies_and_records_a_new_lr(cfg, done_run, capsys):
    assert main(["train", str(cfg), "--resume", str(done_run), "--set", "trainer.epochs=2",
                 "--set", "trainer.lr=0.5"]) == 0
    assert "trainer.lr 0.01 -> 0.5" in capsys.readouterr().out
    rows = pq.read_table(done_run / "metrics.parquet").to_pylist()
    assert [r["lr"] for r in rows] == [0.01, 0.5]
    assert rows[0]["resumed_from_step"] is None and rows[1]["resumed_from_step"] == 3
    assert yaml.safe_load((done_run / "config.yaml").read_text())["trainer"]["lr"] == 0.5
    snap = torch.load(done_run / "snapshot.pt", weights_only=True)
    assert all(g["lr"] == 0.5 for g in snap["optimizer"]["param_groups"])


def test_resume_from_the_snapshot_file_path(cfg, done_run):
    assert main(["train", str(cfg), "--resume", str(done_run / "snapshot.pt"),
                 "--set", "trainer.epochs=2"]) == 0
    assert len(pq.read_table(done_run / "metrics.parquet")) == 2


@pytest.mark.parametrize("content", [b"", b"\x80\x02garbage", None])
def test_damaged_snapshot_is_one_line(cfg, done_run, capsys, content):
    snap = done_run / "snapshot.pt"
    data = snap.read_bytes()
    snap.write_bytes(data[: len(data) // 2] if content is None else content)
    before = _tree(done_run)
    assert main(["train", str(cfg), "--resume", str(done_run), "--set", "trainer.epochs=2"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and str(snap) in err and "snapshot" in err
    assert _tree(done_run) == before


@pytest.mark.parametrize("make", ["file", "readonly"])
def test_out_that_cannot_hold_a_run(cfg, tmp_path, capsys, make):
    if make == "file":
        out = tmp_path / "afile"
        out.write_text("x")
    elif os.geteuid() == 0:          # root writes read-only folders; nobody creates in /proc
        out = Path("/proc/spiketrain-test/run")
    else:
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o500)
        out = ro / "run"
    assert main(["train", str(cfg), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--out" in err


def test_strategy_flag_composes_with_set_options(cfg, tmp_path):
    """``--strategy NAME`` is applied before ``--set strategy.*``: the options reach it."""
    out = tmp_path / "ck"
    assert main(["train", str(cfg), "--out", str(out), "--strategy", "checkpoint",
                 "--set", "strategy.segment=5"]) == 0
    assert yaml.safe_load((out / "config.yaml").read_text())["strategy"] == {
        "name": "checkpoint", "segment": 5}
    row = pq.read_table(out / "metrics.parquet").to_pylist()[-1]
    # T = 20 in segments of 5: every segment but the last is recomputed (the default
    # segment gives 12 here)
    assert row["strategy"] == "checkpoint" and row["recomputed_steps"] == 15
