"""The map from a method's trainable adapter parameters p to the update of the adapted weights, and its distortion.

For every method here (GPart and its variants, Uni-LoRA, LoRA, VeRA, FourierFT, ...) the adapted modules are linear
layers wrapped by an adapter that keeps the frozen layer as ``base_layer``. The update of one such layer is read
off its own forward, whatever the method: feeding the rows of the identity and one zero row,

    layer([I; 0]) - base_layer([I; 0]) = [ΔWᵀ + 1·Δbᵀ ; Δbᵀ],

so f(p) = vec over all adapted layers of (ΔW, Δb) needs no knowledge of a method's internals. (Stacking ΔWᵀ instead
of ΔW permutes coordinates, which leaves every singular value unchanged.)

J = ∂f/∂p is what the paper's isometry argument is about: GPart's f is linear with orthonormal columns (all singular
values 1, or √n_j without the normalisation), LoRA's bilinear f = s·B·A is rank-deficient at its usual init B = 0.

* ``vjp`` (Jᵀu) is one backward pass of autograd through the layers' own code (GPart's fused autograd function too).
* ``jvp`` (Jv) is the five-point central difference [f(p − 2εv) − 8 f(p − εv) + 8 f(p + εv) − f(p + 2εv)] / 12ε.
  It is *exact* for maps of degree ≤ 4 in p, which every method here is (linear: GPart, FourierFT, LoRA-XS;
  bilinear: LoRA, VeRA, Uni-LoRA; degree 4: Tied-LoRA's diag(v)·B·diag(u)·A); ``check_degree`` verifies that
  numerically before it is relied on, so a method it would be wrong for fails loudly instead.
* Singular values: exactly (the Gram matrix JᵀJ built column by column, then ``eigvalsh``) when p is small, else
  the extreme ones estimated by Lanczos on JᵀJ with full reorthogonalisation, labelled as estimates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from experiments.methods import is_head_parameter

DEGREE_TOLERANCE = 1e-6  # relative: the stencils at ε and ε/2 agree this well for a map of degree ≤ 4
# σ below this fraction of σ_max counts as 0: the Gram route squares J's condition, so in float64 a true zero comes
# out near 1e-7·σ_max (sqrt of rounding), while the smallest true σ of every method here is far above 1e-5·σ_max.
ZERO_SIGMA = 1e-5


def _linear_in_features(base: nn.Module) -> int | None:
    if isinstance(base, nn.Linear):
        return base.in_features
    if type(base).__name__ == "Conv1D" and getattr(base, "weight", None) is not None and base.weight.dim() == 2:
        return base.weight.shape[0]  # transformers' Conv1D stores (in, out)
    return None


def frozen_layer(module: nn.Module):
    """The wrapped frozen layer: ``base_layer`` (GPart, PEFT) or ``base`` (this suite's low-rank baselines)."""
    base = getattr(module, "base_layer", None)
    return base if isinstance(base, nn.Module) else getattr(module, "base", None)


def adapted_layers(model: nn.Module, head_modules=()) -> list[tuple[str, nn.Module]]:
    """(name, wrapper) of every adapter-wrapped linear layer: a module holding the frozen layer as ``base_layer``."""
    found = []
    for name, module in model.named_modules():
        base = frozen_layer(module)
        if not isinstance(base, nn.Module) or _linear_in_features(base) is None:
            continue
        if head_modules and is_head_parameter(name + ".weight", head_modules):
            continue
        found.append((name, module))
    return found


class UpdateMap:
    """f: trainable adapter parameters (the head excluded) ↦ vec of every adapted layer's (ΔW, Δb)."""

    def __init__(self, model: nn.Module, head_modules=()):
        self.model = model.eval()  # adapter dropout off: f must be deterministic
        self.layers = adapted_layers(model, head_modules)
        if not self.layers:
            raise ValueError(
                f"{type(model).__name__} has no adapter-wrapped linear layer (a module with a "
                "`base_layer`): there is no parameter → update map to analyse"
            )
        named = [
            (n, p)
            for n, p in model.named_parameters()
            if p.requires_grad and not is_head_parameter(n, list(head_modules))
        ]
        if not named:
            raise ValueError("the model has no trainable adapter parameter outside the head")
        self.names = [n for n, _ in named]
        self.params = [p for _, p in named]
        self.size = sum(p.numel() for p in self.params)
        param = self.params[0]
        self._probes = {}
        for name, layer in self.layers:
            width = _linear_in_features(frozen_layer(layer))
            eye = torch.eye(width, dtype=param.dtype, device=param.device)
            self._probes[name] = torch.cat([eye, torch.zeros(1, width, dtype=param.dtype, device=param.device)])
        with torch.no_grad():
            self._base = {name: frozen_layer(layer)(self._probes[name]) for name, layer in self.layers}
        self.output_size = int(sum(out.numel() for out in self._base.values()))

    def point(self) -> torch.Tensor:
        """p, flattened in ``self.names`` order."""
        return torch.cat([p.detach().reshape(-1) for p in self.params])

    def delta(self) -> torch.Tensor:
        """f(p) at the current parameters (differentiable in them)."""
        pieces = []
        for name, layer in self.layers:
            change = layer(self._probes[name]) - self._base[name]
            bias_change = change[-1:]
            pieces += [(change[:-1] - bias_change).reshape(-1), bias_change.reshape(-1)]
        return torch.cat(pieces)

    def _split(self, flat: torch.Tensor) -> list[torch.Tensor]:
        return [chunk.view_as(p) for chunk, p in zip(flat.split([p.numel() for p in self.params]), self.params)]

    @torch.no_grad()
    def _delta_at(self, offset: torch.Tensor) -> torch.Tensor:
        saved = [p.detach().clone() for p in self.params]
        try:
            for param, step in zip(self.params, self._split(offset)):
                param.add_(step.to(param.dtype))
            return self.delta()
        finally:
            for param, value in zip(self.params, saved):
                param.copy_(value)

    def jvp(self, v: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
        """J v by a five-point central difference: exact (to rounding) for maps of degree ≤ 4 in p."""
        v = v.to(self.params[0])
        near = self._delta_at(eps * v) - self._delta_at(-eps * v)
        far = self._delta_at(2 * eps * v) - self._delta_at(-2 * eps * v)
        return (8 * near - far) / (12 * eps)

    def vjp(self, u: torch.Tensor) -> torch.Tensor:
        """Jᵀ u by autograd through the layers' own forward and backward."""
        with torch.enable_grad():
            grads = torch.autograd.grad(self.delta(), self.params, grad_outputs=u.to(self.params[0]), allow_unused=True)
        return torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1) for g, p in zip(grads, self.params)])

    def check_degree(self, seed: int = 0) -> float:
        """Relative gap between J v at ε = ‖p‖ and ‖p‖/2 along a random direction; raises if f has degree > 4."""
        v = unit_directions(self.size, 1, seed=seed, like=self.params[0])[0]
        scale = float(self.point().norm()) or 1.0
        wide, narrow = self.jvp(v, eps=scale), self.jvp(v, eps=scale / 2)
        gap = float((wide - narrow).norm() / max(float(narrow.norm()), 1e-30))
        if gap > DEGREE_TOLERANCE and float(narrow.norm()) > 0:
            raise ValueError(
                f"this method's update map is not of degree ≤ 4 in its parameters (five-point stencils "
                f"at ε and ε/2 differ by {gap:.2e} relative); Jacobian-vector products by central "
                "difference would be inexact, so the distortion analysis refuses it"
            )
        return gap


