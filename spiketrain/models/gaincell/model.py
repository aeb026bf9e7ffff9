"""A compact GPT decoder with gain-cell attention, as a recurrent model.

The transformer is GPT-2's (pre-LayerNorm blocks, tanh-GELU MLP, tied input/output
embeddings); only the attention differs (:mod:`.attention`: ``softmax``,
``linear_gaincell`` or ``gaincell``, switchable in place). Attention is causal over a
sliding window of ``window`` tokens, so the model is a cell stepped over time whose state
is, per layer, the stored keys and values of the last ``window`` tokens (oldest first,
allocated at full size from the first token) plus the absolute position::

    state = {"pos": int64 [1], "k": (per layer [B, H, M, d], ...), "v": (...)}
    state, logits_t = model.step(state, x_t)        # x_t [B] bytes -> logits [B, vocab]
    state, logits = model.chunk(state, x)           # x [T, B] -> logits [T, B, vocab]

``step`` is a true streaming step (O(M) memory, no hidden state). ``chunk`` runs 64-token
blocks aligned to absolute positions and always computes whole blocks (rows outside
``x`` are padding and dropped), so every tensor operation has the same shapes wherever a
chunk starts or ends: chunked outputs are bit-identical however a sequence is split, which
is what the memory strategies' recomputation check relies on. The bytes autograd keeps
therefore grow per 64-token block, not per token: a graph over 1 or 2 tokens keeps one
block's worth. The model says so through ``step_block`` (64): the recomputing strategies
probe one and two blocks and cut segments on whole blocks.
"""
from __future__ import annotations

from typing import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..base import RecurrentModel
from ..registry import register
from . import hardware as hw
from .attention import KINDS, Scaler, WindowAttention


