"""DistributedDataParallel (gloo, 2 processes) over a strategy == one process on the whole batch."""
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import spiketrain as st

from .common import assert_close_grads, make

STRATS = [("checkpoint", {"segment": 6}), ("revolve", {"slots": 3}), ("double", {}),
          ("offload", {"tier": "disk"})]
T, B = 23, 4


def _loss(y):
    return (y ** 2).mean(dim=(0, 2)).mean() + y.max(0).values.mean()


def _worker(rank, world, store, out):
    torch.set_num_threads(1)
    # rendezvous through a file: no TCP port to pick (a picked free port can be taken before use)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        model, x = make("alif2", T, B=B)
        ddp = torch.nn.parallel.DistributedDataParallel(model)
        xs = x.chunk(world, dim=1)[rank]
        res = {}
        for name, opts in STRATS:
            model.zero_grad(set_to_none=True)
            _loss(st.unroll(ddp, xs, strategy=name, **opts)).backward()
            res[name] = [p.grad.clone() for p in model.parameters()]
        if rank == 0:
            torch.save(res, out)
    finally:
        dist.destroy_process_group()


def test_ddp_two_processes_match_single_process(tmp_path):
    out = str(tmp_path / "grads.pt")
    mp.spawn(_worker, args=(2, str(tmp_path / "rendezvous"), out), nprocs=2, join=True)
    got = torch.load(out)
    model, x = make("alif2", T, B=B)
    _loss(st.unroll(model, x, strategy="bptt")).backward()
    ref = [p.grad.clone() for p in model.parameters()]
    for name, _ in STRATS:
        assert_close_grads(got[name], ref)
