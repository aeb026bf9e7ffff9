"""A strategy given by class path runs (API, Trainer, config); the config's strategy is
built once and that instance reaches unroll; non-strategies are refused before any call."""
import pytest
import torch

import spiketrain as st
from spiketrain.launch.build import build_trainer
from spiketrain.launch.cli import main as cli_main
from spiketrain.launch.config import ConfigError, load_config
from spiketrain.strategies.bptt import BPTT

from .conftest import small_model

CALLS = []


class CountingBPTT(BPTT):
    """BPTT that counts its runs (a user strategy outside the package)."""

    def __init__(self, tag: str = "x", **kw):
        super().__init__(**kw)
        self.tag = tag
        CALLS.append(("init", tag))

    def run(self, model, inputs, state=None):
        CALLS.append(("run", self.tag))
        return super().run(model, inputs, state)


def test_class_path_strategy_in_unroll_equals_bptt():
    model = small_model()
    x = (torch.rand(30, 4, 100) < 0.05).float()
    CALLS.clear()
    y = st.unroll(model, x, strategy=f"{__name__}:CountingBPTT", tag="u")
    y.sum().backward()
    g = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    st.unroll(model, x, strategy="bptt").sum().backward()
    for a, p in zip(g, model.parameters()):
        torch.testing.assert_close(a, p.grad)
    assert CALLS == [("init", "u"), ("run", "u")]
    assert st.last_report().peak_bytes["device"] > 0


def test_config_strategy_built_once_and_reaches_unroll(write_cfg, tmp_path):
    path = write_cfg("".join([]))
    CALLS.clear()
    cfg = load_config(path, [f"strategy={{class: '{__name__}:CountingBPTT', tag: c}}"])
    trainer = build_trainer(cfg, out_dir=tmp_path / "r", verbose=False)
    trainer.fit()
    inits = [c for c in CALLS if c[0] == "init"]
    runs = [c for c in CALLS if c[0] == "run"]
    assert inits == [("init", "c")], CALLS          # validated instance is the one used
    assert len(runs) == trainer.global_step
    assert cfg.to_dict()["strategy"] == {"class": f"{__name__}:CountingBPTT", "tag": "c"}


@pytest.mark.parametrize("spec", ["{class: 'os:system'}", "{class: 'collections:OrderedDict'}"])
def test_non_strategy_class_paths_are_refused(write_cfg, spec):
    with pytest.raises(ConfigError, match="not a strategy"):
        load_config(write_cfg(), [f"strategy={spec}"])


def test_model_class_path_must_be_a_model(write_cfg, tmp_path, capsys):
    marker = tmp_path / "touched"
    rc = cli_main(["train", str(write_cfg()), "--out", str(tmp_path / "r"), "--set",
                   f"model={{class: 'os:system', command: 'touch {marker}'}}"])
    assert rc == 2 and not marker.exists()
    assert "not a model" in capsys.readouterr().err
