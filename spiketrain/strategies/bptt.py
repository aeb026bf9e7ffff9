"""``bptt``: keep everything autograd saves (the reference). Counts saved bytes exactly."""
from __future__ import annotations

import torch
from torch import Tensor

from ..models.base import state_flatten
from .base import Strategy
from .inputs import check_inputs, is_dense, length, whole, window
from .registry import register


class SavedBytes:
    """Context counting distinct storages autograd saves for backward, excluding ``exclude``
    (parameters, inputs). ``.bytes`` after the forward equals what backward will hold."""

    def __init__(self, exclude=()):
        self.exclude = {t.untyped_storage().data_ptr() for t in exclude}
        self.seen: set[int] = set()
        self.bytes = 0
        self._ctx = torch.autograd.graph.saved_tensors_hooks(self._pack, self._unpack)

    def _pack(self, t: Tensor):
        st = t.untyped_storage()
        ptr = st.data_ptr()
        if ptr not in self.exclude and ptr not in self.seen and st.nbytes() > 0:
            self.seen.add(ptr)
            self.bytes += st.nbytes()
        return t

    @staticmethod
    def _unpack(t: Tensor) -> Tensor:
        return t

    def __enter__(self):
        self._ctx.__enter__()
        return self

    def __exit__(self, *exc):
        return self._ctx.__exit__(*exc)


@register("bptt")
class BPTT(Strategy):
    """Plain backpropagation through time: one autograd graph over all T steps."""

    @classmethod
    def candidates(cls, ctx):
        """``auto``: keep everything, ``saved(T)`` bytes on the device, one call with graph."""
        a, b = ctx.cost["g"]
        return [ctx.candidate({}, "keep everything", {"device": ctx.saved_bytes(ctx.T)},
                              a + b * ctx.T)]

    #: probe lengths of :meth:`predict` (long enough that packed per-step records, e.g. one
    #: bit per spike, are counted at their real size)
    PROBE = (32, 64)

    def predict(self, model, inputs, state) -> int:
        """Bytes autograd will save over all T steps, from one pass over the first 32 and 64
        steps (affine in T; exact for T <= 64), without running the whole sequence."""
        T = length(inputs)
        leaves, _ = state_flatten(state)
        p = next(model.parameters(), None)
        dtype = p.dtype if p is not None else torch.get_default_dtype()
        sizes, lengths = [], sorted({min(L, T) for L in self.PROBE})
        for L in lengths:
            x = window(model, inputs, 0, L, dtype)
            excl = list(model.parameters()) + leaves + ([x] if is_dense(x) else [])
            with torch.enable_grad(), SavedBytes(exclude=excl) as saved:
                model.chunk(state, x)
            sizes.append(saved.bytes)
        if len(lengths) == 1 or lengths[-1] == T:
            return sizes[-1]
        slope = max(0.0, (sizes[1] - sizes[0]) / (lengths[1] - lengths[0]))
        # the larger of the affine and the proportional extrapolation: kernels that save
        # per-call blocks are not quite affine in T, and a budget must not be underrated
        return int(max(sizes[1] + (T - lengths[1]) * slope, sizes[1] * T / lengths[1]))

    def run(self, model, inputs: Tensor, state=None):
        check_inputs(inputs)
        if state is None:
            state = model.init_state(inputs.shape[1])
        if not is_dense(inputs):  # spike train: as SparseSpikes to the RSNN, else densified
            p = next(model.parameters(), None)
            inputs = whole(model, inputs, p.dtype if p is not None else torch.get_default_dtype())
        if "device" in self.budget:   # fit the budget or refuse before running
            need = self.predict(model, inputs, state)
            self.check_budget({"device": need})
            self.report.notes["predicted_peak_bytes"] = {"device": need}
        leaves, _ = state_flatten(state)
        excl = list(model.parameters()) + leaves + ([inputs] if is_dense(inputs) else [])
        with SavedBytes(exclude=excl) as saved:
            _, y = model.chunk(state, inputs)
        if "device" in self.budget and saved.bytes > self.budget["device"]:
            # the estimate was short: refuse before backward rather than exceed the budget
            self.check_budget({"device": saved.bytes})
        self.report.steps = inputs.shape[0]
        self.report.peak_bytes = {"device": saved.bytes}
        self.report.recomputed_steps = 0
        self.report.bytes_moved = 0
        return y
