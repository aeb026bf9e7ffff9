"""``spiketrain evaluate`` and ``spiketrain adapt`` on a real (tiny) trained run folder."""
import json

import pytest
import torch
import yaml

from spiketrain.launch.cli import main

BASE = ["--set", "data.n_train=32", "--set", "data.n_test=32", "--set", "data.n_in=40",
        "--set", "data.n_classes=3", "--set", "data.T=20", "--set", "data.dt=0.01",
        "--set", "model.dt=10.0", "--set", "model.hidden=12", "--set", "trainer.epochs=1",
        "--set", "trainer.batch_size=16", "--no-progress"]


@pytest.fixture(scope="module", params=["lif", "adlif"])
def trained(request, tmp_path_factory):
    tmp = tmp_path_factory.mktemp(f"run-{request.param}")
    cache = tmp / "cache"
    run = tmp / "run"
    from spiketrain.models.snn import adlif  # noqa: F401  (registers "adlif")
    rc = main(["train", "configs/shd_rsnn.yaml", *BASE, "--set", f"model.neuron={request.param}",
               "--set", f"data.cache_dir={cache}", "--out", str(run)])
    assert rc == 0
    return run, request.param


def _eval(run, capsys, *extra):
    capsys.readouterr()
    assert main(["evaluate", str(run), "--json", *extra]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_evaluate_prints_the_trained_runs_test_metrics(trained, capsys):
    run, _ = trained
    row = _eval(run, capsys)
    assert set(row) >= {"test_loss", "test_acc", "samples"} and row["samples"] == 32
    import pyarrow.parquet as pq
    last = pq.read_table(run / "metrics.parquet").to_pylist()[-1]
    assert row["test_acc"] == pytest.approx(last["test_acc"])
    assert row["test_loss"] == pytest.approx(last["test_loss"], rel=1e-5)
    # other data: a new test set of another size (same model)
    assert _eval(run, capsys, "--set", "data.n_test=16")["samples"] == 16


def test_evaluate_refuses_a_folder_without_a_run(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path)]) == 2
    assert "config.yaml" in capsys.readouterr().err


@pytest.mark.parametrize("method", ["integral", "expectation", "euler", "baseline"])
def test_adapt_writes_a_run_that_evaluate_and_train_accept(trained, method, capsys, tmp_path):
    run, neuron = trained
    out = tmp_path / f"fine-{method}"
    assert main(["adapt", str(run), "--dt", "5ms", "--method", method, "--out", str(out)]) == 0
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    assert cfg["data"]["dt"] == pytest.approx(0.005) and cfg["data"]["T"] == 40
    assert cfg["model"]["dt"] == pytest.approx(5.0)
    if neuron == "adlif" and method != "baseline":
        assert cfg["model"]["neuron_options"]["form"] == "ssm"
    # the written weights are the mapped ones
    from spiketrain.launch.commands._trained import load_trained, run_config
    from spiketrain.models.resolution import adapt
    src, _ = load_trained(run, run_config(run)[0])
    mapped, _ = adapt(src, 10.0, 5.0, method)
    got, _ = load_trained(out, run_config(out)[0])
    for (k, a), b in zip(mapped.state_dict().items(), got.state_dict().values()):
        torch.testing.assert_close(a, b, msg=k)
    row = _eval(out, capsys)
    assert 0.0 <= row["test_acc"] <= 1.0
    # and going back with the integral mapping returns the source weights
    if method == "integral":
        back = tmp_path / "back"
        assert main(["adapt", str(out), "--dt", "0.01", "--method", "integral", "--out",
                     str(back)]) == 0
        b, _ = load_trained(back, run_config(back)[0])
        sd = b.state_dict()
        ref = src.state_dict() if neuron == "lif" else \
            adapt(src, 10.0, 10.0, "integral")[0].state_dict()
        for k, v in ref.items():
            torch.testing.assert_close(sd[k], v, rtol=1e-5, atol=1e-6, msg=k)
    # fine-tuning at the new step resumes from the mapped weights
    assert main(["train", str(out / "config.yaml"), "--resume", str(out), "--no-progress"]) == 0


def test_adapt_refuses_unknown_method_and_bad_dt(trained, capsys):
    run, _ = trained
    with pytest.raises(SystemExit):
        main(["adapt", str(run), "--dt", "5ms", "--method", "bogus"])
    assert main(["adapt", str(run), "--dt", "fast"]) == 2
    assert "--dt" in capsys.readouterr().err


def test_run_config_keeps_the_sample_duration_and_parses_steps(trained):
    from spiketrain.launch.commands._trained import parse_dt, run_config
    from spiketrain.launch.config import ConfigError
    run, _ = trained
    cfg, _ = run_config(run, ["data.dt=0.005"])
    assert cfg.data.T == 40 and cfg.data.duration == pytest.approx(0.2)
    cfg, _ = run_config(run, ["data.dt=0.005", "data.T=10"])
    assert cfg.data.T == 10
    assert parse_dt("5ms") == pytest.approx(0.005) and parse_dt("0.02") == 0.02
    assert parse_dt("500us") == pytest.approx(5e-4)
    with pytest.raises(ConfigError):
        parse_dt("-1ms")


def test_adapt_keeps_count_binning_and_the_interval_task(tmp_path, capsys):
    """A run on the interval task with count binning: the adapted run reads the same files,
    binned at the new step with the same input totals."""
    from spiketrain.data import build_datasets
    from spiketrain.launch.commands._trained import run_config
    run = tmp_path / "run"
    extra = ["--set", "data.intervals=[0.02, 0.04, 0.08]", "--set", "data.binning=count",
             "--set", "data.event_width=0.006", "--set", "data.jitter=0.002",
             "--set", "data.duration=0.3", "--set", "data.T=30", "--set", "data.n_bands=4",
             "--set", "data.signal_rate=800.0", "--set", f"data.cache_dir={tmp_path / 'cache'}"]
    assert main(["train", "configs/shd_rsnn.yaml", *BASE, *extra, "--out", str(run)]) == 0
    out = tmp_path / "fine"
    assert main(["adapt", str(run), "--dt", "5ms", "--method", "integral", "--out",
                 str(out)]) == 0
    cfg = yaml.safe_load((out / "config.yaml").read_text())["data"]
    assert cfg["binning"] == "count" and cfg["intervals"] == [0.02, 0.04, 0.08]
    assert cfg["T"] == 60 and cfg["dt"] == pytest.approx(0.005)
    _, src = build_datasets(run_config(run)[0].data)
    _, fine = build_datasets(run_config(out)[0].data)
    assert src.path == fine.path                   # the same spike files
    xs, _ = src.get_batch(range(len(src)))
    xf, _ = fine.get_batch(range(len(fine)))
    assert float(xs.max()) > 1 and float(xs.sum()) == float(xf.sum())
    torch.testing.assert_close(xf.view(30, 2, *xf.shape[1:]).sum(1), xs, rtol=0, atol=0)
    assert 0.0 <= _eval(out, capsys)["test_acc"] <= 1.0
