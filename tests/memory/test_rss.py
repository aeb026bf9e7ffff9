"""Memory claims checked by the kernel's accounting, not the package's own: the peak resident
set of a subprocess during one training step (``rss_probe.py``).

* e-prop keeps nothing of the past: its peak does not grow with T (500 -> 8000 steps),
  while BPTT's does, measured the same way;
* checkpoint and double keep a fraction of what BPTT keeps at T = 8000.
"""
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

PROBE = Path(__file__).with_name("rss_probe.py")
MiB = 1 << 20

if not os.path.exists("/proc/self/clear_refs"):
    pytest.skip("peak RSS reset needs Linux /proc/self/clear_refs", allow_module_level=True)


def _growth(strategy: str, T: int) -> int:
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, str(PROBE), strategy, str(T)], capture_output=True,
                       text=True, timeout=280, env=env, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout.strip().splitlines()[-1])["growth"]


@pytest.fixture(scope="module")
def growth():
    runs = [("eprop", 500), ("eprop", 8000), ("bptt", 500), ("bptt", 8000),
            ("checkpoint", 8000), ("double", 8000)]
    with ThreadPoolExecutor(max_workers=2) as pool:
        values = list(pool.map(lambda a: _growth(*a), runs))
    return dict(zip(runs, values))


def test_eprop_peak_is_flat_in_T_where_bptt_grows(growth):
    bptt = growth[("bptt", 8000)] - growth[("bptt", 500)]
    eprop = growth[("eprop", 8000)] - growth[("eprop", 500)]
    # the measurement sees per-step memory: BPTT keeps at least its bool spikes, T B H bytes
    # (7.3 MiB more at T = 8000 than at 500), plus the replay's block states
    assert bptt > 8 * MiB, growth
    assert eprop < 4 * MiB, growth            # e-prop: none of it


def test_checkpoint_and_double_keep_a_fraction_of_bptt(growth):
    full = growth[("bptt", 8000)]
    for name in ("checkpoint", "double"):
        assert growth[(name, 8000)] < 0.5 * full, (name, growth)
