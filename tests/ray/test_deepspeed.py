"""``engine: deepspeed`` on CPU (gloo, no Ray): same losses as the plain optimizer path."""
import pytest

pytest.importorskip("deepspeed")

TOL = 1e-5  # fp32: ZeRO partitions the same arithmetic, so losses agree to rounding

CFG = """
model: {{name: rsnn, hidden: 16}}
data: {{kind: synthetic, T: 30, n_in: 20, n_classes: 4, n_train: 32, n_test: 16,
       cache_dir: {cache}}}
strategy: bptt
trainer: {{epochs: 2, batch_size: 8, optimizer: sgd, lr: 0.02, progress: false}}
"""


@pytest.fixture(scope="module")
def process_group():
    import torch.distributed as dist
    yield
    if dist.is_initialized():
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from spiketrain.launch import ray_dispatch  # noqa: F401  (registers the deepspeed: section)
    from spiketrain.launch.build import build_trainer
    from spiketrain.launch.config import load_config
    from spiketrain.trainer import read_metrics

    tmp = tmp_path_factory.mktemp("ds")
    cfg = tmp / "c.yaml"
    cfg.write_text(CFG.format(cache=tmp / "cache"))

    def trainer(name, *overrides, **kw):
        return build_trainer(load_config(cfg, list(overrides)), out_dir=tmp / name,
                             verbose=False, **kw)

    trainer("plain").fit()
    return tmp, trainer, read_metrics(tmp / "plain")


def _rows(read, path):
    return [(r["train_loss"], r["test_loss"]) for r in read(path)]


@pytest.mark.parametrize("stage", [1, 2])
def test_deepspeed_zero_matches_plain_optimizer(stage, setup, process_group):
    from spiketrain.trainer import read_metrics
    from spiketrain.trainer.ray_train import fit_local

    tmp, trainer, plain = setup
    fit_local(trainer(f"ds{stage}", "trainer.engine=deepspeed", f"deepspeed.zero_stage={stage}"))
    ds = _rows(read_metrics, tmp / f"ds{stage}")
    ref = [(r["train_loss"], r["test_loss"]) for r in plain]
    assert ref[0] != ref[-1]  # it trained
    assert [x for r in ds for x in r] == pytest.approx([x for r in ref for x in r], rel=TOL, abs=TOL)


def test_trainer_deepspeed_resume_matches_plain_run(setup, process_group):
    """ZeRO 2: 1 epoch, snapshot, resume for the 2nd epoch; same metrics as 2 uninterrupted
    epochs with the plain optimizer."""
    from spiketrain.trainer.ray_train import fit_local

    tmp, trainer, plain = setup
    first = fit_local(trainer("resumed", "trainer.engine=deepspeed", "trainer.epochs=1"))
    assert first["epoch"] == 0
    last = fit_local(trainer("resumed", "trainer.engine=deepspeed", resume=tmp / "resumed"))
    assert last["epoch"] == 1
    for k in ("train_loss", "test_loss", "test_acc"):
        assert last[k] == pytest.approx(plain[-1][k], rel=TOL, abs=TOL), k
