import textwrap

import pytest


@pytest.fixture
def write_config(tmp_path):
    """``write_config(yaml_text) -> path`` of a config in a temp folder."""
    def write(text: str, name: str = "exp.yaml"):
        p = tmp_path / name
        p.write_text(textwrap.dedent(text))
        return p
    return write


TINY = """
model: {name: rsnn, hidden: 16, dt: 20.0, readout: mean, surrogate: superspike}
data: {kind: synthetic, T: 20, dt: 0.05, n_in: 30, n_classes: 3, n_train: 24, n_test: 12,
       cache_dir: CACHE}
strategy: bptt
trainer: {epochs: 1, batch_size: 8, lr: 0.01, progress: false, threads: 1}
"""
