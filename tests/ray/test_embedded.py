"""The embedded local Ray of ``--workers N``: it listens on 127.0.0.1 only, and none of its
processes (the agents included) outlives a driver killed with ``kill -9``."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

psutil = pytest.importorskip("psutil")

DRIVER = """
import json, os, time
import psutil, ray
from spiketrain.trainer.ray_session import ray_session
with ray_session(num_cpus=1):
    time.sleep(3)                                       # the agents start after ray.init
    me = psutil.Process()
    kids = [p for p in me.children(recursive=True)]
    listen = {}
    for p in kids:
        try:
            listen[p.pid] = [c.laddr.ip for c in p.net_connections("tcp")
                             if c.status == psutil.CONN_LISTEN]
        except psutil.Error:
            pass
    print(json.dumps({"node_ip": ray.nodes()[0]["NodeManagerAddress"],
                      "kids": {p.pid: " ".join(p.cmdline())[:80] for p in kids},
                      "listen": listen}), flush=True)
    time.sleep(600)
"""


def _alive(pid):
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def test_embedded_ray_is_local_and_dies_with_a_killed_driver(tmp_path):
    env = {**os.environ, "RAY_ADDRESS": ""}
    env.pop("RAY_ADDRESS")
    p = subprocess.Popen([sys.executable, "-c", DRIVER], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, text=True,
                         env=env, cwd=tmp_path)
    try:
        info = json.loads(p.stdout.readline())
    finally:
        os.kill(p.pid, signal.SIGKILL)
        p.wait(timeout=60)
    assert info["node_ip"] == "127.0.0.1"
    kids = {int(k): v for k, v in info["kids"].items()}
    agents = [k for k, v in kids.items() if "Agent" in v]
    assert agents, kids                                # the processes that used to survive
    listening = {int(pid): ips for pid, ips in info["listen"].items() if ips}
    assert listening                                   # gcs, raylet, agents, workers
    for pid, ips in listening.items():                 # loopback only
        assert all(ip in ("127.0.0.1", "::ffff:127.0.0.1", "::1") for ip in ips), (kids[pid], ips)
    for _ in range(100):                               # reaped within a few seconds
        left = [k for k in kids if _alive(k)]
        if not left:
            break
        time.sleep(0.2)
    assert not left, {k: kids[k] for k in left}
