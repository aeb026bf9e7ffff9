"""``spiketrain submit --out s3://...`` against a real ``ray start --head`` on 127.0.0.1 and a
real S3 endpoint (moto): the job id and the results' location are printed, and the results
are read back with ``spiketrain report URI`` after the job ends (``status`` and ``logs`` of
the job on the way); a cluster whose Python lacks
torch ends the job with one line saying so."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from spiketrain.launch.cli import main
from ray_processes import free_port, skip_without_job_agent, stop


pytest.importorskip("ray")
BIN = Path(sys.executable).parent
TINY = """
model: {name: rsnn, hidden: 8}
data: {kind: synthetic, T: 20, n_in: 20, n_classes: 4, n_train: 16, n_test: 8, cache_dir: cache}
strategy: bptt
trainer: {epochs: 2, batch_size: 8, progress: false}
"""


def _head(env_extra: dict, path_first: Path | None = None):
    port, dash = free_port(), free_port()
    temp = Path("/tmp") / f"stsub-{port}"
    env = {**os.environ, **env_extra, "RAY_AUTH_MODE": "disabled",
           "PATH": os.pathsep.join(([str(path_first)] if path_first else []) +
                                   [str(BIN), os.environ["PATH"]])}
    cmd = [str(BIN / "ray"), "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}",
           "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}",
           f"--ray-client-server-port={free_port()}", "--num-cpus=1", f"--temp-dir={temp}",
           "--disable-usage-stats"]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    if r.returncode:
        pytest.skip(f"cannot start a Ray head here: {(r.stderr or r.stdout).strip()[-200:]}")
    return f"http://127.0.0.1:{dash}", [str(temp), f":{port} "], temp


def _stop(marks, temp):
    stop(marks)
    shutil.rmtree(temp, ignore_errors=True)


def test_submitted_results_on_s3_are_reported(s3_env, bucket, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    monkeypatch.setenv("SPIKETRAIN_STAGE_DIR", str(tmp_path / "stage-here"))
    addr, marks, temp = _head({**s3_env, "SPIKETRAIN_STAGE_DIR": str(tmp_path / "stage-head")})
    try:
        cfg = tmp_path / "tiny.yaml"
        cfg.write_text(TINY)
        uri = f"s3://{bucket}/runs/job1"
        rc = main(["submit", str(cfg), "--address", addr, "--out", uri, "--wait",
                   "--job-id", "s3-job-1"])
        skip_without_job_agent(rc, capsys)
        assert rc == 0, capsys.readouterr()
        out = capsys.readouterr().out
        assert "submitted s3-job-1" in out and f"results: {uri}" in out
        assert "job s3-job-1: SUCCEEDED" in out
        # the job's status and logs, as `spiketrain status/logs` print them
        assert main(["status", "s3-job-1", "--address", addr]) == 0
        assert "s3-job-1: SUCCEEDED" in capsys.readouterr().out
        assert main(["logs", "s3-job-1", "--address", addr]) == 0
        logs = capsys.readouterr().out
        assert "epoch 2/2" in logs and "final test accuracy" in logs
    finally:
        _stop(marks, temp)
    # another machine knowing only the URI: the head is gone, the results are not
    assert main(["report", uri, "--plots", str(tmp_path / "plots")]) == 0
    text = capsys.readouterr().out
    assert f"{uri} (2 epochs)" in text and (tmp_path / "plots" / "loss.png").exists()


def test_cluster_without_torch_is_one_line(tmp_path, monkeypatch, capsys):
    system = Path("/usr/bin/python3")
    if not system.exists() or subprocess.run([str(system), "-c", "import torch"],
                                             capture_output=True).returncode == 0:
        pytest.skip("needs a system python3 without torch to stand for a bare cluster Python")
    bare = tmp_path / "bare-bin"
    bare.mkdir()
    (bare / "python").symlink_to(system)   # the job's `python` lacks torch
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    addr, marks, temp = _head({}, path_first=bare)
    try:
        cfg = tmp_path / "tiny.yaml"
        cfg.write_text(TINY)
        rc = main(["submit", str(cfg), "--address", addr, "--wait", "--job-id", "bare-1"])
        skip_without_job_agent(rc, capsys)
        assert rc == 1
    finally:
        _stop(marks, temp)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: spiketrain: the cluster's Python")
    assert "lacks torch" in err[0] and "--pip torch" in err[0]
