"""CUDA paths: pinned host tier, non-blocking copies, offload prefetch (skipped without CUDA)."""
import pytest
import torch

from .common import assert_close_grads, make, run

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.mark.parametrize("strategy,opts", [("offload", {"tier": "host", "prefetch": 2}),
                                           ("offload", {"tier": "disk"}),
                                           ("double", {"slow": "host"}),
                                           ("checkpoint", {"segment": 5})])
def test_cuda_matches_bptt(strategy, opts):
    model, x = make("alif2", 37, x_grad=False)
    model, x = model.cuda(), x.cuda()
    y0, g0, _ = run(model, x, "bptt")
    y1, g1, rep = run(model, x, strategy, **opts)
    assert torch.equal(y0, y1)
    assert_close_grads(g1, g0)
    if strategy == "offload" and opts["tier"] == "host":
        assert rep.bytes_moved >= 2 * rep.peak_bytes["host"]  # device -> pinned host -> device
