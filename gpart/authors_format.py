"""The authors' adapter format (their PEFT fork, SamsungLabs/GPart ``peft/tuners/gpart/``), read and written here.

Their ``save_pretrained`` writes ``adapter_config.json`` (PEFT's fields plus GPart's, ``"peft_type": "GPART"``) and
``adapter_model.safetensors`` holding θ as ``base_model.gpart_theta_d`` and each trained head tensor as
``base_model.model.<parameter name>``. The partition is the same function of the config in both codes (the golden
cases in ``../shared/reference/golden/`` check it), so converting is renaming:

    theirs                  ours                theirs                ours
    d                       d                   gpart_dropout         dropout
    target_modules          target_modules      bias "none"/"all"     bias "none"/"partitioned"
    proj_seed               seed                modules_to_save       trainable_modules
    isometric               isometric           projection_type       projection
    init_bound              init_bound          partition_scope       partition_scope
    assignment_backend      assignment          grouping_strategy     grouping

What does not convert raises ``ValueError`` naming the field: their ``materialized`` backend with random grouping
(a ``torch.randint`` assignment we do not implement), their ``stateless`` backend with signed-magnitude grouping (their
layers then hash group ids while the scales come from the signed-magnitude groups), ``layers_to_transform`` and
``layers_pattern``; and, the other way, our ``balanced`` assignment, which their code lacks. Their adapter carries
no fingerprint of the targeted shapes, so a load onto the wrong model is caught only by d > N or by the head.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

PEFT_TYPE = "GPART"
THETA_KEY = "base_model.gpart_theta_d"
HEAD_PREFIX = "base_model.model."
SOURCE = "authors' PEFT fork (SamsungLabs/GPart)"

# Their GPartConfig defaults, for configs that leave a field out (golden/README.md lists the fields).
_DEFAULTS = {
    "d": 1024,
    "proj_seed": 42,
    "isometric": True,
    "bias": "none",
    "gpart_dropout": 0.0,
    "modules_to_save": None,
    "init_bound": 0.0,
    "projection_type": "partition",
    "partition_scope": "global",
    "grouping_strategy": "random",
    "assignment_backend": "stateless",
    "layers_to_transform": None,
    "layers_pattern": None,
}
_SAME_NAME = ("d", "target_modules", "isometric", "init_bound", "partition_scope")
_RENAMED = {
    "proj_seed": "seed",
    "gpart_dropout": "dropout",
    "projection_type": "projection",
    "grouping_strategy": "grouping",
}
_STATELESS_BACKENDS = ("stateless", "implicit_stateless_v1")  # the second is the name older versions of theirs used


def is_authors_config(values) -> bool:
    return isinstance(values, dict) and values.get("peft_type") == PEFT_TYPE and "format" not in values


def config_from_authors(values: dict) -> dict:
    """Our ``GPartConfig`` fields (a dict for ``GPartConfig.from_dict``) for their config's values."""
    theirs = {**_DEFAULTS, **values}
    if "target_modules" not in values:
        raise ValueError("the authors' adapter config names no target_modules; allowed: a list of names or a regex")
    for name in ("layers_to_transform", "layers_pattern"):
        if theirs[name] is not None:
            raise ValueError(f"{name}={theirs[name]!r} in the authors' config is not supported here; allowed: null")
    ours = {name: theirs[name] for name in _SAME_NAME}
    ours.update({new: theirs[old] for old, new in _RENAMED.items()})
    if isinstance(ours["target_modules"], (tuple, set)):
        ours["target_modules"] = list(ours["target_modules"])  # names match in any order (a set in their code)
    ours["bias"] = "none" if theirs["bias"] == "none" else "partitioned"
    if theirs["bias"] not in ("none", "all", "gpart_only"):
        raise ValueError(f"bias={theirs['bias']!r} in the authors' config; allowed: 'none', 'all', 'gpart_only'")
    ours["trainable_modules"] = list(theirs["modules_to_save"] or [])
    backend = theirs["assignment_backend"]
    if ours["projection"] == "partition":
        needed = ("materialized",) if ours["grouping"] == "signed_magnitude" else _STATELESS_BACKENDS
        if backend not in needed:
            raise ValueError(
                f"assignment_backend={backend!r} with grouping_strategy={ours['grouping']!r} in the authors' config "
                f"is not supported here; allowed: {', '.join(map(repr, needed))}"
            )
    return ours