def unit_directions(size: int, count: int, *, seed: int, like: torch.Tensor) -> torch.Tensor:
    """``count`` random unit vectors of R^size (Gaussian, normalised), reproducible from ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    vectors = torch.randn(count, size, generator=generator, dtype=torch.float64)
    return (vectors / vectors.norm(dim=1, keepdim=True)).to(like)


@dataclass
class Distortion:
    """How far one method's map is from an isometry at one point (init or trained)."""

    parameters: int
    outputs: int
    singular_values: np.ndarray  # all of them when exact, else Lanczos Ritz values (extremes are reliable)
    exact: bool
    gains: np.ndarray = field(default_factory=lambda: np.zeros(0))  # ‖J v‖ / ‖v‖ over random unit directions
    degree_gap: float = 0.0

    @property
    def sigma_max(self) -> float:
        return float(self.singular_values.max())

    @property
    def sigma_min(self) -> float:
        return float(self.singular_values.min())

    @property
    def condition(self) -> float:
        return math.inf if self.sigma_min <= self.sigma_max * ZERO_SIGMA else self.sigma_max / self.sigma_min

    def rank(self, tolerance: float = ZERO_SIGMA) -> int:
        return int((self.singular_values > self.sigma_max * tolerance).sum())

    def summary(self) -> dict:
        gains = self.gains if self.gains.size else np.array([np.nan])
        return {
            "parameters": self.parameters,
            "outputs": self.outputs,
            "exact": self.exact,
            "sigma_min": self.sigma_min,
            "sigma_max": self.sigma_max,
            "condition": self.condition,
            "gain_min": float(gains.min()),
            "gain_median": float(np.median(gains)),
            "gain_max": float(gains.max()),
            "gain_std": float(gains.std()),
        }


