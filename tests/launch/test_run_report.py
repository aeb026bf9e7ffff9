"""``spiketrain report`` on training runs: the per-epoch table and the learning curves
(loss, task metrics, memory per tier), several runs overlaid."""
from __future__ import annotations

import math

import pytest

from spiketrain.launch.cli import main
from spiketrain.launch.run_report import (format_run_table, is_training_run, read_run,
                                          report_runs, table_columns)

from .conftest import TINY


@pytest.fixture
def two_runs(write_config, tmp_path):
    path = write_config(TINY.replace("CACHE", str(tmp_path / "cache")))
    outs = []
    for lr in ("0.01", "0.05"):
        out = tmp_path / f"lr{lr}"
        assert main(["train", str(path), "--out", str(out), "--set", "trainer.epochs=2",
                     "--set", f"trainer.lr={lr}"]) == 0
        outs.append(out)
    return outs


def test_table_and_curves_of_two_runs(two_runs, tmp_path):
    rows = read_run(two_runs[0])
    assert [r["epoch"] for r in rows] == [0, 1] and is_training_run(two_runs[0])
    cols = table_columns(rows)
    assert cols[:3] == ["epoch", "global_step", "train_loss"]
    assert {"train_acc", "test_loss", "test_acc", "peak_bytes_device"} <= set(cols)
    text = format_run_table(rows)
    lines = text.splitlines()
    assert len(lines) == 3 and lines[1].split()[0] == "1" and lines[2].split()[0] == "2"
    # the table shows the stored losses (4 significant digits)
    assert f"{rows[1]['train_loss']:.4g}" in lines[2]
    text, plots = report_runs([str(p) for p in two_runs], plots=tmp_path / "plots")
    assert text.count("(2 epochs)") == 2
    assert sorted(p.name for p in plots) == ["acc.png", "loss.png", "memory.png"]
    for p in plots:
        assert p.stat().st_size > 5000 and p.read_bytes()[:4] == b"\x89PNG"


def test_overlay_draws_one_line_per_run_and_split(two_runs, tmp_path, monkeypatch):
    """Each run adds a train and a test line to the loss plot (4 lines for 2 runs)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.figure

    seen = {}
    real = matplotlib.figure.Figure.savefig

    def spy(fig, path, *a, **k):
        seen[str(path).rsplit("/", 1)[-1]] = fig.axes[0].get_lines()
        return real(fig, path, *a, **k)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", spy)
    report_runs([str(p) for p in two_runs], plots=tmp_path / "plots")
    loss_lines = [ln for ln in seen["loss.png"] if len(ln.get_xdata()) == 2]
    assert len(loss_lines) == 4
    ys = sorted(tuple(ln.get_ydata()) for ln in loss_lines)
    want = sorted(tuple(r[f"{s}_loss"] for r in read_run(p)) for p in two_runs
                  for s in ("train", "test"))
    assert all(math.isclose(a, b) for y, w in zip(ys, want) for a, b in zip(y, w))


def test_not_a_run_is_one_line(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a training run folder"):
        read_run(tmp_path)


def test_report_command_on_training_runs(two_runs, tmp_path, capsys):
    from spiketrain.launch.cli import main as cli
    assert cli(["report", str(two_runs[0]), str(two_runs[1]), "--plots",
                str(tmp_path / "cmp")]) == 0
    out = capsys.readouterr().out
    assert out.count("(2 epochs)") == 2 and out.count("plot: ") == 3
    assert cli(["report", str(two_runs[0])]) == 0     # one local run: plots in its folder
    assert (two_runs[0] / "loss.png").exists()
    assert cli(["report", str(two_runs[0]), str(tmp_path)]) == 2
    assert "not a training run" in capsys.readouterr().err
