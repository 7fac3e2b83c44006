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

from baselines.low_rank import LowRankLinear, kaiming_like_lora, replace_targets


class CondLoRALinear(LowRankLinear):
    def __init__(self, base: nn.Linear, theta_a: nn.Parameter, theta_b: nn.Parameter, alpha: float, dropout: float):
        super().__init__(base, scaling=alpha / theta_a.shape[0], dropout=dropout)
        self.theta_a, self.theta_b = theta_a, theta_b

    def factors(self):
        w0 = self.base.weight
        return w0 @ self.theta_b.T, self.theta_a @ w0.T


def apply_condlora(model: nn.Module, target_modules, r: int = 8, alpha: float = 8.0, dropout: float = 0.0) -> nn.Module:
    """CondLoRA on every `target_modules` linear of `model` (frozen); defaults are the authors' GLUE scripts'."""
    if r < 1:
        raise ValueError(f"CondLoRA r={r!r} must be a positive integer")
    shared: dict[tuple, tuple[nn.Parameter, nn.Parameter]] = {}

    def build(pattern: str, base: nn.Linear) -> CondLoRALinear:
        if base.in_features != base.out_features:
            raise ValueError(f"CondLoRA needs square weights (W0 conditions both factors); target {pattern!r} is "
                             f"{base.out_features}×{base.in_features}")
        key = (pattern, base.in_features)
        if key not in shared:
            w = base.weight
            shared[key] = (nn.Parameter(kaiming_like_lora((r, base.in_features), w)),
                           nn.Parameter(torch.zeros(r, base.in_features, dtype=w.dtype, device=w.device)))
        return CondLoRALinear(base, *shared[key], alpha=alpha, dropout=dropout)

    return replace_targets(model, target_modules, build)
