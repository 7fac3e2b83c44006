"""LoRA-XS (Bałazy, Banaei, Aberer, Tabor, arXiv 2405.17604; code github.com/MohammadrezaBanaei/LoRA-XS).

    W0 = U Σ Vᵀ (truncated SVD of the pretrained weight),   ΔW = scaling · U_r R (Σ_r V_rᵀ)

Only R (r × r) trains, so each adapted module costs r² parameters whatever its size. As in the authors'
`utils/initialization_utils.py` (`svd_on_w`, `retain_part: top`): the top-r singular vectors, the singular values on
the input side, R ~ N(0, 1e-5²), scaling = lora_alpha / r.

The frozen bases are buffers saved with the adapter: an SVD's signs depend on the linear-algebra library, so
recomputing them on another machine could pair a restored R with flipped bases.
"""

from __future__ import annotations

import torch
from torch import nn

from baselines.low_rank import LowRankLinear, replace_targets


class LoRAXSLinear(LowRankLinear):
    def __init__(self, base: nn.Linear, r: int, alpha: float, dropout: float, init_std: float):
        if not 1 <= r <= min(base.in_features, base.out_features):
            raise ValueError(
                f"LoRA-XS r={r!r} must be in [1, {min(base.in_features, base.out_features)}] "
                f"for a {base.out_features}×{base.in_features} weight"
            )
        super().__init__(base, scaling=alpha / r, dropout=dropout)
        w = base.weight
        u, s, vh = torch.linalg.svd(w.detach().float(), full_matrices=False)
        self.register_buffer("svd_b", u[:, :r].to(w.dtype).contiguous())
        self.register_buffer("svd_a", (s[:r, None] * vh[:r]).to(w.dtype).contiguous())
        self.latent = nn.Parameter(torch.empty(r, r, dtype=w.dtype, device=w.device))
        nn.init.normal_(self.latent, mean=0.0, std=init_std)

    def factors(self):
        return self.svd_b, self.latent @ self.svd_a


def apply_lora_xs(
    model: nn.Module, target_modules, r: int = 16, alpha: float = 16.0, dropout: float = 0.0, init_std: float = 1e-5
) -> nn.Module:
    """LoRA-XS on every `target_modules` linear of `model` (frozen); defaults are the authors' GLUE script's."""
    return replace_targets(
        model, target_modules, lambda _pattern, base: LoRAXSLinear(base, r, alpha, dropout, init_std)
    )
