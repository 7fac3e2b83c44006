"""What the isometric scaling does under AdamW, the optimizer of every run: it rescales the step, nothing else.

With equal groups of size g, the non-isometric map is √g times the isometric one (P_noniso = √g·P). Adam normalises
each coordinate's gradient by its own running RMS, so it takes the same step in θ whatever that factor; the
non-isometric ΔW therefore moves √g times faster. Isometric GPart trained with lr·√g and weight decay wd/√g follows
exactly the non-isometric trajectory (θ_iso = √g·θ_noniso at every step, up to Adam's ε): the paper's isometry
ablation (claim C3 of `make reproduce-mini`) compares step sizes as much as geometries. Head-less, no clipping, no
dropout, so nothing else differs.
"""

import math

import pytest
import torch
from torch import nn

from gpart import GPartConfig, apply_gpart, find_adapter

IN, HIDDEN, OUT, D = 16, 16, 4, 20  # N = 16·16 + 16·4 = 320 adapted weights, d = 20 -> groups of exactly 16
GROUP = (IN * HIDDEN + HIDDEN * OUT) // D
LR, WEIGHT_DECAY, STEPS = 1e-2, 0.1, 25


class TwoLayers(nn.Module):
    def __init__(self):
        super().__init__()
        self.first = nn.Linear(IN, HIDDEN)
        self.second = nn.Linear(HIDDEN, OUT)

    def forward(self, x):
        return self.second(torch.tanh(self.first(x)))


def adapted(isometric: bool) -> nn.Module:
    torch.manual_seed(0)
    config = GPartConfig(
        d=D, target_modules=["first", "second"], seed=3, assignment="balanced", isometric=isometric, id_cache_mib=1
    )
    return apply_gpart(TwoLayers(), config)


def train(model: nn.Module, lr: float, weight_decay: float, steps: int) -> torch.Tensor:
    """θ after `steps` AdamW steps on a fixed regression problem (the same batches for every call)."""
    theta = find_adapter(model).theta
    optimizer = torch.optim.AdamW([theta], lr=lr, weight_decay=weight_decay)
    data = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x = torch.randn(8, IN, generator=data)
        target = torch.randn(8, OUT, generator=data)
        optimizer.zero_grad()
        nn.functional.mse_loss(model(x), target).backward()
        optimizer.step()
    return theta.detach().clone()


def test_groups_are_equal_so_the_two_maps_differ_by_one_factor():
    scale_iso, scale_noniso = find_adapter(adapted(True)).scale, find_adapter(adapted(False)).scale
    assert GROUP == 16
    assert torch.allclose(scale_noniso / scale_iso, torch.full((D,), math.sqrt(GROUP)))


def test_at_the_same_lr_the_first_step_moves_the_isometric_weights_sqrt_g_times_less():
    """Adam's first step is lr·sign(gradient) in θ for both maps, so ΔW differs by exactly √g."""
    iso, noniso = adapted(True), adapted(False)
    theta_iso, theta_noniso = train(iso, LR, 0.0, 1), train(noniso, LR, 0.0, 1)
    assert torch.allclose(theta_iso.abs(), torch.full((D,), LR), rtol=1e-4)
    assert torch.equal(theta_iso.sign(), theta_noniso.sign())
    delta_iso = theta_iso * find_adapter(iso).scale  # the d distinct values of ΔW = Pθ
    delta_noniso = theta_noniso * find_adapter(noniso).scale
    assert torch.allclose(delta_noniso / delta_iso, torch.full((D,), math.sqrt(GROUP)), rtol=1e-4)


def test_isometric_with_lr_times_sqrt_g_follows_the_non_isometric_trajectory():
    iso, noniso = adapted(True), adapted(False)
    root = math.sqrt(GROUP)
    theta_iso = train(iso, LR * root, WEIGHT_DECAY / root, STEPS)
    theta_noniso = train(noniso, LR, WEIGHT_DECAY, STEPS)
    torch.testing.assert_close(theta_iso, root * theta_noniso, rtol=1e-4, atol=1e-6)
    x = torch.randn(32, IN, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(iso(x), noniso(x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("lr_factor, decay_factor", [(1.0, 1.0), (math.sqrt(GROUP), 1.0)])
def test_any_other_pairing_leaves_the_trajectories_apart(lr_factor, decay_factor):
    """The equivalence needs both rescalings: the same lr, or the lr alone with the decay unchanged, differ."""
    iso, noniso = adapted(True), adapted(False)
    theta_iso = train(iso, LR * lr_factor, WEIGHT_DECAY * decay_factor, STEPS)
    theta_noniso = train(noniso, LR, WEIGHT_DECAY, STEPS)
    assert (theta_iso - math.sqrt(GROUP) * theta_noniso).abs().max() > 1e-3
