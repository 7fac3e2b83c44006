"""The inputs of `make tables`: the run records under a folder and the paper's published cells, as DataFrames.

`load_records` keeps finished, well-formed records (docs/record-format.md) and lists every other one with the reason it
was left out; `load_paper` reads the copies of the paper's tables in results/paper/.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from experiments import REPO
from experiments.report.table_data import parse_param_count

# The copies in results/paper/ are what we read by default, so an installed checkout works without ../shared.
DEFAULT_PAPER_DIR = Path(os.environ.get("GPART_PAPER_DIR", REPO / "results" / "paper"))
PAPER_FILES = ("paper_glue.csv", "paper_vision.csv", "paper_math.csv")
REQUIRED_KEYS = (
    "schema_version",
    "run_id",
    "status",
    "table",
    "model",
    "method",
    "task",
    "seed",
    "metric",
    "config",
    "config_hash",
    "trainable_params",
    "test_metric",
)


class RecordsError(ValueError):
    """The run-record folder is missing, empty, or holds no usable record."""


@dataclass
class Loaded:
    records: pd.DataFrame
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)


def load_paper(paper_dir: Path = DEFAULT_PAPER_DIR) -> pd.DataFrame:
    """The published cells, in file order, with `paper_params` parsed from the `trainable_params` text."""
    paper_dir = Path(paper_dir)
    frames = []
    for name in PAPER_FILES:
        path = paper_dir / name
        if not path.is_file():
            raise FileNotFoundError(
                f"paper reference file {path} is missing; expected {', '.join(PAPER_FILES)} in {paper_dir}"
            )
        frames.append(pd.read_csv(path, dtype=str, keep_default_na=False))
    paper = pd.concat(frames, ignore_index=True)
    # Keep the source's text (its decimals) for display and parse numbers beside it.
    paper = paper.rename(columns={"value": "value_text", "std": "std_text"})
    paper["value"] = pd.to_numeric(paper["value_text"].replace("", None), errors="raise")
    paper["std"] = pd.to_numeric(paper["std_text"].replace("", None), errors="raise")
    paper["paper_params"] = paper["trainable_params"].map(parse_param_count)
    paper["order"] = range(len(paper))
    return paper


def _record_problem(record) -> str | None:
    if not isinstance(record, dict):
        return f"not a JSON object (got {type(record).__name__})"
    missing = [key for key in REQUIRED_KEYS if key not in record]
    if missing:
        return f"missing keys {missing}"
    if record["schema_version"] != 1:
        return f"schema_version={record['schema_version']!r}; this reader understands 1"
    if record["status"] != "finished":
        return f"status={record['status']!r} (unfinished, killed or failed run)"
    metric = record["test_metric"]
    if isinstance(metric, bool) or not isinstance(metric, (int, float)) or not math.isfinite(metric):
        return f"test_metric={metric!r} is not a finite number"
    if not -1.0 <= metric <= 1.0:  # every metric of the suite is a fraction or a correlation
        return f"test_metric={metric!r} is outside [-1, 1]; records hold fractions (a value given in percent?)"
    if isinstance(record["seed"], bool) or not isinstance(record["seed"], int):
        return f"seed={record['seed']!r} is not an integer"
    if isinstance(record["trainable_params"], bool) or not isinstance(record["trainable_params"], int):
        return f"trainable_params={record['trainable_params']!r} is not an integer"
    if not isinstance(record["config"], dict):
        return f"config is {type(record['config']).__name__}, not the resolved config dict"
    return None


def _record_row(record: dict, path: Path) -> dict:
    d = _config_value(record["config"], "method.d", "method.config.d")
    timing, memory = record.get("timing") or {}, record.get("memory") or {}
    return {
        "path": str(path),
        "run_id": record["run_id"],
        "table": record["table"],
        "model": record["model"],
        "method": record["method"],
        "task": record["task"],
        "seed": record["seed"],
        "metric": record["metric"],
        "score": 100.0 * float(record["test_metric"]),
        "trainable_params": int(record["trainable_params"]),
        "d": d,
        "config_hash": record["config_hash"],
        "config": record["config"],
        "median_step_s": timing.get("median_step_s"),
        "peak_bytes": memory.get("peak_bytes"),
        "memory_device": str(memory.get("device") or "?"),
        "adapter_bytes": record.get("adapter_bytes"),
        "finished_at": record.get("finished_at") or "",
    }


def _config_value(config, *dotted: str):
    """The first of the dotted keys present in the config (`method.d` or the runner's `method.config.d`)."""
    for key in dotted:
        node = config
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if node is not None:
            return node
    return None


def load_records(runs_dir: Path) -> Loaded:
    """Every usable record under `runs_dir` (searched recursively); the rest is listed in `skipped` with a reason."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        raise RecordsError(
            f"runs folder {runs_dir} does not exist (or is not a folder); run experiments first "
            f"(python -m experiments.run ...) or point --runs / RUNS=<dir> at a folder of run records"
        )
    paths = sorted(runs_dir.rglob("record.json"))
    if not paths:
        raise RecordsError(
            f"no record.json found under {runs_dir}; each run writes <run_id>/record.json "
            f"(docs/record-format.md) — point --runs / RUNS=<dir> at a folder that holds some"
        )
    rows, skipped = [], []
    for path in paths:
        try:
            record = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            skipped.append((str(path), f"unreadable: {error}"))
            continue
        problem = _record_problem(record)
        if problem:
            skipped.append((str(path), problem))
        else:
            rows.append(_record_row(record, path))
    if not rows:
        reasons = "\n".join(f"  {path}: {reason}" for path, reason in skipped)
        raise RecordsError(f"none of the {len(paths)} records under {runs_dir} is usable:\n{reasons}")
    return Loaded(pd.DataFrame(rows), skipped)
