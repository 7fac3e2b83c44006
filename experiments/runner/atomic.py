"""Atomic writes for the suite: readers see the old file (or folder) or the complete new one, never a partial one.

(`gpart.io` keeps its own copy: the library imports nothing from `experiments`.)
"""

from __future__ import annotations

import os
import shutil
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
        raise OSError(
            error.errno, f"could not write {path} ({error.strerror or error}); the previous {path.name} is unchanged"
        ) from error
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    atomic_write(path, lambda temporary: temporary.write_text(text, encoding="utf-8"))


def save_directory_atomically(
    save: Callable[[Path], None], target: Path, before_swap: Callable[[], None] | None = None
) -> None:
    """Save into a hidden staging folder, then swap it in; at every instant `target` or `.<target>.old` is whole
    (`recover_directory` puts the old one back after a kill between the two renames). A failed save (a full disk)
    leaves the previous `target` untouched and names it. `before_swap` may refuse the swap by raising (the claim
    was lost); the staging folder is then removed. Only the run's owner (rank 0) calls it."""
    staging, old = target.with_name(f".{target.name}.tmp"), target.with_name(f".{target.name}.old")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        save(staging)
    except OSError as error:
        shutil.rmtree(staging, ignore_errors=True)
        raise OSError(
            error.errno,
            f"could not save {target} ({error.strerror or error}); the previous {target.name}/ is unchanged",
        ) from error
    try:
        if before_swap is not None:
            before_swap()
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        os.replace(target, old)
    os.replace(staging, target)
    shutil.rmtree(old, ignore_errors=True)


def recover_directory(target: Path) -> None:
    """Undo what a kill inside `save_directory_atomically` left: a half-written staging folder, or the old copy
    moved aside without the new one in place."""
    staging, old = target.with_name(f".{target.name}.tmp"), target.with_name(f".{target.name}.old")
    shutil.rmtree(staging, ignore_errors=True)
    if old.exists():
        if target.exists():
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(old, target)
