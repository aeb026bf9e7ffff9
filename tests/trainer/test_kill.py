"""Real ``kill -9`` of a training process: the run resumes from its last snapshot, and the
temp file of a snapshot write that the kill cut short is removed on resume."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import torch

KILL_CFG = """
model: {name: rsnn, hidden: 192, dt: 20.0, readout: mean, surrogate: superspike}
data: {kind: synthetic, T: 20, dt: 0.05, n_in: 100, n_classes: 3, n_train: 64, n_test: 8,
       cache_dir: CACHE}
strategy: bptt
trainer: {epochs: 400, batch_size: 16, lr: 0.01, progress: false, threads: 1,
          snapshot_every: 1}
"""


def _cli(args, cwd, **kw):
    return subprocess.Popen([sys.executable, "-m", "spiketrain.launch.cli"] + args, cwd=cwd,
                            stdin=subprocess.DEVNULL, env={**os.environ, "SPIKETRAIN_DEBUG": ""},
                            **kw)


def _snap_step(run: Path) -> int:
    try:
        return int(torch.load(run / "snapshot.pt", weights_only=True)["global_step"])
    except Exception:       # not written yet (the file appears atomically, but may be absent)
        return -1


def _kill_during_training(run: Path, cfg: Path, cwd: Path, catch_write: bool) -> bool:
    """Start a long run, ``kill -9`` it once a few snapshots are on disk (if ``catch_write``,
    at a moment a snapshot temp file exists). Returns whether the kill cut a write short."""
    p = _cli(["train", str(cfg), "--out", str(run)], cwd, stdout=subprocess.DEVNULL,
             stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 240
        while _snap_step(run) < 3:
            assert p.poll() is None, p.stderr.read().decode()
            assert time.monotonic() < deadline, "no snapshot after 240 s"
            time.sleep(0.05)
        caught = False
        if catch_write:
            end = time.monotonic() + 20
            while time.monotonic() < end and not caught:
                caught = bool(list(run.glob(".snapshot.pt-*.tmp")))
        os.kill(p.pid, signal.SIGKILL)
        p.wait(timeout=60)
        assert p.returncode == -signal.SIGKILL
        return caught
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        p.stderr.close()


def test_kill_9_then_resume(tmp_path):
    cfg = tmp_path / "kill.yaml"
    cfg.write_text(KILL_CFG.replace("CACHE", str(tmp_path / "cache")))
    run = tmp_path / "run"
    caught = _kill_during_training(run, cfg, tmp_path, catch_write=True)
    tmps = list(run.glob(".snapshot.pt-*.tmp"))
    if not caught:      # the kill fell between writes: leave what a cut write leaves behind
        (run / ".snapshot.pt-killed.tmp").write_bytes(os.urandom(1 << 20))
        tmps = list(run.glob(".snapshot.pt-*.tmp"))
    assert tmps
    step = _snap_step(run)
    assert step >= 3                                   # the last complete snapshot reads back
    epochs_done = step // 4                            # 64 samples / 16 = 4 steps per epoch
    # a new run cannot take the folder over, and a resume with a changed model is refused
    r = subprocess.run([sys.executable, "-m", "spiketrain.launch.cli", "train", str(cfg),
                        "--out", str(run)], cwd=tmp_path, capture_output=True, text=True,
                       timeout=240, stdin=subprocess.DEVNULL)
    assert r.returncode == 2 and "already holds a run" in r.stderr
    assert list(run.glob(".snapshot.pt-*.tmp")) == tmps      # a refused command touches nothing
    r = subprocess.run([sys.executable, "-m", "spiketrain.launch.cli", "train", str(cfg),
                        "--resume", str(run), "--set", f"trainer.epochs={epochs_done + 2}"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=300,
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    assert not list(run.glob(".snapshot.pt-*.tmp"))          # removed on resume
    rows = pq.read_table(run / "metrics.parquet").to_pylist()
    assert rows[-1]["epoch"] == epochs_done + 1
    resumed = [row for row in rows if row.get("resumed_from_step") is not None]
    assert len(resumed) == 1 and resumed[0]["resumed_from_step"] == step
    assert _snap_step(run) == (epochs_done + 2) * 4


def test_disk_tier_leaves_no_file_even_while_open(tmp_path):
    """The scratch file is unlinked right after opening: nothing exists that a kill could
    leave behind, and the tier still works through its descriptor."""
    from spiketrain.hardware.tiers import DiskTier

    t = DiskTier(folder=str(tmp_path))
    assert os.listdir(tmp_path) == []
    x = torch.arange(1000.0)
    t.put("a", [x])
    assert torch.equal(t.get("a")[0], x)
    assert os.listdir(tmp_path) == []
    t.close()


def test_kill_9_during_offload_to_disk_leaves_no_scratch(tmp_path):
    cfg = tmp_path / "kill.yaml"
    cfg.write_text(KILL_CFG.replace("CACHE", str(tmp_path / "cache")))
    scratch, tmpdir = tmp_path / "scratch", tmp_path / "tmp"
    tmpdir.mkdir()
    run = tmp_path / "run"
    env = {**os.environ, "SPIKETRAIN_DEBUG": "", "TMPDIR": str(tmpdir)}
    p = subprocess.Popen([sys.executable, "-m", "spiketrain.launch.cli", "train", str(cfg),
                          "--out", str(run), "--strategy", "offload", "--set", "strategy.tier=disk",
                          "--set", f"strategy.scratch={scratch}"], cwd=tmp_path, env=env,
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 240
        while _snap_step(run) < 3:                 # offloading to disk, step after step
            assert p.poll() is None, p.stderr.read().decode()
            assert time.monotonic() < deadline, "no snapshot after 240 s"
            time.sleep(0.05)
        os.kill(p.pid, signal.SIGKILL)
        p.wait(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        p.stderr.close()
    assert os.listdir(scratch) == []
    assert not [n for n in os.listdir(tmpdir) if n.startswith("spiketrain-")]   # torch's caches may stay
