"""Data-parallel training on a real local Ray: gradients, fault tolerance."""
import functools
import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest
import torch

from spiketrain.trainer.ray_job import SpikeJob
from spiketrain.trainer.ray_train import fit_ray

TINY = {"model": {"n_in": 20, "hidden": 16, "n_out": 4}, "data": {"T": 40, "batch_size": 8}}


def _cfg(**trainer):
    return {**TINY, "trainer": trainer}


def test_two_workers_gradient_equals_whole_batch(ray_local, tmp_path):
    # One SGD step with lr=1: the weight change is exactly minus the gradient.
    cfg = _cfg(epochs=1, steps_per_epoch=1, optimizer="sgd", lr=1.0)
    res = fit_ray(functools.partial(SpikeJob, cfg), workers=2, run_dir=tmp_path, name="grad")
    assert res.metrics["world_size"] == 2
    ddp = torch.load(Path(res.snapshot) / "snapshot.pt")["model"]
    single = SpikeJob(cfg)  # one process, the whole batch of 8
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


def test_killed_worker_resumes_from_last_snapshot(ray_local, tmp_path):
    cfg = _cfg(epochs=6, steps_per_epoch=8, lr=5e-3)
    job = functools.partial(SpikeJob, cfg)
    clean = fit_ray(job, workers=2, run_dir=tmp_path, name="clean")

    box = {}
    th = threading.Thread(target=lambda: box.update(
        r=fit_ray(job, workers=2, run_dir=tmp_path, name="killed", max_failures=2)))
    th.start()
    killed = None
    deadline = time.time() + 120
    while time.time() < deadline and th.is_alive():
        info = _worker_info(tmp_path, "killed", 1)
        if info and info["epoch"] >= 2:
            os.kill(info["pid"], signal.SIGKILL)
            killed = info
            break
        time.sleep(0.02)
    th.join(timeout=180)
    assert killed is not None, "run ended before a worker could be killed"
    res = box["r"]
    assert res.metrics["resumed_from"] >= 1  # the new worker group started from a snapshot
    assert res.metrics["epochs_done"] == 6
    assert _worker_info(tmp_path, "killed", 1)["pid"] != killed["pid"]
    for k in ("loss", "accuracy"):
        assert res.metrics[k] == pytest.approx(clean.metrics[k], rel=1e-6, abs=1e-9)
