"""Data-parallel training on a real local Ray: gradients, fault tolerance."""
import json
import os
import signal
import time
from pathlib import Path

import pytest
import torch

from spiketrain.trainer.ray_train import fit

TRAINER_CFG = """
model: {name: rsnn, hidden: 16}
data: {kind: synthetic, T: 40, n_in: 20, n_classes: 4, n_train: 64, n_test: 16, cache_dir: CACHE}
strategy: bptt
trainer: {epochs: 6, batch_size: 8, optimizer: sgd, lr: 0.02, progress: false}
"""


def _trainer(tmp_path, name, overrides=()):
    from spiketrain.launch.build import build_trainer
    from spiketrain.launch.config import load_config

    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(TRAINER_CFG.replace("CACHE", str(tmp_path / "cache")))
    return build_trainer(load_config(cfg, list(overrides)), out_dir=tmp_path / name,
                         verbose=False)


def test_two_workers_gradient_equals_whole_batch(ray_local, tmp_path):
    # One SGD step with lr=1 (the first momentum step is the plain gradient): the weight
    # change is exactly minus the gradient. One batch of 8: 4 samples per worker.
    one_step = ["trainer.epochs=1", "data.n_train=8", "data.n_test=0", "trainer.lr=1.0"]
    res = fit(_trainer(tmp_path, "ddp", one_step), workers=2)
    assert res["world_size"] == 2 and res["steps"] == 1
    ddp = torch.load(tmp_path / "ddp" / "snapshot.pt", weights_only=True)["model"]
    single = _trainer(tmp_path, "single", one_step)  # one process, the whole batch of 8
    w0 = {k: v.clone() for k, v in single.model.state_dict().items()}
    single.fit()
    for k, v in single.model.state_dict().items():
        g_single, g_ddp = w0[k] - v, w0[k] - ddp[k]
        assert g_single.abs().max() > 1e-3, k  # a real gradient flowed
        torch.testing.assert_close(g_ddp, g_single, rtol=1e-5, atol=1e-5, msg=k)


def _worker_info(run_dir, name, rank):
    p = Path(run_dir) / name / "workers" / f"rank{rank}.json"
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError):
        return None


def test_killed_worker_resumes_from_last_snapshot(ray_local, tmp_path, background):
    """The Trainer on 2 Ray workers; one worker process is killed mid-run. The reference
    is the same run, uninterrupted, in one process on whole batches (2 workers average
    their shard gradients to the whole-batch gradient, checked to 1e-7 when written)."""
    import pyarrow.parquet as pq

    clean = _trainer(tmp_path, "clean").fit()
    job = background(lambda: fit(_trainer(tmp_path, "killed"), workers=2, max_failures=2))
    killed = None
    deadline = time.time() + 180
    while time.time() < deadline and job.is_alive():
        info = _worker_info(tmp_path / "killed", "ray", 1)
        if info and info["epoch"] >= 2:
            os.kill(info["pid"], signal.SIGKILL)
            killed = info
            break
        time.sleep(0.02)
    res = job.result(timeout=300)
    assert killed is not None, "run ended before a worker could be killed"
    assert res["resumed_from"] >= 1  # the new worker group started from a snapshot
    assert res["epochs_done"] == 6 and res["world_size"] == 2
    assert _worker_info(tmp_path / "killed", "ray", 1)["pid"] != killed["pid"]
    for k in ("train_loss", "train_acc", "test_loss", "test_acc"):
        assert res[k] == pytest.approx(clean[k], rel=1e-5, abs=1e-7), k
    # rank 0's metrics table has one row per epoch, the replayed epochs written once
    rows = pq.read_table(tmp_path / "killed" / "metrics.parquet").to_pylist()
    assert [r["epoch"] for r in rows] == list(range(6))
