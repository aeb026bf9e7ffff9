"""Hugging Face GPT-2 weights into :class:`~spiketrain.models.gaincell.GainCellGPT`.

``transformers`` is optional (``pip install 'spiketrain[gpt2]'``); a checkpoint folder is
read from local files only, nothing is downloaded. The mapped model uses ``softmax``
attention with GPT-2's learned absolute positions (valid below ``n_positions``) and a window
covering them, so its logits equal ``GPT2LMHeadModel``'s on the same tokens; switch to a
gain-cell kind afterwards with ``set_attention`` (then calibrate).

Mapping: GPT-2's ``Conv1D`` layers store ``weight [in, out]`` (``y = x W + b``), ours are
``nn.Linear`` (``weight [out, in]``), so every ``c_attn``, ``c_proj``, ``c_fc`` weight is
transposed; embeddings, LayerNorms and biases copy as they are.
"""
from __future__ import annotations

import os

import torch
from torch import nn

from . import hardware as hw
from .model import GainCellGPT

_TANH_GELU = ("gelu_new", "gelu_pytorch_tanh", "gelu_fast")


def _load(path_or_model):
    if not isinstance(path_or_model, (str, os.PathLike)):
        return path_or_model
    try:
        from transformers import GPT2LMHeadModel
    except ImportError as e:  # pragma: no cover - depends on the install
        raise ImportError("loading a GPT-2 checkpoint needs transformers: "
                          "pip install 'spiketrain[gpt2]'") from e
    return GPT2LMHeadModel.from_pretrained(os.fspath(path_or_model), local_files_only=True)


def _check(cfg) -> None:
    bad = []
    if getattr(cfg, "activation_function", "gelu_new") not in _TANH_GELU:
        bad.append(f"activation_function={cfg.activation_function!r} (tanh GELU only)")
    if not getattr(cfg, "scale_attn_weights", True):
        bad.append("scale_attn_weights=False")
    if getattr(cfg, "scale_attn_by_inverse_layer_idx", False):
        bad.append("scale_attn_by_inverse_layer_idx=True")
    if getattr(cfg, "add_cross_attention", False):
        bad.append("add_cross_attention=True")
    inner = cfg.n_inner or 4 * cfg.n_embd
    if inner % cfg.n_embd:
        bad.append(f"n_inner={inner} not a multiple of n_embd={cfg.n_embd}")
    if bad:
        raise ValueError("cannot map this GPT-2 configuration: " + "; ".join(bad))


def _conv(dst: nn.Linear, src) -> None:
    dst.weight.copy_(src.weight.t())
    dst.bias.copy_(src.bias)


def _copy(dst: nn.Module, src: nn.Module) -> None:
    dst.weight.copy_(src.weight)
    if getattr(dst, "bias", None) is not None:
        dst.bias.copy_(src.bias)


def from_hf_gpt2(path_or_model, attention: str = "softmax", **options) -> GainCellGPT:
    """A ``gaincell_gpt`` with the weights of a Hugging Face ``GPT2LMHeadModel`` (a local
    folder for ``from_pretrained`` or the model itself). ``attention`` picks the kind after
    mapping; ``options`` go to :class:`GainCellGPT` (e.g. ``quantize``)."""
    hf = _load(path_or_model)
    cfg = hf.config
    _check(cfg)
    window = -(-cfg.n_positions // hw.ARRAY) * hw.ARRAY
    tied = bool(getattr(cfg, "tie_word_embeddings", True))
    kw = dict(vocab_size=cfg.vocab_size, n_layer=cfg.n_layer, n_head=cfg.n_head,
              n_embd=cfg.n_embd, window=window, attention="softmax",
              n_positions=cfg.n_positions, mlp_ratio=(cfg.n_inner or 4 * cfg.n_embd) // cfg.n_embd,
              bias=True, tie_weights=tied, layer_norm_eps=cfg.layer_norm_epsilon)
    kw.update(options)
    model = GainCellGPT(**kw)
    t = hf.transformer
    model = model.to(dtype=t.wte.weight.dtype)
    with torch.no_grad():
        _copy(model.wte, t.wte)
        _copy(model.wpe, t.wpe)
        for ours, theirs in zip(model.h, t.h):
            _copy(ours.ln_1, theirs.ln_1)
            _copy(ours.ln_2, theirs.ln_2)
            _conv(ours.attn.c_attn, theirs.attn.c_attn)
            _conv(ours.attn.c_proj, theirs.attn.c_proj)
            _conv(ours.mlp.c_fc, theirs.mlp.c_fc)
            _conv(ours.mlp.c_proj, theirs.mlp.c_proj)
        _copy(model.ln_f, t.ln_f)
        if not tied:
            model.lm_head.weight.copy_(hf.lm_head.weight)
    model.set_attention(attention)
    return model
