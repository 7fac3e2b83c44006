"""Export an adapter saved here to the authors' layout, so their PEFT fork loads it.

    python -m gpart.convert SOURCE_DIR TARGET_DIR

The other direction needs no conversion: ``gpart.load_adapter`` reads the authors' directories as they are
(``gpart/authors_format.py``).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from safetensors.torch import save_file

from gpart import authors_format
from gpart.io import (
    CONFIG_NAME,
    HEAD_PREFIX,
    THETA_KEY,
    WEIGHTS_NAME,
    _atomic_write,
    _read_tensors,
    read_adapter_config,
)


def to_authors(source: str | os.PathLike, target: str | os.PathLike) -> Path:
    """Write the adapter at ``source`` (ours) to ``target`` as the authors' ``save_pretrained`` would have."""
    metadata = read_adapter_config(source)
    if metadata["fingerprint"] is None:
        raise ValueError(f"{source} is already in the authors' layout (peft_type {authors_format.PEFT_TYPE!r})")
    config = authors_format.config_to_authors(metadata["config"])  # refuses what they cannot read, before any write
    tensors = authors_format.tensors_to_authors(
        _read_tensors(Path(source) / WEIGHTS_NAME), theta_key=THETA_KEY, head_prefix=HEAD_PREFIX
    )
    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    _atomic_write(target / WEIGHTS_NAME, lambda path: save_file(tensors, path, metadata={"format": "pt"}))
    _atomic_write(target / CONFIG_NAME, lambda path: authors_format.write_authors_config(path, config))
    return target


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m gpart.convert", description=__doc__.split("\n\n")[0])
    parser.add_argument("source", help="a GPart adapter directory saved by gpart.save_adapter")
    parser.add_argument("target", help="where to write the authors' adapter_config.json + adapter_model.safetensors")
    args = parser.parse_args(argv)
    try:
        print(f"wrote the authors' layout to {to_authors(args.source, args.target)}")
    except (ValueError, FileNotFoundError) as error:
        parser.exit(2, f"error: {error}\n")


if __name__ == "__main__":
    main()
