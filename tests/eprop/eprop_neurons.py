"""Neurons defined only for the e-prop tests.

SynLayer, a current-based LIF with a saturating synapse. State ``(i, v, z)``:
``i_t = alpha i_{t-1} + I_t``, ``v_t = beta v_{t-1} + 2 tanh(i_t) - theta z_{t-1}``,
``z_t = spike(v_t - theta)``. Nonlinear in the current and three components with cross terms.
DetachLIF, a LIF whose reset carries no gradient: its e-prop input trace factorises.
"""
import math

import torch
from torch import nn

from spiketrain.models import spike


class SynLayer(nn.Module):
    state_names = ("i", "v", "z")

    def __init__(self, n_in, n_hidden, recurrent=False, alpha=0.8, beta=0.9, threshold=1.0,
                 couple=False):
        super().__init__()
        self.n_in, self.n_hidden, self.recurrent = n_in, n_hidden, recurrent
        self.alpha, self.beta, self.threshold, self.couple = alpha, beta, threshold, couple
        self.w_in = nn.Parameter(torch.randn(n_hidden, n_in) * (3.0 / math.sqrt(n_in)))
        if recurrent:
            self.w_rec = nn.Parameter(torch.randn(n_hidden, n_hidden) / math.sqrt(n_hidden))
        else:
            self.register_parameter("w_rec", None)

    def init_state(self, batch_size):
        z = self.w_in.new_zeros(batch_size, self.n_hidden)
        return (z.clone(), z.clone(), z)

    def input_current(self, x):
        return x @ self.w_in.t()

    def recurrent_current(self, z):
        return z @ self.w_rec.t()

    def dynamics(self, h, current):
        i, v, z = h
        i = self.alpha * i + current
        drive = 2.0 * torch.tanh(i)
        if self.couple:  # lateral coupling inside the update: not a per-neuron model
            drive = drive + 0.1 * v.mean(-1, keepdim=True)
        v = self.beta * v + drive - self.threshold * z
        return (i, v, spike(v - self.threshold))

    def step_current(self, h, i_in):
        cur = i_in + self.recurrent_current(h[-1]) if self.recurrent else i_in
        return self.dynamics(h, cur)

    def step(self, h, x_t):
        h = self.step_current(h, self.input_current(x_t))
        return h, h[-1]


class DetachLIF(nn.Module):
    """LIF whose reset carries no gradient (``theta * z.detach()``): the membrane's Jacobian
    is ``beta`` for every neuron and the spike does not feed back into it, so e-prop's input
    trace factorises (presynaptic trace times a per-neuron factor)."""

    state_names = ("v", "z")

    def __init__(self, n_in, n_hidden, recurrent=False, beta=0.9, threshold=1.0, gain=3.0):
        super().__init__()
        self.n_in, self.n_hidden, self.recurrent = n_in, n_hidden, recurrent
        self.beta, self.threshold = beta, threshold
        self.w_in = nn.Parameter(torch.randn(n_hidden, n_in) * (gain / math.sqrt(n_in)))
        if recurrent:
            self.w_rec = nn.Parameter(torch.randn(n_hidden, n_hidden) / math.sqrt(n_hidden))
        else:
            self.register_parameter("w_rec", None)

    input_current = SynLayer.input_current
    recurrent_current = SynLayer.recurrent_current
    step_current = SynLayer.step_current
    step = SynLayer.step

    def init_state(self, batch_size):
        z = self.w_in.new_zeros(batch_size, self.n_hidden)
        return (z.clone(), z)

    def dynamics(self, h, current):
        v, z = h
        v = self.beta * v + current - self.threshold * z.detach()
        return (v, spike((v - self.threshold) / self.threshold, "superspike"))
