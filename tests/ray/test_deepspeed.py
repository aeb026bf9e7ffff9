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
    """ZeRO 2 (SGD with momentum 0.9, the default): 1 epoch, snapshot, resume for the 2nd
    epoch; same metrics as 2 uninterrupted epochs with the plain optimizer."""
    from spiketrain.trainer.ray_train import fit_local

    tmp, trainer, plain = setup
    ds = ("trainer.engine=deepspeed", "deepspeed.zero_stage=2")
    first = fit_local(trainer("resumed", *ds, "trainer.epochs=1"))
    assert first["epoch"] == 0
    last = fit_local(trainer("resumed", *ds, resume=tmp / "resumed"))
    assert last["epoch"] == 1
    for k in ("train_loss", "test_loss", "test_acc"):
        assert last[k] == pytest.approx(plain[-1][k], rel=TOL, abs=TOL), k


@pytest.mark.parametrize("stage,dtype", [(1, "fp32"), (2, "bf16")])
def test_deepspeed_adam_resume_is_exact(stage, dtype, setup, process_group):
    """Adam under ZeRO: a run resumed after one epoch ends with the weights and metrics of
    the uninterrupted run, exactly; under bf16 that needs the fp32 master weights from the
    snapshot (the bf16 model weights alone lose them)."""
    import torch

    from spiketrain.trainer import read_metrics
    from spiketrain.trainer.ray_train import fit_local
    from spiketrain.trainer.snapshot import read_snapshot

    tmp, trainer, _ = setup
    ds = ("trainer.engine=deepspeed", f"deepspeed.zero_stage={stage}",
          f"deepspeed.dtype={dtype}", "trainer.optimizer=adam", "trainer.lr=0.01")
    name = f"adam{stage}{dtype}"
    fit_local(trainer(f"{name}-full", *ds))
    fit_local(trainer(name, *ds, "trainer.epochs=1"))
    opt = read_snapshot(tmp / name)["optimizer"]
    (state,) = opt["ranks"][0]["base_optimizer_state"]["state"].values()
    assert opt["partitioned"] and int(state["step"]) == 4 and state["exp_avg"].abs().sum() > 0
    fit_local(trainer(name, *ds, resume=tmp / name))
    want, got = read_metrics(tmp / f"{name}-full"), read_metrics(tmp / name)
    assert want[0]["train_loss"] != want[1]["train_loss"]
    for a, b in zip(got, want):
        for k in ("train_loss", "test_loss", "train_acc", "test_acc"):
            assert a[k] == b[k], (a["epoch"], k)
    w_got, w_want = (read_snapshot(tmp / n)["model"] for n in (name, f"{name}-full"))
    assert all(torch.equal(w_got[k], w_want[k]) for k in w_want)
