"""``spiketrain plan`` prints the choice the planner makes: bptt with an ample budget, and a
strategy that fits (never bptt, whose row says it does not) when the budget is tight."""
import re
from pathlib import Path

from spiketrain.launch.cli import main

CFG = str(Path(__file__).resolve().parents[2] / "configs" / "shd_rsnn.yaml")


def _plan(budget, capsys):
    rc = main(["plan", CFG, "--budget", budget, "--set", "data.T=60", "--probe-steps", "16"])
    out = capsys.readouterr().out
    assert rc == 0, out
    choice = re.search(r"^choice: (\w+)", out, re.M).group(1)
    rows = {m.group(1): m.group(2) for m in re.finditer(r"^(\w+)\s+(yes|no)\s", out, re.M)}
    return choice, rows


def test_plan_chooses_bptt_with_an_ample_budget(capsys):
    choice, rows = _plan("device=1GiB", capsys)
    assert choice == "bptt" and rows["bptt"] == "yes"


def test_plan_chooses_a_fitting_strategy_when_bptt_does_not_fit(capsys):
    choice, rows = _plan("device=100KiB", capsys)
    assert rows["bptt"] == "no"
    assert choice != "bptt" and rows[choice] == "yes", (choice, rows)
