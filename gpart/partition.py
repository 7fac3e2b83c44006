"""The partition P: which of the d groups each adapted coordinate belongs to, and each group's scale.

GPart writes the update of the adapted weights as vec(ΔW) = P θ with P ∈ R^{N×d} holding one non-zero per row,
P[i, g(i)] = 1/sqrt(n_{g(i)}), where n_j is the size of group j. The columns of P are orthonormal (PᵀP = I_d), so
the map θ ↦ ΔW is an isometry. Nothing here stores anything of size N: group ids are recomputed from the
coordinate's global index i whenever a layer needs them, and group sizes are counted once, in chunks.

Two assignments g are supported (``../shared/reference/setup.md`` §1):

* ``stateless`` (the authors' HEAD default): g(i) = splitmix64(seed + i) mod d, all in unsigned 64-bit arithmetic.
  Bit-compatible with adapters trained by the authors' stateless backend.
* ``balanced`` (the paper-era semantics): a seeded bijection π of [0, N) cut into d consecutive chunks, so group
  sizes differ by at most 1. The paper era used ``torch.randperm`` (an N-sized tensor); we use a keyed Feistel
  bijection instead, which has the same property with no stored permutation, but is not bit-compatible with
  paper-era checkpoints.

Unsigned 64-bit values live in int64 tensors as their two's-complement bit patterns: addition and multiplication
wrap identically, and right shifts are made logical by masking.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

try:
    from tqdm.auto import tqdm
except ImportError:  # progress bars are a nicety, not a dependency
    tqdm = None

ASSIGNMENTS = ("stateless", "balanced")
COUNT_CHUNK = 1 << 22  # coordinates hashed at once per thread while counting group sizes (32 MiB of int64)
HASH_CHUNK = 1 << 16  # coordinates hashed per pass over a chunk of ids (512 KiB of uint64: fits L2)
PROGRESS_MIN_SIZE = 1 << 28  # show a progress bar when counting more coordinates than this

_U64 = 1 << 64
_GOLDEN_GAMMA = 0x9E3779B97F4A7C15
_MIX1 = 0xBF58476D1CE4E5B9
_MIX2 = 0x94D049BB133111EB
_FEISTEL_ROUNDS = 4


def _as_int64(value: int) -> int:
    """The int64 whose bit pattern is the unsigned 64-bit ``value`` (mod 2^64)."""
    value %= _U64
    return value - _U64 if value >= 1 << 63 else value


def _shift_right(z: torch.Tensor, bits: int) -> torch.Tensor:
    """Logical right shift of uint64 bit patterns held in int64 (torch's ``>>`` is arithmetic)."""
    return (z >> bits) & ((1 << (64 - bits)) - 1)


def splitmix64(x: torch.Tensor) -> torch.Tensor:
    """The splitmix64 finaliser of x + golden gamma, elementwise on uint64 bit patterns in an int64 tensor."""
    z = x + _as_int64(_GOLDEN_GAMMA)
    z = (z ^ _shift_right(z, 30)) * _as_int64(_MIX1)
    z = (z ^ _shift_right(z, 27)) * _as_int64(_MIX2)
    return z ^ _shift_right(z, 31)


def _unsigned_mod(z: torch.Tensor, d: int) -> torch.Tensor:
    """(z as uint64) mod d. A negative int64 z stands for z + 2^64."""
    remainder = torch.remainder(z, d)
    return torch.where(z < 0, (remainder + _U64 % d) % d, remainder)


def stateless_group_ids(start: int, count: int, *, seed: int, d: int, device=None) -> torch.Tensor:
    """g(i) = splitmix64(seed + i) mod d for the global indices i = start, ..., start + count - 1."""
    if torch.device(device or "cpu").type == "cpu":
        return torch.from_numpy(_stateless_group_ids_numpy(start, count, seed, d))
    return _stateless_group_ids_torch(start, count, seed, d, device)


def _stateless_group_ids_torch(start: int, count: int, seed: int, d: int, device=None) -> torch.Tensor:
    index = torch.arange(count, dtype=torch.int64, device=device) + _as_int64(seed + start)
    return _unsigned_mod(splitmix64(index), d)


def _stateless_group_ids_numpy(start: int, count: int, seed: int, d: int, threads: int | None = None) -> np.ndarray:
    """The same map with numpy's native uint64 (logical shifts, wrapping products), several times faster than torch.

    Hashed in cache-sized chunks (the eight passes over a chunk stay in L2), spread over torch's CPU threads: numpy
    releases the GIL inside its kernels (``threads``, default: torch's). Each layer's ids are hashed twice per
    training step, so this is hot.
    """
    out = np.empty(count, dtype=np.uint64)
    starts = range(0, count, HASH_CHUNK)
    workers = min(threads or torch.get_num_threads(), len(starts))

    def hash_chunk(offset: int):
        _splitmix64_mod_into(out[offset : offset + HASH_CHUNK], seed + start + offset, d)

    if workers <= 1:
        for offset in starts:
            hash_chunk(offset)
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(hash_chunk, starts))
    return out.view(np.int64)  # values < d < 2^63: the bit patterns are the same numbers


