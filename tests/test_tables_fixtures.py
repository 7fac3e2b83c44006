"""Fixture run records for the table tests: `make_record` builds a valid schema-1 record, `write_record` stores it.

The records follow docs/record-format.md; the test below keeps the helper in step with that document.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
METRIC_OF_TASK = {"cola": "matthews_correlation", "stsb": "pearson", "gsm8k": "exact_match", "math": "exact_match"}


def config_hash(config: dict) -> str:
    without_seed = {key: value for key, value in config.items() if key != "seed"}  # as experiments/runner/records.py
    return hashlib.sha256(json.dumps(without_seed, sort_keys=True).encode()).hexdigest()


def make_record(
    method="LoRA",
    task="sst2",
    seed=0,
    score=0.9,
    *,
    table="glue",
    model="roberta-base",
    trainable_params=294_912,
    status="finished",
    config=None,
    metric=None,
    finished_at=None,
    median_step_s=0.1,
    peak_bytes=2**30,
    adapter_bytes=2**20,
) -> dict:
    """A finished run record; `score` is the test metric as a fraction, `config` entries override the defaults."""
    resolved = {
        "task": {"name": task},
        "model": {"name": model},
        "method": {"key": method, "config": {"d": trainable_params} if method == "GPart" else {}},
        "optim": {"lr": 5e-3, "epochs": 3},
        "seed": seed,
    }
    for key, value in (config or {}).items():
        section, _, leaf = key.partition(".")
        resolved.setdefault(section, {})[leaf] = value
    digest = config_hash(resolved)
    metric = metric or METRIC_OF_TASK.get(task, "accuracy")
    return {
        "schema_version": 1,
        "run_id": f"{table}-{model}-{method}-{task}-s{seed}-{digest[:8]}",
        "status": status,
        "table": table,
        "model": model,
        "method": method,
        "task": task,
        "seed": seed,
        "metric": metric,
        "config": resolved,
        "config_hash": digest,
        "adapted_space_size": 1_179_648,
        "adapted_modules": 24,
        "trainable_params": trainable_params,
        "head_params": 592_130,
        "epochs": [{"epoch": 0, "step": 10, "train_loss": 0.5, "validation": {metric: score}, "test": {metric: score}}],
        "best_epoch": 0,
        "validation_metric": score,
        "test_metric": score if status == "finished" else None,
        "test_metrics": {metric: score},
        "timing": {"wall_s": 10.0, "train_s": 8.0, "median_step_s": median_step_s, "eval_s": 1.0},
        "memory": {"peak_bytes": peak_bytes, "device": "cpu"},
        "distributed": None,
        "adapter_bytes": adapter_bytes,
        "backend": None,
        "versions": {"python": "3.11"},
        "git": {"commit": "0" * 40, "dirty": False},
        "hardware": {"device_name": "cpu", "cpu": "test", "num_devices": 0, "cuda": None},
        "started_at": "2026-11-28T00:00:00Z",
        "finished_at": finished_at or f"2026-11-28T00:{seed:02d}:00Z",
        "error": None if status != "failed" else "boom",
        "resumed": 0,
        "attempts": [],
        "skipped_rows": {},
    }


def write_record(runs: Path, record: dict, name: str | None = None) -> Path:
    folder = Path(runs) / (name or record["run_id"])
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "record.json"
    path.write_text(json.dumps(copy.deepcopy(record)))
    return path


def test_fixture_record_has_every_documented_key():
    documented = set()
    for line in (REPO / "docs" / "record-format.md").read_text().splitlines():
        if line.startswith("| `"):
            documented.update(re.findall(r"`([a-z_]+)`", line.split("|")[1]))
    assert {"schema_version", "run_id", "test_metric", "finished_at"} <= documented
    assert documented <= set(make_record())
