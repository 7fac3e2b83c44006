"""Run records: one self-describing JSON file per run (`docs/record-format.md`, schema_version 1).

`experiments/run.py` writes a record with `status: running` before anything else, updates it after every epoch and
marks it `finished` (or `failed`) at the end. Every write is atomic (temp file + `os.replace`), so a killed run
leaves a complete JSON document that says `running`, never a half-written file or one that looks finished.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import os
import platform
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any, Optional

from experiments.runner import portable
from experiments.runner.atomic import write_text_atomic

from omegaconf import DictConfig, OmegaConf
from experiments import REPO

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
        raise ValueError(f"refusing to write {path}: non-finite numbers at {nonfinite_keys(data)[:5]}; "
                         "records are strict JSON") from None
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
        "distributed": None,    # filled by the runner once Trainer has set up its processes
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
