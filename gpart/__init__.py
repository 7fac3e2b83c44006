"""GPart: end-to-end isometric fine-tuning via global parameter partitioning.

One trainable vector θ ∈ R^d is mapped into the flattened weights of the targeted modules by a fixed random
partition matrix P (one non-zero 1/sqrt(group size) per row, PᵀP = I): ΔW = P θ, stored as θ plus a seed.

Read in this order: ``partition`` (the map g and P), ``layers`` (ΔW in forward, Pᵀ∇W in backward), ``model``
(applying to a network, merging), ``io`` (saving and loading). Beside them, the variants the ablations use
(``variants``: ``fastfood``, ``block_scope``, ``grouping``) and the authors' adapter format (``authors_format``,
``convert``).
"""

from gpart.config import GPartConfig
from gpart.io import load_adapter, read_adapter_config, save_adapter
from gpart.layers import GPartAdapter, GPartLayer
from gpart.model import (
    apply_gpart,
    find_adapter,
    gpart_layers,
    gpart_summary,
    merge,
    merge_and_unload,
    unmerge,
)
from gpart.partition import Partition, splitmix64, stateless_group_ids

__version__ = "0.1.0"

__all__ = [
    "GPartAdapter",
    "GPartConfig",
    "GPartLayer",
    "Partition",
    "apply_gpart",
    "find_adapter",
    "gpart_layers",
    "gpart_summary",
    "load_adapter",
    "merge",
    "merge_and_unload",
    "read_adapter_config",
    "save_adapter",
    "splitmix64",
    "stateless_group_ids",
    "unmerge",
]
