"""CondLoRA (Kim, Sasaki, Hoshino, Honda, "A Single Linear Layer Yields Task-Adapted Low-Rank Matrices", LREC-COLING
2024, arXiv 2403.14946; code github.com/CyberAgentAILab/CondLoRA).

LoRA's factors of every layer come from that layer's own pretrained weight W0_l through two linear maps shared by
all layers of one target (one pair for `query`, one for `value`):

    B_l = W0_l θ_Bᵀ   (out × r),   A_l = θ_A W0_lᵀ   (r × in),   ΔW_l = (alpha / r) · B_l A_l

θ_A, θ_B ∈ R^{r × in}: 2 · r · in trainable parameters per target, independent of depth. As in the authors'
`peft/tuners/condlora` (`linear_for_lora_A/B`, bias-free): θ_A kaiming-uniform like LoRA's A, θ_B = 0. Their
construction multiplies W0 on both sides, so W0 must be square (true of attention projections).
"""

from __future__ import annotations

import torch
from torch import nn

from baselines.low_rank import LowRankLinear, SharedFactors, kaiming_like_lora, with_shared_factors


class CondLoRALinear(LowRankLinear):
    def __init__(self, base: nn.Linear, shared: SharedFactors, keys: tuple[str, str], alpha: float, dropout: float):
        super().__init__(base, scaling=alpha / shared.factors[keys[0]].shape[0], dropout=dropout)
        object.__setattr__(self, "shared", shared)  # a reference, not a submodule: the model registers it once
        self.keys = keys

    @property
    def theta_a(self) -> nn.Parameter:
        return self.shared.factors[self.keys[0]]

    @property
    def theta_b(self) -> nn.Parameter:
        return self.shared.factors[self.keys[1]]

    def factors(self):
        w0 = self.base.weight
        return w0 @ self.theta_b.T, self.theta_a @ w0.T


def apply_condlora(model: nn.Module, target_modules, r: int = 8, alpha: float = 8.0, dropout: float = 0.0) -> nn.Module:
    """CondLoRA on every `target_modules` linear of `model` (frozen); θ_A, θ_B go to `model.condlora`. Defaults
    are the authors' GLUE scripts'."""
    if r < 1:
        raise ValueError(f"CondLoRA r={r!r} must be a positive integer")

    def build(shared: SharedFactors, pattern: str, base: nn.Linear) -> CondLoRALinear:
        if base.in_features != base.out_features:
            raise ValueError(
                f"CondLoRA needs square weights (W0 conditions both factors); target {pattern!r} is "
                f"{base.out_features}×{base.in_features}"
            )
        w, shape = base.weight, tuple(base.weight.shape)
        keys = (
            shared.get(pattern, shape, "theta_a", lambda: kaiming_like_lora((r, base.in_features), w)),
            shared.get(
                pattern, shape, "theta_b", lambda: torch.zeros(r, base.in_features, dtype=w.dtype, device=w.device)
            ),
        )
        return CondLoRALinear(base, shared, keys, alpha=alpha, dropout=dropout)

    return with_shared_factors(model, "condlora", target_modules, build)