class MLP(nn.Module):
    def __init__(self, n_embd: int, ratio: int, bias: bool):
        super().__init__()
        self.c_fc = nn.Linear(n_embd, ratio * n_embd, bias=bias)
        self.c_proj = nn.Linear(ratio * n_embd, n_embd, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.c_proj(F.gelu(self.c_fc(x), approximate="tanh"))


class Block(nn.Module):
    """Pre-LayerNorm transformer block over one 64-position block of rows ``[B, n, C]``."""

    def __init__(self, cfg: dict, layer: int):
        super().__init__()
        C, eps = cfg["n_embd"], cfg["layer_norm_eps"]
        self.ln_1 = nn.LayerNorm(C, eps=eps, bias=cfg["bias"])
        self.attn = WindowAttention(C, cfg["n_head"], cfg["window"], layer, cfg["attention"],
                                    cfg["quantize"], cfg["decay"], cfg["array"], cfg["bias"])
        self.ln_2 = nn.LayerNorm(C, eps=eps, bias=cfg["bias"])
        self.mlp = MLP(C, cfg["mlp_ratio"], cfg["bias"])

    def forward(self, h, kwin, vwin, a, r0, s, e):
        y, kwin, vwin = self.attn(self.ln_1(h), kwin, vwin, a, r0, s, e)
        h = h + y
        return h + self.mlp(self.ln_2(h)), kwin, vwin


@register("gaincell_gpt")
class GainCellGPT(RecurrentModel):
    """GPT decoder over byte tokens with gain-cell attention (Leroux et al. 2025).

    Args: ``vocab_size`` (256 bytes), ``n_layer``, ``n_head``, ``n_embd``, ``window`` (M,
    a multiple of 64), ``attention`` (one of ``softmax``, ``linear_gaincell``,
    ``gaincell``), ``quantize`` (DAC/cell/ADC levels in the gain-cell kinds), ``decay``
    (lambda per token), ``n_positions`` (0: no position embedding; else learned absolute
    positions as GPT-2, valid below ``n_positions``), ``mlp_ratio``, ``bias``,
    ``tie_weights`` (output layer = token embedding), ``layer_norm_eps``.
    No dropout: ``step`` stays a pure function.
    """

    def __init__(self, vocab_size: int = 256, n_layer: int = 4, n_head: int = 4,
                 n_embd: int = 128, window: int = 1024, attention: str = "linear_gaincell",
                 quantize: bool = True, decay: float = hw.DECAY, n_positions: int = 0,
                 mlp_ratio: int = 4, bias: bool = True, tie_weights: bool = True,
                 layer_norm_eps: float = 1e-5, array: int = hw.ARRAY):
        super().__init__()
        self.cfg = dict(vocab_size=vocab_size, n_layer=n_layer, n_head=n_head, n_embd=n_embd,
                        window=window, attention=attention, quantize=quantize, decay=decay,
                        n_positions=n_positions, mlp_ratio=mlp_ratio, bias=bias,
                        tie_weights=tie_weights, layer_norm_eps=layer_norm_eps, array=array)
        self.vocab_size, self.window, self.array = vocab_size, window, array
        self.n_layer, self.n_head, self.head_dim = n_layer, n_head, n_embd // n_head
        self.wte = nn.Embedding(vocab_size, n_embd)
        self.wpe = nn.Embedding(n_positions, n_embd) if n_positions else None
        self.h = nn.ModuleList(Block(self.cfg, i) for i in range(n_layer))
        self.ln_f = nn.LayerNorm(n_embd, eps=layer_norm_eps, bias=bias)
        self.lm_head = nn.Linear(n_embd, vocab_size, bias=False)
        self.apply(self._init)
        if tie_weights:
            self.lm_head.weight = self.wte.weight

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)

    @property
    def step_block(self) -> int:
        """Capability for the memory strategies: every call computes whole blocks of this
        many steps (the 64-token arrays, aligned to absolute positions), so saved bytes grow
        per block and a segment boundary inside a block computes that block twice; probes
        and segments should come in multiples of it."""
        return self.array

    # --- attention kind and calibration support -----------------------------------------
    @property
    def attention(self) -> str:
        return self.h[0].attn.kind if len(self.h) else self.cfg["attention"]

    def set_attention(self, kind: str) -> None:
        """Switch every layer to attention ``kind`` in place (weights and scalers kept)."""
        if kind not in KINDS:
            raise ValueError(f"unknown attention {kind!r}; choose one of {KINDS}")
        for blk in self.h:
            blk.attn.set_kind(kind)
        self.cfg["attention"] = kind

    def scalers(self) -> Iterator[Scaler]:
        """Every per-head affine scaler: ``.layer``, ``.name`` (q, k, v, out), ``.a``, ``.b``
        (``nn.Parameter [n_head]``), ``.mean``, ``.std`` (``[n_head]`` or None)."""
        for blk in self.h:
            a = blk.attn
            yield from (a.q, a.k, a.v, a.out)

    def scaler_stats(self, enabled: bool, momentum: float = 0.1) -> None:
        """Track (``enabled``) the per-head running mean and std of every scaler's output.

        Enabling starts a fresh record: the first forward (``chunk`` call) sets the
        statistics, later ones blend in with ``momentum`` (EMA 0.1; ``momentum=1`` keeps the
        latest forward's alone). Statistics are written outside autograd and never change
        outputs; meant for calibration runs (a plain forward, usually under ``no_grad``).
        Under a recomputing strategy each recomputed segment would count again.
        """
        for s in self.scalers():
            s.track(enabled, momentum)

    # --- the recurrent-model contract ---------------------------------------------------
    def init_state(self, batch_size: int) -> dict:
        """Empty window (zeros, invisible to attention) at position 0."""
        p = self.wte.weight
        shape = (batch_size, self.n_head, self.window, self.head_dim)
        zeros = lambda: tuple(p.new_zeros(shape) for _ in self.h)  # noqa: E731
        return {"pos": torch.zeros(1, dtype=torch.int64, device=p.device), "k": zeros(),
                "v": zeros()}

    def step(self, state: dict, x_t: Tensor) -> tuple[dict, Tensor]:
        """One token: ``x_t [B]`` -> (state, logits ``[B, vocab]``); O(window) memory."""
        state, y = self._run(state, x_t.unsqueeze(0), pad=False)
        return state, y[0]

    def chunk(self, state: dict, x: Tensor) -> tuple[dict, Tensor]:
        """Tokens ``x [T, B]`` -> (state, logits ``[T, B, vocab]``), equal to stepping."""
        return self._run(state, x, pad=True)

    def _embed(self, tokens: Tensor, p0: int, limit: slice) -> Tensor:
        """``tokens [n, B]`` at positions ``p0, p0 + 1, ...`` -> ``[B, n, C]``."""
        h = self.wte(tokens.t())
        if self.wpe is not None:
            n_pos = self.wpe.num_embeddings
            if limit.start + p0 < 0 or limit.stop + p0 > n_pos:
                raise ValueError(f"position {limit.stop + p0 - 1} is beyond n_positions={n_pos} "
                                 f"of the learned position embedding")
            pos = torch.arange(p0, p0 + tokens.shape[0], device=tokens.device)
            h = h + self.wpe(pos.clamp(0, n_pos - 1))
        return h

    def _run(self, state: dict, x: Tensor, pad: bool) -> tuple[dict, Tensor]:
        if x.dim() != 2:
            raise ValueError(f"gaincell_gpt takes byte tokens x [T, B] (int64), got shape "
                             f"{tuple(x.shape)}")
        x = x.long()
        pos0 = int(state["pos"])
        T, B = x.shape
        A = self.array
        kw, vw = list(state["k"]), list(state["v"])
        outs, t = [], 0
        while t < T:
            p = pos0 + t
            a, s = p - p % A, p % A
            e = min(A, s + T - t)
            rows = x[t:t + e - s]
            if pad:
                parts = [x.new_zeros(s, B), rows, x.new_zeros(A - e, B)]
                rows, r0 = torch.cat([q for q in parts if q.shape[0]], 0), 0
            else:
                r0 = s
            h = self._embed(rows, a + r0, slice(s - r0, e - r0))
            for i, blk in enumerate(self.h):
                h, kw[i], vw[i] = blk(h, kw[i], vw[i], a, r0, s, e)
            logits = self.lm_head(self.ln_f(h))[:, s - r0:e - r0]
            outs.append(logits.transpose(0, 1))
            t += e - s
        for sc in self.scalers():
            sc.commit()
        new = {"pos": state["pos"] + T, "k": tuple(k.contiguous() for k in kw),
               "v": tuple(v.contiguous() for v in vw)}
        y = torch.cat(outs, 0) if outs else x.new_zeros(0, B, self.vocab_size).float()
        return new, y
