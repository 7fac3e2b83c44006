"""How an adapted module stores its weight and where its adapted tensors start: what the torch path, the Triton
kernels and the Triton path's first-use check all need.

Kept apart so that ``gpart.layers``, ``gpart.triton_ops`` and ``gpart.triton_guard`` import it and none of the
others' internals: the guard's probe is an ``AdaptedTensors`` of its own, not a layer.
"""

from __future__ import annotations

import torch
from torch import nn


def _is_hf_conv1d(module: nn.Module) -> bool:
    """transformers' Conv1D (GPT-2 style): a linear layer whose weight is stored (in_features, out_features)."""
    return type(module).__name__ == "Conv1D" and hasattr(module, "nf") and module.weight.dim() == 2


def _out_in(layer: AdaptedTensors, weight: torch.Tensor) -> torch.Tensor:
    """The weight of a GPartLayer's base layer as (out_features, in_features), whatever its stored layout."""
    return weight.t() if _is_hf_conv1d(layer.base_layer) else weight


class AdaptedTensors:
    """A base module whose weight (and bias) an adapter adapts, and where each starts in the adapter's space.

    What the Triton kernels (``gpart.triton_ops``) and the first-use check (``gpart.triton_guard``) read of a layer:
    ``GPartLayer`` is one, and so is the check's probe over a copy of a layer's first rows. Subclasses set
    ``base_layer``, ``adapter``, ``weight_start`` and ``bias_start``.
    """

    base_layer: nn.Module
    weight_start: int
    bias_start: int | None

    @property
    def is_linear(self) -> bool:
        return isinstance(self.base_layer, nn.Linear) or _is_hf_conv1d(self.base_layer)

    def _adapted(self) -> list[tuple[str, int]]:
        """(parameter name, global start index) of every adapted tensor of the base layer, in canonical order."""
        names = [("weight", self.weight_start)]
        return names + ([("bias", self.bias_start)] if self.bias_start is not None else [])
