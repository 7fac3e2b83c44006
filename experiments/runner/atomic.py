"""Atomic file writes for the suite: readers see the old file or the complete new one, never a partial one.

(`gpart.io` keeps its own copy: the library imports nothing from `experiments`.)
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> None:
    """Call ``write(temporary_path)`` for a temp file beside ``path``, flush it to disk, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        write(Path(temporary))
        with open(temporary, "rb") as written:
            os.fsync(written.fileno())
        os.chmod(temporary, 0o644)  # mkstemp creates 0600; results are for people to read
        os.replace(temporary, path)
    except OSError as error:  # a full disk, a quota: the previous file is intact; say which one it was
        Path(temporary).unlink(missing_ok=True)
        raise OSError(error.errno, f"could not write {path} ({error.strerror or error}); "
                                   f"the previous {path.name} is unchanged") from error
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    atomic_write(path, lambda temporary: temporary.write_text(text, encoding="utf-8"))
