"""The planner ranks strategies within a budget, trains with its choice, explains it."""
import pytest
import torch

import spiketrain as st
from spiketrain.strategies import BudgetError

from .common import assert_close_grads, make, run


def test_auto_picks_feasible_and_matches_bptt():
    model, x = make("lif2", 40, x_grad=True)
    y0, g0, rb = run(model, x, "bptt")
    budget = {"device": rb.peak_bytes["device"] // 2}
    y1, g1, rep = run(model, x, "auto", budget=budget, probe_steps=8)
    assert torch.equal(y0, y1)
    assert_close_grads(g1, g0)
    info = rep.notes["auto"]
    assert info["choice"] != "bptt"  # bptt needs twice the budget
    assert rep.strategy == info["choice"] and "fastest that fits" in info["why"]
    assert "needs" in info["table"]  # the infeasible rows say what they need
    assert rep.peak_bytes["device"] <= budget["device"]


def test_auto_ranking_and_simulated_recomputation():
    model, x = make("alif1", 60)
    a = st.strategies.get("auto", budget={"device": 10**9}, probe_steps=8)
    rows = a.rank(model, x)
    assert rows[0].fits and rows[0].est_s == min(r.est_s for r in rows if r.fits)
    names = {r.name for r in rows}
    assert {"bptt", "checkpoint", "revolve", "double", "offload"} <= names
    for r in rows:
        if r.name in ("checkpoint", "revolve", "double"):
            _, _, rep = run(model, x, r.name, **r.options)
            assert rep.recomputed_steps == r.recomputed  # simulation == execution


def test_auto_refuses_when_nothing_fits():
    model, x = make("lif1", 30)
    with pytest.raises(BudgetError, match="no strategy fits"):
        st.unroll(model, x, strategy="auto", budget={"device": 10, "disk": 10}, probe_steps=4)


def test_plan_command_prints_table(capsys):
    from spiketrain.launch.cli import main
    rc = main(["plan", "configs/shd_rsnn.yaml", "--budget", "device=200KiB", "--set", "data.T=60",
               "--set", "trainer.batch_size=4", "--set", "model.hidden=16", "--probe-steps", "8"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "choice:" in out and "bptt" in out and "checkpoint" in out and "est. s" in out
    rc = main(["plan", "configs/shd_rsnn.yaml", "--budget", "gpu=1GiB"])
    assert rc == 2 and "TIER=SIZE" in capsys.readouterr().err
