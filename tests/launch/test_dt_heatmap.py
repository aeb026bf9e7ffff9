"""The dt sweep: train dt x deploy dt x method -> Parquet table and heat map."""
import pyarrow.parquet as pq
import pytest
import yaml

from spiketrain.launch.config import ConfigError
from spiketrain.launch.dt_heatmap import load_dt_sweep, main

pytest.importorskip("matplotlib")


def test_dt_sweep_writes_table_and_heatmap(tmp_path, capsys):
    spec = yaml.safe_load(open("configs/dt_sweep.yaml"))
    spec["base"] = str((__import__("pathlib").Path("configs") / spec["base"]).resolve())
    spec["set"].update({"data.n_train": 32, "data.n_test": 32, "data.n_in": 30,
                        "data.n_classes": 3, "model.hidden": 8, "trainer.epochs": 1,
                        "trainer.batch_size": 16, "data.cache_dir": str(tmp_path / "cache"),
                        "data.duration": 0.2})
    spec["train_dt"] = [0.01, 0.02]
    spec["deploy_dt"] = [0.005, 0.01]
    spec["methods"] = ["none", "integral"]
    spec["out"] = str(tmp_path / "out")
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(spec))
    assert main([str(tmp_path / "s.yaml")]) == 0
    rows = pq.read_table(tmp_path / "out" / "dt_sweep.parquet").to_pylist()
    assert len(rows) == 2 * 2 * 2
    assert {(r["train_dt_ms"], r["deploy_dt_ms"], r["method"]) for r in rows} == {
        (t, d, m) for t in (10.0, 20.0) for d in (5.0, 10.0) for m in ("none", "integral")}
    assert all(r["status"] == "ok" and 0 <= r["test_acc"] <= 1 for r in rows)
    # same step, any method: the trained model itself (identical accuracy)
    same = [r["test_acc"] for r in rows if r["train_dt_ms"] == r["deploy_dt_ms"]]
    assert len(set(same)) == 1
    assert [r["deploy_steps"] for r in rows if r["deploy_dt_ms"] == 5.0][0] == 40
    png = tmp_path / "out" / "dt_heatmap.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "out" / "train_dt=10ms" / "snapshot.pt").exists()


def test_dt_sweep_file_is_checked(tmp_path):
    (tmp_path / "bad.yaml").write_text("base: shd_rsnn.yaml\ntrain_dt: [0.01]\n"
                                       "deploy_dt: [0.01]\nmethods: [bogus]\n")
    with pytest.raises(ConfigError, match="unknown method"):
        load_dt_sweep(tmp_path / "bad.yaml")
    assert load_dt_sweep("configs/dt_sweep.yaml")["methods"][-1] == "euler"
