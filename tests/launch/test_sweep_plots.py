"""Sweep plots in human units: one colour per strategy across tiers, MiB axis, ms per step."""
import math

import pytest

pytest.importorskip("matplotlib")

from spiketrain.launch.sweep_plots import bytes_unit, plot_sweep  # noqa: E402
from spiketrain.launch.sweep_report import write_table  # noqa: E402


def test_units():
    assert bytes_unit(3 * 2 ** 30) == (2.0 ** 30, "GiB")
    assert bytes_unit(5 * 2 ** 20) == (2.0 ** 20, "MiB")
    assert bytes_unit(100) == (1.0, "B")


def test_one_colour_per_strategy_and_human_axes(tmp_path, monkeypatch):
    rows = []
    for T in (100, 200):
        rows.append({"data.T": T, "strategy": "bptt", "status": "ok", "sec_per_step": 0.01 * T,
                     "peak_bytes_device": 2.0 ** 20 * T, "peak_bytes_disk": math.nan})
        rows.append({"data.T": T, "strategy": "double", "status": "ok", "sec_per_step": 0.02 * T,
                     "peak_bytes_device": 2.0 ** 19 * T, "peak_bytes_disk": 2.0 ** 21 * T})
    write_table(rows, tmp_path / "sweep.parquet")
    import matplotlib.figure
    seen = []
    orig = matplotlib.figure.Figure.savefig

    def spy(fig, path, *a, **k):
        ax = fig.axes[0]
        seen.append((ax.get_ylabel(), [(l.get_color(), l.get_linestyle(), list(l.get_ydata()))
                                       for l in ax.get_lines()],
                     [t.get_text() for t in ax.get_legend().get_texts()]))
        return orig(fig, path, *a, **k)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", spy)
    paths = plot_sweep(tmp_path)
    assert all(p.exists() for p in paths)
    (mem_label, mem_lines, mem_legend), (time_label, time_lines, _) = seen
    assert "MiB" in mem_label and "ms per training step" == time_label
    # bptt [device], double [device], double [disk]: double keeps its colour on both tiers
    colours = {tuple(l[2]): (l[0], l[1]) for l in mem_lines}
    bptt, double_dev, double_disk = colours[(100.0, 200.0)], colours[(50.0, 100.0)], \
        colours[(200.0, 400.0)]
    assert bptt[0] != double_dev[0]                    # one colour per strategy
    assert double_dev[0] == double_disk[0]             # the same on every tier
    assert bptt[1] == double_dev[1] != double_disk[1]  # one line style per tier
    assert mem_legend == ["bptt", "double", "[device]", "[disk]"]
    assert [l[2] for l in time_lines] == [[1000.0, 2000.0], [2000.0, 4000.0]]
