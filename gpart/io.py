"""Saving and loading adapters: ``adapter_config.json`` + ``adapter_model.safetensors`` (θ, and the head).

θ plus the config (whose seed fixes P) is the whole adapter: about 4·d bytes. The JSON also records N and a
fingerprint of the targeted names and shapes, so loading onto a model with different targets fails loudly instead
of silently mapping θ onto the wrong coordinates. Only safetensors and JSON are read — never pickle. The weights
file's metadata carries a sha256 of its tensors (``gpart_sha256``), verified on load; files without one (the
authors', older ones) still load. Loading writes only θ and the parameters of ``trainable_modules`` (all of which
the file must hold), and checks everything before it touches the model.

``load_adapter`` also reads an adapter saved by the authors' code (``"peft_type": "GPART"``; the renaming is in
``gpart/authors_format.py``); ``python -m gpart.convert`` writes one of ours in their layout.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save
from torch import nn

from gpart import authors_format
from gpart.config import GPartConfig
from gpart.model import ADAPTER_NAME, apply_gpart, find_adapter, gpart_layers, matches, require_adapter

CONFIG_NAME = "adapter_config.json"
WEIGHTS_NAME = "adapter_model.safetensors"
FORMAT = "gpart"
FORMAT_VERSION = 1
THETA_KEY = "theta"
HEAD_PREFIX = "trainable."
CHECKSUM_KEY = (
    "gpart_sha256"  # in the safetensors header's metadata: a digest of every tensor's name, dtype, shape, bytes
)


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
    file_metadata = {"format": "pt", CHECKSUM_KEY: tensors_checksum(tensors)}
    payload = _deterministic_safetensors(tensors, file_metadata)
    _atomic_write(directory / WEIGHTS_NAME, lambda path: Path(path).write_bytes(payload))
    _atomic_write(directory / CONFIG_NAME, lambda path: Path(path).write_text(json.dumps(metadata, indent=2) + "\n"))
    return directory


def load_adapter(model: nn.Module, directory: str | os.PathLike) -> nn.Module:
    """Apply the saved adapter to ``model`` (or reuse an identical one already applied) and load θ and the head.

    ``directory`` is one of ours (``save_adapter``) or one the authors' code saved (``gpart/authors_format.py``).
    Everything is checked before the model changes: a refused load leaves it exactly as it was. The head is every
    parameter of ``trainable_modules``; each must be in the file, and nothing else may be written.
    """
    metadata = read_adapter_config(directory)
    config = GPartConfig.from_dict(metadata["config"])
    where = Path(directory) / WEIGHTS_NAME
    tensors = _read_tensors(where)
    if metadata.get("source") == authors_format.SOURCE:
        tensors = authors_format.tensors_from_authors(
            tensors, theta_key=THETA_KEY, head_prefix=HEAD_PREFIX, where=where
        )
    theta = _checked_theta(tensors.pop(THETA_KEY, None), config, where)
    present = find_adapter(model)
    if present is not None:
        _check_same_mapping(present.config, config, directory)
    trainable = {name: p.requires_grad for name, p in model.named_parameters()}
    if present is None:
        apply_gpart(model, config)
    try:
        if metadata["fingerprint"] is not None:  # the authors' files carry none
            _check_fingerprint(find_adapter(model).fingerprint, metadata["fingerprint"], directory)
        head = _checked_head(model, tensors, config, directory)
    except BaseException:
        if present is None:
            _remove_adapter(model, trainable)
        raise
    with torch.no_grad():
        find_adapter(model).theta.copy_(theta)
        for param, value in head:
            param.copy_(value)
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
        raise ValueError(
            f"{path} has format_version {metadata.get('format_version')!r}; this gpart reads {FORMAT_VERSION}"
        )
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
    differing = [
        f"{name}: model has {ours.get(name)!r}, adapter has {theirs.get(name)!r}"
        for name in sorted(set(ours) | set(theirs))
        if name not in _MAPPING_NEUTRAL and ours.get(name) != theirs.get(name)
    ]
    if differing:
        raise ValueError(
            f"adapter at {directory} was saved for another GPart configuration than the one this model "
            f"already carries ({'; '.join(differing)}); load it onto a model without a GPart adapter, "
            f"or apply the saved configuration"
        )


def _deterministic_safetensors(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> bytes:
    """safetensors bytes whose header lists the metadata in sorted order: safetensors writes it from a Rust hash map
    whose order changes from process to process, and equal adapters must be equal files."""
    data = save(tensors, metadata=metadata)
    length = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + length])
    header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # safetensors aligns the data to 8 bytes with spaces
    return len(text).to_bytes(8, "little") + text + data[8 + length :]


def tensors_checksum(tensors: dict[str, torch.Tensor]) -> str:
    """sha256 over every tensor's name, dtype, shape and bytes, in name order: a flipped bit changes it."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().to("cpu").contiguous()
        digest.update(json.dumps([name, str(tensor.dtype), list(tensor.shape)]).encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    """The file's tensors, its checksum verified when it has one (the authors' files and older ones do not)."""
    if not path.is_file():
        raise FileNotFoundError(f"no adapter weights: {path} not found")
    try:
        with safe_open(str(path), framework="pt") as handle:
            saved = (handle.metadata() or {}).get(CHECKSUM_KEY)
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    except (SafetensorError, OSError, ValueError) as error:
        raise ValueError(
            f"{path} could not be read as safetensors ({error}); the file is corrupt or truncated"
        ) from None
    if saved is not None and saved != tensors_checksum(tensors):
        raise ValueError(
            f"{path}: the tensors do not match the checksum in the file's metadata ({CHECKSUM_KEY}); "
            "the file is corrupt (a changed byte), refusing to load it"
        )
    return tensors


def _checked_theta(theta, config: GPartConfig, where: Path) -> torch.Tensor:
    if theta is None or tuple(theta.shape) != (config.d,):
        got = "no θ" if theta is None else f"θ of shape {tuple(theta.shape)}"
        raise ValueError(f"{where} holds {got}; expected shape ({config.d},)")
    if not theta.is_floating_point():
        raise ValueError(f"{where} holds θ of dtype {theta.dtype}; expected a floating-point tensor")
    if not torch.isfinite(theta).all():
        bad = int((~torch.isfinite(theta)).sum())
        raise ValueError(f"{where} holds θ with {bad} non-finite values (NaN or inf); refusing to load it")
    return theta


def _head_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    return {n: p for n, p in model.named_parameters() if p.requires_grad and not n.startswith(ADAPTER_NAME + ".")}


def _trainable_module_parameters(model: nn.Module, config: GPartConfig) -> dict[str, nn.Parameter]:
    """The parameters of ``config.trainable_modules`` (the head): the only ones a file may hold besides θ."""
    found = {}
    for prefix, module in model.named_modules():
        if prefix and matches(prefix, list(config.trainable_modules)):
            found.update({f"{prefix}.{n}": p for n, p in module.named_parameters()})
    return {n: p for n, p in found.items() if not n.startswith(ADAPTER_NAME + ".")}


def _checked_head(model: nn.Module, tensors: dict[str, torch.Tensor], config: GPartConfig, directory) -> list:
    """(parameter, saved value) for the whole head, after checking names, shapes, dtypes and finiteness."""
    allowed = _trainable_module_parameters(model, config)
    pairs, stray = [], []
    for key, value in tensors.items():
        name = key.removeprefix(HEAD_PREFIX)
        if not key.startswith(HEAD_PREFIX) or name not in allowed:
            stray.append(key)
            continue
        param = allowed[name]
        if param.shape != value.shape:
            raise ValueError(
                f"adapter at {directory}: {name} has shape {tuple(value.shape)}, the model's is {tuple(param.shape)}"
            )
        if not value.is_floating_point() or not torch.isfinite(value).all():
            raise ValueError(f"adapter at {directory}: {name} is not a finite floating-point tensor ({value.dtype})")
        pairs.append((param, value))
    if stray:
        raise ValueError(
            f"adapter at {directory} holds {sorted(stray)[:5]}, which are not parameters of its "
            f"trainable_modules={list(config.trainable_modules)}; refusing to overwrite other weights"
        )
    missing = sorted(set(allowed) - {key.removeprefix(HEAD_PREFIX) for key in tensors})
    if missing:
        raise ValueError(
            f"adapter at {directory} lacks {len(missing)} head tensors of trainable_modules="
            f"{list(config.trainable_modules)} (e.g. {missing[:5]}); loading it would keep a random head"
        )
    return pairs


def _remove_adapter(model: nn.Module, trainable: dict[str, bool]) -> None:
    """Undo ``apply_gpart`` on a refused load: the original modules back in place, flags as they were."""
    for name, layer in gpart_layers(model):
        model.set_submodule(name, layer.base_layer)
    delattr(model, ADAPTER_NAME)
    for name, param in model.named_parameters():
        param.requires_grad_(trainable.get(name, param.requires_grad))


def _atomic_write(target: Path, write) -> None:
    """Write via a temporary file in the same folder, then rename: readers never see a partial file."""
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(handle)
    try:
        write(temporary)
        os.chmod(temporary, 0o644)  # mkstemp creates 0600; adapters are shared like the records beside them
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
