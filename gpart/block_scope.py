"""Transformer-block scope: θ cut into one slice per transformer block, each partitioning only that block's targets.

The authors' ``partition_scope="transformer_block"`` (``../shared/reference/golden/``): a target belongs to the
block named by the first ``<container>.<number>`` in its module name (container one of ``BLOCK_CONTAINERS``);
blocks are ordered by that name with numbers compared as numbers; d is split into near-equal widths, the first
d mod B blocks one wider; block b owns θ[start_b, start_b + d_b) and partitions its own adapted space (its targets in
global order, weights then partitioned biases) with seed + b and d_b groups, its coordinates indexed from 0 within
the block. Each block is an ordinary partition (stateless/balanced hash or signed-magnitude), so the memory
discipline is that of the block's grouping.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from gpart.grouping import dense_partition

BLOCK_CONTAINERS = ("layers", "layer", "h", "block", "blocks")  # the authors' default container names
_U64 = 1 << 64


def transformer_block_of(module_name: str) -> str | None:
    """``model.layers.3`` for ``model.layers.3.self_attn.q_proj``; None outside a numbered block."""
    parts = module_name.split(".")
    for i, part in enumerate(parts[:-1]):
        if part in BLOCK_CONTAINERS and parts[i + 1].isdigit():
            return ".".join(parts[: i + 2])
    return None


def natural_key(name: str) -> tuple:
    """Sort key comparing numeric path components as numbers (``layers.10`` after ``layers.9``)."""
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part) for part in name.split("."))


def block_widths(d: int, n_blocks: int) -> list[int]:
    base, remainder = divmod(d, n_blocks)
    return [base + (ordinal < remainder) for ordinal in range(n_blocks)]


@dataclass
class Block:
    name: str
    theta_start: int
    partition: object  # a partition of the block's local space: group_ids(local start, count), scale(), d
    segments: list[tuple[int, int, int]]  # (global start, length, local start) of each of its targets' ranges


class BlockPartition:
    """The blocks' partitions side by side: g(i) = θ offset of i's block + that block's g(local index of i)."""

    def __init__(self, size: int, d: int, blocks: list[Block]):
        self.size, self.d, self.blocks = size, d, blocks
        self.isometric = all(block.partition.isometric for block in blocks)
        self.counts = torch.cat([block.partition.counts for block in blocks])
        self._segments = sorted(
            (start, length, local, block) for block in blocks for start, length, local in block.segments
        )

    def group_ids(self, start: int, count: int, device=None) -> torch.Tensor:
        pieces, end = [], start + count
        for seg_start, length, local, block in self._segments:
            lo, hi = max(start, seg_start), min(end, seg_start + length)
            if lo < hi:
                ids = block.partition.group_ids(local + lo - seg_start, hi - lo, device=device)
                pieces.append(ids + block.theta_start)
        ids = torch.cat(pieces) if pieces else torch.empty(0, dtype=torch.int64, device=device)
        if ids.numel() != count:
            raise ValueError(f"coordinates [{start}, {end}) are not all in a transformer block's adapted space")
        return ids

    def scale(self) -> torch.Tensor:
        return torch.cat([block.partition.scale() for block in self.blocks])

    def dense(self, dtype=torch.float64) -> torch.Tensor:
        return dense_partition(self, dtype)


def block_partition(ranges: list[tuple[str, int, int]], d: int, seed: int, make_partition) -> BlockPartition:
    """Group ``ranges`` = (module name, global start, length) by block; ``make_partition(block size, d_b, seed_b,
    segments)`` builds each block's partition. Raises ValueError when a target is outside every numbered block, when
    d is smaller than the number of blocks, or when a block's width exceeds its adapted space."""
    by_block: dict[str, list[tuple[int, int]]] = {}
    for name, start, length in ranges:
        block = transformer_block_of(name)
        if block is None:
            raise ValueError(
                f"partition_scope='transformer_block': target {name!r} is in no numbered transformer block "
                f"(a module path with one of {BLOCK_CONTAINERS} followed by a number); narrow target_modules or use "
                "partition_scope='global'"
            )
        by_block.setdefault(block, []).append((start, length))
    names = sorted(by_block, key=natural_key)
    if d < len(names):
        raise ValueError(
            f"partition_scope='transformer_block' needs d >= the number of blocks ({len(names)}), got d={d}"
        )
    blocks, theta_start = [], 0
    for ordinal, (name, width) in enumerate(zip(names, block_widths(d, len(names)))):
        segments, local = [], 0
        for start, length in sorted(by_block[name]):
            segments.append((start, length, local))
            local += length
        if width > local:
            raise ValueError(
                f"partition_scope='transformer_block': block {name!r} gets d_b={width} > its {local} "
                f"adapted coordinates (d={d} over {len(names)} blocks); lower d"
            )
        partition = make_partition(local, width, (seed + ordinal) % _U64, segments)
        blocks.append(Block(name, theta_start, partition, segments))
        theta_start += width
    return BlockPartition(sum(length for _, _, length in ranges), d, blocks)
