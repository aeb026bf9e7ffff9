"""``engine: deepspeed`` with ZeRO-2 on 2 Ray workers, run folder on ``s3://`` (moto on
127.0.0.1): the snapshot on the URI carries both ranks' partitions of Adam's state, and
``--resume URI`` from a fresh stage folder ends with the uninterrupted run's metrics."""
from __future__ import annotations

import io
import shutil

import pyarrow.parquet as pq
import pytest
import torch

from run_configs import staged_config
from spiketrain.launch.cli import main
from spiketrain.trainer.storage import RunStorage

pytest.importorskip("deepspeed")
pytest.importorskip("ray")

TINY = """
model: {name: rsnn, hidden: 16, dt: 20.0, readout: mean, surrogate: superspike}
data: {kind: synthetic, T: 20, dt: 0.05, n_in: 30, n_classes: 3, n_train: 32, n_test: 16,
       cache_dir: CACHE}
strategy: bptt
trainer: {epochs: 2, batch_size: 8, optimizer: adam, lr: 0.01, progress: false, threads: 1}
"""
ZERO2 = ["--set", "trainer.engine=deepspeed", "--set", "deepspeed.zero_stage=2"]


@pytest.fixture
def cfg(tmp_path, monkeypatch):
    return staged_config(tmp_path, monkeypatch, TINY)


def _rows(data: bytes) -> list[dict]:
    return pq.read_table(io.BytesIO(data)).to_pylist()


@pytest.mark.timeout(600)
def test_zero2_on_s3_resumes_from_the_uri(cfg, bucket, tmp_path, capsys):
    import ray
    # Ray's processes read the S3 endpoint and credentials from the environment they were
    # started with: a Ray session started earlier in this process (other tests) lacks them
    if ray.is_initialized():
        ray.shutdown()
    uri = f"s3://{bucket}/runs/zero2"
    assert main(["train", str(cfg), "--out", uri, "--workers", "2", *ZERO2,
                 "--set", "trainer.epochs=1"]) == 0
    store = RunStorage(uri)
    opt = torch.load(io.BytesIO(store.read_bytes("snapshot.pt")), weights_only=True)["optimizer"]
    assert opt["partitioned"] and opt["world_size"] == 2 and len(opt["ranks"]) == 2
    for part in opt["ranks"]:
        (state,) = part["base_optimizer_state"]["state"].values()
        assert int(state["step"]) == 4 and state["exp_avg"].abs().sum() > 0
    # another machine knows only the URI: no stage folder
    shutil.rmtree(tmp_path / "stage")
    assert main(["train", str(cfg), "--resume", uri, "--workers", "2", *ZERO2]) == 0
    rows = _rows(store.read_bytes("metrics.parquet"))
    assert [r["epoch"] for r in rows] == [0, 1] and rows[1]["resumed_from_step"] == 4
    # the uninterrupted run: one process on whole batches, the plain torch Adam
    ref = tmp_path / "ref"
    assert main(["train", str(cfg), "--out", str(ref)]) == 0
    capsys.readouterr()
    want = pq.read_table(ref / "metrics.parquet").to_pylist()
    assert want[0]["train_loss"] != want[1]["train_loss"]
    for a, b in zip(rows, want):
        for k in ("train_loss", "test_loss", "train_acc", "test_acc"):
            assert a[k] == pytest.approx(b[k], rel=1e-5, abs=1e-6), (a["epoch"], k)