def gram_singular_values(update_map: UpdateMap) -> np.ndarray:
    """All singular values of J, exactly: JᵀJ column by column (one JVP and one VJP each), then ``eigvalsh``."""
    like = update_map.params[0]
    gram = torch.empty(update_map.size, update_map.size, dtype=torch.float64)
    for column in range(update_map.size):
        basis = torch.zeros(update_map.size, dtype=like.dtype, device=like.device)
        basis[column] = 1
        gram[:, column] = update_map.vjp(update_map.jvp(basis)).double().cpu()
    eigenvalues = torch.linalg.eigvalsh((gram + gram.T) / 2)
    return eigenvalues.clamp(min=0).sqrt().flip(0).numpy()


def lanczos_singular_values(update_map: UpdateMap, steps: int, seed: int = 0) -> np.ndarray:
    """Ritz estimates of J's singular values from ``steps`` Lanczos iterations on JᵀJ (full reorthogonalisation).

    The largest and smallest Ritz values converge first, so σ_max, σ_min and the condition number are the reliable
    outputs; an invariant subspace found early (e.g. JᵀJ = I for GPart) stops the iteration exactly."""
    like = update_map.params[0]
    basis = [unit_directions(update_map.size, 1, seed=seed, like=like)[0].double()]
    alphas, betas = [], []
    for _ in range(min(steps, update_map.size)):
        w = update_map.vjp(update_map.jvp(basis[-1].to(like))).double()
        alphas.append(float(w @ basis[-1]))
        for q in basis:  # full reorthogonalisation (twice is enough)
            w -= (w @ q) * q
        for q in basis:
            w -= (w @ q) * q
        beta = float(w.norm())
        if beta <= 1e-10 * max(abs(alphas[-1]), 1e-30) or len(basis) == update_map.size:
            break
        betas.append(beta)
        basis.append(w / beta)
    k = len(alphas)
    tridiagonal = np.diag(alphas) + np.diag(betas[: k - 1], 1) + np.diag(betas[: k - 1], -1)
    return np.sqrt(np.clip(np.linalg.eigvalsh(tridiagonal), 0, None))[::-1]


def measure(
    update_map: UpdateMap, *, exact_limit: int = 512, lanczos_steps: int = 64, directions: int = 256, seed: int = 0
) -> Distortion:
    """Singular values (exact when p has at most ``exact_limit`` entries) and the gain spread of J."""
    degree_gap = update_map.check_degree(seed)
    exact = update_map.size <= exact_limit
    sigma = gram_singular_values(update_map) if exact else lanczos_singular_values(update_map, lanczos_steps, seed)
    gains = [
        float(update_map.jvp(v).norm())
        for v in unit_directions(update_map.size, directions, seed=seed + 1, like=update_map.params[0])
    ]
    return Distortion(update_map.size, update_map.output_size, sigma, exact, np.array(gains), degree_gap)
