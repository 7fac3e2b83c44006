"""Which modules a target list adapts, with a loud error when it adapts none.

Matching follows PEFT (and `gpart.GPartConfig`): a string is a regular expression that must match a module's full
name; a list entry matches a module whose name equals it or ends with ``.<entry>``. transformers 5.x renamed the ViT
attention projections from `query`/`key`/`value` to `q_proj`/`k_proj`/`v_proj` (setup.md §1), so a config written
for 4.x would match nothing; adapting nothing must stop a run, not train the head alone under a method's name.
"""

from __future__ import annotations

from typing import Iterable, Union

from torch import nn

from gpart.model import matches

# Old (transformers 4.x) ViT/BERT attention names -> the 5.x names, for the hint in the error message.
RENAMED_PROJECTIONS = {"query": "q_proj", "key": "k_proj", "value": "v_proj", "attention.output.dense": "o_proj"}


def match_target_modules(model: nn.Module, target_modules: Union[str, Iterable[str]]) -> list[str]:
    """Names of the weight-holding modules of `model` that `target_modules` selects, in `named_modules()` order."""
    targets = target_modules if isinstance(target_modules, str) else [str(t) for t in target_modules]
    return [
        name
        for name, module in model.named_modules()
        if name and isinstance(getattr(module, "weight", None), nn.Parameter) and matches(name, targets)
    ]


def require_target_modules(model: nn.Module, target_modules: Union[str, Iterable[str], None]) -> list[str]:
    """`match_target_modules`, raising a ValueError that names the targets, the model's candidate projection names
    and (for 4.x-era names) the 5.x replacement when nothing matches."""
    if target_modules is None or (not isinstance(target_modules, str) and len(list(target_modules)) == 0):
        raise ValueError(
            "target_modules is empty; name the modules to adapt (for ViT in transformers 5.x: ['q_proj', 'v_proj'])"
        )
    matched = match_target_modules(model, target_modules)
    if matched:
        return matched
    listed = [target_modules] if isinstance(target_modules, str) else list(target_modules)
    suggestions = sorted({RENAMED_PROJECTIONS[t] for t in listed if t in RENAMED_PROJECTIONS})
    leaf_names = sorted(
        {name.rsplit(".", 1)[-1] for name, module in model.named_modules() if isinstance(module, nn.Linear)}
    )
    hint = f" transformers 5.x names them {suggestions}." if suggestions else ""
    raise ValueError(
        f"target_modules={listed!r} matches no module of {type(model).__name__}.{hint} "
        f"Its Linear layers are named {leaf_names}."
    )
