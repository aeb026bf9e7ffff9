"""``spiketrain submit/status/train`` refusing addresses and sizes they cannot use, in one line.

A real job submitted to a real ``ray start --head`` (submit, status, logs, results on S3):
tests/storage/test_submit.py."""
import os

from spiketrain.launch.cli import main
from ray_processes import free_port

TINY = """
model: {name: rsnn, hidden: 8}
data: {kind: synthetic, T: 20, n_in: 20, n_classes: 4, n_train: 16, n_test: 8, cache_dir: cache}
strategy: bptt
trainer: {epochs: 1, batch_size: 8, progress: false}
"""


def test_unreachable_addresses_are_one_line_errors(tmp_path, capsys):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(TINY)
    dead = f"127.0.0.1:{free_port()}"
    for argv in (["submit", str(cfg), "--address", f"http://{dead}"],
                 ["status", "some-job", "--address", f"http://{dead}"],
                 ["train", str(cfg), "--address", dead, "--out", str(tmp_path / "run")]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"error: cannot reach Ray at http://{dead}" if argv[0] != "train"
                              else f"error: cannot reach Ray at {dead}"), err
        assert "\n" not in err


def test_more_workers_than_cpus_is_one_line_error(tmp_path, capsys):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(TINY)
    n = (os.cpu_count() or 1) + 1
    assert main(["train", str(cfg), "--workers", str(n), "--out", str(tmp_path / "run"),
                 "--set", f"trainer.batch_size={4 * n}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: --workers {n} needs {n} CPUs") and "\n" not in err
