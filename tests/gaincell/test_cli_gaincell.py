"""``spiketrain train`` -> ``spiketrain calibrate`` -> ``spiketrain estimate`` on a tiny
gaincell_gpt config (byte-level text data, language_model task)."""
import json
import math

import pytest
import torch
import yaml

from spiketrain.launch.cli import main

TINY = """
model: {{name: gaincell_gpt, vocab_size: 256, n_layer: 1, n_head: 2, n_embd: 32, window: 64,
        attention: linear_gaincell}}
data: {{kind: text, path: {corpus}, T: 64, test_fraction: 0.2}}
task: language_model
strategy: bptt
trainer: {{epochs: 1, batch_size: 8, lr: 0.003, progress: false, threads: 1}}
"""


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gc_cli")
    corpus = tmp / "corpus.txt"
    corpus.write_text("".join(f"The value of x{i % 7} is {i * 3 % 11}.\n" for i in range(300)))
    cfg = tmp / "tiny.yaml"
    cfg.write_text(TINY.format(corpus=corpus))
    assert main(["train", str(cfg), "--out", str(tmp / "ref")]) == 0
    return tmp, cfg


def test_train_writes_language_model_metrics(trained):
    from spiketrain.trainer import read_metrics

    tmp, _ = trained
    rows = read_metrics(tmp / "ref")
    assert "test_ppl" in rows[-1] and "train_bpc" in rows[-1]
    assert rows[-1]["test_ppl"] == pytest.approx(math.exp(rows[-1]["test_loss"]), rel=1e-6)


def test_calibrate_writes_a_new_run_and_reports(trained, capsys):
    tmp, cfg = trained
    out = tmp / "cal"
    assert main(["calibrate", str(cfg), "--from", str(tmp / "ref"), "--out", str(out),
                 "--stats-batches", "2", "--max-iters", "6", "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "reference (linear_gaincell)" in text and "gaincell, calibrated" in text
    report = json.loads((out / "calibration.json").read_text())
    for k in ("ppl_reference", "ppl_converted", "ppl_calibrated"):
        assert math.isfinite(report[k]) and report[k] > 1
    assert 1 <= report["calibration"]["iterations"] <= 6
    raw = yaml.safe_load((out / "config.yaml").read_text())
    assert raw["model"]["attention"] == "gaincell" and raw["data"]["kind"] == "text"
    # the new snapshot holds the calibrated scalers; the reference's are untouched
    new = torch.load(out / "snapshot.pt", weights_only=True)["model"]
    old = torch.load(tmp / "ref" / "snapshot.pt", weights_only=True)["model"]
    moved = [k for k in new if k.endswith((".a", ".b")) and not torch.equal(new[k], old[k])]
    assert moved
    assert all(torch.equal(new[k], old[k]) for k in new if not k.endswith((".a", ".b")))
    # the written folder is a valid config + snapshot: evaluating it gives the reported ppl
    assert main(["calibrate", str(out / "config.yaml"), "--from", str(out), "--out",
                 str(tmp / "again"), "--reference", "linear_gaincell", "--max-iters", "0",
                 "--stats-batches", "1", "--quiet"]) == 0
    again = json.loads((tmp / "again" / "calibration.json").read_text())
    assert again["ppl_converted"] == pytest.approx(report["ppl_calibrated"], rel=1e-5)


def test_calibrate_refusals(trained, capsys):
    tmp, cfg = trained
    assert main(["calibrate", str(cfg), "--from", str(tmp / "nowhere")]) == 2
    assert "no snapshot" in capsys.readouterr().err
    assert main(["calibrate", str(cfg), "--from", str(tmp / "ref"), "--kind",
                 "linear_gaincell"]) == 2
    assert "nothing to adapt" in capsys.readouterr().err


def test_estimate_table_and_json(trained, capsys):
    _, cfg = trained
    assert main(["estimate", str(cfg), "--device", "h100"]) == 0
    text = capsys.readouterr().out
    assert "1 layer x 2 heads, d=16, window M=64" in text and "65 ns" in text
    assert "gain-cell (paper)" in text and "h100 (roofline)" in text
    assert main(["estimate", str(cfg), "--json", "--set", "model.n_layer=3", "--power", "350"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["shape"] == {"n_layer": 3, "n_head": 2, "head_dim": 16, "window": 64}
    assert data["gaincell"]["latency_s"] == pytest.approx(3 * 65e-9)
    assert data["gpu"]["energy_j"] == pytest.approx(350 * data["gpu"]["latency_s"])
    assert data["energy_ratio"] == pytest.approx(data["gpu"]["energy_j"] / data["gaincell"]["energy_j"])


def test_shipped_config_validates_and_estimates(capsys):
    from pathlib import Path

    from spiketrain.launch.config import load_config

    path = Path(__file__).resolve().parents[2] / "configs" / "gaincell_lm.yaml"
    cfg = load_config(path)
    assert cfg.model.target == "gaincell_gpt" and cfg.data.kind == "text"
    assert cfg.task.name == "language_model"
    assert main(["estimate", str(path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["shape"] == {"n_layer": 4, "n_head": 4, "head_dim": 32, "window": 1024}


def test_partial_evaluation_uses_the_same_batches(trained):
    """--eval-batches N: every perplexity is over the same first N test batches (with no
    calibration step, converted and calibrated are the same model and the same number)."""
    tmp, cfg = trained
    out = tmp / "noop"
    assert main(["calibrate", str(cfg), "--from", str(tmp / "ref"), "--out", str(out),
                 "--max-iters", "0", "--eval-batches", "1", "--stats-batches", "1",
                 "--quiet"]) == 0
    report = json.loads((out / "calibration.json").read_text())
    assert report["calibration"]["iterations"] == 0
    assert report["ppl_calibrated"] == report["ppl_converted"]
