"""Saving and loading adapters: ``adapter_config.json`` + ``adapter_model.safetensors`` (θ, and the head).

θ plus the config (whose seed fixes P) is the whole adapter: about 4·d bytes. The JSON also records N and a
fingerprint of the targeted names and shapes, so loading onto a model with different targets fails loudly instead
of silently mapping θ onto the wrong coordinates. Only safetensors and JSON are read — never pickle.

``load_adapter`` also reads an adapter saved by the authors' code (``"peft_type": "GPART"``; the renaming is in
``gpart/authors_format.py``); ``python -m gpart.convert`` writes one of ours in their layout.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from gpart import authors_format
from gpart.config import GPartConfig
from gpart.model import ADAPTER_NAME, apply_gpart, find_adapter, require_adapter

CONFIG_NAME = "adapter_config.json"
WEIGHTS_NAME = "adapter_model.safetensors"
FORMAT = "gpart"
FORMAT_VERSION = 1
THETA_KEY = "theta"
HEAD_PREFIX = "trainable."


def save_adapter(model: nn.Module, directory: str | os.PathLike) -> Path:
    """Write θ and the trained head to ``directory``; each file appears whole or not at all."""
    adapter = require_adapter(model)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {THETA_KEY: adapter.theta.detach().to("cpu", torch.float32).contiguous()}
    for name, param in _head_parameters(model).items():
        tensors[HEAD_PREFIX + name] = param.detach().cpu().contiguous()
    metadata = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": adapter.config.to_dict(),
        "fingerprint": adapter.fingerprint,
    }
    _atomic_write(directory / WEIGHTS_NAME, lambda path: save_file(tensors, path, metadata={"format": "pt"}))
    _atomic_write(directory / CONFIG_NAME, lambda path: Path(path).write_text(json.dumps(metadata, indent=2) + "\n"))
    return directory


def load_adapter(model: nn.Module, directory: str | os.PathLike) -> nn.Module:
    """Apply the saved adapter to ``model`` (or reuse an identical one already applied) and load θ and the head.

    ``directory`` is one of ours (``save_adapter``) or one the authors' code saved (``gpart/authors_format.py``).
    """
    metadata = read_adapter_config(directory)
    config = GPartConfig.from_dict(metadata["config"])
    if find_adapter(model) is None:
        apply_gpart(model, config)
    else:
        _check_same_mapping(find_adapter(model).config, config, directory)
    adapter = find_adapter(model)
    if metadata["fingerprint"] is not None:  # the authors' files carry none
        _check_fingerprint(adapter.fingerprint, metadata["fingerprint"], directory)
    tensors = _read_tensors(Path(directory) / WEIGHTS_NAME)
    if metadata.get("source") == authors_format.SOURCE:
        tensors = authors_format.tensors_from_authors(
            tensors, theta_key=THETA_KEY, head_prefix=HEAD_PREFIX, where=Path(directory) / WEIGHTS_NAME
        )
    theta = tensors.pop(THETA_KEY, None)
    if theta is None or tuple(theta.shape) != (config.d,):
        got = "no θ" if theta is None else f"θ of shape {tuple(theta.shape)}"
        raise ValueError(f"{Path(directory) / WEIGHTS_NAME} holds {got}; expected shape ({config.d},)")
    with torch.no_grad():
        adapter.theta.copy_(theta)
        _load_head(model, tensors, directory)
    return model


def read_adapter_config(directory: str | os.PathLike) -> dict:
    path = Path(directory) / CONFIG_NAME
    if not path.is_file():
        raise FileNotFoundError(f"no GPart adapter at {directory}: {CONFIG_NAME} not found")
    try:
        metadata = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON ({error}); the adapter is corrupt or truncated") from None
    if authors_format.is_authors_config(metadata):
        try:
            return authors_format.metadata_from_authors(metadata)
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from None
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        raise ValueError(f"{path} is not a GPart adapter config (expected \"format\": \"{FORMAT}\")")
    if metadata.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path} has format_version {metadata.get('format_version')!r}; this gpart reads {FORMAT_VERSION}")
    return metadata


def _check_fingerprint(model_print: dict, saved_print: dict, directory) -> None:
    if model_print["sha256"] == saved_print.get("sha256"):
        return
    ours = {name: tuple(shape) for name, shape, _ in model_print["targets"]}
    theirs = {name: tuple(shape) for name, shape, _ in saved_print.get("targets", [])}
    missing = sorted(set(theirs) - set(ours))[:5]
    extra = sorted(set(ours) - set(theirs))[:5]
    reshaped = sorted(n for n in set(ours) & set(theirs) if ours[n] != theirs[n])[:5]
    raise ValueError(
        f"adapter at {directory} was trained on different target weights (N={saved_print.get('adapted_space_size')}) "
        f"than this model has (N={model_print['adapted_space_size']}): "
        f"missing here {missing}, extra here {extra}, different shapes {reshaped}"
    )


# Fields that change nothing about what θ means (training-time or kernel choices); every other one must agree.
_MAPPING_NEUTRAL = ("dropout", "backend", "init_bound", "target_modules")  # targets: checked by the fingerprint


def _check_same_mapping(present: GPartConfig, saved: GPartConfig, directory) -> None:
    """A model that already carries an adapter keeps its partition: θ saved for another seed, assignment, d, …
    would land on the wrong coordinates, so the load is refused, naming each differing field."""
    ours, theirs = present.to_dict(), saved.to_dict()
    differing = [f"{name}: model has {ours.get(name)!r}, adapter has {theirs.get(name)!r}"
                 for name in sorted(set(ours) | set(theirs))
                 if name not in _MAPPING_NEUTRAL and ours.get(name) != theirs.get(name)]
    if differing:
        raise ValueError(f"adapter at {directory} was saved for another GPart configuration than the one this model "
                         f"already carries ({'; '.join(differing)}); load it onto a model without a GPart adapter, "
                         f"or apply the saved configuration")


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise FileNotFoundError(f"no adapter weights: {path} not found")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as error:
        raise ValueError(f"{path} could not be read as safetensors ({error}); the file is corrupt or truncated") from None


def _head_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    return {n: p for n, p in model.named_parameters() if p.requires_grad and not n.startswith(ADAPTER_NAME + ".")}


def _load_head(model: nn.Module, tensors: dict[str, torch.Tensor], directory) -> None:
    params = dict(model.named_parameters())
    for key, value in tensors.items():
        name = key.removeprefix(HEAD_PREFIX)
        if not key.startswith(HEAD_PREFIX) or name not in params:
            raise ValueError(f"adapter at {directory} holds {key!r}, which matches no parameter of this model")
        if params[name].shape != value.shape:
            raise ValueError(
                f"adapter at {directory}: {name} has shape {tuple(value.shape)}, the model's is {tuple(params[name].shape)}"
            )
        params[name].copy_(value)


def _atomic_write(target: Path, write) -> None:
    """Write via a temporary file in the same folder, then rename: readers never see a partial file."""
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(handle)
    try:
        write(temporary)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
