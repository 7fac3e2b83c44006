"""Resuming a run: which checkpoint is safe to resume from, and what each process added to the record.

A process killed while `Trainer` writes ``checkpoint-N`` leaves a folder that looks like the newest checkpoint but
cannot be loaded (transformers then fails with "Can't find a valid checkpoint"). `usable_checkpoint` checks the
newest first — a readable ``trainer_state.json``, safetensors files whose header and size agree, torch files whose
zip directory is whole — removes the broken ones with a warning and falls back to the previous one, or to a fresh
start when none is usable.

A resumed run is the work of several processes. Each one appends an entry to the record's ``attempts`` (host, pid,
start, its wall/train/eval seconds, optimizer steps, median step time, peak memory, how it ended); ``resumed`` counts
the resumptions, and ``timing`` / ``memory`` are totals over attempts (seconds summed, peak = the largest).
"""
from __future__ import annotations

import json
import logging
import os
import re
import shutil
import socket
import statistics
import zipfile
from pathlib import Path
from typing import Optional

from experiments.runner import records

log = logging.getLogger("experiments.runner.resume")
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def checkpoint_problem(folder: Path) -> Optional[str]:
    """Why `folder` cannot be resumed from, or None when its files are whole."""
    state = folder / "trainer_state.json"
    try:
        json.loads(state.read_text())
    except (OSError, ValueError) as error:
        return f"{state.name} unreadable ({type(error).__name__})"
    weights = list(folder.glob("*.safetensors")) + list(folder.glob("*.bin")) + list(folder.glob("*.pt")) + \
        list(folder.glob("*.pth"))
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
    found = sorted((int(m.group(1)), p) for p in checkpoints.iterdir()
                   if p.is_dir() and (m := _CHECKPOINT.match(p.name)))
    for _, folder in reversed(found):
        problem = checkpoint_problem(folder)
        if problem is None:
            return folder
        fallback = "the previous one" if folder != found[0][1] else "no checkpoint: the run starts over"
        log.warning("checkpoint %s is broken (%s), probably a process killed while saving it; removing it and "
                    "resuming from %s", folder, problem, fallback)
        if remove_broken:
            shutil.rmtree(folder, ignore_errors=True)
    return None


def remove_temporaries(run_dir: Path) -> None:
    """Temp files of atomic writes a killed process left (``.record.json.<random>.tmp``). Only the run's owner calls
    this, so no other process is writing them."""
    for temporary in Path(run_dir).glob(".*.tmp"):
        if temporary.is_file():
            temporary.unlink(missing_ok=True)


# -- attempts: what each process added ---------------------------------------------------------------------------------
def start_attempt(record: dict, previous: Optional[dict], resuming: bool) -> dict:
    """Append this process's attempt to `record` and return it. The earlier attempts of an unfinished run are carried
    even when no checkpoint could be resumed from (their time was spent on this run); `resumed` counts resumptions."""
    earlier = [dict(a) for a in (previous or {}).get("attempts", [])]
    for attempt in earlier:
        if attempt.get("ended") == "running":
            attempt["ended"] = "killed"  # it never came back to say how it ended
    attempt = {"host": socket.gethostname(), "pid": os.getpid(), "started_at": records.utc_now(),
               "wall_s": 0.0, "train_s": 0.0, "eval_s": 0.0, "steps": 0, "median_step_s": None,
               "peak_bytes": None, "ended": "running", "resumed": bool(resuming)}
    record["attempts"] = earlier + [attempt]
    # an attempt without a `resumed` field comes from a record that lists later attempts only when they resumed
    record["resumed"] = sum(bool(a.get("resumed", i > 0)) for i, a in enumerate(record["attempts"]))
    return attempt


def update_attempt(record: dict, *, wall_s: float, train_s: Optional[float] = None, eval_s: float = 0.0,
                   step_times: Optional[list] = None, peak_bytes: Optional[int] = None,
                   ended: Optional[str] = None) -> None:
    """Store this process's numbers in its attempt and recompute the record's totals over attempts."""
    attempt = record["attempts"][-1]
    attempt.update(wall_s=wall_s, eval_s=eval_s)
    if train_s is not None:
        attempt["train_s"] = train_s
    if step_times:
        attempt.update(steps=len(step_times), median_step_s=statistics.median(step_times))
    if peak_bytes is not None:
        attempt["peak_bytes"] = int(peak_bytes)
    if ended:
        attempt["ended"] = ended
    attempts = record["attempts"]
    timed = [a for a in attempts if a.get("median_step_s") is not None]
    record["timing"].update(
        wall_s=sum(a["wall_s"] for a in attempts), train_s=sum(a["train_s"] for a in attempts),
        eval_s=sum(a["eval_s"] for a in attempts),
        # median over processes' medians, each weighted by its steps (the step times themselves are not stored)
        median_step_s=_weighted_median([(a["median_step_s"], a["steps"]) for a in timed]))
    peaks = [a["peak_bytes"] for a in attempts if a.get("peak_bytes") is not None]
    if peaks:
        record["memory"]["peak_bytes"] = max(peaks)


def _weighted_median(pairs: list[tuple[float, int]]) -> Optional[float]:
    if not pairs:
        return None
    pairs = sorted(pairs)
    half, seen = sum(w for _, w in pairs) / 2, 0
    for value, weight in pairs:
        seen += weight
        if seen >= half:
            return value
    return pairs[-1][0]
