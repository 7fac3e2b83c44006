"""How an adapted module stores its weight: the one fact both the torch path and the Triton kernels need.

Kept apart so that ``gpart.layers`` and ``gpart.triton_ops`` both import it and neither imports the other's internals.
"""

from __future__ import annotations

import torch
from torch import nn


def _is_hf_conv1d(module: nn.Module) -> bool:
    """transformers' Conv1D (GPT-2 style): a linear layer whose weight is stored (in_features, out_features)."""
    return type(module).__name__ == "Conv1D" and hasattr(module, "nf") and module.weight.dim() == 2


def _out_in(layer: nn.Module, weight: torch.Tensor) -> torch.Tensor:
    """The weight of a GPartLayer's base layer as (out_features, in_features), whatever its stored layout."""
    return weight.t() if _is_hf_conv1d(layer.base_layer) else weight
