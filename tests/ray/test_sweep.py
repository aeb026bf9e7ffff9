"""``spiketrain sweep`` on a real local Ray Tune: Parquet table with every trial, two plots."""
import textwrap

import pytest

from spiketrain.launch.cli import main
from spiketrain.launch.config import ConfigError
from spiketrain.launch.sweep import load_sweep

BASE = """
model: {name: rsnn, hidden: 16}
data: {kind: synthetic, T: 20, n_in: 20, n_classes: 4, n_train: 16, n_test: 0,
       cache_dir: CACHE}
strategy: bptt
trainer: {epochs: 1, batch_size: 8, progress: false}
"""


def _write(tmp_path, grid):
    (tmp_path / "base.yaml").write_text(BASE.replace("CACHE", str(tmp_path / "cache")))
    (tmp_path / "sweep.yaml").write_text(textwrap.dedent(f"""
        base: base.yaml
        grid: {grid}
        out: {tmp_path / 'out'}
        max_concurrent: 2
    """))
    return tmp_path / "sweep.yaml"


def test_sweep_2x2_table_and_plots(ray_local, tmp_path, capsys):
    import matplotlib.image as mpimg
    import pyarrow.parquet as pq

    path = _write(tmp_path, "{data.T: [20, 40], strategy: [bptt, checkpoint]}")
    assert main(["sweep", str(path)]) == 0
    out = tmp_path / "out"
    rows = pq.read_table(out / "sweep.parquet").to_pylist()
    got = sorted((int(r["data.T"]), r["strategy"]) for r in rows)
    assert got == [(20, "bptt"), (20, "checkpoint"), (40, "bptt"), (40, "checkpoint")]
    for r in rows:
        assert r["status"] == "ok", r["error"]
        assert r["sec_per_step"] > 0 and r["peak_bytes_device"] > 0 and r["peak_rss_bytes"] > 0
        assert r["sec_per_sim_step"] == pytest.approx(r["sec_per_step"] / r["data.T"])
    by = {(int(r["data.T"]), r["strategy"]): r for r in rows}
    assert by[(40, "bptt")]["peak_bytes_device"] > by[(20, "bptt")]["peak_bytes_device"]
    assert by[(40, "checkpoint")]["recomputed_steps"] > 0 == by[(40, "bptt")]["recomputed_steps"]
    for name in ("memory_vs_T.png", "time_vs_T.png"):
        img = mpimg.imread(out / name)
        assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100
        assert img[..., :3].std() > 0.01  # something is drawn, not a blank canvas
    # report re-reads the table and re-draws the plots
    (out / "time_vs_T.png").unlink()
    capsys.readouterr()
    assert main(["report", str(out)]) == 0
    text = capsys.readouterr().out
    assert "checkpoint" in text and "sec_per_step" in text
    assert (out / "time_vs_T.png").stat().st_size > 1000


def test_sweep_key_not_in_schema_is_one_line_error(tmp_path, capsys):
    path = _write(tmp_path, "{data.T: [20], trainer.learning_rate: [0.1]}")
    with pytest.raises(ConfigError, match="sweep grid key 'trainer.learning_rate'"):
        load_sweep(path)
    assert main(["sweep", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: sweep grid key 'trainer.learning_rate'") and "\n" not in err
    assert "did you mean 'lr'" in err or "valid keys" in err


def test_over_budget_trial_is_recorded_not_lost(tmp_path):
    from spiketrain.launch.sweep import run_trial

    path = _write(tmp_path, "{data.T: [20], strategy: [bptt]}")
    spec = load_sweep(path)
    row = run_trial(spec, {"data.T": 20, "strategy": {"name": "checkpoint",
                                                      "budget": {"device": 64}}},
                    tmp_path / "trial")
    assert row["status"] == "over_budget" and "budget" in row["error"], row
    assert row["peak_rss_bytes"] > 0 and row["T"] == 20
