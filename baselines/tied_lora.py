"""Tied-LoRA (Renduchintala, Konuk, Kuchaiev, arXiv 2311.09578), configuration TL6 "vBuA": all four trainable.

    ΔW_l = scaling · diag(v_l) B diag(u_l) A

A (r × in) and B (out × r) are tied: one pair for every layer's module of the same target (one for `query`, one
for `value`); u_l ∈ R^r and v_l ∈ R^out are each module's own scaling vectors. Trainable parameters for T targets of
shape out × in over L layers: T · r · (in + out) + T · L · (r + out).

Initialisation (the paper gives LoRA's, VeRA-style vectors): A kaiming-uniform as LoRA's, B = 0 (so ΔW = 0 at the
start), u = v = 1.
"""

from __future__ import annotations

import torch
from torch import nn

from baselines.low_rank import LowRankLinear, SharedFactors, kaiming_like_lora, with_shared_factors


class TiedLoRALinear(LowRankLinear):
    def __init__(self, base: nn.Linear, shared: SharedFactors, keys: tuple[str, str], alpha: float, dropout: float):
        r = shared.factors[keys[0]].shape[0]
        super().__init__(base, scaling=alpha / r, dropout=dropout)
        object.__setattr__(self, "shared", shared)  # a reference, not a submodule: the model registers it once
        self.keys = keys
        like = base.weight
        self.u = nn.Parameter(torch.ones(r, dtype=like.dtype, device=like.device))
        self.v = nn.Parameter(torch.ones(base.out_features, dtype=like.dtype, device=like.device))

    @property
    def tied_a(self) -> nn.Parameter:
        return self.shared.factors[self.keys[0]]

    @property
    def tied_b(self) -> nn.Parameter:
        return self.shared.factors[self.keys[1]]

    def factors(self):
        return self.v[:, None] * self.tied_b, self.u[:, None] * self.tied_a


def apply_tied_lora(
    model: nn.Module, target_modules, r: int = 8, alpha: float | None = None, dropout: float = 0.0
) -> nn.Module:
    """Tied-LoRA TL6 on every `target_modules` linear of `model` (frozen); the tied A, B go to `model.tied_lora`.
    `alpha` defaults to `r` (scaling 1)."""
    if r < 1:
        raise ValueError(f"Tied-LoRA r={r!r} must be a positive integer")

    def build(shared: SharedFactors, pattern: str, base: nn.Linear) -> TiedLoRALinear:
        w, shape = base.weight, tuple(base.weight.shape)
        keys = (
            shared.get(pattern, shape, "a", lambda: kaiming_like_lora((r, base.in_features), w)),
            shared.get(pattern, shape, "b", lambda: torch.zeros(base.out_features, r, dtype=w.dtype, device=w.device)),
        )
        return TiedLoRALinear(base, shared, keys, alpha=float(r if alpha is None else alpha), dropout=dropout)

    return with_shared_factors(model, "tied_lora", target_modules, build)
