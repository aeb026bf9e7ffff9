"""Bad input gives clear errors, before running where possible."""
import pytest
import torch

import spiketrain as st
from spiketrain.strategies import BudgetError
from spiketrain.strategies.executor import ImpureStepError

from .common import ImpureCell, make


def test_unknown_strategy():
    model, x = make("lif1", 10)
    with pytest.raises(ValueError, match="unknown strategy 'chekpoint'.*checkpoint"):
        st.unroll(model, x, strategy="chekpoint")


@pytest.mark.parametrize("name,opts", [("checkpoint", {"segment": 0}), ("checkpoint", {"segment": -3}),
                                       ("revolve", {"slots": 0}), ("double", {"fine": 0}),
                                       ("offload", {"tier": "ssd"}), ("checkpoint", {"segmnt": 4}),
                                       ("checkpoint", {"reduce": "median"})])
def test_bad_options(name, opts):
    with pytest.raises(ValueError):
        st.strategies.get(name, **opts)


@pytest.mark.parametrize("name,opts", [("checkpoint", {"segment": 5}), ("revolve", {"slots": 2}),
                                       ("double", {}), ("offload", {"tier": "host"})])
def test_budget_too_small_refuses_before_running(name, opts):
    model, x = make("lif2", 40)
    orig = model.chunk
    steps = []

    def counting_chunk(state, xs):
        steps.append(xs.shape[0])
        return orig(state, xs)

    model.chunk = counting_chunk
    budget = {"device": 100, "host": 100, "disk": 100}
    with pytest.raises(BudgetError, match=r"needs [0-9.]+ (B|KiB)"):
        st.unroll(model, x, strategy=name, budget=budget, **opts)
    # only short probes (a few steps, one segment at most) ran, never the sequence
    assert max(steps) <= 5 and sum(steps) < 40


def test_budget_fits_and_is_respected():
    model, x = make("lif2", 40)
    y = st.unroll(model, x, strategy="checkpoint", budget={"device": "8KiB"})
    y.sum().backward()
    rep = st.last_report()
    assert rep.peak_bytes["device"] <= 8 * 1024


def test_impure_step_detected():
    torch.manual_seed(0)
    model = ImpureCell(20, 8, 5)
    x = torch.randn(20, 4, 20)
    for name, o in [("checkpoint", {"segment": 5}), ("revolve", {"slots": 2}), ("double", {})]:
        y = st.unroll(model, x, strategy=name, **o)
        with pytest.raises(ImpureStepError, match="not a pure function"):
            y.sum().backward()


def test_inputs_must_be_time_major():
    model, x = make("lif1", 10)
    with pytest.raises((ValueError, TypeError)):
        st.unroll(model, x[:, 0, 0], strategy="checkpoint")
