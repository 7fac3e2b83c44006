"""The Fastfood projection: the intrinsic-dimension ("DID") baseline that GPart's partition is compared with.

Instead of a sparse partition, θ ∈ R^d is mapped into the adapted space of size N by a dense structured random
projection (Le et al., 2013; Li et al., 2018), exactly as the authors' code defines it
(``../shared/reference/golden/README.md``, ``projection_type="fastfood"``): θ is zero-padded to L = the next power
of two ≥ d, and K = ceil(N / L) independent blocks are stacked and truncated to N,

    vec(ΔW) = [ H G_k Π_k H B_k pad(g ⊙ θ) ]_{k=0..K-1}[:N] / sqrt(N · L),

with H the unnormalised Walsh–Hadamard matrix, B_k random signs, Π_k a random permutation, G_k a standard normal
diagonal, and g the per-coordinate gains: all ones when ``isometric`` (every entry then has variance 1/N, so
E[PᵀP] = I: isometric in expectation only, unlike the partition's exact PᵀP = I), or fixed unequal positive gains
with RMS one for the non-isometric ablation.

Matrix-free, with no N-sized state: the authors keep B, G and Π for all K blocks (≈ 9 bytes per adapted
coordinate). Here only a snapshot of the seeded generator is kept where each adapted tensor's blocks begin (a few KiB
per tensor); a layer regenerates its own blocks' factors when it needs them, which draws the same numbers from the
same stream, so the projection is bit-for-bit the authors' (the golden ``fastfood`` cases check this). The cost is
time: the factors of a layer are drawn again, on the CPU, in each forward and backward.
"""

from __future__ import annotations

import bisect
import math

import torch

ANISOTROPY_GAIN_RATIO = 4.0  # largest / smallest gain of the non-isometric ablation (authors' value)
ANISOTROPY_SEED_OFFSET = 0x6A09E667F3BCC909  # the gains' permutation is seeded apart from the factors (authors' value)
_TORCH_SEED_MODULUS = (1 << 63) - 1


def next_power_of_two(d: int) -> int:
    return 1 << (d - 1).bit_length()