def config_to_authors(ours: dict) -> dict:
    """Their ``adapter_config.json`` for our config dict (``GPartConfig.to_dict()``), with every field theirs writes."""
    from gpart.config import GPartConfig  # validates, and fills the variant fields to_dict leaves out

    config = GPartConfig.from_dict(ours)
    if config.assignment != "stateless":
        raise ValueError(
            f"assignment={config.assignment!r} has no equivalent in the authors' code; allowed: 'stateless'"
        )
    values = {
        "d": config.d,
        "target_modules": config.target_modules,
        "proj_seed": config.seed,
        "isometric": config.isometric,
        "gpart_dropout": config.dropout,
        "bias": "all" if config.bias == "partitioned" else "none",
        "modules_to_save": list(config.trainable_modules) or None,
        "init_bound": config.init_bound,
        "projection_type": config.projection,
        "partition_scope": config.partition_scope,
        "grouping_strategy": config.grouping,
        "assignment_backend": "materialized" if config.grouping == "signed_magnitude" else "stateless",
        "fan_in_fan_out": False,  # their code sets it itself for transformers' Conv1D targets (with a warning)
        "layers_pattern": None,
        "layers_to_transform": None,
        "peft_type": PEFT_TYPE,
        "peft_version": None,
        "task_type": None,
        "inference_mode": True,
        "auto_mapping": None,
        "base_model_name_or_path": None,
        "revision": None,
    }
    return dict(sorted(values.items()))


def metadata_from_authors(values: dict) -> dict:
    """The metadata ``gpart.io.read_adapter_config`` returns, for their config: ours, with no fingerprint."""
    return {
        "format": "gpart",
        "format_version": 1,
        "config": config_from_authors(values),
        "fingerprint": None,
        "source": SOURCE,
    }


def tensors_from_authors(tensors: dict[str, torch.Tensor], *, theta_key: str, head_prefix: str, where) -> dict:
    """Their safetensors keys renamed to ours (``theta_key`` for θ, ``head_prefix`` + name for the head)."""
    thetas = [key for key in tensors if key == THETA_KEY or key.startswith(THETA_KEY + ".")]
    if len(thetas) != 1:
        raise ValueError(f"{where} holds {len(thetas)} θ tensors ({thetas}); expected one key {THETA_KEY!r}")
    theta = tensors[thetas[0]]
    renamed = {theta_key: theta.float() if theta.is_floating_point() else theta}  # an integer θ is refused later
    for key, value in tensors.items():
        if key == thetas[0]:
            continue
        if not key.startswith(HEAD_PREFIX):
            raise ValueError(f"{where} holds {key!r}; expected {THETA_KEY!r} or head tensors under {HEAD_PREFIX!r}")
        renamed[head_prefix + key.removeprefix(HEAD_PREFIX)] = value
    return renamed


def tensors_to_authors(tensors: dict[str, torch.Tensor], *, theta_key: str, head_prefix: str) -> dict:
    """Our safetensors keys renamed to theirs."""
    return {
        THETA_KEY if key == theta_key else HEAD_PREFIX + key.removeprefix(head_prefix): value
        for key, value in tensors.items()
    }


def write_authors_config(path: Path, theirs: dict) -> None:
    """Write a config already in the authors' field names (``config_to_authors``) as their adapter_config.json."""
    Path(path).write_text(json.dumps(theirs, indent=2) + "\n")
