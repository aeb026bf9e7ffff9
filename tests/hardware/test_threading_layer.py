"""The parallel compiled kernels must not change torch's thread count (numba's OpenMP layer
shares torch's libgomp and would set it to numba's pool size on its first launch)."""
import os
import subprocess
import sys

import pytest

numba = pytest.importorskip("numba")

SCRIPT = r"""
import torch
torch.set_num_threads(1)
import spiketrain as st
from spiketrain.models import RSNN
from spiketrain.models.snn import lif_numba
import numba
torch.manual_seed(0)
m = RSNN(20, 16, 3, readout="max")
x = (torch.rand(40, 8, 20) < 0.2).float()
st.unroll(m, x, "bptt").sum().backward()  # one torch thread: the serial kernels
one = torch.get_num_threads()
torch.set_num_threads(2)  # two: the parallel kernels launch numba's pool
st.unroll(m, x, "bptt").sum().backward()
torch.set_num_threads(1)
st.unroll(m, x, "bptt").sum().backward()
print(numba.threading_layer(), one, torch.get_num_threads())
"""


def test_kernels_leave_torch_threads_alone():
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_THREADING_LAYER"}
    env["NUMBA_NUM_THREADS"] = "2"
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                         env=env, timeout=240, check=True).stdout.split()
    assert out[-3] == "workqueue"
    assert out[-2:] == ["1", "1"]  # the user's setting, not numba's pool size
