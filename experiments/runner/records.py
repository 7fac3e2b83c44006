"""Run records: one self-describing JSON file per run (`docs/record-format.md`, schema_version 1).

`RunRecord` is the only writer of a run's `record.json`. `experiments/run.py` and the epoch recorder tell it what
happened (an attempt started, an epoch was scored, training ended, the run finished or failed); it writes a record
with `status: running` before anything else, rewrites it after every epoch and marks it `finished` (or `failed`) at
the end. Every write is atomic (temp file + `os.replace`), so a killed run leaves a complete JSON document that says
`running`, never a half-written file or one that looks finished. The functions below it (run ids, config hashes,
reading records) serve the readers too.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import math
import os
import platform
import re
import socket
import statistics
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Optional, Protocol

from omegaconf import DictConfig, OmegaConf

from experiments import REPO
from experiments.runner import portable
from experiments.runner.atomic import write_text_atomic
from experiments.runner.run_lock import ClaimLost

log = logging.getLogger("experiments.runner.records")
SCHEMA_VERSION = 1
# Keys that say where things live or how they are logged, not what is computed; left out of config_hash.
UNHASHED_TOP = ("seed", "paths", "logger", "hydra", "run_name", "rerun", "lock")  # left out of config_hash
UNHASHED_ANYWHERE = ("data_dir", "output_dir", "ddp", "id_cache_mib")  # left out at any depth
_VERSIONED = ("torch", "transformers", "peft", "accelerate", "datasets", "hydra-core", "timm", "wandb", "gpart")


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def resolved_config(cfg: DictConfig) -> dict:
    return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)


def _drop_keys(node: Any, names: tuple[str, ...]) -> Any:
    if isinstance(node, dict):
        return {k: _drop_keys(v, names) for k, v in node.items() if k not in names}
    if isinstance(node, list):
        return [_drop_keys(v, names) for v in node]
    return node


def config_hash(cfg: DictConfig) -> str:
    """sha256 of the resolved config without seed, paths and logger. The seed is set to 0 *before* resolving, so
    values interpolated from it (e.g. a partition seed `${seed}`) do not split runs of one setting apart. A local
    model file or folder enters as the digest of its contents (experiments/runner/portable.py), never as its path, so the
    id is the same in every checkout."""
    pinned = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))
    if "seed" in pinned:
        pinned.seed = 0
    resolved = resolved_config(pinned)
    kept = _drop_keys({k: v for k, v in resolved.items() if k not in UNHASHED_TOP}, UNHASHED_ANYWHERE)
    kept = portable.identities(kept)
    return hashlib.sha256(json.dumps(kept, sort_keys=True, default=str).encode()).hexdigest()


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-")


def make_run_id(cfg: DictConfig, digest: str) -> str:
    """e.g. `glue-roberta-base-gpart-sst2-s0-1a2b3c4d`."""
    parts = [cfg.task.table, cfg.model.key, cfg.method.key, cfg.task.key, f"s{cfg.seed}", digest[:8]]
    return "-".join(slug(p) for p in parts)


def write_atomic(path: Path, data: dict) -> None:
    """Write strict JSON so readers see either the old file or the complete new one, never a partial one. A NaN or
    infinity is refused (naming where it is): JSON has no such numbers and a record holding one is wrong."""
    try:
        text = json.dumps(data, indent=2, sort_keys=False, default=_json_default, allow_nan=False)
    except ValueError:
        raise ValueError(
            f"refusing to write {path}: non-finite numbers at {nonfinite_keys(data)[:5]}; records are strict JSON"
        ) from None
    write_text_atomic(path, text)


def nonfinite_keys(node: Any, where: str = "") -> list[str]:
    """Paths (``epochs[0].validation.pearson``) of the NaN / infinite floats inside `node`."""
    if isinstance(node, float):
        return [] if math.isfinite(node) else [where or "."]
    if isinstance(node, dict):
        return [k for key, value in node.items() for k in nonfinite_keys(value, f"{where}.{key}".lstrip("."))]
    if isinstance(node, (list, tuple)):
        return [k for i, value in enumerate(node) for k in nonfinite_keys(value, f"{where}[{i}]")]
    return []


def _json_default(value: Any):
    if hasattr(value, "item"):  # numpy / torch scalars
        return value.item()
    return str(value)


def read(path: Path) -> Optional[dict]:
    path = Path(path)
    if not path.exists():
        return None
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (ValueError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON ({error}); move it aside or delete it to rerun") from None


def package_versions() -> dict:
    versions = {"python": platform.python_version()}
    for name in _VERSIONED:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_state(repo: Path = REPO) -> dict:
    def git(*args: str) -> Optional[str]:
        try:
            out = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=20)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": None if status is None else bool(status)}


def hardware() -> dict:
    import torch

    cuda = torch.cuda.is_available()
    return {
        "device_name": torch.cuda.get_device_name(0) if cuda else "cpu",
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "num_devices": torch.cuda.device_count() if cuda else 0,
        "cuda": torch.version.cuda if cuda else None,
        "platform": platform.platform(),
    }


def new_record(cfg: DictConfig, run_id: str, digest: str) -> dict:
    """The record written at start: every key of the schema present, results still null."""
    return {
        "schema_version": SCHEMA_VERSION,
        "run_id": run_id,
        "status": "running",
        "table": cfg.task.table,
        "model": cfg.model.key,
        "method": cfg.method.key,
        "task": cfg.task.key,
        "seed": int(cfg.seed),
        "metric": cfg.task.metric,
        "config": portable.portable(resolved_config(cfg), OmegaConf.to_container(cfg, resolve=False)),
        "config_hash": digest,
        "adapted_space_size": None,
        "adapted_modules": None,
        "trainable_params": None,
        "head_params": None,
        "epochs": [],
        "best_epoch": None,
        "validation_metric": None,
        "test_metric": None,
        "test_metrics": {},
        "timing": {"wall_s": None, "train_s": None, "median_step_s": None, "eval_s": None},
        "memory": {"peak_bytes": None, "device": None, "kind": None},
        "distributed": None,  # filled by the runner once Trainer has set up its processes
        "adapter_bytes": None,
        "backend": None,  # filled after training by Method.backend (GPart: which compute path ran)
        "versions": package_versions(),
        "git": git_state(),
        "hardware": hardware(),
        "command": portable.portable_command(sys.argv),
        "started_at": utc_now(),
        "finished_at": None,
        "error": None,
    }


def best_epoch(epochs: list[dict], metric: str) -> Optional[dict]:
    """The epoch with the highest validation `metric` (the earliest one on ties); None without any."""
    scored = [e for e in epochs if _finite(e.get("validation", {}).get(metric))]
    if not scored:
        return None
    return max(scored, key=lambda e: (e["validation"][metric], -e["epoch"]))


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def finalize(record: dict) -> dict:
    """Fill best_epoch / validation_metric / test_metric(s) from the per-epoch entries."""
    best = best_epoch(record["epochs"], record["metric"])
    if best is not None:
        record["best_epoch"] = best["epoch"]
        record["validation_metric"] = best["validation"][record["metric"]]
        record["test_metrics"] = dict(best.get("test", {}))
        record["test_metric"] = record["test_metrics"].get(record["metric"])
    return record


def directory_bytes(path: Path) -> Optional[int]:
    path = Path(path)
    if not path.exists():
        return None
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def without_nonfinite(entry: dict) -> dict:
    """The epoch entry with every NaN / infinite number replaced by null and listed under `nonfinite` (a diverged
    loss, a correlation of NaN predictions): a record never holds NaN, and the best epoch is never a NaN one."""
    bad = nonfinite_keys(entry)
    if not bad:
        return entry
    log.warning("epoch %s: non-finite values %s are recorded as null", entry.get("epoch"), bad)

    def clean(node):
        if isinstance(node, float) and not math.isfinite(node):
            return None
        if isinstance(node, dict):
            return {key: clean(value) for key, value in node.items()}
        return node

    return {**clean(entry), "nonfinite": bad}


# -- the writer ----------------------------------------------------------------------------------------------------
class Guard(Protocol):
    def check(self, what: str) -> None:
        """Raise `ClaimLost` when this process no longer owns the run (`experiments/runner/claim_guard.py`)."""


class RunRecord:
    """The record of the run this process works on, and the only writer of its `record.json`.

    It keeps every key of the schema in its place, this process's entry in `attempts` and the totals over attempts
    (`timing`, `memory.peak_bytes`). Only the process that `writes` (rank 0) writes, and only after `guard.check`
    has said the run is still its own: a process that lost its claim writes nothing. `data` is the record itself,
    for reading."""

    def __init__(
        self,
        path: Path,
        data: dict,
        guard: Optional[Guard] = None,
        writes: bool = True,
        clock_start: Optional[float] = None,
    ):
        self.path, self.data, self.guard, self.writes = Path(path), data, guard, writes
        self.clock_start = time.perf_counter() if clock_start is None else clock_start  # this attempt's wall clock

    @classmethod
    def begin(
        cls, cfg: DictConfig, run_id: str, digest: str, path: Path, guard: Optional[Guard] = None, writes: bool = True
    ) -> "RunRecord":
        """The record of a run this process starts on: every key of the schema present, results still null."""
        clock_start = time.perf_counter()  # the attempt's wall time includes collecting versions and git state
        return cls(path, new_record(cfg, run_id, digest), guard, writes, clock_start)

    @property
    def run_id(self) -> str:
        return self.data["run_id"]

    # -- what happened ---------------------------------------------------------------------------------------------
    def start_attempt(self, previous: Optional[dict], resuming: bool, epochs: list = ()) -> None:
        """Add this process's attempt and write. `previous` is the record an earlier process left (None for a new
        run); when `resuming` from its checkpoint, its `epochs` up to that checkpoint and its start time carry over.
        The earlier attempts of an unfinished run are carried even without a checkpoint to resume from (their time
        was spent on this run); `resumed` counts resumptions."""
        self.data["epochs"] = list(epochs)
        if resuming:
            self.data["started_at"] = previous.get("started_at", self.data["started_at"])
        earlier = [dict(a) for a in (previous or {}).get("attempts", [])]
        for attempt in earlier:
            if attempt.get("ended") == "running":
                attempt["ended"] = "killed"  # it never came back to say how it ended
        attempt = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started_at": utc_now(),
            "wall_s": 0.0,
            "train_s": 0.0,
            "eval_s": 0.0,
            "steps": 0,
            "median_step_s": None,
            "peak_bytes": None,
            "ended": "running",
            "resumed": bool(resuming),
        }
        self.data["attempts"] = earlier + [attempt]
        # an attempt without a `resumed` field comes from a record that lists later attempts only when they resumed
        self.data["resumed"] = sum(bool(a.get("resumed", i > 0)) for i, a in enumerate(self.data["attempts"]))
        self._write()

    def note_model(
        self, *, trainable_params: int, head_params: int, adapted_space_size: Optional[int], adapted_modules: int
    ) -> None:
        self.data["trainable_params"], self.data["head_params"] = trainable_params, head_params
        self.data["adapted_space_size"], self.data["adapted_modules"] = adapted_space_size, adapted_modules

    def note_skipped_rows(self, skipped_rows: Optional[dict]) -> None:
        """Rows the task skipped as bad (`task.skip_bad_rows=true`)."""
        self.data["skipped_rows"] = dict(skipped_rows or {})

    def note_launch(self, distributed: dict) -> None:
        """Training is set up (`distributed`: the launch as the Trainer sees it): write before it starts."""
        self.data["distributed"] = distributed
        self._write()

    def note_epoch(self, epoch: int, step: int, train_loss: Optional[float], scores: dict) -> bool:
        """Add an evaluated epoch (`scores`: split -> metrics; non-finite numbers become null); True when it is the
        best on validation so far. Written by the next `note_progress`."""
        entry = without_nonfinite({"epoch": epoch, "step": step, "train_loss": train_loss, **scores})
        improved = best_epoch(self.data["epochs"] + [entry], self.data["metric"]) is entry
        self.data["epochs"].append(entry)
        return improved

    def note_progress(self, *, train_s: float, eval_s: float, step_times: list, peak_bytes: Optional[int]) -> None:
        """This process's numbers so far, written with the epochs: a record a kill leaves still counts them."""
        self._update_attempt(train_s=train_s, eval_s=eval_s, step_times=step_times, peak_bytes=peak_bytes)
        self.write()

    def last_step(self) -> Optional[int]:
        """The optimizer step of the last recorded epoch (a resumed run's are carried over)."""
        return self.data["epochs"][-1]["step"] if self.data.get("epochs") else None

    def best_epoch(self) -> Optional[int]:
        best = best_epoch(self.data["epochs"], self.data["metric"])
        return None if best is None else best["epoch"]

    def note_test_at_best_epoch(self, scores: dict) -> None:
        """Test scores of the validation-picked epoch (`trainer.test_at=best_epoch`); written by `write`."""
        best_epoch(self.data["epochs"], self.data["metric"])["test"] = scores

    def note_training_end(self, *, train_s: float, eval_s: float, step_times: list, memory: dict) -> None:
        """This process's training is over: its numbers, and `memory` (`peak_bytes`, `device`, `kind`)."""
        self.data["memory"] = dict(memory)
        self._update_attempt(train_s=train_s, eval_s=eval_s, step_times=step_times, peak_bytes=memory["peak_bytes"])

    def note_outputs(self, *, backend: Optional[dict], per_rank: list, adapter_bytes: Optional[int]) -> None:
        """What training left: the compute path that ran (GPart), each rank's share, the saved adapter's size."""
        self.data["backend"] = backend
        self.data["distributed"]["per_rank"] = per_rank
        self.data["adapter_bytes"] = adapter_bytes

    def require_finite_result(self) -> None:
        """A run is finished only with a best epoch whose validation and test scores are finite numbers."""
        finalize(self.data)
        if self.data["test_metric"] is None:
            nonfinite = [e.get("nonfinite") for e in self.data["epochs"]]
            raise ValueError(
                f"{self.data['run_id']}: no epoch has a finite validation and test {self.data['metric']} "
                f"(non-finite: {nonfinite}); the run's numbers are unusable, so it is not recorded as "
                "finished"
            )

    def finish(self) -> None:
        """Mark the run finished and write; raises `ClaimLost` when another process owns the run now."""
        self.data.update(status="finished", finished_at=utc_now())
        self._update_attempt(ended="finished")
        self.write()

    def fail(self, error: BaseException) -> None:
        """Mark the run failed and write, unless another process owns the run now; a write that fails too (a full
        disk) is logged, never raised over the run's own error."""
        self.data.update(status="failed", error=f"{type(error).__name__}: {error}", finished_at=utc_now())
        self._update_attempt(ended="failed")
        try:
            self._write()
        except ClaimLost as lost:
            log.error("not recording the failure: %s", lost)
        except OSError as failed:
            log.error("could not record the failure of %s: %s", self.path.parent.name, failed)

    # -- writing -----------------------------------------------------------------------------------------------------
    def write(self) -> None:
        """Write with the best epoch's results filled in from the epochs."""
        finalize(self.data)
        self._write()

    def _write(self) -> None:
        if self.writes:
            if self.guard is not None:
                self.guard.check("record.json")
            write_atomic(self.path, self.data)

    # -- attempts: what each process added -----------------------------------------------------------------------
    def _update_attempt(
        self,
        *,
        train_s: Optional[float] = None,
        eval_s: Optional[float] = None,
        step_times: Optional[list] = None,
        peak_bytes: Optional[int] = None,
        ended: Optional[str] = None,
    ) -> None:
        """Store this process's numbers in its attempt (its wall time: now) and recompute the record's totals over
        attempts."""
        attempt = self.data["attempts"][-1]
        attempt["wall_s"] = time.perf_counter() - self.clock_start
        if train_s is not None:
            attempt["train_s"] = train_s
        if eval_s is not None:
            attempt["eval_s"] = eval_s
        if step_times:
            attempt.update(steps=len(step_times), median_step_s=statistics.median(step_times))
        if peak_bytes is not None:
            attempt["peak_bytes"] = int(peak_bytes)
        if ended:
            attempt["ended"] = ended
        attempts = self.data["attempts"]
        timed = [a for a in attempts if a.get("median_step_s") is not None]
        self.data["timing"].update(
            wall_s=sum(a["wall_s"] for a in attempts),
            train_s=sum(a["train_s"] for a in attempts),
            eval_s=sum(a["eval_s"] for a in attempts),
            # median over processes' medians, each weighted by its steps (the step times themselves are not stored)
            median_step_s=_weighted_median([(a["median_step_s"], a["steps"]) for a in timed]),
        )
        peaks = [a["peak_bytes"] for a in attempts if a.get("peak_bytes") is not None]
        if peaks:
            self.data["memory"]["peak_bytes"] = max(peaks)


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
