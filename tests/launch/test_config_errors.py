"""Bad configs exit with status 2 and one line naming the key and the fix (no traceback)."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from spiketrain.launch.cli import main

from .conftest import TINY

BAD = [
    # (yaml, --set overrides, fragments the one-line message must contain)
    ("trainr: {epochs: 2}\n", [], ["unknown config key 'trainr'", "did you mean 'trainer'"]),
    ("trainer: {epocs: 2}\n", [], ["unknown config key 'trainer.epocs'",
                                   "did you mean 'trainer.epochs'"]),
    ("trainer: {epochs: three}\n", [], ["trainer.epochs must be int", "'three'",
                                        "--set trainer.epochs="]),
    ("trainer: {deterministic: 3}\n", [], ["trainer.deterministic must be bool"]),
    ("", ["trainer.batch_size=big"], ["trainer.batch_size must be int"]),
    ("", ["trainer.bach_size=4"], ["unknown config key 'trainer.bach_size'",
                                  "did you mean 'trainer.batch_size'"]),
    ("model: {name: rsn}\n", [], ["model.name", "unknown model 'rsn'", "did you mean 'rsnn'"]),
    ("model: {name: rsnn, hiden: 64}\n", [], ["unknown config key 'model.hiden'",
                                              "did you mean 'model.hidden'"]),
    ("model: {class: 'no_such_pkg_xyz.cells:Cell'}\n", [], ["model.class",
                                                          "cannot import model module"]),
    ("strategy: bpt\n", [], ["unknown strategy 'bpt'", "did you mean 'bptt'"]),
    ("strategy: {name: bptt, segmnt: 3}\n", [], ["strategy", "unknown option", "segmnt"]),
    ("data: {kind: shd, path: /no/such/shd_train.h5}\n", [], ["data.path", "not found"]),
    ("data: {T: -5}\n", [], ["data.T", "positive"]),
    ("data: {Tee: 5}\n", [], ["unknown config key 'data.Tee'", "did you mean 'data.T'"]),
    ("hardware: gpu9\n", [], ["hardware", "unknown hardware 'gpu9'", "auto"]),
    ("trainer: {optimizer: adamm}\n", [], ["trainer.optimizer", "did you mean 'adam'"]),
    ("trainer: [1, 2]\n", [], ["trainer must be a mapping"]),
    ("model: {name: rsnn\n", [], ["invalid YAML", "line"]),
    ("", ["trainer.epochs"], ["--set expects KEY=VALUE"]),
    ("hardware: auto\n", ["hardware.x=1"], ["'hardware' is a value, not a section"]),
]


@pytest.mark.parametrize("text,sets,fragments", BAD, ids=[f"case{i}" for i in range(len(BAD))])
def test_bad_config_exits_2_with_one_line(text, sets, fragments, write_config, capsys):
    path = write_config(text)
    argv = ["train", str(path)] + [a for s in sets for a in ("--set", s)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    for frag in fragments:
        assert frag in lines[0], (frag, lines[0])


def test_missing_config_file(tmp_path, capsys):
    assert main(["train", str(tmp_path / "nope.yaml")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: config file") and "not found" in err and "\n" not in err


def test_resume_without_snapshot(write_config, tmp_path, capsys):
    path = write_config(TINY.replace("CACHE", str(tmp_path / "cache")))
    assert main(["train", str(path), "--resume", str(tmp_path / "nothing")]) == 2
    assert "no snapshot" in capsys.readouterr().err


def test_cli_subprocess_unknown_key_has_no_traceback(write_config):
    path = write_config("trainer: {epocs: 2}\n")
    exe = Path(sys.executable).with_name("spiketrain")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "spiketrain.launch.cli"]
    r = subprocess.run(cmd + ["train", str(path)], capture_output=True, text=True,
                       stdin=subprocess.DEVNULL, timeout=120,
                       env={**os.environ, "SPIKETRAIN_DEBUG": ""})
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert r.stderr.strip() == ("error: unknown config key 'trainer.epocs'; did you mean "
                                "'trainer.epochs'? (valid keys in trainer: "
                                + r.stderr.split("(valid keys in trainer: ")[1].strip())
