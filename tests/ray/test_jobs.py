"""``spiketrain submit/status/logs`` against a real ``ray start --head`` on loopback."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from spiketrain.launch.cli import main
from ray_processes import free_port, skip_without_job_agent, stop


BIN = Path(sys.executable).parent
TINY = """
model: {name: rsnn, hidden: 8}
data: {kind: synthetic, T: 20, n_in: 20, n_classes: 4, n_train: 16, n_test: 8, cache_dir: cache}
strategy: bptt
trainer: {epochs: 1, batch_size: 8, progress: false}
"""


@pytest.fixture
def ray_head(tmp_path, monkeypatch):
    """A 1-CPU Ray head on 127.0.0.1 in its own temp dir; always stopped after the test."""
    if not (BIN / "ray").exists():
        pytest.skip("ray CLI not installed")
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")  # head and client must agree
    port, dash, client_port = free_port(), free_port(), free_port()
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
           "RAY_AUTH_MODE": "disabled"}
    temp = Path("/tmp") / f"st-head-{port}"  # short: Ray's socket paths have a length limit
    cmd = [str(BIN / "ray"), "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}",
           "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}", f"--ray-client-server-port={client_port}", "--num-cpus=1",
           f"--temp-dir={temp}", "--disable-usage-stats"]
    try:
        subprocess.run(cmd, env=env, check=True, capture_output=True, timeout=120)
        yield f"http://127.0.0.1:{dash}"
    finally:
        # only this head's processes (`ray stop` would stop every Ray on the machine)
        stop([str(temp), f":{port} "])
        shutil.rmtree(temp, ignore_errors=True)


def test_submit_runs_tiny_job_and_fetches_logs(ray_head, tmp_path, capsys):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(TINY)
    rc = main(["submit", str(cfg), "--address", ray_head, "--wait", "--job-id", "tiny-1"])
    skip_without_job_agent(rc, capsys)
    assert rc == 0
    out = capsys.readouterr().out
    assert "job tiny-1: SUCCEEDED" in out
    assert main(["status", "tiny-1", "--address", ray_head]) == 0
    assert "tiny-1: SUCCEEDED" in capsys.readouterr().out
    assert main(["logs", "tiny-1", "--address", ray_head]) == 0
    logs = capsys.readouterr().out
    assert "epoch 1/1" in logs and "final test accuracy" in logs


def test_unreachable_addresses_are_one_line_errors(tmp_path, capsys):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(TINY)
    dead = f"127.0.0.1:{free_port()}"
    for argv in (["submit", str(cfg), "--address", f"http://{dead}"],
                 ["status", "some-job", "--address", f"http://{dead}"],
                 ["train", str(cfg), "--address", dead, "--out", str(tmp_path / "run")]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"error: cannot reach Ray at http://{dead}" if argv[0] != "train"
                              else f"error: cannot reach Ray at {dead}"), err
        assert "\n" not in err


def test_more_workers_than_cpus_is_one_line_error(tmp_path, capsys):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(TINY)
    n = (os.cpu_count() or 1) + 1
    assert main(["train", str(cfg), "--workers", str(n), "--out", str(tmp_path / "run"),
                 "--set", f"trainer.batch_size={4 * n}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: --workers {n} needs {n} CPUs") and "\n" not in err
