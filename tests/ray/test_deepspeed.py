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
