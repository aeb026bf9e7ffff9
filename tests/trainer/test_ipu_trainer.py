"""``hardware: ipu`` trains through the backend's compiled step (poptorch stand-in): the same
losses and weights as the CPU run, through Trainer.fit and through the CLI."""
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch

from spiketrain.launch.cli import main as cli_main
from spiketrain.trainer import Trainer

from .conftest import small_model

STANDIN = str(Path(__file__).resolve().parents[1] / "hardware" / "standin")
FAST = dict(lr=0.01, batch_size=16, progress=False, verbose=False, threads=1,
            optimizer="sgd")


@pytest.fixture
def poptorch_standin(monkeypatch):
    monkeypatch.syspath_prepend(STANDIN)
    monkeypatch.delitem(sys.modules, "poptorch", raising=False)
    import poptorch
    poptorch.checkpoint_calls.clear()
    yield poptorch
    sys.modules.pop("poptorch", None)


@pytest.mark.parametrize("strategy, opts", [("bptt", {}), ("checkpoint", {"segment": 10})])
def test_trainer_fit_on_ipu_equals_cpu(poptorch_standin, small_data, tmp_path, strategy, opts):
    cpu_model, ipu_model = small_model(), small_model()
    cpu = Trainer(cpu_model, small_data, strategy=strategy, strategy_options=opts, epochs=2,
                  hardware="cpu", out_dir=tmp_path / "cpu", **FAST)
    ipu = Trainer(ipu_model, small_data, strategy=strategy, strategy_options=opts, epochs=2,
                  hardware="ipu", out_dir=tmp_path / "ipu", **FAST)
    a, b = cpu.fit(), ipu.fit()
    assert ipu.train_step is not None and cpu.train_step is None
    # the compiled step ran the model's plain step ops, segmented as the strategy says
    if strategy == "checkpoint":
        assert len(poptorch_standin.checkpoint_calls) > 0
    else:
        assert poptorch_standin.checkpoint_calls == []
    for k in ("train_loss", "train_acc", "test_loss", "test_acc"):
        assert a[k] == pytest.approx(b[k], rel=1e-5, abs=1e-6), k
    for p, q in zip(cpu_model.parameters(), ipu_model.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


def test_eprop_on_ipu_is_refused(poptorch_standin, small_data, tmp_path):
    with pytest.raises(ValueError, match="no compiled IPU form"):
        Trainer(small_model(), small_data, strategy="eprop", hardware="ipu", epochs=1,
                out_dir=tmp_path, **FAST).fit()


def test_cli_hardware_ipu(poptorch_standin, write_cfg, tmp_path):
    cfg = write_cfg()
    out_cpu, out_ipu = tmp_path / "cpu", tmp_path / "ipu"
    common = ["--set", "trainer.optimizer=sgd", "--set", "trainer.clip_grad=null"]
    assert cli_main(["train", str(cfg), "--out", str(out_cpu), "--set", "hardware=cpu",
                     *common]) == 0
    assert cli_main(["train", str(cfg), "--out", str(out_ipu), "--set", "hardware=ipu",
                     *common]) == 0
    a = pq.read_table(out_cpu / "metrics.parquet").to_pylist()[-1]
    b = pq.read_table(out_ipu / "metrics.parquet").to_pylist()[-1]
    assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
    assert a["test_acc"] == pytest.approx(b["test_acc"], abs=1e-9)


def test_without_poptorch_the_clear_refusal_stays(monkeypatch, write_cfg, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "poptorch", None)   # import fails
    assert cli_main(["train", str(write_cfg()), "--out", str(tmp_path / "r"),
                     "--set", "hardware=ipu"]) == 2
    assert "poptorch" in capsys.readouterr().err
