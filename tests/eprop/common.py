import torch
import torch.nn.functional as F

import spiketrain as st

from .eprop_neurons import DetachLIF, SynLayer


def step_ce(o_t, y_t):
    return F.cross_entropy(o_t, y_t)


def make_model(neuron="lif", recurrent=False, layers=1, dtype=torch.float64, seed=0,
               n_in=20, hidden=16, n_out=5):
    torch.manual_seed(seed)
    if neuron in ("syn", "detach"):
        cls = SynLayer if neuron == "syn" else DetachLIF
        m = st.models.RSNN(n_in=n_in, hidden=hidden, n_out=n_out, recurrent=recurrent,
                           layers=layers)
        sizes = [n_in] + [hidden] * layers
        m.layers = torch.nn.ModuleList(cls(a, b, recurrent=recurrent)
                                       for a, b in zip(sizes[:-1], sizes[1:]))
    else:
        m = st.models.RSNN(n_in=n_in, hidden=hidden, n_out=n_out, neuron=neuron,
                           recurrent=recurrent, layers=layers)
    return m.to(dtype)


def make_data(T=80, B=4, n_in=20, n_out=5, rate=0.15, dtype=torch.float64, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(T, B, n_in, generator=g) < rate).to(dtype)
    y = torch.randint(0, n_out, (T, B), generator=g)
    return x, y


def bptt_grads(model, x, y, loss_fn=step_ce):
    out = st.unroll(model, x, "bptt")
    loss = sum(loss_fn(o, t) for o, t in zip(out.unbind(0), y.unbind(0)))
    return loss.detach(), dict(zip([n for n, _ in model.named_parameters()],
                                   torch.autograd.grad(loss, list(model.parameters()))))


def eprop_grads(model, x, y, loss_fn=step_ce, **opts):
    loss = st.unroll(model, x, "eprop", step_loss=loss_fn, targets=y, **opts)
    model.zero_grad(set_to_none=True)
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


def loop_grads(model, x, y, loss_fn=step_ce):
    """Reference independent of every kernel: autograd through a loop over ``model.step``."""
    state, loss = model.init_state(x.shape[1]), 0.0
    for x_t, y_t in zip(x.unbind(0), y.unbind(0)):
        state, o_t = model.step(state, x_t)
        loss = loss + loss_fn(o_t, y_t)
    return loss.detach(), dict(zip([n for n, _ in model.named_parameters()],
                                   torch.autograd.grad(loss, list(model.parameters()))))
