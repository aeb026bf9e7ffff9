"""Hybrid detector learning on synthetic events: attention bridge vs naive, same budget.

Synthetic Gen1-format recordings (``spiketrain.data``: moving, breathing cars and
pedestrians whose edges fire events, plus background noise) are binned into windows of
``--bins`` x 5 ms histograms on the sensor grid downsampled by ``--downsample``. Each bridge
trains the same model (same seed, same batches, same number of Adam steps, BPTT) and is
scored on the test recordings with COCO mAP@.5 and mAP@[.5:.95] (pycocotools, through the
detection task's evaluator).

    python benchmarks/detector_learn.py                  # both bridges, defaults
    python benchmarks/detector_learn.py --steps 600 --bridges attention
    python benchmarks/detector_learn.py --bin-ms 5       # the data's default 50 ms windows

Default windows are 10 bins of 20 ms (200 ms): the label is the box at the window's end and
the objects move 2-8 grid pixels within a window, so when events happened matters and the
attention bridge can weight the recent bins. With 10 x 5 ms windows they move under 2 grid
pixels, time carries little information and both bridges score alike.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import spiketrain as st  # noqa: E402
from spiketrain.data.events import EventDataConfig, build_event_datasets  # noqa: E402
from spiketrain.models.detector import HybridDetector  # noqa: E402
from spiketrain.trainer.tasks.detection_coco import coco_map  # noqa: E402


def load_split(ds, max_samples: int | None = None, chunk: int = 64):
    """All windows of a dataset as uint8 counts ``[N, T, 2, H, W]`` and their targets."""
    n = len(ds) if not max_samples else min(len(ds), max_samples)
    xs, ts = [], []
    for a in range(0, n, chunk):
        x, t = ds.get_batch(range(a, min(n, a + chunk)))
        xs.append(x.clamp(max=255).to(torch.uint8).transpose(0, 1))
        ts += t
    return torch.cat(xs), ts


def evaluate(model, xs, ts, batch: int = 32) -> dict[str, float]:
    model.eval()
    dets = []
    with torch.no_grad():
        for a in range(0, len(xs), batch):
            x = xs[a:a + batch].transpose(0, 1).float()
            dets += model.decode(model.detect(model(x)), conf=0.01, iou=0.6)
    model.train()
    return coco_map(dets, ts, n_classes=model.num_classes)


def train(bridge: str, data, args) -> dict[str, float]:
    (xtr, ttr), (xte, tte) = data
    torch.manual_seed(args.seed)
    H, W = xtr.shape[-2:]
    model = HybridDetector(input_size=(H, W), bins=args.bins, width=args.width,
                           head_depth=args.head_depth, bridge=bridge)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, args.lr, total_steps=args.steps,
                                                pct_start=0.1)
    g = torch.Generator().manual_seed(args.seed)
    t0, losses = time.time(), []
    for step in range(args.steps):
        idx = torch.randint(0, len(xtr), (args.batch,), generator=g)
        x = xtr[idx].transpose(0, 1).float()
        out = st.unroll(model, x, strategy=args.strategy)
        loss = model.detection_loss(model.detect(out), [ttr[i] for i in idx.tolist()])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
        if (step + 1) % args.log_every == 0:
            print(f"  {bridge:9s} step {step + 1:4d}  loss {sum(losses[-args.log_every:]) / args.log_every:.3f}"
                  f"  {time.time() - t0:.0f} s", flush=True)
    res = evaluate(model, xte, tte)
    res["train_s"] = time.time() - t0
    res["params"] = sum(p.numel() for p in model.parameters())
    return res


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bridges", nargs="+", default=["attention", "naive"])
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--bins", type=int, default=10)
    ap.add_argument("--bin-ms", type=float, default=20.0)
    ap.add_argument("--downsample", type=int, default=4)
    ap.add_argument("--width", type=float, default=0.125)
    ap.add_argument("--head-depth", type=int, default=1)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--strategy", default="bptt")
    ap.add_argument("--n-train", type=int, default=16)
    ap.add_argument("--n-test", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--log-every", type=int, default=50)
    ap.add_argument("--cache-dir", default=os.path.join(tempfile.gettempdir(), "spiketrain_events"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = EventDataConfig(kind="events", bins=args.bins, bin_ms=args.bin_ms, downsample=args.downsample,
                          n_train=args.n_train, n_test=args.n_test, seed=args.seed,
                          cache_dir=args.cache_dir)
    t0 = time.time()
    train_ds, test_ds = build_event_datasets(cfg)
    data = (load_split(train_ds), load_split(test_ds))
    print(f"data: {len(data[0][0])} train / {len(data[1][0])} test windows of "
          f"{args.bins} x {cfg.bin_ms:g} ms on a {tuple(data[0][0].shape[-2:])} grid "
          f"({time.time() - t0:.0f} s to generate and bin)")
    results = {}
    for bridge in args.bridges:
        results[bridge] = train(bridge, data, args)
    print()
    print(f"| bridge | steps | batch | mAP@.5 | mAP@[.5:.95] | params | train s |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for bridge, r in results.items():
        print(f"| {bridge} | {args.steps} | {args.batch} | {r['map50']:.3f} | {r['map']:.3f} "
              f"| {r['params']} | {r['train_s']:.0f} |")


if __name__ == "__main__":
    main()
