"""Model registry: by name, by class path, by decorator; clear errors."""
import sys
import textwrap

import pytest
import torch

import spiketrain as st
from spiketrain.models import RSNN, RecurrentModel, available, build, register, resolve


def test_build_by_name_and_class_path():
    m = build("rsnn", n_in=10, hidden=8, n_out=3)
    assert isinstance(m, RSNN) and m.w_out.shape == (3, 8)
    assert resolve("spiketrain.models.rsnn:RSNN") is RSNN
    assert resolve("spiketrain.models.rsnn.RSNN") is RSNN


def test_register_decorator_plugs_a_cell_in():
    @register("test_leaky_integrator")
    class Leaky(RecurrentModel):
        def __init__(self, n_in=3, n_out=2):
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(n_out, n_in))

        def init_state(self, batch_size):
            return self.w.new_zeros(batch_size, self.w.shape[0])

        def step(self, state, x_t):
            state = 0.5 * state + x_t @ self.w.t()
            return state, state

    assert "test_leaky_integrator" in available()
    m = build("test_leaky_integrator", n_in=3, n_out=2)
    out = st.unroll(m, torch.ones(4, 1, 3))
    # y_t = sum_{k<=t} 0.5^(t-k) * 3
    torch.testing.assert_close(out[:, 0, 0], torch.tensor([3.0, 4.5, 5.25, 5.625]))


def test_class_path_from_an_outside_package(tmp_path, monkeypatch):
    pkg = tmp_path / "mycellpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "cells.py").write_text(textwrap.dedent("""
        import torch
        from spiketrain.models import RecurrentModel

        class MyCell(RecurrentModel):
            def __init__(self, n_in=4, hidden=5):
                super().__init__()
                self.lin = torch.nn.Linear(n_in, hidden)

            def init_state(self, batch_size):
                return self.lin.weight.new_zeros(batch_size, self.lin.out_features)

            def step(self, h, x_t):
                h = torch.tanh(self.lin(x_t) + h)
                return h, h
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    m = build("mycellpkg.cells:MyCell", hidden=6)
    assert type(m).__name__ == "MyCell"
    assert st.unroll(m, torch.zeros(3, 2, 4)).shape == (3, 2, 6)
    sys.modules.pop("mycellpkg.cells", None)
    sys.modules.pop("mycellpkg", None)


def test_errors_name_the_fix():
    with pytest.raises(ValueError, match="unknown model 'nope'.*class path"):
        resolve("nope")
    with pytest.raises(ValueError, match="cannot import model module"):
        resolve("no_such_pkg_xyz.cells:Cell")
    with pytest.raises(ValueError, match="has no model class"):
        resolve("spiketrain.models.rsnn:Nope")
    with pytest.raises(ValueError, match="rejected its options"):
        build("rsnn", hiden=3)
