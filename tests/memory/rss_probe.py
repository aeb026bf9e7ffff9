"""Peak resident memory of one training step, measured by the kernel, not by spiketrain.

Run as a script: ``python rss_probe.py STRATEGY T`` prints one JSON line with ``growth``: the
high-water mark of the process's resident set (``VmHWM``, reset through
``/proc/self/clear_refs`` just before the step) minus the resident set right before it, in
bytes, less the step's own input. Run it with ``MALLOC_MMAP_THRESHOLD_=65536`` so large
blocks go straight back to the kernel when freed (the warm-up step on a short input then
leaves nothing cached that the measured step could reuse unseen).
"""
import json
import sys

import torch
import torch.nn.functional as F

import spiketrain as st
from spiketrain.models import RSNN

N_IN, HIDDEN, N_OUT, B, RATE = 64, 128, 4, 8, 0.05


def _status(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(key)


def measure(strategy: str, T: int) -> dict:
    torch.manual_seed(0)
    torch.set_num_threads(1)
    model = RSNN(n_in=N_IN, hidden=HIDDEN, n_out=N_OUT, readout="mean")
    y = torch.randint(0, N_OUT, (B,))

    def step(strategy, T):
        x = (torch.rand(T, B, N_IN) < RATE).float()
        yt = y.expand(T, B)
        model.zero_grad(set_to_none=False)   # keep the gradient buffers of the warm-up
        if strategy == "eprop":
            loss = st.unroll(model, x, strategy="eprop", step_loss=F.cross_entropy, targets=yt)
        else:
            loss = F.cross_entropy(model.logits(st.unroll(model, x, strategy=strategy)), y)
        loss.backward()

    step(strategy, 16)                 # warm up on a short input: kernels, gradient buffers
    x_bytes = T * B * N_IN * 4         # the step's own input, created inside the measurement
    before = _status("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")                   # reset VmHWM to the current resident set
    step(strategy, T)
    peak = _status("VmHWM")
    return {"strategy": strategy, "T": T, "growth": peak - before - x_bytes, "rss": before}


if __name__ == "__main__":
    print(json.dumps(measure(sys.argv[1], int(sys.argv[2]))))
