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


def test_auto_picks_bptt_when_the_budget_is_ample():
    """BPTT does no recomputation and moves nothing: with room for it, it is the cheapest."""
    model, x = make("gated", 48)
    y0, g0, _ = run(model, x, "bptt")
    y, g, rep = run(model, x, "auto", budget={"device": "1GiB"}, probe_steps=16)
    assert rep.notes["auto"]["choice"] == "bptt" and rep.strategy == "bptt"
    assert torch.equal(y, y0)
    assert_close_grads(g, g0)


# --- the candidates protocol on constructed cost tables ---------------------------------------
from spiketrain.strategies import Strategy, registry  # noqa: E402
from spiketrain.strategies.planning import Candidate, choose  # noqa: E402


class Priced(Strategy):
    """A user strategy with two configurations whose cost and memory it states itself (the
    numbers come from ``table``); it runs as BPTT."""

    table = {"fast": (1.0, 10**9), "lean": (5.0, 10)}

    def __init__(self, variant="lean", **options):
        super().__init__(**options)
        self.variant = variant

    @classmethod
    def candidates(cls, ctx):
        assert ctx.T > 0 and ctx.state_bytes > 0 and ctx.cost["g"][1] >= 0  # what it may use
        return [ctx.candidate({"variant": v}, f"priced({v})", {"device": need}, est)
                for v, (est, need) in cls.table.items()]

    def run(self, model, inputs, state=None):
        self.report.notes["variant"] = self.variant
        return st.strategies.get("bptt").run(model, inputs, state)


def test_choose_takes_the_cheapest_that_fits():
    rows = [Candidate("a", {}, "", {"device": 50}, est_s=1.0),
            Candidate("b", {}, "", {"device": 5, "disk": 10**6}, est_s=3.0),
            Candidate("c", {}, "", {"device": 5}, est_s=2.0),
            Candidate("d", {}, "", {"device": 1}, est_s=4.0)]
    best = choose(rows, {"device": 10})
    assert best.name == "c" and [r.name for r in rows] == ["c", "b", "d", "a"]
    assert not rows[-1].fits and "needs 50 B > device budget 10 B" in rows[-1].why
    assert choose(rows, {"device": 10, "disk": 100}).name == "c"
    assert choose(rows, {"device": 100}).name == "a"
    assert choose([Candidate("a", {}, "", {"device": 50}, est_s=1.0)], {"device": 1}) is None


def test_user_strategy_with_candidates_is_considered(monkeypatch):
    model, x = make("lif1", 24)
    monkeypatch.setitem(registry._STRATEGIES, "priced", Priced)
    assert "priced" in st.strategies.get("auto").considered()
    # every registered strategy that describes candidates is ranked, the user one included
    a = st.strategies.get("auto", budget={"device": 10**8}, probe_steps=8)
    rows = a.rank(model, x)
    names = {r.name for r in rows}
    assert {"bptt", "checkpoint", "revolve", "double", "offload", "priced"} <= names
    assert "eprop" not in names and "auto" not in names  # they describe none
    # constructed table: 'fast' (1 s) needs too much, 'lean' (5 s) fits; only these two compete
    y0, g0, _ = run(model, x, "bptt")
    y, g, rep = run(model, x, "auto", budget={"device": 10**6}, candidates=["priced"], probe_steps=8)
    assert rep.notes["auto"]["choice"] == "priced" and rep.notes["variant"] == "lean"
    assert_close_grads(g, g0)
    monkeypatch.setattr(Priced, "table", {"fast": (1.0, 100), "lean": (5.0, 10)})
    _, _, rep = run(model, x, "auto", budget={"device": 10**6}, candidates=["priced"], probe_steps=8)
    assert rep.notes["variant"] == "fast"


def test_strategy_by_class_path_with_candidates_is_considered():
    model, x = make("lif1", 24)
    path = f"{__name__}:Priced"
    _, _, rep = run(model, x, "auto", budget={"device": 10**6}, candidates=[path, "bptt"],
                    probe_steps=8)
    table = rep.notes["auto"]["table"]
    assert path in table and "keep everything" in table
    with pytest.raises(ValueError, match="describes no candidates"):
        st.strategies.get("auto", candidates=["eprop"])
    with pytest.raises(ValueError, match="unknown candidate"):
        st.strategies.get("auto", candidates=["nonesuch"])
