"""``offload``: keep everything autograd saves (like BPTT) but in a slower tier.

``torch.autograd.graph.saved_tensors_hooks`` pack every saved tensor (except parameters
and the initial state) into ``host`` or ``disk`` and unpack it in backward. Binary
tensors (spikes, exactly 0/1) are stored bit-packed (``spikes="bits"``, 1/32 of float32)
or as bool (``spikes="bool"``), never as float. The inputs are run ``chunk_steps`` steps at
a time, so a sparse input is densified one chunk at a time (and its dense chunk, binary,
is stored bit-packed with :func:`spiketrain.hardware.bits.pack_bits`). The tiers come from
the backend of the model's device; where it has a copy stream (CUDA) the host tier uses
pinned buffers and non-blocking copies, and the backend's :class:`Prefetcher` loads the
next ``prefetch`` tensors backward will need while the current one is used.

Each stored tensor is freed as soon as backward has used it; the disk tier's scratch
folder is removed when the last one is used, on an error, or when the graph is dropped.
One backward per unroll (``retain_graph=True`` is not supported).
"""
from __future__ import annotations

import os
import weakref

import torch
from torch import Tensor

from ..hardware.backends import backend_for
from ..hardware.bits import pack_bits, unpack_bits
from ..models.base import state_flatten
from . import inputs as inp
from .base import Strategy
from . import heap
from .registry import register
from .scheduled import open_tiers


def is_binary(t: Tensor) -> bool:
    """True if ``t`` is a bool tensor or a float tensor holding only 0 and 1."""
    if t.dtype == torch.bool:  # spikes already kept as bool (RSNN's fused chunk)
        return t.numel() > 0
    if not t.is_floating_point() or t.numel() == 0:
        return False
    return not bool(((t != 0) & (t != 1)).any())


class _Packer:
    """The pack/unpack pair: stores each saved tensor in ``tier`` once (deduplicated by
    identity), frees it when backward has used it as often as it was packed."""

    def __init__(self, tier, exclude, spikes: str, device, prefetcher=None, prefetch: int = 2,
                 dry: bool = False):
        self.tier, self.spikes, self.device, self.dry = tier, spikes, torch.device(device), dry
        self.exclude = {t.untyped_storage().data_ptr() for t in exclude}
        self.ids: dict[int, tuple[weakref.ref, int]] = {}
        self.meta: dict[int, list] = {}  # id -> [kind, shape, dtype, pending unpacks]
        self.next_id = 0
        self.bytes = 0
        self.prefetcher = prefetcher if prefetch else None  # the backend's, on a copy stream
        self.prefetch = prefetch if self.prefetcher is not None else 0
        self.inflight: dict[int, tuple] = {}  # id -> Prefetcher handle
        self.on_empty = None
        self.trim = lambda: None  # a heap.Trimmer during a run

    def pack(self, t: Tensor):
        if t.untyped_storage().data_ptr() in self.exclude:
            return ("keep", t)
        hit = self.ids.get(id(t))
        if hit is not None and hit[0]() is t:
            self.meta[hit[1]][3] += 1
            return ("rec", hit[1])
        if self.spikes != "float" and is_binary(t):
            kind = "bits" if self.spikes == "bits" else "bool"
            data = pack_bits(t) if kind == "bits" else t.to(torch.bool)
        else:
            kind, data = "raw", t.detach()
        k = self.next_id
        self.next_id += 1
        nbytes = data.numel() * data.element_size()
        self.bytes += nbytes
        if not self.dry:
            self.tier.put(k, [data.contiguous() if kind == "raw" else data])
        self.meta[k] = [kind, tuple(t.shape), t.dtype, 1]
        self.ids[id(t)] = (weakref.ref(t), k)
        return ("rec", k)

    def _fetch(self, k: int) -> Tensor:
        if k in self.inflight:  # queued on the copy stream: wait for it
            return self.prefetcher.wait(self.inflight.pop(k))[0]
        return self.tier.get(k, device=self.device)[0]

    def _prefetch_before(self, k: int) -> None:
        for j in range(k - 1, max(-1, k - 1 - self.prefetch), -1):
            if j in self.meta and j not in self.inflight and j in self.tier:
                self.inflight[j] = self.prefetcher.start(
                    lambda j=j: self.tier.get(j, device=self.device))

    def unpack(self, handle):
        how, v = handle
        if how == "keep":
            return v
        kind, shape, dtype, pending = self.meta[v]
        data = self._fetch(v)
        if self.prefetch:
            self._prefetch_before(v)
        if kind == "bits":
            out = unpack_bits(data, shape, dtype)
        elif kind == "bool":
            out = data.to(dtype)
        else:
            out = data
        if pending <= 1:
            del self.meta[v]
            self.tier.free(v)
            self.trim()
            if not self.meta and self.on_empty is not None:
                self.on_empty()
        else:
            self.meta[v][3] = pending - 1
        return out


