"""``engine: deepspeed`` on 2 Ray Train workers (gloo, CPU), Adam (an optimizer with state:
step count and two moments per weight): ZeRO-1 really partitions the optimizer over the two
ranks, and a run stopped after one epoch resumes from its snapshot in the shared run folder,
the two ranks' optimizer partitions carried in it, to the same metrics (1e-5) as an
uninterrupted plain run on whole batches in one process (what DDP's averaged gradient equals).
ZeRO-2 on 2 workers, resumed from an ``s3://`` run folder: tests/storage/test_s3_zero.py."""
import pytest

pytest.importorskip("deepspeed")

TOL = 1e-5
CFG = """
model: {{name: rsnn, hidden: 16}}
data: {{kind: synthetic, T: 30, n_in: 20, n_classes: 4, n_train: 32, n_test: 16,
       cache_dir: {cache}}}
strategy: bptt
trainer: {{epochs: 2, batch_size: 8, optimizer: adam, lr: 0.01, progress: false, threads: 1}}
"""
KEYS = ("train_loss", "test_loss", "train_acc", "test_acc")


def _partition_job(trainer, deepspeed, rank, world_size, device):
    """The Trainer job, recording how many optimizer elements this rank owns."""
    from spiketrain.trainer.ray_train import TrainerJob

    job = TrainerJob(trainer, rank, world_size, device, deepspeed=deepspeed)
    inner = job.train_epoch

    def train_epoch(epoch):
        row = inner(epoch)
        opt = job.engine.optimizer if job.engine is not None else None
        parts = getattr(opt, "single_partition_of_fp32_groups", None)
        row["owned_numel"] = float(sum(p.numel() for p in parts)) if parts else -1.0
        row["total_numel"] = float(sum(p.numel() for p in trainer.model.parameters()))
        return row

    job.train_epoch = train_epoch
    return job


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    from spiketrain.launch import ray_dispatch  # noqa: F401  (registers the deepspeed: section)
    from spiketrain.launch.build import build_trainer
    from spiketrain.launch.config import load_config

    tmp = tmp_path_factory.mktemp("dsw")
    cfg = tmp / "c.yaml"
    cfg.write_text(CFG.format(cache=tmp / "cache"))

    def trainer(name, *overrides, **kw):
        return build_trainer(load_config(cfg, list(overrides)), out_dir=tmp / "shared" / name,
                             verbose=False, **kw)
    return tmp, trainer


def _fit(trainer, deepspeed=None):
    import functools

    from ray import cloudpickle

    from spiketrain.trainer.ray_train import fit_ray

    cloudpickle.register_pickle_by_value(__import__(__name__))
    job = functools.partial(_partition_job, trainer, deepspeed)
    return fit_ray(job, workers=2, run_dir=trainer.out_dir, name="ray", max_failures=0).metrics


def _rows(path):
    from spiketrain.trainer import read_metrics
    return read_metrics(path)


@pytest.fixture(scope="module")
def plain_rows(build):
    """The plain optimizer in this process on whole batches, 2 epochs uninterrupted."""
    tmp, trainer = build
    plain = trainer("plain")
    plain.fit()
    ref = _rows(plain.out_dir)
    assert ref[0]["train_loss"] != ref[-1]["train_loss"]   # it trained
    return ref


@pytest.mark.timeout(900)
def test_zero1_matches_plain_run_and_resumes(build, plain_rows, ray_local):
    from spiketrain.trainer.snapshot import read_snapshot

    stage = 1
    tmp, trainer = build
    ds = ("trainer.engine=deepspeed", f"deepspeed.zero_stage={stage}")
    first = trainer(f"zero{stage}", *ds, "trainer.epochs=1")
    m = _fit(first, {"zero_stage": stage})
    # each rank owns half of the fp32 optimizer partition: ZeRO is partitioning
    assert 0 < m["owned_numel"] <= m["total_numel"] / 2 + 64, m
    # the snapshot in the shared folder carries both ranks' partitions of Adam's state
    opt = read_snapshot(first.out_dir)["optimizer"]
    assert opt["partitioned"] and opt["world_size"] == 2 and len(opt["ranks"]) == 2
    owned = 0
    for part in opt["ranks"]:
        (state,) = part["base_optimizer_state"]["state"].values()
        assert int(state["step"]) == 4          # 4 steps of 4-sample shards in epoch 1
        assert state["exp_avg_sq"].abs().sum() > 0
        owned += sum(p.numel() for p in part["single_partition_of_fp32_groups"])
    assert owned == m["total_numel"]
    # resumed for the second epoch: the uninterrupted DDP run's metrics, both epochs
    again = trainer(f"zero{stage}", *ds, resume=first.out_dir)
    _fit(again, {"zero_stage": stage})
    got = _rows(again.out_dir)
    assert [r["epoch"] for r in got] == [0, 1]
    assert got[1].get("resumed_from_step") == got[0]["global_step"]
    for a, b in zip(got, plain_rows):
        for k in KEYS:
            assert a[k] == pytest.approx(b[k], rel=TOL, abs=TOL), (stage, a["epoch"], k)

