"""CLI: --help, dotted --set overrides, a tiny end-to-end run, custom models from a config."""
import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow.parquet as pq
import yaml

from spiketrain.launch.cli import main
from spiketrain.launch.config import load_config

from .conftest import TINY


def _exe():
    exe = Path(sys.executable).with_name("spiketrain")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "spiketrain.launch.cli"]


def test_help_lists_commands_and_options():
    r = subprocess.run(_exe() + ["--help"], capture_output=True, text=True, timeout=120,
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 0 and "train" in r.stdout
    r = subprocess.run(_exe() + ["train", "--help"], capture_output=True, text=True, timeout=120,
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 0
    for opt in ("--set", "--resume", "--strategy", "--out"):
        assert opt in r.stdout


def test_overrides_are_yaml_typed(write_config):
    path = write_config("model: {name: rsnn, hidden: 256}\nstrategy: bptt\n")
    cfg = load_config(path, ["trainer.epochs=3", "model.hidden=128", "trainer.lr=1e-3",
                             "trainer.clip_grad=null", "data.T=50", "trainer.deterministic=false",
                             "model.neuron=alif"])
    assert cfg.trainer.epochs == 3 and isinstance(cfg.trainer.epochs, int)
    assert cfg.model.kwargs["hidden"] == 128 and cfg.model.kwargs["neuron"] == "alif"
    assert cfg.trainer.lr == 1e-3 and isinstance(cfg.trainer.lr, float)
    assert cfg.trainer.clip_grad is None and cfg.trainer.deterministic is False
    assert cfg.data.T == 50
    # sizes follow the data unless given
    assert cfg.model.kwargs["n_in"] == cfg.data.n_in and cfg.model.kwargs["n_out"] == cfg.data.n_classes
    # a strategy name becomes a mapping when an option is set
    cfg = load_config(path, ["strategy.name=bptt"])
    assert cfg.strategy.name == "bptt" and cfg.strategy.options == {}
    # round trip through the dict written to the run folder
    again = load_config(None, [])
    assert again.trainer.epochs == 10


def test_shipped_config_is_valid():
    root = Path(__file__).resolve().parents[2]
    cfg = load_config(root / "configs" / "shd_rsnn.yaml")
    assert cfg.model.target == "rsnn"
    assert cfg.data.n_in == 700 and cfg.data.n_classes == 20


def test_train_end_to_end_and_resume(write_config, tmp_path, capsys):
    path = write_config(TINY.replace("CACHE", str(tmp_path / "cache")))
    out = tmp_path / "run"
    assert main(["train", str(path), "--out", str(out), "--set", "trainer.epochs=1"]) == 0
    assert "final test accuracy" in capsys.readouterr().out
    assert pq.read_table(out / "metrics.parquet").num_rows == 1
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["trainer"]["epochs"] == 1
    assert main(["train", str(path), "--resume", str(out), "--set", "trainer.epochs=2"]) == 0
    rows = pq.read_table(out / "metrics.parquet").to_pylist()
    assert [r["epoch"] for r in rows] == [0, 1]


def test_custom_model_by_class_path(write_config, tmp_path, monkeypatch):
    pkg = tmp_path / "mypkg_cli"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "cells.py").write_text(textwrap.dedent("""
        import torch
        from spiketrain.models import RecurrentModel

        class MyCell(RecurrentModel):
            def __init__(self, n_in, n_out, hidden=8):
                super().__init__()
                self.inp = torch.nn.Linear(n_in, hidden)
                self.out = torch.nn.Linear(hidden, n_out)

            def init_state(self, batch_size):
                return self.inp.weight.new_zeros(batch_size, self.inp.out_features)

            def step(self, h, x_t):
                h = torch.tanh(self.inp(x_t) + 0.5 * h)
                return h, self.out(h)
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    text = TINY.replace("CACHE", str(tmp_path / "cache")).replace(
        "model: {name: rsnn, hidden: 16, dt: 20.0, readout: mean, surrogate: superspike}",
        "model: {class: 'mypkg_cli.cells:MyCell', hidden: 12}")
    path = write_config(text)
    cfg = load_config(path)
    assert cfg.model.kwargs == {"hidden": 12, "n_in": 30, "n_out": 3}
    assert main(["train", str(path), "--out", str(tmp_path / "run")]) == 0
    assert (tmp_path / "run" / "metrics.parquet").exists()


def test_strategy_flag_and_report_columns(write_config, tmp_path):
    path = write_config(TINY.replace("CACHE", str(tmp_path / "cache")))
    out = tmp_path / "ck"
    assert main(["train", str(path), "--out", str(out), "--strategy", "checkpoint"]) == 0
    row = pq.read_table(out / "metrics.parquet").to_pylist()[-1]
    assert row["strategy"] == "checkpoint"
    assert row["recomputed_steps"] > 0 and row["peak_bytes_device"] > 0


def test_registered_name_from_config(write_config, tmp_path):
    import torch

    from spiketrain.launch.build import build_model
    from spiketrain.models import RecurrentModel, register

    @register("test_cfg_cell")
    class CfgCell(RecurrentModel):
        def __init__(self, n_in=1, n_out=1, width=4):
            super().__init__()
            self.lin = torch.nn.Linear(n_in, n_out)
            self.width = width

        def init_state(self, batch_size):
            return torch.zeros(batch_size, 1)

        def step(self, s, x_t):
            return s, self.lin(x_t)

    path = write_config("model: {name: test_cfg_cell, width: 7}\ndata: {n_in: 30, n_classes: 3}\n")
    model = build_model(load_config(path))
    assert isinstance(model, CfgCell) and model.width == 7
    assert model.lin.in_features == 30 and model.lin.out_features == 3
