"""BitFit (Ben Zaken et al., 2022): train every bias term of the backbone; the registry adds the task head."""

from __future__ import annotations

from torch import nn


def train_biases(model: nn.Module) -> nn.Module:
    biases = [p for n, p in model.named_parameters() if n.endswith(".bias")]
    if not biases:
        raise ValueError(f"BitFit needs bias parameters; {type(model).__name__} has none.")
    for param in biases:
        param.requires_grad = True
    return model
