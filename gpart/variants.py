"""Which map θ ↦ ΔW a config asks for: GPart's global random partition, or one of the variants beside it.

The variants are the authors' options that the paper's ablations use (``GPartConfig.projection``,
``partition_scope``, ``grouping``): the Fastfood projection (``gpart/fastfood.py``), one partition per transformer
block (``gpart/block_scope.py``) and the signed-magnitude grouping (``gpart/grouping.py``). Every one of them offers
the layers what ``gpart.Partition`` offers (``size``, ``d``, ``scale()``, and ``group_ids`` or, for the matrix-free
Fastfood, ``project``/``project_transpose``), so ``gpart/layers.py`` needs no knowledge of which it holds.
"""

from __future__ import annotations

import torch
from torch import nn

from gpart.block_scope import block_partition
from gpart.config import GPartConfig
from gpart.fastfood import FastfoodProjection
from gpart.grouping import SignedMagnitudePartition
from gpart.partition import Partition


def build_projection(config: GPartConfig, targets: list[tuple[str, nn.Module]], layout: list[tuple], size: int):
    """The projection for ``config`` over the adapted space that ``layout`` (from ``gpart.model._layout``) lays out."""
    device = targets[0][1].weight.device
    if config.projection == "fastfood":
        starts = [
            start
            for _, _, weight_start, bias_start in layout
            for start in (weight_start, bias_start)
            if start is not None
        ]
        return FastfoodProjection(size, config.d, seed=config.seed, isometric=config.isometric, slice_starts=starts)

    def grouping(block_size: int, d: int, seed: int, segments: list[tuple[int, int, int]]):
        if config.grouping == "signed_magnitude":
            values = torch.cat([_adapted_values(targets, layout, start, length) for start, length, _ in segments])
            return SignedMagnitudePartition(values, d, isometric=config.isometric, device=device)
        return Partition(block_size, d, seed=seed, assignment=config.assignment, isometric=config.isometric)

    if config.partition_scope == "transformer_block":
        ranges = [
            (name, weight_start, _range_length(module, bias_start))
            for (name, module), (_, _, weight_start, bias_start) in zip(targets, layout)
        ]
        return block_partition(ranges, config.d, config.seed, grouping)
    return grouping(size, config.d, config.seed, [(0, size, 0)])


def _range_length(module: nn.Module, bias_start: int | None) -> int:
    return module.weight.numel() + (module.bias.numel() if bias_start is not None else 0)


def _adapted_values(targets, layout, start: int, length: int) -> torch.Tensor:
    """The pretrained values of global coordinates [start, start + length), float32 on the CPU."""
    pieces = []
    for (_, module), (_, _, weight_start, bias_start) in zip(targets, layout):
        tensors = [(weight_start, module.weight)] + ([(bias_start, module.bias)] if bias_start is not None else [])
        for tensor_start, tensor in tensors:
            lo, hi = max(start, tensor_start), min(start + length, tensor_start + tensor.numel())
            if lo < hi:
                flat = tensor.detach().reshape(-1)[lo - tensor_start : hi - tensor_start]
                pieces.append(flat.float().cpu())
    return torch.cat(pieces)
