"""Shared helpers for the strategy tests: small models, BPTT references, comparisons."""
from __future__ import annotations

import torch
from torch import nn

import spiketrain as st
from spiketrain.models import RSNN, RecurrentModel


class GatedCell(RecurrentModel):
    """A custom stateful cell (not an SNN): dict state {"h", "c"} plus a leaky trace."""

    def __init__(self, n_in=6, hidden=8, n_out=3):
        super().__init__()
        self.w = nn.Linear(n_in + hidden, 2 * hidden)
        self.out = nn.Linear(hidden, n_out)
        self.hidden = hidden

    def init_state(self, batch_size):
        z = self.out.weight.new_zeros(batch_size, self.hidden)
        return {"h": z, "c": z.clone(), "trace": [z.clone()]}

    def step(self, state, x_t):
        g = self.w(torch.cat([x_t, state["h"]], -1))
        f, u = g.chunk(2, -1)
        c = torch.sigmoid(f) * state["c"] + (1 - torch.sigmoid(f)) * torch.tanh(u)
        h = torch.tanh(c)
        tr = 0.9 * state["trace"][0] + h
        return {"h": h, "c": c, "trace": [tr]}, self.out(tr)


class ImpureCell(GatedCell):
    """Mutates hidden module state in step: recomputation cannot reproduce it."""

    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.calls = 0

    def step(self, state, x_t):
        self.calls += 1
        state, y = super().step(state, x_t)
        return state, y + 1e-3 * self.calls


MODELS = {
    "lif1": lambda: RSNN(20, 16, 5, layers=1, neuron="lif"),
    "alif1": lambda: RSNN(20, 16, 5, layers=1, neuron="alif"),
    "lif2": lambda: RSNN(20, 16, 5, layers=2, neuron="lif", reset="zero"),
    "alif2": lambda: RSNN(20, 16, 5, layers=2, neuron="alif"),
    "gated": lambda: GatedCell(20, 8, 5),
}


def make(name, T, B=4, seed=0, rate=0.3, x_grad=False):
    torch.manual_seed(seed)
    model = MODELS[name]()
    if isinstance(model, RSNN):
        x = (torch.rand(T, B, 20) < rate).float()
    else:
        x = torch.randn(T, B, 20)
    if x_grad:
        x.requires_grad_(True)
    return model, x


def run(model, x, strategy, loss_fn=None, state=None, **opts):
    """Outputs, gradients (params, then x if it requires grad) and the report."""
    model.zero_grad(set_to_none=True)
    if isinstance(x, torch.Tensor) and x.requires_grad:
        x.grad = None
    y = st.unroll(model, x, strategy=strategy, state=state, **opts)
    loss = (loss_fn or default_loss)(y)
    loss.backward()
    grads = [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in model.parameters()]
    if isinstance(x, torch.Tensor) and x.requires_grad:
        grads.append(x.grad.clone())
    return y.detach(), grads, st.last_report()


def default_loss(y):
    w = torch.linspace(0.5, 1.5, y.shape[-1])
    return ((y * w) ** 2).mean() + y.tanh().sum() * 1e-2


def rel_err(a, b):
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-12)).item()


def assert_close_grads(got, ref, tol=1e-5):
    assert len(got) == len(ref)
    for i, (g, r) in enumerate(zip(got, ref)):
        assert g.shape == r.shape
        assert rel_err(g, r) <= tol, f"gradient {i}: relative error {rel_err(g, r):.2e} > {tol}"
