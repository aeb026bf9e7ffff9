"""A training run on ``s3://`` (a real S3 endpoint, moto on 127.0.0.1): config, metrics and
snapshot land there; ``--resume URI`` continues bit-exact; ``report`` and ``evaluate`` read
the URI; Ray Train's checkpoints go to the same URI."""
from __future__ import annotations

import io

import pyarrow.parquet as pq
import pytest
import torch

from run_configs import staged_config
from spiketrain.launch.cli import main
from spiketrain.trainer.storage import RunStorage

TINY = """
model: {name: rsnn, hidden: 16, dt: 20.0, readout: mean, surrogate: superspike}
data: {kind: synthetic, T: 20, dt: 0.05, n_in: 30, n_classes: 3, n_train: 32, n_test: 16,
       cache_dir: CACHE}
strategy: bptt
trainer: {epochs: 1, batch_size: 8, lr: 0.01, progress: false, threads: 1}
"""


@pytest.fixture
def cfg(tmp_path, monkeypatch):
    return staged_config(tmp_path, monkeypatch, TINY)


def _rows(store: RunStorage) -> list[dict]:
    return pq.read_table(io.BytesIO(store.read_bytes("metrics.parquet"))).to_pylist()


def _weights(data: bytes) -> dict:
    return torch.load(io.BytesIO(data), weights_only=True)["model"]


def test_run_on_s3_resume_report_evaluate(cfg, bucket, tmp_path, capsys):
    uri = f"s3://{bucket}/runs/exp1"
    assert main(["train", str(cfg), "--out", uri, "--set", "trainer.epochs=2"]) == 0
    out = capsys.readouterr().out
    assert f"run folder: {uri}" in out and f"metrics: {uri}/metrics.parquet" in out
    store = RunStorage(uri)
    assert store.list() == ["config.yaml", "metrics.parquet", "snapshot.pt"]
    assert [r["epoch"] for r in _rows(store)] == [0, 1]
    # a second run into the same URI is refused, as for a local folder
    assert main(["train", str(cfg), "--out", uri]) == 2
    assert "already holds a run" in capsys.readouterr().err
    # resume from the URI (a fresh stage: another machine knows only the URI)
    import shutil
    shutil.rmtree(tmp_path / "stage")
    assert main(["train", str(cfg), "--resume", uri, "--set", "trainer.epochs=3"]) == 0
    capsys.readouterr()
    rows = _rows(store)
    assert [r["epoch"] for r in rows] == [0, 1, 2] and rows[2]["resumed_from_step"] == 8
    # the uninterrupted local run: identical metrics and weights (bit-exact)
    ref = tmp_path / "ref"
    assert main(["train", str(cfg), "--out", str(ref), "--set", "trainer.epochs=3"]) == 0
    capsys.readouterr()
    ref_rows = pq.read_table(ref / "metrics.parquet").to_pylist()
    for a, b in zip(rows, ref_rows):
        for k in ("train_loss", "test_loss", "train_acc", "test_acc", "global_step"):
            assert a[k] == b[k], (k, a[k], b[k])
    got, want = _weights(store.read_bytes("snapshot.pt")), \
        _weights((ref / "snapshot.pt").read_bytes())
    assert all(torch.equal(got[k], want[k]) for k in want)
    # report reads the URI (table and curves), several runs overlay
    assert main(["report", uri, str(ref), "--plots", str(tmp_path / "plots")]) == 0
    text = capsys.readouterr().out
    assert f"{uri} (3 epochs)" in text and "plot: " in text
    assert (tmp_path / "plots" / "loss.png").stat().st_size > 5000
    # evaluate reads the URI's config and snapshot
    assert main(["evaluate", uri, "--json"]) == 0
    import json
    ev = json.loads(capsys.readouterr().out)
    assert ev["test_loss"] == pytest.approx(rows[2]["test_loss"], rel=1e-6)


def test_ray_train_checkpoints_on_s3(cfg, bucket, capsys):
    ray = pytest.importorskip("ray")
    # Ray's processes read the S3 endpoint and credentials from the environment they were
    # started with: a Ray session started earlier in this process (other tests) lacks them
    if ray.is_initialized():
        ray.shutdown()
    uri = f"s3://{bucket}/runs/ray2"
    assert main(["train", str(cfg), "--out", uri, "--workers", "2",
                 "--set", "trainer.epochs=2"]) == 0
    out = capsys.readouterr().out
    assert "[rank 0] epoch 2/2" in out or "epoch 2/2" in out
    files = RunStorage(uri).list(recursive=True)
    assert {"config.yaml", "metrics.parquet", "snapshot.pt"} <= set(files)
    ckpts = [f for f in files if f.startswith("ray/checkpoint_") and f.endswith("/snapshot.pt")]
    assert ckpts, files   # Ray Train's checkpoints (storage_path = the URI)
    assert [r["epoch"] for r in _rows(RunStorage(uri))] == [0, 1]
