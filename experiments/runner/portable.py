"""What a run *is*, independent of where it ran: content digests for local models, paths made relative for records.

A run's id hashes its resolved config. A local model folder enters that hash as the digest of the files that define
the model (config, weights, tokenizer), never as its absolute path, so the same run computes the same id in any
checkout, virtual environment or container. Records and generated tables keep no absolute path either: a path under
the repository becomes repository-relative, one under the shared data root `<shared-data>/...`, and any other local
path is reduced to `<local>/<name>` (the digest in the config hash says what it held).
"""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path
from typing import Any

import experiments

# Top-level files of a Hugging Face model folder that define what the model computes; READMEs, licences, git
# attributes and sentence-transformers' pooling folders do not enter the digest.
MODEL_FILE_PATTERNS = (
    "config.json",
    "generation_config.json",
    "preprocessor_config.json",
    "*.safetensors",
    "*.bin",
    "*.pt",
    "*.pth",
    "*.gguf",
    "tokenizer*",
    "vocab*",
    "merges.txt",
    "special_tokens_map.json",
    "added_tokens.json",
    "*.model",
)
_CHUNK = 1 << 22


def content_digest(path: str | os.PathLike) -> str:
    """`sha256:<hex>` of a file, or of a model folder's defining files (names and contents, sorted)."""
    return _digest(str(Path(path).resolve()))


@functools.cache
def _digest(resolved: str) -> str:
    path = Path(resolved)
    files = [path] if path.is_file() else _model_files(path)
    if not files:
        raise ValueError(
            f"model folder {path.name!r} holds none of the files that define a model "
            f"({', '.join(MODEL_FILE_PATTERNS)}); cannot tell what it is"
        )
    total = hashlib.sha256()
    for file in files:
        total.update(file.name.encode() + b"\0")
        with open(file, "rb") as handle:
            for chunk in iter(lambda: handle.read(_CHUNK), b""):
                total.update(chunk)
        total.update(b"\0")
    return f"sha256:{total.hexdigest()}"


def _model_files(folder: Path) -> list[Path]:
    return sorted({f for pattern in MODEL_FILE_PATTERNS for f in folder.glob(pattern) if f.is_file()})


def identities(node: Any) -> Any:
    """The config with every absolute path to an existing local file or folder replaced by its content digest."""
    if isinstance(node, dict):
        return {k: identities(v) for k, v in node.items()}
    if isinstance(node, list):
        return [identities(v) for v in node]
    if isinstance(node, str) and os.path.isabs(node) and os.path.exists(node):
        return content_digest(node)
    return node


def portable_path(text: str) -> str:
    """An absolute path as a record may show it: repository-relative, `<shared-data>/...` or `<local>/<name>`."""
    path = Path(os.path.abspath(text))
    for root, label in ((experiments.shared_data_dir().resolve(), "<shared-data>"), (experiments.REPO, None)):
        try:
            relative = path.resolve().relative_to(root)
        except ValueError:
            continue
        return str(relative) if label is None else f"{label}/{relative}" if str(relative) != "." else label
    return f"<local>/{path.name}"


def portable(node: Any, unresolved: Any = None) -> Any:
    """The config (or any JSON-like value) with absolute paths made portable (see :func:`portable_path`).

    Where ``unresolved`` (the same config before interpolation) gave a path by a resolver such as `${minilm_path:}`,
    the record keeps that expression: it resolves again on any machine, so a record can rebuild its model anywhere.
    """
    if isinstance(node, dict):
        return {k: portable(v, unresolved.get(k) if isinstance(unresolved, dict) else None) for k, v in node.items()}
    if isinstance(node, list):
        others = unresolved if isinstance(unresolved, list) and len(unresolved) == len(node) else [None] * len(node)
        return [portable(v, u) for v, u in zip(node, others)]
    if isinstance(node, str) and os.path.isabs(node):
        if isinstance(unresolved, str) and unresolved.startswith("${") and unresolved.endswith("}"):
            return unresolved
        return portable_path(node)
    return node


def portable_command(argv: list[str]) -> str:
    """The command line with absolute paths made portable, in `key=value` overrides too."""

    def token(word: str) -> str:
        key, equals, value = word.partition("=")
        if equals and os.path.isabs(value):
            return f"{key}={portable_path(value)}"
        return portable_path(word) if os.path.isabs(word) else word

    return " ".join(token(word) for word in argv)
