"""``engine: deepspeed`` (CPU, gloo, no Ray) trains the gaincell language model config:
same per-epoch losses and perplexities as the plain optimizer path.

Runs in a fresh interpreter: DeepSpeed keeps process-wide communication state that a
destroyed process group would leave stale for later DeepSpeed tests in the same process."""
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("deepspeed")

TOL = 1e-5

CFG = """
model: {{name: gaincell_gpt, vocab_size: 256, n_layer: 1, n_head: 2, n_embd: 32, window: 64,
        attention: linear_gaincell}}
data: {{kind: text, path: {corpus}, T: 64, test_fraction: 0.2}}
task: language_model
strategy: checkpoint
trainer: {{epochs: 2, batch_size: 8, optimizer: sgd, lr: 0.05, progress: false, threads: 1}}
"""


def test_deepspeed_trains_the_gaincell_lm_config(tmp_path):
    here = Path(__file__).resolve().parent
    code = (f"import sys; sys.path.insert(0, {str(here)!r}); "
            f"import test_lm_task_deepspeed as m; from pathlib import Path; "
            f"m._run(Path({str(tmp_path)!r}))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=280)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]


def _run(tmp_path):
    from spiketrain.launch import ray_dispatch  # noqa: F401  (registers the deepspeed: section)
    from spiketrain.launch.build import build_trainer
    from spiketrain.launch.config import load_config
    from spiketrain.trainer import read_metrics
    from spiketrain.trainer.ray_train import fit_local

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("".join(f"item {i % 13} costs {i % 5} coins\n" for i in range(120)))
    cfg = tmp_path / "c.yaml"
    cfg.write_text(CFG.format(corpus=corpus))

    def trainer(name, *overrides):
        return build_trainer(load_config(cfg, list(overrides)), out_dir=tmp_path / name,
                             verbose=False)

    trainer("plain").fit()
    fit_local(trainer("ds", "trainer.engine=deepspeed", "deepspeed.zero_stage=2"))
    keys = ("train_loss", "test_loss", "test_ppl", "test_bpc")
    plain = [[r[k] for k in keys] for r in read_metrics(tmp_path / "plain")]
    ds = [[r[k] for k in keys] for r in read_metrics(tmp_path / "ds")]
    assert len(plain) == len(ds) == 2
    assert plain[0][1] > plain[1][1]                      # it learned
    assert [x for r in ds for x in r] == pytest.approx([x for r in plain for x in r],
                                                        rel=TOL, abs=TOL)
