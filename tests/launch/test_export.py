"""``spiketrain export RUN_DIR --nir`` and training a NIR file from a config."""
import pytest
import torch
import yaml

from spiketrain.launch.cli import main

pytest.importorskip("nir")

BASE = ["--set", "data.n_train=32", "--set", "data.n_test=32", "--set", "data.n_in=30",
        "--set", "data.n_classes=3", "--set", "data.T=20", "--set", "model.hidden=10",
        "--set", "trainer.epochs=1", "--set", "trainer.batch_size=16", "--no-progress"]


def test_export_then_import_and_train_from_a_config(tmp_path, capsys):
    import spiketrain as st
    from spiketrain.launch.commands._trained import load_trained, run_config
    run = tmp_path / "run"
    args = [*BASE, "--set", f"data.cache_dir={tmp_path / 'cache'}"]
    assert main(["train", "configs/shd_rsnn.yaml", *args, "--set", "model.neuron=alif",
                 "--out", str(run)]) == 0
    path = tmp_path / "net.nir"
    assert main(["export", str(run), "--nir", str(path)]) == 0
    assert path.exists()
    src, _ = load_trained(run, run_config(run)[0])
    back = st.models.from_nir(path)
    x = (torch.rand(20, 2, 30, generator=torch.Generator().manual_seed(0)) < 0.3).float()
    with torch.no_grad():
        torch.testing.assert_close(st.unroll(back, x, strategy="bptt"),
                                   st.unroll(src, x, strategy="bptt"), rtol=0, atol=1e-6)
    # model: {name: nir, path: ...} trains under a memory strategy from the CLI
    cfg = yaml.safe_load(open("configs/shd_rsnn.yaml"))
    cfg["model"] = {"name": "nir", "path": str(path)}
    (tmp_path / "nir.yaml").write_text(yaml.safe_dump(cfg))
    i = args.index("model.hidden=10")
    args = args[:i - 1] + args[i + 1:]  # the NIR file fixes the sizes
    assert main(["train", str(tmp_path / "nir.yaml"), *args, "--strategy", "checkpoint",
                 "--out", str(tmp_path / "run2")]) == 0
    assert "final test accuracy" in capsys.readouterr().out


def test_export_refuses_a_model_nir_cannot_hold(tmp_path, capsys):
    run = tmp_path / "run"
    args = [*BASE, "--set", f"data.cache_dir={tmp_path / 'cache'}"]
    assert main(["train", "configs/shd_rsnn.yaml", *args, "--set", "model.neuron=adlif",
                 "--out", str(run)]) == 0
    assert main(["adapt", str(run), "--dt", "5ms", "--out", str(tmp_path / "fine")]) == 0
    assert main(["export", str(tmp_path / "fine"), "--nir", str(tmp_path / "x.nir")]) == 2
    assert "state-space form" in capsys.readouterr().err
    assert main(["export", str(run), "--nir", str(tmp_path / "ok.nir")]) == 0
