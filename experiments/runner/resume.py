"""Resuming a run: which checkpoint is safe to resume from, and cleaning up what a killed process left.

A process killed while `Trainer` writes ``checkpoint-N`` leaves a folder that looks like the newest checkpoint but
cannot be loaded (transformers then fails with "Can't find a valid checkpoint"). `usable_checkpoint` checks the
newest first — a readable ``trainer_state.json``, safetensors files whose header and size agree, torch files whose
zip directory is whole — removes the broken ones with a warning and falls back to the previous one, or to a fresh
start when none is usable.

A resumed run is the work of several processes; what each one added (its entry in the record's ``attempts``) is kept
by `experiments.runner.records.RunRecord`.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import zipfile
from pathlib import Path
from typing import Optional

log = logging.getLogger("experiments.runner.resume")
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def checkpoint_problem(folder: Path) -> Optional[str]:
    """Why `folder` cannot be resumed from, or None when its files are whole."""
    state = folder / "trainer_state.json"
    try:
        json.loads(state.read_text())
    except (OSError, ValueError) as error:
        return f"{state.name} unreadable ({type(error).__name__})"
    weights = (
        list(folder.glob("*.safetensors"))
        + list(folder.glob("*.bin"))
        + list(folder.glob("*.pt"))
        + list(folder.glob("*.pth"))
    )
    if not weights:
        return "no weights or optimizer files"
    for path in weights:
        problem = _safetensors_problem(path) if path.suffix == ".safetensors" else _torch_file_problem(path)
        if problem:
            return f"{path.name}: {problem}"
    return None


def _safetensors_problem(path: Path) -> Optional[str]:
    """The header's data offsets must fit the file: a truncated file fails this."""
    size = path.stat().st_size
    with open(path, "rb") as handle:
        prefix = handle.read(8)
        if len(prefix) < 8:
            return "truncated header"
        header_len = int.from_bytes(prefix, "little")
        if 8 + header_len > size:
            return "truncated header"
        try:
            header = json.loads(handle.read(header_len))
        except ValueError:
            return "corrupt header"
    end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"), default=0)
    return None if 8 + header_len + end == size else f"{size} bytes, header promises {8 + header_len + end}"


def _torch_file_problem(path: Path) -> Optional[str]:
    """torch.save writes a zip archive; a truncated one has no central directory."""
    try:
        with zipfile.ZipFile(path) as archive:
            archive.infolist()
    except (zipfile.BadZipFile, OSError) as error:
        return f"not a whole torch file ({error})"
    return None


def usable_checkpoint(checkpoints: Path, remove_broken: bool = True) -> Optional[Path]:
    """The newest checkpoint under `checkpoints` that can be resumed from; broken newer ones are removed (by the
    run's owner: other DDP ranks only skip them)."""
    if not checkpoints.is_dir():
        return None
    found = sorted(
        (int(m.group(1)), p) for p in checkpoints.iterdir() if p.is_dir() and (m := _CHECKPOINT.match(p.name))
    )
    for _, folder in reversed(found):
        problem = checkpoint_problem(folder)
        if problem is None:
            return folder
        fallback = "the previous one" if folder != found[0][1] else "no checkpoint: the run starts over"
        log.warning(
            "checkpoint %s is broken (%s), probably a process killed while saving it; removing it and resuming from %s",
            folder,
            problem,
            fallback,
        )
        if remove_broken:
            shutil.rmtree(folder, ignore_errors=True)
    return None


def remove_temporaries(run_dir: Path) -> None:
    """Temp files of atomic writes a killed process left (``.record.json.<random>.tmp``). Only the run's owner calls
    this, so no other process is writing them."""
    for temporary in Path(run_dir).glob(".*.tmp"):
        if temporary.is_file():
            temporary.unlink(missing_ok=True)
