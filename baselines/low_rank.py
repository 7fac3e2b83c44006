"""What Tied-LoRA, LoRA-XS and CondLoRA share: a frozen ``nn.Linear`` plus ΔW = scaling · B A.

Each method differs only in where the factors B (out × r) and A (r × in) come from, so a subclass implements
:meth:`LowRankLinear.factors` and nothing else. The forward pass never forms ΔW (x → A → B, like LoRA);
:meth:`LowRankLinear.delta_weight` does, for merging and for tests against a dense reference.

Factors shared across layers (Tied-LoRA's A and B, CondLoRA's two linear maps) live in one :class:`SharedFactors`
registered once on the model; each layer holds an unregistered reference to it. So ``model.parameters()``, the
state dict and a checkpoint hold each shared tensor exactly once (safetensors refuses aliased tensors).
"""

from __future__ import annotations

import re
from typing import Callable

import torch
from torch import nn
from torch.nn import functional as F

from gpart.model import matches


class LowRankLinear(nn.Module):
    def __init__(self, base: nn.Linear, scaling: float, dropout: float):
        super().__init__()
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout={dropout!r} must be in [0, 1)")
        self.base = base
        self.scaling = float(scaling)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, A) with ΔW = scaling · B @ A, B of shape (out, r) and A of shape (r, in)."""
        raise NotImplementedError

    def delta_weight(self) -> torch.Tensor:
        b, a = self.factors()
        return self.scaling * (b @ a)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, a = self.factors()
        return self.base(x) + self.scaling * F.linear(F.linear(self.dropout(x), a), b)


def replace_targets(model: nn.Module, target_modules, build: Callable[[str, nn.Linear], LowRankLinear]) -> nn.Module:
    """Freeze `model`, then put ``build(pattern, module)`` in place of every ``nn.Linear`` that `target_modules`
    names (PEFT's matching rule, as GPart's). `pattern` is the target entry that matched, so shared factors can be
    keyed by it. A target list that matches nothing, or matches a non-linear module, is an error."""
    for param in model.parameters():
        param.requires_grad = False
    found = [(n, m) for n, m in model.named_modules() if n and matches(n, target_modules)]
    if not found:
        raise ValueError(f"target_modules={target_modules!r} matched no module of {type(model).__name__}")
    for name, module in found:
        if not isinstance(module, nn.Linear):
            raise ValueError(f"target module {name!r} is a {type(module).__name__}; these adapters need nn.Linear")
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        adapted = build(_matching_pattern(name, target_modules), module)
        setattr(parent, child, adapted.train(module.training))  # keep the model's train/eval mode
    return model


class SharedFactors(nn.Module):
    """Tensors one adapter shares across layers, keyed by target pattern and shape."""

    def __init__(self):
        super().__init__()
        self.factors = nn.ParameterDict()

    def get(self, pattern: str, shape: tuple[int, ...], name: str, make: Callable[[], torch.Tensor]) -> str:
        """The key of factor `name` for `pattern` at `shape`, created by `make()` on first use."""
        key = "_".join([re.sub(r"\W", "_", pattern), "x".join(map(str, shape)), name])
        if key not in self.factors:
            self.factors[key] = nn.Parameter(make())
        return key


def with_shared_factors(
    model: nn.Module, attribute: str, target_modules, build: Callable[[SharedFactors, str, nn.Linear], LowRankLinear]
) -> nn.Module:
    """:func:`replace_targets` for adapters with shared factors, which end up at ``model.<attribute>``."""
    if hasattr(model, attribute):
        raise ValueError(f"{type(model).__name__} already has `{attribute}`: the adapter is applied already")
    shared = SharedFactors()
    model = replace_targets(model, target_modules, lambda pattern, base: build(shared, pattern, base))
    model.add_module(attribute, shared)
    return model


def _matching_pattern(name: str, target_modules) -> str:
    if isinstance(target_modules, str):
        return target_modules
    return next(p for p in target_modules if matches(name, [p]))


def kaiming_like_lora(shape, like: torch.Tensor) -> torch.Tensor:
    """LoRA's initialisation of A (PEFT and loralib): kaiming-uniform with a = sqrt(5)."""
    tensor = torch.empty(shape, dtype=like.dtype, device=like.device)
    nn.init.kaiming_uniform_(tensor, a=5**0.5)
    return tensor
