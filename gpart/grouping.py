"""Signed-magnitude grouping: a deterministic partition by the sign and magnitude of the pretrained weights.

The authors' ``grouping_strategy="signed_magnitude"`` (``../shared/reference/golden/``): the adapted coordinates are
split into a negative pool (w < 0) and a non-negative pool; the d groups are shared between the pools in proportion
to their sizes (k_neg = round(d · n_neg / N), at least one group each); inside a pool, coordinates are ordered by the
key |w_i| · (n + 1) + i / (n + 1) (n the pool size, i the global index, float32 arithmetic, ties kept in index order)
and cut into k equal-count runs of consecutive positions. P keeps one non-zero 1/sqrt(n_j) per row, so PᵀP = I holds
as for the random partition. We reproduce the authors' key exactly, float32 rounding included, because it decides
the groups: with n in the thousands the index term is not a mere tie-break, it reorders weights of similar size.

What this grouping must store: the group id of every adapted coordinate (int32, 4 bytes per coordinate, on the
weights' device), like the authors' "materialized" backend. The groups are a function of the weights, which this
module sees once, at ``apply_gpart``; recomputing them later would read merged (or re-cast) weights and give
different groups, so nothing smaller than the ids survives ``merge``/``unmerge`` exactly. Building them needs the N
weight values and their sort keys for a moment (float32, on the CPU).
"""

from __future__ import annotations

import torch


def group_scale(counts: torch.Tensor, isometric: bool) -> torch.Tensor:
    """P's non-zero per group: 1/sqrt(n_j) (or 1, not isometric), 0 for an empty group; float32, shape (d,)."""
    counts = counts.to(torch.float64)
    value = counts.rsqrt() if isometric else torch.ones_like(counts)
    return torch.where(counts > 0, value, torch.zeros_like(value)).to(torch.float32)


def signed_magnitude_group_ids(values: torch.Tensor, d: int) -> torch.Tensor:
    """g(i) for every coordinate of ``values`` (the flattened pretrained weights in global order); int64."""
    values = values.detach().reshape(-1).float().cpu()
    size = values.numel()
    if not 1 <= d <= size:
        raise ValueError(f"d={d} must satisfy 0 < d <= N={size} (the number of adapted coordinates)")
    non_negative = values >= 0  # a NaN weight lands in the negative pool, as in the authors' code
    negative_index = torch.nonzero(~non_negative).flatten()
    positive_index = torch.nonzero(non_negative).flatten()
    magnitude = values.abs()
    if negative_index.numel() == 0 or positive_index.numel() == 0:
        return _equal_count_runs(torch.arange(size), magnitude, d)
    if d == 1:
        return torch.zeros(size, dtype=torch.int64)
    k_negative = min(max(round(d * negative_index.numel() / size), 1), d - 1)  # Python's round, as theirs
    ids = torch.empty(size, dtype=torch.int64)
    ids[negative_index] = _equal_count_runs(negative_index, magnitude, k_negative)
    ids[positive_index] = _equal_count_runs(positive_index, magnitude, d - k_negative) + k_negative
    return ids


def _equal_count_runs(index: torch.Tensor, magnitude: torch.Tensor, k: int) -> torch.Tensor:
    """Group (0..k-1) of each of ``index``'s coordinates: run j holds sorted positions [⌊jn/k⌋, ⌊(j+1)n/k⌋)."""
    n = index.numel()
    if k > n:  # more groups than coordinates: one each, the rest stay empty
        return torch.arange(n, dtype=torch.int64)
    key = magnitude[index] * (n + 1) + index.float() / (n + 1)
    order = torch.argsort(key, stable=True)
    position = torch.arange(n, dtype=torch.int64)
    groups = torch.empty(n, dtype=torch.int64)
    groups[order] = ((position + 1) * k - 1) // n  # the j with ⌊jn/k⌋ <= position < ⌊(j+1)n/k⌋
    return groups


class SignedMagnitudePartition:
    """The partition ``signed_magnitude_group_ids`` defines, with the same interface as ``gpart.Partition``."""

    assignment = "signed_magnitude"
    seed = None  # the weights, not a seed, decide the groups

    def __init__(self, values: torch.Tensor, d: int, *, isometric: bool = True, device=None):
        ids = signed_magnitude_group_ids(values, d)
        self.size, self.d, self.isometric = ids.numel(), d, isometric
        self.counts = torch.bincount(ids, minlength=d)
        self.ids = ids.to(device=device, dtype=torch.int32)  # the N-sized state this grouping needs (docstring)

    def group_ids(self, start: int, count: int, device=None) -> torch.Tensor:
        return self.ids[start : start + count].to(device=device or self.ids.device, dtype=torch.int64)

    def scale(self) -> torch.Tensor:
        return group_scale(self.counts, self.isometric)

    def dense(self, dtype=torch.float64) -> torch.Tensor:
        return dense_partition(self, dtype)


def dense_partition(partition, dtype=torch.float64) -> torch.Tensor:
    """Any partition (``group_ids`` and ``scale``) as a dense N×d matrix, for tests and tiny examples only."""
    matrix = torch.zeros(partition.size, partition.d, dtype=dtype)
    ids = partition.group_ids(0, partition.size, "cpu")
    matrix[torch.arange(partition.size), ids] = partition.scale().to(dtype)[ids]
    return matrix
