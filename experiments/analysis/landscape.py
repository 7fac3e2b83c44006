"""2-D loss landscapes around a trained point, along two random filter-normalised directions (Li et al., 2018).

The surface is L(p* + α δ + β η) on an (α, β) grid, where p* are a run's trained adapter parameters (the head is held
at its trained value) and δ, η are Gaussian directions in the trainable subspace, filter-normalised: every row of a
matrix-shaped parameter (a "filter") is rescaled to the norm of the same row of p*, and a vector-shaped parameter —
GPart's θ, Uni-LoRA's θ_d — is rescaled as a whole to ‖p*‖. Li et al. also zero the directions of biases and
batch-norm parameters; adapter parameters have none, so nothing is zeroed here. With filter normalisation, α = 1
moves every filter by its own norm, which is what makes surfaces of methods with different scales comparable.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch

try:
    from tqdm.auto import tqdm
except ImportError:  # progress bars are a nicety
    tqdm = None


def filter_normalise(direction: Sequence[torch.Tensor], point: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Rescale each row of a ≥2-D direction tensor to its row's norm in ``point``; a 1-D one as a whole."""
    normalised = []
    for d, p in zip(direction, point):
        if d.dim() >= 2:
            rows_d, rows_p = d.reshape(d.shape[0], -1), p.reshape(p.shape[0], -1)
            factor = rows_p.norm(dim=1, keepdim=True) / rows_d.norm(dim=1, keepdim=True).clamp_min(1e-30)
            normalised.append((rows_d * factor).view_as(d))
        else:
            normalised.append(d * (p.norm() / d.norm().clamp_min(1e-30)))
    return normalised


def random_directions(point: Sequence[torch.Tensor], seed: int, normalise: bool = True) -> tuple[list, list]:
    """Two Gaussian directions shaped like ``point`` (filter-normalised unless ``normalise`` is False)."""
    generator = torch.Generator().manual_seed(seed)
    pair = []
    for _ in range(2):
        raw = [torch.randn(p.shape, generator=generator, dtype=torch.float64).to(p) for p in point]
        pair.append(filter_normalise(raw, point) if normalise else raw)
    return pair[0], pair[1]


@torch.no_grad()
def loss_surface(
    loss: Callable[[], float],
    params: Sequence[torch.nn.Parameter],
    first: Sequence[torch.Tensor],
    second: Sequence[torch.Tensor],
    alphas: np.ndarray,
    betas: np.ndarray,
    description: str = "loss landscape",
) -> np.ndarray:
    """``loss()`` evaluated at params* + α·first + β·second for every (α, β); params are restored afterwards.

    Returns an array of shape (len(betas), len(alphas)) (rows β, columns α, as ``matplotlib.contour`` expects)."""
    centre = [p.detach().clone() for p in params]
    surface = np.empty((len(betas), len(alphas)))
    cells = [(i, j) for i in range(len(betas)) for j in range(len(alphas))]
    progress = tqdm(cells, desc=description, unit="point", leave=False) if tqdm is not None else cells
    try:
        for i, j in progress:
            for p, c, d, e in zip(params, centre, first, second):
                p.copy_(c + float(alphas[j]) * d + float(betas[i]) * e)
            surface[i, j] = float(loss())
    finally:
        for p, c in zip(params, centre):
            p.copy_(c)
    return surface


def centre_curvature(surface: np.ndarray, alphas: np.ndarray, betas: np.ndarray) -> tuple[float, float]:
    """Second differences of the surface at the grid centre along α and along β (the curvatures dᵀHd there)."""
    i, j = len(betas) // 2, len(alphas) // 2
    step_a, step_b = alphas[j + 1] - alphas[j], betas[i + 1] - betas[i]
    along_a = (surface[i, j + 1] - 2 * surface[i, j] + surface[i, j - 1]) / step_a**2
    along_b = (surface[i + 1, j] - 2 * surface[i, j] + surface[i - 1, j]) / step_b**2
    return float(along_a), float(along_b)


def validation_loss(model: torch.nn.Module, batches: list[dict]) -> Callable[[], float]:
    """Mean of the model's own loss (``labels`` in each batch) over fixed batches, in eval mode."""

    def loss() -> float:
        model.eval()
        values = [float(model(**batch).loss) for batch in batches]
        return sum(values) / len(values)

    return loss
