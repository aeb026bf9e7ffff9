"""A real two-node Ray cluster on this machine: a head and a second node started with
``ray start`` (separate ``--temp-dir`` and ports, all on 127.0.0.1), ``spiketrain train
--address HEAD --workers 2`` with one worker on each node and the run folder on storage both
reach (a shared folder).

* the console shows each worker line once, with its rank;
* killing the second node's raylet (the whole node, not one worker) mid-run makes the run
  restart from its last snapshot on the shared storage, on a replacement node, and finish with
  the same metrics as the uninterrupted run (rel 1e-5).

Skipped with the reason when two Ray nodes cannot start here. Every process started is
stopped by pid (the processes whose command line names one of the cluster's temp dirs, and
their children), never with ``ray stop``.
"""
from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("ray")
from ray_processes import free_port, processes, stop  # noqa: E402
BIN = Path(sys.executable).parent
CONFIG = """
model: {name: rsnn, hidden: 16, dt: 20.0, readout: mean, surrogate: superspike}
data: {kind: synthetic, T: 40, dt: 0.025, n_in: 30, n_classes: 3, n_train: 384, n_test: 32,
       cache_dir: CACHE}
strategy: bptt
trainer: {epochs: 3, batch_size: 8, lr: 0.01, progress: false, threads: 1}
"""
RUN_TIMEOUT = float(os.environ.get("SPIKETRAIN_MULTINODE_TIMEOUT_S", "420"))


