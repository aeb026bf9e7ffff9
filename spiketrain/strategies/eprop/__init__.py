"""e-prop: online eligibility-trace gradients (strategy ``"eprop"``); see docs/eprop.md."""
from .jacobian import NotDiagonalError, check_diagonal, neuron_jacobians
from .strategy import EProp, check_model

__all__ = ["EProp", "NotDiagonalError", "check_diagonal", "check_model", "neuron_jacobians"]