def walsh_hadamard(x: torch.Tensor) -> torch.Tensor:
    """The unnormalised Walsh–Hadamard transform (natural order) along the last axis, whose length is 2^k."""
    width = x.shape[-1]
    lead = x.shape[:-1]
    half = 1
    while half < width:
        pairs = x.reshape(*lead, width // (2 * half), 2, half)
        first, second = pairs[..., 0, :], pairs[..., 1, :]
        x = torch.stack((first + second, first - second), dim=-2).reshape(*lead, width)
        half *= 2
    return x


def anisotropic_gains(d: int, seed: int) -> torch.Tensor:
    """Log-spaced positive gains (max/min = 4) with unit RMS, in a seeded random order (float32, shape (d,))."""
    if d < 2:
        raise ValueError(f"d={d}: the non-isometric Fastfood projection needs d >= 2 (its gains have RMS one)")
    half_log_ratio = 0.5 * math.log(ANISOTROPY_GAIN_RATIO)
    gains = torch.linspace(-half_log_ratio, half_log_ratio, d, dtype=torch.float64).exp()
    gains = gains / gains.square().mean().sqrt()
    generator = torch.Generator().manual_seed((seed + ANISOTROPY_SEED_OFFSET) % _TORCH_SEED_MODULUS)
    return gains[torch.randperm(d, generator=generator)].float()


class FastfoodProjection:
    """vec(ΔW) = F (g ⊙ θ) for the N adapted coordinates, computed slice by slice; O(d + tensors) state.

    ``scale()`` gives g (applied to θ by the layers, as they apply a partition's 1/sqrt(n_j)); ``project`` and
    ``project_transpose`` give F's rows [start, start + count) times a vector, and their transpose.
    """

    matrix_free = True  # layers ask project / project_transpose, not group ids (gpart/layers.py)

    def __init__(self, size: int, d: int, *, seed: int, isometric: bool = True, slice_starts=(0,)):
        if not 0 < d <= size:
            raise ValueError(f"d={d} must satisfy 0 < d <= N={size} (the number of adapted coordinates)")
        self.size, self.d, self.seed, self.isometric = size, d, seed, isometric
        self.block = next_power_of_two(d)
        self.n_blocks = -(-size // self.block)
        self.gains = torch.ones(d) if isometric else anisotropic_gains(d, seed)
        self._snapshot_blocks, self._snapshots = self._take_snapshots({0, *(s // self.block for s in slice_starts)})

    def scale(self) -> torch.Tensor:
        return self.gains.clone()

    def project(self, scaled_theta: torch.Tensor, start: int, count: int) -> torch.Tensor:
        """Rows [start, start + count) of F times ``scaled_theta`` (= g ⊙ θ), flat, in ``scaled_theta``'s dtype."""
        first, last, offset = self._span(start, count)
        signs, gaussian, permutation = self._factors(first, last, scaled_theta.device, scaled_theta.dtype)
        padded = scaled_theta.new_zeros(self.block)
        padded[: self.d] = scaled_theta
        work = walsh_hadamard(padded * signs)
        work = walsh_hadamard(torch.gather(work, -1, permutation) * gaussian)
        return (work * self._normaliser()).reshape(-1)[offset : offset + count]

    def project_transpose(self, values: torch.Tensor, start: int) -> torch.Tensor:
        """F's rows [start, start + len(values)), transposed, times ``values``: a vector of length d."""
        first, last, offset = self._span(start, values.numel())
        signs, gaussian, permutation = self._factors(first, last, values.device, values.dtype)
        work = values.new_zeros(last - first + 1, self.block)
        work.view(-1)[offset : offset + values.numel()] = values.reshape(-1)
        work = walsh_hadamard(work) * gaussian
        work = torch.zeros_like(work).scatter_(-1, permutation, work)  # Π⁻¹
        work = walsh_hadamard(work) * signs * self._normaliser()
        return work.sum(0)[: self.d]

    def dense(self, dtype=torch.float64) -> torch.Tensor:
        """F (g ⊙ ·) as a dense N×d matrix, for tests and tiny examples only."""
        eye = torch.eye(self.d, dtype=dtype) * self.gains.to(dtype)
        return torch.stack([self.project(column, 0, self.size) for column in eye], dim=1)

    def _normaliser(self) -> float:
        return 1.0 / math.sqrt(self.size * self.block)

    def _span(self, start: int, count: int) -> tuple[int, int, int]:
        if count <= 0 or start < 0 or start + count > self.size:
            raise ValueError(f"Fastfood slice [{start}, {start + count}) is outside the adapted space [0, {self.size})")
        first, last = start // self.block, (start + count - 1) // self.block
        return first, last, start - first * self.block

    def _draw_block(self, generator: torch.Generator):
        """One block's factors, in the authors' draw order and dtypes (so the stream matches theirs)."""
        L = self.block
        signs = torch.randint(0, 2, (L,), generator=generator, dtype=torch.int8).mul_(2).sub_(1)
        gaussian = torch.randn(L, generator=generator, dtype=torch.float32)
        permutation = torch.randperm(L, generator=generator, dtype=torch.int32)
        return signs, gaussian, permutation

    def _take_snapshots(self, blocks: set[int]) -> tuple[list[int], list[torch.Tensor]]:
        """The generator's state just before each listed block is drawn: one pass over the stream, O(1) memory."""
        wanted = sorted(b for b in blocks if b < self.n_blocks)
        generator = torch.Generator().manual_seed(self.seed)
        states, drawn = [], 0
        for block in wanted:
            for _ in range(block - drawn):
                self._draw_block(generator)
            drawn = block
            states.append(generator.get_state())
        return wanted, states

    def _factors(self, first: int, last: int, device, dtype):
        """B, G (in ``dtype``) and Π (int64) of blocks first..last, each (blocks, L), on ``device``."""
        index = bisect.bisect_right(self._snapshot_blocks, first) - 1
        generator = torch.Generator()
        generator.set_state(self._snapshots[index])
        for _ in range(first - self._snapshot_blocks[index]):
            self._draw_block(generator)
        signs, gaussian, permutation = zip(*(self._draw_block(generator) for _ in range(first, last + 1)))
        return (
            torch.stack(signs).to(device=device, dtype=dtype),
            torch.stack(gaussian).to(device=device, dtype=dtype),
            torch.stack(permutation).to(device=device, dtype=torch.int64),
        )
