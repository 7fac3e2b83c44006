"""Applying GPart to any ``torch.nn.Module``: find the targets, lay out the adapted space, wrap, freeze.

The adapted space is the concatenation of the targets' weights in ``named_modules()`` order, each flattened
row-major in its stored layout (a target's bias follows its weight when ``bias="partitioned"``). A coordinate's
position in that order is its global index i, the input of the group assignment g(i).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass

from torch import nn

from gpart.config import GPartConfig
from gpart.layers import GPartAdapter, GPartLayer
from gpart.variants import build_projection

ADAPTER_NAME = "gpart_adapter"


def apply_gpart(model: nn.Module, config: GPartConfig) -> nn.Module:
    """Wrap ``config.target_modules`` with GPart layers sharing one θ; freeze all but θ and the trainable modules.

    Modifies ``model`` in place and returns it. Raises ``ValueError`` when targets or trainable modules match
    nothing, when d exceeds the adapted-space size N, or when the model already carries a GPart adapter.
    """
    if find_adapter(model) is not None:
        raise ValueError("the model already has a GPart adapter; call merge_and_unload() before applying another")
    if isinstance(model, nn.Sequential):
        # θ's holder is registered on the root, and nn.Sequential would call it as its last layer.
        raise ValueError(
            "apply_gpart needs a root module that is not an nn.Sequential; wrap the Sequential in a Module"
        )
    targets = _match_targets(model, config.target_modules)
    adapter, layout = build_adapter(config, targets)
    model.requires_grad_(False)
    model.add_module(ADAPTER_NAME, adapter)
    for (name, module), (_, _, weight_start, bias_start) in zip(targets, layout):
        layer = GPartLayer(module, adapter, weight_start, bias_start)
        layer.name = name
        layer.training = module.training  # a model already in eval mode must not start dropping ΔW
        model.set_submodule(name, layer)
    for module in _match_trainable(model, config.trainable_modules):
        module.requires_grad_(True)
    return model


def build_adapter(config: GPartConfig, targets: list[tuple[str, nn.Module]]) -> tuple[GPartAdapter, list[tuple]]:
    """θ and P over ``targets`` ((name, module) pairs in adapted-space order), and the layout placing each target.

    The one construction that ``apply_gpart`` and the PEFT plugin (``gpart.peft``) share; raises ``ValueError`` when d
    exceeds the adapted-space size N.
    """
    layout, size = _layout(targets, config.bias)
    partition = build_projection(config, targets, layout, size)  # gpart.Partition unless a variant is asked for
    adapter = GPartAdapter(config, partition, fingerprint(layout, size), device=targets[0][1].weight.device)
    return adapter, layout


def find_adapter(model: nn.Module) -> GPartAdapter | None:
    adapter = getattr(model, ADAPTER_NAME, None)
    return adapter if isinstance(adapter, GPartAdapter) else None


def require_adapter(model: nn.Module) -> GPartAdapter:
    adapter = find_adapter(model)
    if adapter is None:
        raise ValueError("the model has no GPart adapter; call apply_gpart(model, config) or load_adapter first")
    return adapter


def gpart_layers(model: nn.Module) -> list[tuple[str, GPartLayer]]:
    return [(name, m) for name, m in model.named_modules() if isinstance(m, GPartLayer)]


def merge(model: nn.Module) -> nn.Module:
    """Add ΔW into every adapted weight in place; the forward then costs exactly the base model's."""
    require_adapter(model)
    for _, layer in gpart_layers(model):
        layer.merge()
    return model


def unmerge(model: nn.Module) -> nn.Module:
    """Subtract ΔW again (up to floating-point rounding of the weights' dtype)."""
    require_adapter(model)
    for _, layer in gpart_layers(model):
        layer.unmerge()
    return model


def merge_and_unload(model: nn.Module) -> nn.Module:
    """Merge, then restore the original modules and drop θ: a plain model with the fine-tuned weights."""
    merge(model)
    for name, layer in gpart_layers(model):
        model.set_submodule(name, layer.base_layer)
    delattr(model, ADAPTER_NAME)
    return model


@dataclass(frozen=True)
class GPartSummary:
    adapted_space_size: int
    d: int
    adapted_modules: list[str]
    trainable_adapter_params: int
    head_params: int

    def __str__(self) -> str:
        return (
            f"GPart: d={self.d:,} trainable (θ) over N={self.adapted_space_size:,} adapted coordinates in "
            f"{len(self.adapted_modules)} modules; head parameters: {self.head_params:,}"
        )


def gpart_summary(model: nn.Module) -> GPartSummary:
    adapter = require_adapter(model)
    head = sum(p.numel() for n, p in model.named_parameters() if p.requires_grad and not n.startswith(ADAPTER_NAME))
    return GPartSummary(
        adapted_space_size=adapter.partition.size,
        d=adapter.config.d,
        adapted_modules=[name for name, _ in gpart_layers(model)],
        trainable_adapter_params=adapter.theta.numel(),
        head_params=head,
    )


def fingerprint(layout: list[tuple], size: int) -> dict:
    """What a saved θ needs from a model: the targets' names and shapes in order, and N, with a digest."""
    targets = [[name, list(shape), bias_start is not None] for name, shape, _, bias_start in layout]
    digest = hashlib.sha256(json.dumps([targets, size]).encode()).hexdigest()
    return {"adapted_space_size": size, "targets": targets, "sha256": digest}


def matches(name: str, patterns: list[str] | str) -> bool:
    """PEFT's convention: a regex string must match the whole name; a list entry matches the name or its suffix."""
    if isinstance(patterns, str):
        return re.fullmatch(patterns, name) is not None
    return any(name == p or name.endswith("." + p) for p in patterns)


def _match_targets(model: nn.Module, patterns) -> list[tuple[str, nn.Module]]:
    with_weight = [
        (n, m) for n, m in model.named_modules() if n and isinstance(getattr(m, "weight", None), nn.Parameter)
    ]
    targets = [(n, m) for n, m in with_weight if matches(n, patterns)]
    if not targets:
        examples = sorted({n.rsplit(".", 1)[-1] for n, _ in with_weight})[:20]
        raise ValueError(
            f"target_modules={patterns!r} matched no module with a weight; "
            f"names of such modules in this model end with: {examples}"
        )
    return targets


def _layout(targets, bias_mode: str) -> tuple[list[tuple], int]:
    """(name, weight shape, weight start, bias start or None) per target, and N."""
    layout, cursor = [], 0
    for name, module in targets:
        weight_start, cursor = cursor, cursor + module.weight.numel()
        bias_start = None
        if bias_mode == "partitioned" and isinstance(getattr(module, "bias", None), nn.Parameter):
            bias_start, cursor = cursor, cursor + module.bias.numel()
        layout.append((name, tuple(module.weight.shape), weight_start, bias_start))
    return layout, cursor


def _match_trainable(model: nn.Module, patterns: list[str]) -> list[nn.Module]:
    modules = []
    for pattern in patterns:
        found = [m for n, m in model.named_modules() if n and matches(n, [pattern])]
        if not found:
            raise ValueError(f"trainable_modules entry {pattern!r} matched no module of the model")
        modules.extend(found)
    return modules
