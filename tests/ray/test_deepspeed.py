"""``engine: deepspeed`` on CPU (gloo): same losses as the plain optimizer path."""
import pytest

pytest.importorskip("deepspeed")

from spiketrain.trainer.ray_job import SpikeJob  # noqa: E402

TOL = 1e-5  # fp32: ZeRO partitions the same arithmetic, so losses agree to rounding


@pytest.fixture(scope="module")
def process_group():
    import torch.distributed as dist
    yield
    if dist.is_initialized():
        dist.destroy_process_group()


def _losses(engine, stage=0):
    cfg = {"data": {"T": 40}, "deepspeed": {"zero_stage": stage},
           "trainer": {"epochs": 2, "steps_per_epoch": 3, "optimizer": "sgd", "lr": 2e-3,
                       "engine": engine}}
    return [row["loss"] for row in SpikeJob(cfg).fit()]


@pytest.mark.parametrize("stage", [1, 2])
def test_deepspeed_zero_matches_plain_optimizer(stage, process_group):
    plain = _losses("torch")
    ds = _losses("deepspeed", stage)
    assert plain[0] != plain[-1]  # it trained
    assert ds == pytest.approx(plain, rel=TOL, abs=TOL)


def test_trainer_deepspeed_resume_matches_plain_run(process_group, tmp_path):
    """The Trainer with engine: deepspeed (ZeRO 2, no Ray): 1 epoch, snapshot, resume for the
    2nd epoch; same metrics as 2 uninterrupted epochs with the plain optimizer."""
    from spiketrain.launch import ray_dispatch  # noqa: F401  (registers the deepspeed: section)
    from spiketrain.launch.build import build_trainer
    from spiketrain.launch.config import load_config
    from spiketrain.trainer.ray_train import fit_local

    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"""
model: {{name: rsnn, hidden: 16}}
data: {{kind: synthetic, T: 30, n_in: 20, n_classes: 4, n_train: 32, n_test: 16,
       cache_dir: {tmp_path / 'cache'}}}
strategy: bptt
trainer: {{epochs: 2, batch_size: 8, optimizer: sgd, lr: 0.02, progress: false}}
deepspeed: {{zero_stage: 2}}
""")
    plain = build_trainer(load_config(cfg), out_dir=tmp_path / "plain", verbose=False).fit()
    ds = ["trainer.engine=deepspeed"]
    first = fit_local(build_trainer(load_config(cfg, ds + ["trainer.epochs=1"]),
                                    out_dir=tmp_path / "ds", verbose=False))
    assert first["epoch"] == 0
    last = fit_local(build_trainer(load_config(cfg, ds), out_dir=tmp_path / "ds",
                                   resume=tmp_path / "ds", verbose=False))
    assert last["epoch"] == plain["epoch"] == 1
    for k in ("train_loss", "test_loss", "test_acc"):
        assert last[k] == pytest.approx(plain[k], rel=TOL, abs=TOL), k
