"""Gain-cell attention transformer (Leroux et al., Nature Computational Science 2025).

- :mod:`.model`: :class:`GainCellGPT` (registry name ``gaincell_gpt``), a GPT decoder as a
  recurrent model whose state is the sliding key/value window.
- :mod:`.attention`: the interchangeable attention kinds and the per-head scalers.
- :mod:`.hardware`: the circuit's maths (charge-to-pulse, decay, cell nonlinearity).
- :mod:`.quant`: DAC/cell/ADC quantisers with straight-through gradients.
- :mod:`.gpt2`: :func:`from_hf_gpt2`, Hugging Face GPT-2 weights into this model.
"""
from . import hardware, quant
from .attention import (KINDS, SCALERS, Scaler, WindowAttention, gaincell_attention,
                        softmax_attention)
from .gpt2 import from_hf_gpt2
from .model import GainCellGPT

__all__ = ["GainCellGPT", "KINDS", "SCALERS", "Scaler", "WindowAttention", "gaincell_attention",
           "softmax_attention", "from_hf_gpt2", "hardware", "quant"]