def _splitmix64_mod_into(z: np.ndarray, first: int, d: int):
    """z[k] = splitmix64(first + k) mod d, in place on a uint64 array."""
    z[:] = np.arange(len(z), dtype=np.uint64)
    z += np.uint64((first + _GOLDEN_GAMMA) % _U64)
    z ^= z >> np.uint64(30)
    z *= np.uint64(_MIX1)
    z ^= z >> np.uint64(27)
    z *= np.uint64(_MIX2)
    z ^= z >> np.uint64(31)
    # z mod d as z - (z // d)·d: numpy divides by a scalar with a multiply-shift (libdivide), `%` divides per element.
    quotient = z // np.uint64(d)
    quotient *= np.uint64(d)
    z -= quotient


class _FeistelBijection:
    """A keyed bijection of [0, size): a balanced Feistel network on the next even power of two, cycle-walked."""

    def __init__(self, size: int, seed: int):
        self.size = size
        self.half_bits = max(1, math.ceil(math.log2(max(size, 2)) / 2))
        self.half_mask = (1 << self.half_bits) - 1
        keys = splitmix64(torch.arange(_FEISTEL_ROUNDS, dtype=torch.int64) + _as_int64(seed))
        self.round_keys = [int(k) for k in keys]

    def _permute_power_of_two(self, x: torch.Tensor) -> torch.Tensor:
        left, right = x >> self.half_bits, x & self.half_mask
        for key in self.round_keys:
            mixed = splitmix64(right ^ key) & self.half_mask
            left, right = right, left ^ mixed
        return (left << self.half_bits) | right

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        # Cycle walking: re-permute values that land outside [0, size); the domain is < 4 * size, so few rounds.
        y = self._permute_power_of_two(x)
        outside = y >= self.size
        while bool(outside.any()):
            y[outside] = self._permute_power_of_two(y[outside])
            outside = y >= self.size
        return y


def balanced_group_ids(start: int, count: int, *, seed: int, d: int, size: int, device=None) -> torch.Tensor:
    """g(i) = floor(π(i) · d / N): the seeded bijection π of [0, N) cut into d consecutive, near-equal chunks."""
    index = torch.arange(start, start + count, dtype=torch.int64, device=device)
    return _FeistelBijection(size, seed)(index) * d // size


class Partition:
    """The fixed random partition of N adapted coordinates into d groups, with P's non-zero value per group.

    Holds only O(d) state. ``group_ids`` recomputes g on any range of global indices; ``scale`` gives the
    non-zero of each column of P (1/sqrt(n_j), or 1 for the non-isometric ablation, 0 for an empty group).
    """

    def __init__(self, size: int, d: int, *, seed: int, assignment: str = "stateless", isometric: bool = True):
        if assignment not in ASSIGNMENTS:
            raise ValueError(f"assignment={assignment!r} is not supported; allowed: {', '.join(ASSIGNMENTS)}")
        if not 0 < d <= size:
            raise ValueError(f"d={d} must satisfy 0 < d <= N={size} (the number of adapted coordinates)")
        if assignment == "balanced" and size * d >= 1 << 63:
            raise ValueError(f"balanced assignment needs N·d < 2^63; got N={size}, d={d}")
        self.size, self.d, self.seed = size, d, seed
        self.assignment, self.isometric = assignment, isometric
        self.counts = self._count_groups()

    def group_ids(self, start: int, count: int, device=None) -> torch.Tensor:
        if self.assignment == "stateless":
            return stateless_group_ids(start, count, seed=self.seed, d=self.d, device=device)
        return balanced_group_ids(start, count, seed=self.seed, d=self.d, size=self.size, device=device)

    def scale(self) -> torch.Tensor:
        """P's non-zero per group (float32, shape (d,)): 1/sqrt(n_j), 1 if not isometric, 0 for empty groups."""
        counts = self.counts.to(torch.float64)
        value = counts.rsqrt() if self.isometric else torch.ones_like(counts)
        return torch.where(counts > 0, value, torch.zeros_like(value)).to(torch.float32)

    def _count_groups(self) -> torch.Tensor:
        if self.assignment == "balanced":
            # Group j is π⁻¹ of [ceil(jN/d), ceil((j+1)N/d)): its size follows from N and d alone.
            bounds = (torch.arange(self.d + 1, dtype=torch.int64) * self.size + self.d - 1) // self.d
            return bounds[1:] - bounds[:-1]

        def count_chunk(start: int) -> np.ndarray:
            ids = _stateless_group_ids_numpy(start, min(COUNT_CHUNK, self.size - start), self.seed, self.d, threads=1)
            return np.bincount(ids, minlength=self.d)

        starts = range(0, self.size, COUNT_CHUNK)
        counts = np.zeros(self.d, dtype=np.int64)
        # numpy releases the GIL inside its kernels, so threads hash chunks in parallel.
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            chunks = pool.map(count_chunk, starts)
            if tqdm is not None and self.size >= PROGRESS_MIN_SIZE:
                chunks = tqdm(chunks, total=len(starts), desc=f"GPart: counting {self.d:,} group sizes", unit="chunk")
            for chunk in chunks:
                counts += chunk
        return torch.from_numpy(counts)

    def dense(self, dtype=torch.float64) -> torch.Tensor:
        """P as a dense N×d matrix, for tests and tiny examples only."""
        matrix = torch.zeros(self.size, self.d, dtype=dtype)
        ids = self.group_ids(0, self.size)
        matrix[torch.arange(self.size), ids] = self.scale().to(dtype)[ids]
        return matrix