class Cluster:
    """A head and worker nodes on 127.0.0.1, each node in its own temp dir."""

    def __init__(self, root: Path):
        self.root = root
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.temps: list[Path] = []
        self.env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
                    "RAY_AUTH_MODE": "disabled", "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.1",
                    # a lost node is declared dead within ~3 s instead of ~30 s
                    "RAY_health_check_period_ms": "1000",
                    "RAY_health_check_failure_threshold": "3",
                    "RAY_health_check_timeout_ms": "1000"}

    def _start(self, head: bool) -> Path:
        # short temp paths: Ray's socket paths have a length limit
        temp = Path("/tmp") / f"stmn-{self.port}-{len(self.temps)}"
        self.temps.append(temp)
        cmd = [str(BIN / "ray"), "start", "--node-ip-address=127.0.0.1", "--num-cpus=1",
               f"--temp-dir={temp}", "--disable-usage-stats",
               f"--dashboard-agent-listen-port={free_port()}",
               f"--dashboard-agent-grpc-port={free_port()}",
               f"--runtime-env-agent-port={free_port()}",
               f"--metrics-export-port={free_port()}"]
        if head:
            cmd += ["--head", f"--port={self.port}", "--dashboard-host=127.0.0.1",
                    f"--dashboard-port={free_port()}",
                    f"--ray-client-server-port={free_port()}"]
        else:
            cmd += [f"--address={self.address}"]
        r = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=180)
        if r.returncode:
            tail = (r.stderr or r.stdout).strip().splitlines()[-1:] or ["no output"]
            raise RuntimeError(f"`ray start{' --head' if head else ''}` failed: {tail[0]}")
        return temp

    def start_head(self) -> Path:
        return self._start(head=True)

    def add_node(self) -> Path:
        return self._start(head=False)

    def raylet(self, temp: Path) -> int | None:
        """Pid of the raylet of the node in ``temp``."""
        for pid, (_, cmd) in processes().items():
            if "raylet/raylet" in cmd and str(temp) in cmd:
                return pid
        return None

    def node_of(self, pid: int) -> Path | None:
        """The temp dir of the node whose raylet started process ``pid`` (its ancestor)."""
        procs = processes()
        raylets = {self.raylet(t): t for t in self.temps}
        while pid in procs and pid > 1:
            if pid in raylets:
                return raylets[pid]
            pid = procs[pid][0]
        return None

    def stop(self) -> None:
        stop([str(t) for t in self.temps] + [f":{self.port} "])
        for t in self.temps:
            shutil.rmtree(t, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    if not (BIN / "ray").exists():
        pytest.skip("the ray CLI is not installed (pip install -e '.[ray]')")
    c = Cluster(tmp_path_factory.mktemp("cluster"))
    try:
        try:
            c.start_head()
            c.add_node()
        except (RuntimeError, subprocess.TimeoutExpired) as e:
            pytest.skip(f"Ray cannot start two nodes on this machine: {e}")
        yield c
    finally:
        c.stop()


def _workers(out: Path) -> dict[int, dict]:
    """``{rank: worker file}`` of a Ray run folder (pid, epoch, resumed_from, node)."""
    got = {}
    for f in (out / "ray" / "workers").glob("rank*.json"):
        try:
            d = json.loads(f.read_text())
        except (OSError, ValueError):
            continue
        got[int(d["rank"])] = d
    return got


def _train(cluster: Cluster, cfg: Path, out: Path, *extra: str) -> subprocess.Popen:
    cmd = [str(BIN / "spiketrain"), "train", str(cfg), "--address", cluster.address,
           "--workers", "2", "--out", str(out), *extra]
    return subprocess.Popen(cmd, env=cluster.env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, cwd=str(cluster.root))


def _finish(proc: subprocess.Popen, timeout: float = RUN_TIMEOUT) -> str:
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        pytest.fail(f"the run did not end within {timeout:g} s:\n{out[-3000:]}")
    assert proc.returncode == 0, out[-4000:]
    return out


def _rows(out: Path) -> list[dict]:
    import pyarrow.parquet as pq
    return pq.read_table(out / "metrics.parquet").to_pylist()


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    d = tmp_path_factory.mktemp("cfg")
    p = d / "multinode.yaml"
    p.write_text(CONFIG.replace("CACHE", str(d / "cache")))
    return p


@pytest.fixture(scope="module")
def reference(cluster, config, tmp_path_factory):
    """The uninterrupted run on the two nodes: its run folder, console and worker files."""
    out = tmp_path_factory.mktemp("shared") / "reference"
    proc = _train(cluster, config, out)
    placed: dict[int, Path | None] = {}
    t_end = time.time() + RUN_TIMEOUT
    while proc.poll() is None and time.time() < t_end and len(placed) < 2:
        for rank, w in _workers(out).items():
            placed.setdefault(rank, cluster.node_of(int(w["pid"])))
        time.sleep(0.2)
    console = _finish(proc)
    return out, console, placed


def test_workers_on_two_nodes_and_one_clean_console(reference, cluster):
    out, console, placed = reference
    # one worker on each node: the raylet that started each worker process
    assert sorted(placed) == [0, 1], placed
    assert placed[0] is not None and placed[1] is not None and placed[0] != placed[1], placed
    workers = _workers(out)
    if all("node" in w for w in workers.values()):   # Ray's node ids, when recorded
        assert workers[0]["node"] != workers[1]["node"]
    # each epoch line printed once, by rank 0, with its rank
    for e in (1, 2, 3):
        lines = [ln for ln in console.splitlines() if re.search(rf"\bepoch {e}/3\b", ln)]
        assert len(lines) == 1, f"epoch {e}/3 printed {len(lines)} times:\n{console[-3000:]}"
        assert "rank 0" in lines[0], lines[0]
    assert len(_rows(out)) == 3


def test_node_loss_resumes_from_shared_snapshot(reference, cluster, config, tmp_path_factory):
    ref_out, _, _ = reference
    out = tmp_path_factory.mktemp("shared") / "killed"
    proc = _train(cluster, config, out, "--max-failures", "2")
    second = cluster.temps[1]
    killed_at = None
    t_end = time.time() + RUN_TIMEOUT
    try:
        while proc.poll() is None and time.time() < t_end:
            ws = _workers(out)
            if len(ws) == 2 and min(int(w["epoch"]) for w in ws.values()) >= 1:
                time.sleep(0.3)   # into the next epoch
                pid = cluster.raylet(second)
                assert pid is not None, "no raylet for the second node"
                os.kill(pid, signal.SIGKILL)
                killed_at = max(int(w["epoch"]) for w in _workers(out).values())
                break
            time.sleep(0.1)
        assert killed_at is not None, "the run ended before the node could be killed"
        assert killed_at < 3, f"the run had finished all epochs ({killed_at}) before the kill"
        cluster.add_node()   # the replacement node (an autoscaler's job on a real cluster)
        console = _finish(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
    rows, ref = _rows(out), _rows(ref_out)
    assert [r["epoch"] for r in rows] == [0, 1, 2], console[-3000:]
    resumed = _workers(out)
    assert any(int(w.get("resumed_from") or 0) >= 1 for w in resumed.values()), resumed
    for key in ("train_loss", "test_loss", "train_acc", "test_acc"):
        for a, b in zip(rows, ref):
            assert math.isclose(a[key], b[key], rel_tol=1e-5), (key, a[key], b[key])