class _Tap(torch.autograd.Function):
    """Marks where one chunk's outputs ``y [L, B, ...]`` went in the stitched output; its
    backward hands ``y`` its slice of the output gradient. Keeps no reference to ``y``, so
    chunk outputs are freed as soon as they are copied (no per-chunk buffers alive until a
    final ``torch.cat``)."""

    @staticmethod
    def forward(ctx, y, sink, t0, t1):
        ctx.sink, ctx.t0, ctx.t1 = sink, t0, t1
        return y.new_zeros(())

    @staticmethod
    def backward(ctx, _):
        g = ctx.sink.get("grad")
        return (None if g is None else g[ctx.t0:ctx.t1]), None, None, None


class _Stitch(torch.autograd.Function):
    """The whole output ``[T, B, ...]`` (filled chunk by chunk) attached to the chunks' taps."""

    @staticmethod
    def forward(ctx, sink, *taps):
        ctx.sink, ctx.n = sink, len(taps)
        return sink.pop("out")

    @staticmethod
    def backward(ctx, g):
        ctx.sink["grad"] = g  # read by every _Tap.backward, which run after this one
        z = g.new_zeros(())
        return (None,) + (z,) * ctx.n


def _check_scratch(folder) -> None:
    """Refuse (one ValueError line naming it) a scratch folder that is a file or cannot be
    written: the folder is created if missing and a temp file is opened and closed in it."""
    import tempfile

    try:
        os.makedirs(folder, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise ValueError(f"offload scratch {folder!r}: not a writable folder "
                         f"({e.strerror or type(e).__name__}); give a folder on a disk with room"
                         ) from None


@register("offload")
class Offload(Strategy):
    """Everything autograd saves goes to ``tier`` ("host" or "disk"); spikes bit-packed.
    Options: ``spikes`` ("bits", "bool" or "float"), ``chunk_steps`` (default 256),
    ``prefetch`` (tensors loaded ahead where the backend has a copy stream, default 2),
    ``scratch`` (disk folder, default a temporary one), ``trim`` (give free heap pages back
    when the RSS grew 256 MiB, default True), ``backend`` (name or instance; default the
    backend of the model's device)."""

    def __init__(self, tier: str = "host", spikes: str = "bits", chunk_steps: int = 256,
                 prefetch: int = 2, scratch: str | None = None, trim: bool = True, backend=None,
                 **options):
        super().__init__(**options)
        if tier not in ("host", "disk"):
            raise ValueError(f"offload tier must be 'host' or 'disk', got {tier!r}")
        if spikes not in ("bits", "bool", "float"):
            raise ValueError(f"offload spikes must be 'bits', 'bool' or 'float', got {spikes!r}")
        if not isinstance(chunk_steps, int) or chunk_steps <= 0:
            raise ValueError(f"offload chunk_steps must be a positive integer, got {chunk_steps!r}")
        if scratch is not None:
            if tier != "disk":   # an option this setting would ignore is an error
                raise ValueError(f"offload scratch={scratch!r} is used by tier 'disk' only (tier is "
                                 f"{tier!r}); add tier: disk (--set strategy.tier=disk) or drop "
                                 f"scratch")
            _check_scratch(scratch)
        self.tier, self.spikes, self.chunk_steps = tier, spikes, chunk_steps
        self.prefetch, self.scratch, self.trim = prefetch, scratch, trim
        self.backend = backend

    def _unroll(self, model, inputs, state, packer, t_end=None):
        T = inp.length(inputs) if t_end is None else t_end
        p = next(model.parameters(), None)
        dtype = p.dtype if p is not None else torch.get_default_dtype()
        out, sink, taps = None, {}, []
        with torch.autograd.graph.saved_tensors_hooks(packer.pack, packer.unpack):
            for t0 in range(0, T, self.chunk_steps):
                t1 = min(T, t0 + self.chunk_steps)
                x = inputs[t0:t1] if inp.is_dense(inputs) else inp.segment(inputs, t0, t1, dtype)
                state, y = model.chunk(state, x)
                del x
                if out is None:
                    out = y.new_empty((T,) + tuple(y.shape[1:]))
                out[t0:t1] = y.detach()
                if y.requires_grad:
                    taps.append(_Tap.apply(y, sink, t0, t1))
                del y
                packer.trim()
        if not taps:
            return out
        sink["out"] = out
        return _Stitch.apply(sink, *taps)

    @classmethod
    def candidates(cls, ctx):
        """``auto``: one candidate per slow tier of the backend: the bytes a dry run predicts,
        and the seconds of runs over the probe windows (``a`` per chunk of ``chunk_steps``,
        ``b`` per step), never below BPTT's (per step by ``offload_margin`` more): offload
        does BPTT's work plus packing and copies."""
        out = []
        ga, gb = ctx.cost["g"]
        margin = ctx.options.get("offload_margin", 0.05)
        for tier in ctx.backend.slow_tiers:
            s = cls(tier=tier, backend=ctx.backend)
            need = {"device": 0, tier: s.predict(ctx.model, ctx.inputs, ctx.state)}
            a, b = ctx.time_calls(f"offload_{tier}", s)
            a, b = max(a, ga), max(b, gb * (1 + margin))
            out.append(ctx.candidate({"tier": tier}, f"offload(tier={tier})", need,
                                     -(-ctx.T // s.chunk_steps) * a + b * ctx.T))
        return out

    def backend_of(self, model, inputs):
        """The backend owning the tiers (that of the input's or the model's device)."""
        if inp.is_dense(inputs):
            device = inputs.device
        else:
            p = next(model.parameters(), None)
            device = p.device if p is not None else torch.device("cpu")
        return backend_for(device, self.backend)

    def predict(self, model, inputs, state) -> int:
        """Bytes the tier will hold, from a dry run over 1 and 2 steps (affine in T)."""
        leaves = state_flatten(state)[0]
        excl = list(model.parameters()) + [t for t in leaves if isinstance(t, Tensor)]
        if inp.is_dense(inputs):
            excl.append(inputs)
        b = []
        for L in (1, 2):
            pk = _Packer(None, excl, self.spikes, "cpu", dry=True)
            with torch.enable_grad():
                self._unroll(model, inputs, state, pk, t_end=min(L, inp.length(inputs)))
            b.append(pk.bytes)
        return b[0] + (inp.length(inputs) - 1) * max(0, b[1] - b[0])

    def run(self, model, inputs, state=None):
        inp.check_inputs(inputs)
        if state is None:
            state = model.init_state(inp.batch_size(inputs))
        T = inp.length(inputs)
        need = self.predict(model, inputs, state) if self.tier in self.budget else None
        if need is not None:
            self.check_budget({self.tier: need})
        backend = self.backend_of(model, inputs)
        tiers = open_tiers(self, backend, {self.tier: need} if need is not None else {})
        leaves = state_flatten(state)[0]
        excl = list(model.parameters()) + [t for t in leaves if isinstance(t, Tensor)]
        if inp.is_dense(inputs):
            excl.append(inputs)
        packer = _Packer(tiers[self.tier], excl, self.spikes, backend.device,
                         backend.prefetcher(), self.prefetch)
        if self.trim:
            packer.trim = heap.Trimmer()
        rep = self.report
        rep.steps, rep.schedule = T, f"offload(tier={self.tier}, spikes={self.spikes})"
        if need is not None:
            rep.notes["predicted_peak_bytes"] = {self.tier: need}

        def finish():
            rep.peak_bytes = {"device": 0, **tiers.peak_bytes()}
            rep.peak_bytes.setdefault(self.tier, tiers[self.tier].peak)
            rep.bytes_moved = tiers.bytes_moved()
            tiers.close()

        packer.on_empty = finish
        try:
            y = self._unroll(model, inputs, state, packer)
        except BaseException:
            finish()
            raise
        rep.peak_bytes = {"device": 0, self.tier: tiers[self.tier].peak}
        rep.bytes_moved = tiers.bytes_moved()
        if not packer.meta:  # nothing saved (no grad): done
            finish()
        # else: freed by the last unpack, or by DiskTier.__del__ when the graph is dropped
        return y
