"""Turn a folder of run records into the paper's tables: our numbers, the published ones, the difference, a verdict.

    python -m experiments.report.tables [--runs results/runs] [--out results] [--merge-mixed] [--no-figures] [--force]

Reads every `record.json` under `--runs` (format: docs/record-format.md), groups finished runs into cells
(table, model, method at one trainable-parameter budget, task) and writes, for every paper table and every other
(table, model) that has records, `<out>/tables/<table>-<model>.{md,csv}` plus an index `<out>/tables/README.md`,
the claims of experiments/report/claims.py (`claims-<table>-<model>.{md,csv}`) and the figures of experiments/report/figures.py
under `<out>/figures/`. Both folders are replaced atomically.

Safety: unfinished, failed or unreadable records are skipped with a printed reason; a cell whose records differ in
their resolved config (anything but the seed, i.e. different `config_hash`) is refused and the differing keys are
printed, unless `--merge-mixed`; a folder we did not generate is never replaced without `--force`.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from experiments import REPO
from experiments.report.ablation_table import DEFAULT_ABLATION_RUNS, write_ablation_table
from experiments.report.claims import claims_tables
from experiments.report.figures import draw_all
from experiments.runner.records import UNHASHED_ANYWHERE, UNHASHED_TOP
from experiments.report.table_data import (  # noqa: F401  (re-exported: tables.parse_param_count, tables.TASK_NAMES, ...)
    ONE_POINT, STD_FACTOR, TABLE_NAMES, TASK_NAMES, TableData, missing as _missing, parse_param_count, row_averages,
    verdict,
)

DEFAULT_RUNS = REPO / "results" / "runs"
DEFAULT_OUT = REPO / "results"
# The copies in results/paper/ are what we read by default, so an installed checkout works without ../shared.
DEFAULT_PAPER_DIR = Path(os.environ.get("GPART_PAPER_DIR", REPO / "results" / "paper"))
PAPER_FILES = ("paper_glue.csv", "paper_vision.csv", "paper_math.csv")

BUDGET_MATCH_FACTOR = 1.5  # our run matches a paper row of its method when budgets agree within this factor
PAPER_METHOD = "GPart"  # the paper's method: its row appears in every table, with or without runs
NOT_IN_SOURCES = "n/a (not in our sources)"
NOT_IN_PAPER = "n/a (not in paper)"
MARKER = ".generated-by-make-tables"

VERDICT_RULE = (
    f"reproduced if |Δ| ≤ max({ONE_POINT:g} point, {STD_FACTOR:g}·std) where std is our sample std over seeds "
    f"(ddof=1; the {ONE_POINT:g}-point rule alone when n = 1); below if Δ < −tolerance; above if Δ > +tolerance"
)
REQUIRED_KEYS = (
    "schema_version", "run_id", "status", "table", "model", "method", "task", "seed", "metric", "config",
    "config_hash", "trainable_params", "test_metric",
)
METRIC_NAMES = {"accuracy": "acc", "matthews_correlation": "MCC", "pearson": "Pearson", "exact_match": "EM"}
# Keys that never make two runs' configs "different" when explaining a mixed cell: those config_hash leaves out,
# plus per-run identifiers.
IGNORED_CONFIG_KEYS = {*UNHASHED_TOP, *UNHASHED_ANYWHERE, "run_id", "wandb"}


class RecordsError(ValueError):
    """The run-record folder is missing, empty, or holds no usable record."""


@dataclass
class Loaded:
    records: pd.DataFrame
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)


# ---------------------------------------------------------------- reading


def format_params(count) -> str:
    if count is None or (isinstance(count, float) and math.isnan(count)):
        return "?"
    count = int(count)
    if count < 1_000:
        return str(count)
    if count < 1_000_000:
        return f"{count / 1e3:.4g}K"
    if count < 1_000_000_000:
        return f"{count / 1e6:.4g}M"
    return f"{count / 1e9:.4g}B"


def load_paper(paper_dir: Path = DEFAULT_PAPER_DIR) -> pd.DataFrame:
    """The published cells, in file order, with `paper_params` parsed from the `trainable_params` text."""
    paper_dir = Path(paper_dir)
    frames = []
    for name in PAPER_FILES:
        path = paper_dir / name
        if not path.is_file():
            raise FileNotFoundError(f"paper reference file {path} is missing; expected {', '.join(PAPER_FILES)} in {paper_dir}")
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
        "path": str(path), "run_id": record["run_id"], "table": record["table"], "model": record["model"],
        "method": record["method"], "task": record["task"], "seed": record["seed"], "metric": record["metric"],
        "score": 100.0 * float(record["test_metric"]), "trainable_params": int(record["trainable_params"]),
        "d": d, "config_hash": record["config_hash"], "config": record["config"],
        "median_step_s": timing.get("median_step_s"), "peak_bytes": memory.get("peak_bytes"),
        "memory_device": str(memory.get("device") or "?"),
        "adapter_bytes": record.get("adapter_bytes"), "finished_at": record.get("finished_at") or "",
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
        raise RecordsError(f"runs folder {runs_dir} does not exist (or is not a folder); run experiments first "
                           f"(python -m experiments.run ...) or point --runs / RUNS=<dir> at a folder of run records")
    paths = sorted(runs_dir.rglob("record.json"))
    if not paths:
        raise RecordsError(f"no record.json found under {runs_dir}; each run writes <run_id>/record.json "
                           f"(docs/record-format.md) — point --runs / RUNS=<dir> at a folder that holds some")
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


# ---------------------------------------------------------------- grouping


def flatten(config, prefix: str = "") -> dict:
    """{"a": {"b": 1}} -> {"a.b": 1}."""
    if not isinstance(config, dict) or not config:
        return {prefix: config}
    flat = {}
    for key, value in config.items():
        flat.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def config_differences(configs: list[dict]) -> dict[str, list]:
    """Dotted keys whose values differ between the configs (seed, paths and logger keys left out)."""
    flats = [flatten(config) for config in configs]
    keys = sorted(set().union(*flats))
    differences = {}
    for key in keys:
        if IGNORED_CONFIG_KEYS.intersection(key.split(".")):
            continue
        values = [flat.get(key, "<absent>") for flat in flats]
        if any(json.dumps(v, sort_keys=True, default=str) != json.dumps(values[0], sort_keys=True, default=str) for v in values):
            differences[key] = values
    return differences


def match_paper_row(method: str, params: int, candidates: pd.DataFrame):
    """The paper row (method, trainable_params text) our variant compares with, or None.

    Nearest budget of the same method within BUDGET_MATCH_FACTOR; a paper row with an unknown budget matches any.
    """
    rows = candidates[candidates["method"] == method].drop_duplicates("trainable_params")
    best, best_ratio = None, BUDGET_MATCH_FACTOR
    for _, row in rows.iterrows():
        theirs = row["paper_params"]
        if theirs is None or (isinstance(theirs, float) and math.isnan(theirs)):
            continue
        if theirs == 0 or params == 0:
            ratio = 1.0 if theirs == params else math.inf
        else:
            ratio = max(theirs, params) / min(theirs, params)
        if ratio <= best_ratio:
            best, best_ratio = row["trainable_params"], ratio
    if best is None:
        unknown = rows[rows["paper_params"].isna()]
        if len(unknown):
            best = unknown.iloc[0]["trainable_params"]
    return best


def _dedupe_seeds(records: pd.DataFrame, warnings: list[str], where: str) -> pd.DataFrame:
    duplicated = records[records.duplicated("seed", keep=False)]
    if duplicated.empty:
        return records
    kept = records.sort_values("finished_at").drop_duplicates("seed", keep="last")
    dropped = sorted(set(records["path"]) - set(kept["path"]))
    warnings.append(f"{where}: seeds {sorted(duplicated['seed'].unique().tolist())} were run more than once; "
                    f"kept the latest run of each, dropped {dropped}")
    return kept


def aggregate_cell(records: pd.DataFrame, where: str, merge_mixed: bool, warnings: list[str]) -> dict:
    """Median, sample std and n over seeds of one cell's records, or a refusal when their configs differ."""
    groups = [group for _, group in records.groupby(["config_hash", "metric"], sort=False)]
    mixed = len(groups) > 1
    if mixed:
        differences = config_differences([group.iloc[0]["config"] for group in groups])
        if records["metric"].nunique() > 1:
            differences["metric"] = [group.iloc[0]["metric"] for group in groups]
        described = "; ".join(f"{key}: {' vs '.join(map(str, values))}" for key, values in differences.items()) or \
            f"none outside the ignored keys, yet config_hash differs ({', '.join(records['config_hash'].unique())})"
        runs = " | ".join(", ".join(group["run_id"]) for group in groups)
        if not merge_mixed:
            warnings.append(f"refused cell {where}: {len(records)} records with {len(groups)} different configs; "
                            f"differing keys: {described} [runs: {runs}]. Pass --merge-mixed to merge them.")
            return {"status": "refused", "n": 0, "note": f"refused: mixed configs ({', '.join(differences) or 'config_hash'})"}
        warnings.append(f"merged mixed cell {where} as asked (--merge-mixed); differing keys: {described}")
    records = _dedupe_seeds(records, warnings, where)
    scores = records["score"].to_numpy(dtype=float)
    n = len(scores)
    return {
        "status": "merged-mixed" if mixed else "ok", "n": n, "median": float(np.median(scores)),
        "std": float(np.std(scores, ddof=1)) if n > 1 else math.nan,
        "metric": records["metric"].iloc[0], "note": "mixed configs merged (--merge-mixed)" if mixed else "",
        "run_paths": list(records["path"]),
    }


# ---------------------------------------------------------------- building the tables


def _table_keys(records: pd.DataFrame, paper: pd.DataFrame) -> list[tuple[str, str]]:
    keys = list(dict.fromkeys(zip(paper["table"], paper["model"])))
    keys += [key for key in dict.fromkeys(zip(records["table"], records["model"])) if key not in keys]
    return keys


def _log_distance(a, b) -> float:
    return abs(math.log(max(a, 1)) - math.log(max(b, 1)))


def _variants(records: pd.DataFrame, paper_rows: pd.DataFrame, method_order: dict[str, int]) -> pd.DataFrame:
    """One row per table row: our (method, params) variants, each matched to a paper row, plus unmatched paper rows.

    Rows follow the paper table's order; methods it lacks follow the order of all paper tables, then the alphabet.
    """
    ours = records[["method", "trainable_params"]].drop_duplicates().rename(columns={"trainable_params": "params"})
    ours = ours.astype({"params": object}).reset_index(drop=True)
    ours["paper_key"] = [match_paper_row(m, p, paper_rows) for m, p in zip(ours["method"], ours["params"])]
    paper_keys = paper_rows.drop_duplicates(["method", "trainable_params"])[["method", "trainable_params", "paper_params", "order"]]
    budget = {(m, t): p for m, t, p in zip(paper_keys["method"], paper_keys["trainable_params"], paper_keys["paper_params"])}
    # A paper row compares with one of our variants only: the nearest budget keeps it.
    for (method, key), group in ours.dropna(subset=["paper_key"]).groupby(["method", "paper_key"]):
        theirs = budget[(method, key)]
        if len(group) > 1 and theirs is not None and not pd.isna(theirs):
            nearest = group["params"].map(lambda p: _log_distance(p, theirs)).astype(float).idxmin()
            ours.loc[group.index.drop(nearest), "paper_key"] = None
    matched = set(zip(ours["method"], ours["paper_key"]))
    unmatched = [(m, t) not in matched for m, t in zip(paper_keys["method"], paper_keys["trainable_params"])]
    paper_only = paper_keys.loc[np.array(unmatched, dtype=bool)]
    rows = pd.concat([ours, pd.DataFrame({"method": paper_only["method"], "params": None,
                                          "paper_key": paper_only["trainable_params"]})], ignore_index=True)
    if PAPER_METHOD not in set(rows["method"]):  # the method under test has a row in every table, runs or not
        rows = pd.concat([rows, pd.DataFrame({"method": [PAPER_METHOD], "params": [None], "paper_key": [None]})],
                         ignore_index=True)
    first_of_method = paper_keys.groupby("method")["order"].min().to_dict()
    order_of_key = {(m, t): o for m, t, o in zip(paper_keys["method"], paper_keys["trainable_params"], paper_keys["order"])}
    fallback = {m: len(paper_keys) + i for m, i in method_order.items()}
    rows["sort"] = [order_of_key.get((m, k), first_of_method.get(m, fallback.get(m, math.inf)))
                    for m, k in zip(rows["method"], rows["paper_key"])]
    rows["sort_params"] = [-1 if _missing(p) else p for p in rows["params"]]
    rows = rows.sort_values(["sort", "method", "sort_params"], kind="stable").reset_index(drop=True)
    rows["label"] = _row_labels(rows)
    return rows.drop(columns=["sort", "sort_params"])


def _row_labels(rows: pd.DataFrame) -> list[str]:
    """The method's name, with its budget when the method has several rows (the paper's FourierFT 72K / 239K)."""
    repeated = rows["method"].duplicated(keep=False)
    labels = []
    for method, params, key, several in zip(rows["method"], rows["params"], rows["paper_key"], repeated):
        budget = format_params(params) if not _missing(params) else (key or "budget unknown")
        label = f"{method} ({budget})" if several else method
        labels.append(label if label not in labels else f"{label} [paper row]")
    return labels


def _task_order(table: str, records: pd.DataFrame, paper_rows: pd.DataFrame) -> list[str]:
    tasks = list(dict.fromkeys(paper_rows["task"]))
    extra = [t for t in dict.fromkeys(records["task"]) if t not in tasks]
    known = list(TASK_NAMES)
    return tasks + sorted(extra, key=lambda t: (known.index(t) if t in known else len(known), t))


def _efficiency(records: pd.DataFrame) -> dict:
    def median(column):
        values = pd.to_numeric(records[column], errors="coerce").dropna()
        return float(values.median()) if len(values) else math.nan
    d = median("d") if len(records) else math.nan
    if not math.isfinite(d) and len(records):
        d = median("trainable_params")  # GPart's trainable parameters are d when the config does not say
    devices = ",".join(sorted(set(records["memory_device"]))) if len(records) else ""
    return {"median_step_s": median("median_step_s"), "peak_bytes": median("peak_bytes"),
            "adapter_bytes": median("adapter_bytes"), "d": d, "memory_device": devices}


def _paper_cell(paper_cells: dict, method: str, key, task: str) -> dict:
    row = paper_cells.get((method, key, task)) if isinstance(key, str) else None
    if row is None:
        return {"paper": math.nan, "paper_std": math.nan, "paper_text": NOT_IN_PAPER, "paper_metric": None}
    if pd.isna(row["value"]):
        text = NOT_IN_SOURCES
    else:
        text = f"paper {row['value_text']}" + (f" ± {row['std_text']}" if row["std_text"] else "")
    return {"paper": row["value"], "paper_std": row["std"], "paper_text": text, "paper_metric": row["metric"]}


def build_table(table: str, model: str, records: pd.DataFrame, paper: pd.DataFrame, merge_mixed: bool,
                warnings: list[str]) -> TableData:
    records = records[(records["table"] == table) & (records["model"] == model)]
    paper_rows = paper[(paper["table"] == table) & (paper["model"] == model)]
    tasks = _task_order(table, records, paper_rows)
    metrics = dict(zip(paper_rows["task"], paper_rows["metric"]))
    for task, metric in zip(records["task"], records["metric"]):
        metrics.setdefault(task, metric)
    rows = _variants(records, paper_rows, {m: i for i, m in enumerate(dict.fromkeys(paper["method"]))})
    paper_cells = {(r["method"], r["trainable_params"], r["task"]): r for r in paper_rows.to_dict("records")}
    cells, efficiency = [], []
    for row in rows.itertuples():
        mine = records.iloc[0:0] if _missing(row.params) else \
            records[(records["method"] == row.method) & (records["trainable_params"] == row.params)]
        by_task = dict(tuple(mine.groupby("task")))
        included = []
        for task in tasks:
            where = f"{table}/{model}/{row.label}/{task}"
            paper_cell = _paper_cell(paper_cells, row.method, row.paper_key, task)
            cell, run_paths = _cell(row, task, by_task.get(task), paper_cell, where, merge_mixed, warnings)
            cells.append(cell)
            included += run_paths
        efficiency.append(_efficiency(mine[mine["path"].isin(included)]))
    rows = pd.concat([rows, pd.DataFrame(efficiency)], axis=1)
    sources = list(dict.fromkeys(zip(paper_rows["source"], paper_rows["note"])))
    return TableData(table, model, tasks, metrics, rows, pd.DataFrame(cells), not paper_rows.empty, sources, len(records))


def _cell(row, task: str, records, paper_cell: dict, where: str, merge_mixed: bool, warnings: list[str]):
    """One table cell (ours, paper, Δ, verdict) and the paths of the runs it aggregates."""
    ours = aggregate_cell(records, where, merge_mixed, warnings) if records is not None else {"status": "no runs", "n": 0}
    cell = {"label": row.label, "method": row.method, "task": task, **paper_cell, "status": ours["status"],
            "n": ours["n"], "median": ours.get("median", math.nan), "std": ours.get("std", math.nan),
            "note": ours.get("note", "")}
    if ours.get("metric") and cell["paper_metric"] and ours["metric"] != cell["paper_metric"]:
        warnings.append(f"{where}: our metric {ours['metric']!r} is not the paper's {cell['paper_metric']!r}; not compared")
        cell.update({"paper": math.nan, "paper_text": f"n/a (paper reports {cell['paper_metric']})"})
    return _compare(cell), ours.get("run_paths", [])


def _compare(cell: dict) -> dict:
    has_ours = cell["n"] > 0 and math.isfinite(cell["median"])
    has_paper = cell["paper"] is not None and not pd.isna(cell["paper"])
    cell["delta"], cell["tolerance"], cell["verdict"] = math.nan, math.nan, ""
    if has_ours and has_paper:
        cell["delta"] = cell["median"] - float(cell["paper"])
        cell["tolerance"], cell["verdict"] = verdict(cell["delta"], cell["std"], cell["n"])
    return cell


# ---------------------------------------------------------------- rendering


def _num(value, digits: int = 2) -> str:
    return f"{value:.{digits}f}".replace("-", "−")


def _ours_text(cell) -> str:
    if cell["status"] == "refused":
        return cell["note"]
    if cell["n"] == 0:
        return "— (no runs)"
    spread = f" ± {_num(cell['std'])}" if cell["n"] > 1 else ""
    mark = " †" if cell["status"] == "merged-mixed" else ""
    return f"{_num(cell['median'])}{spread} (n={cell['n']}){mark}"


def cell_text(cell) -> str:
    parts = [_ours_text(cell), cell["paper_text"]]
    if isinstance(cell["verdict"], str) and cell["verdict"]:
        parts.append(f"Δ {'+' if cell['delta'] >= 0 else ''}{_num(cell['delta'])} · {cell['verdict']}")
    return "<br>".join(parts)


def _average_text(avg, n_tasks: int) -> str:
    ours = _num(avg["avg_median"]) if math.isfinite(avg["avg_median"]) else f"— ({avg['avg_tasks']}/{n_tasks} tasks)"
    theirs = f"paper {avg['avg_paper']:.2f}" if math.isfinite(avg["avg_paper"]) else "paper n/a"
    parts = [ours, theirs]
    if avg["avg_verdict"]:
        parts.append(f"Δ {'+' if avg['avg_delta'] >= 0 else ''}{_num(avg['avg_delta'])} · {avg['avg_verdict']}")
    return "<br>".join(parts)


def _bytes_text(value) -> str:
    if value is None or not math.isfinite(value):
        return "—"
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if value >= size:
            return f"{value / size:.2f} {unit}"
    return f"{int(value)} B"


def _params_text(row) -> str:
    ours = "—" if _missing(row.params) else format_params(row.params)
    if not isinstance(row.paper_key, str):
        return f"{ours} (not in paper)"
    return f"{ours} (paper {row.paper_key or '?'})"


def _column_name(data: TableData, task: str) -> str:
    metric = data.metrics.get(task)
    return f"{TASK_NAMES.get(task, task)} ({METRIC_NAMES.get(metric, metric)})" if metric else TASK_NAMES.get(task, task)


def markdown_frame(data: TableData) -> pd.DataFrame:
    """The Markdown table as a DataFrame of strings: rows are methods, columns tasks + Avg + params + efficiency."""
    averages = row_averages(data).set_index("label")
    by_cell = {(c["label"], c["task"]): c for c in data.cells.to_dict("records")}
    lines = []
    for row in data.rows.itertuples():
        line = {"Method": row.label}
        for task in data.tasks:
            line[_column_name(data, task)] = cell_text(by_cell[(row.label, task)])
        line["Avg"] = _average_text(averages.loc[row.label], len(data.tasks))
        line["Trainable params"] = _params_text(row)
        line["Step time"] = f"{row.median_step_s:.3g} s" if math.isfinite(row.median_step_s) else "—"
        line["Peak memory"] = _bytes_text(row.peak_bytes) + (f" ({row.memory_device})" if math.isfinite(row.peak_bytes) else "")
        line["Adapter size"] = _bytes_text(row.adapter_bytes)
        lines.append(line)
    return pd.DataFrame(lines)


def csv_frame(data: TableData) -> pd.DataFrame:
    """The same table with numbers in their own columns (`<task>.median`, `<task>.delta`, ...), for machines."""
    averages = row_averages(data).set_index("label")
    by_cell = {(c["label"], c["task"]): c for c in data.cells.to_dict("records")}
    lines = []
    for row in data.rows.itertuples():
        line = {"method": row.label, "method_key": row.method,
                "trainable_params": None if _missing(row.params) else row.params,
                "paper_trainable_params": row.paper_key if isinstance(row.paper_key, str) else None}
        for task in data.tasks:
            cell = by_cell[(row.label, task)]
            line.update({f"{task}.n": cell["n"], f"{task}.median": cell["median"], f"{task}.std": cell["std"],
                         f"{task}.paper": cell["paper"], f"{task}.paper_std": cell["paper_std"],
                         f"{task}.delta": cell["delta"], f"{task}.tolerance": cell["tolerance"],
                         f"{task}.verdict": cell["verdict"], f"{task}.status": cell["status"]})
        avg = averages.loc[row.label]
        line.update({"avg.median": avg["avg_median"], "avg.paper": avg["avg_paper"], "avg.delta": avg["avg_delta"],
                     "avg.verdict": avg["avg_verdict"], "median_step_s": row.median_step_s,
                     "peak_memory_bytes": row.peak_bytes, "memory_device": row.memory_device,
                     "adapter_bytes": row.adapter_bytes})
        lines.append(line)
    frame = pd.DataFrame(lines)
    frame["trainable_params"] = frame["trainable_params"].astype("Int64")
    numeric = frame.select_dtypes("float").columns
    frame[numeric] = frame[numeric].round(4)  # the CSV carries what the table shows, without float noise
    return frame


def _markdown_table(frame: pd.DataFrame) -> str:
    header = "| " + " | ".join(frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(str(v).replace("|", "\\|") for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *body])


def render_markdown(data: TableData, runs_label: str, notes: list[str]) -> str:
    paper_line = ("Published cells from `results/paper/` (copies of `../shared/reference/`); sources below."
                  if data.in_paper else f"The paper has no {data.table}/{data.model} table: paper columns read "
                  f"\"{NOT_IN_PAPER}\".")
    lines = [
        f"# {data.title}", "",
        f"Generated by `make tables` (`python -m experiments.report.tables`) from {data.n_records} finished run records "
        f"under `{runs_label}`. Do not edit by hand.", "",
        "- **Ours**: median over seeds of the test metric × 100 ± sample std over seeds (ddof=1), n = seeds; "
        "no std when n = 1.",
        f"- **Paper**: {paper_line} \"{NOT_IN_SOURCES}\": a cell of the paper's table no source we could read "
        f"gives; \"{NOT_IN_PAPER}\": the paper's table has no such row or budget.",
        f"- **Δ** = ours − paper, in points. **Verdict**: {VERDICT_RULE}.",
        f"- **Avg**: mean over this table's {len(data.tasks)} tasks of our medians and of the paper's cells (computed "
        f"here, not copied from the paper), shown only when every task has a value; its verdict uses the "
        f"{ONE_POINT:g}-point rule.",
        "- **Trainable params**: adapter parameters without the task head (ours from the records; the paper's text). "
        "**Step time / Peak memory / Adapter size**: median over the row's included runs of `timing.median_step_s`, "
        "`memory.peak_bytes` (on `cpu` that is RSS growth, not comparable with accelerator memory) and "
        "`adapter_bytes`.",
        "- † : cell merged from runs with different configs because `--merge-mixed` was given.", "",
        _markdown_table(markdown_frame(data)), "",
    ]
    if data.sources:
        lines += ["Sources of the paper's cells:", ""]
        lines += [f"- {source} — {note}" if note else f"- {source}" for source, note in data.sources]
        lines.append("")
    if notes:
        lines += ["Warnings while building this table:", ""] + [f"- {note}" for note in notes] + [""]
    return "\n".join(lines)


def read_markdown_table(path: Path) -> pd.DataFrame:
    """Read back the pipe table of a generated Markdown file with pandas (strings, `Method` as a column)."""
    text = Path(path).read_text().splitlines()
    table = [line for line in text if line.startswith("|") and not re.fullmatch(r"\|(-+\|)+", line)]
    frame = pd.read_csv(io.StringIO("\n".join(table)), sep=r"\s*(?<!\\)\|\s*", engine="python", dtype=str,
                        keep_default_na=False)
    frame = frame.drop(columns=[c for c in frame.columns if c == "" or c.startswith("Unnamed")])
    return frame.apply(lambda column: column.str.replace("\\|", "|", regex=False))


# ---------------------------------------------------------------- writing


def _prepare_replace(target: Path, force: bool) -> None:
    if target.exists() and any(target.iterdir()) and not (target / MARKER).exists() and not force:
        raise FileExistsError(f"{target} exists and was not written by `make tables` (no {MARKER} in it); "
                              f"refusing to replace it — move it away or pass --force")


def replace_folder(staged: Path, target: Path) -> None:
    """Swap `staged` in for `target` with renames, so readers never see a half-written folder."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.replace(target, old)
    os.replace(staged, target)
    if old is not None:
        shutil.rmtree(old)


@contextlib.contextmanager
def staged_outputs(out: Path, figures: bool, force: bool, shown=str):
    """{"tables": folder, "figures": folder} to fill; each is swapped in for `<out>/<name>` only when the block ends
    without an error, so a failed run never leaves a half-written folder. Yields the staged folders; afterwards
    its `.written` lists the files now in place; `shown` names a folder in the printed line."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    targets = {"tables": out / "tables", "figures": out / "figures"} if figures else {"tables": out / "tables"}
    for target in targets.values():
        _prepare_replace(target, force)
    staged = StagedFolders({name: Path(tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=out)) for name in targets})
    try:
        yield staged
        for folder in staged.values():
            (folder / MARKER).write_text("Generated by `python -m experiments.report.tables`; replaced on every run.\n")
    except BaseException:
        for folder in staged.values():
            shutil.rmtree(folder, ignore_errors=True)
        raise
    for name, target in targets.items():
        existed = target.exists()
        replace_folder(staged[name], target)
        files = sorted(p for p in target.iterdir() if p.name != MARKER)
        print(f"{'replaced' if existed else 'wrote'} {shown(target)}/ ({len(files)} files): "
              f"{', '.join(p.name for p in files)}")
        staged.written += files


class StagedFolders(dict):
    """The staged folders by name, and the files `staged_outputs` put in place once it has swapped them in."""

    def __init__(self, folders: dict[str, Path]):
        super().__init__(folders)
        self.written: list[Path] = []


def write_outputs(tables: list[TableData], warnings_by_table: dict[str, list[str]], skipped: list[tuple[str, str]],
                  out: Path, runs_label: str, figures: bool, force: bool,
                  extra_files: dict[str, str] | None = None) -> list[Path]:
    """Write the tables (+ `extra_files`, {name: text}, e.g. the claims) and figures; swap both folders in."""
    with staged_outputs(out, figures, force) as staged:
        for data in tables:
            notes = warnings_by_table.get(data.name, [])
            (staged["tables"] / f"{data.name}.md").write_text(render_markdown(data, runs_label, notes))
            csv_frame(data).to_csv(staged["tables"] / f"{data.name}.csv", index=False)
        for name, text in (extra_files or {}).items():
            (staged["tables"] / name).write_text(text)
        (staged["tables"] / "README.md").write_text(render_index(tables, skipped, runs_label, extra_files or {}))
        if figures:
            draw_all(tables, staged["figures"])
    return staged.written


def render_index(tables: list[TableData], skipped: list[tuple[str, str]], runs_label: str,
                 extra_files: dict[str, str] | None = None) -> str:
    lines = ["# Generated tables", "", f"Built by `make tables` from the run records under `{runs_label}`. "
             "Do not edit; rerun `make tables`.", "", "| table | runs | file |", "|---|---:|---|"]
    lines += [f"| {data.title} | {data.n_records} | [{data.name}.md]({data.name}.md), [csv]({data.name}.csv) |" for data in tables]
    claims = [name for name in (extra_files or {}) if name.startswith("claims-") and name.endswith(".md")]
    if claims:
        lines += ["", "Claims of the paper tested on the records (experiments/report/claims.py):", ""]
        lines += [f"- [{name}]({name}), [csv]({name[:-3]}.csv)" for name in claims]
    if skipped:
        lines += ["", "Records left out:", ""] + [f"- `{path}`: {reason}" for path, reason in skipped]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- entry point


def build_tables(records: pd.DataFrame, paper: pd.DataFrame, merge_mixed: bool = False,
                 only_with_runs: bool = False) -> tuple[list[TableData], dict[str, list[str]]]:
    tables, warnings_by_table = [], {}
    for table, model in _table_keys(records, paper):
        warnings: list[str] = []
        data = build_table(table, model, records, paper, merge_mixed, warnings)
        if only_with_runs and data.n_records == 0:
            continue
        tables.append(data)
        warnings_by_table[data.name] = warnings
    return tables, warnings_by_table


def _shown(path: Path) -> str:
    """How generated files name a folder: relative to the repository when inside it, so every checkout writes the
    same text."""
    resolved = Path(path).resolve()
    return str(resolved.relative_to(REPO)) if resolved.is_relative_to(REPO) else str(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=Path, default=DEFAULT_RUNS, help="folder searched for */record.json (default results/runs)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="writes <out>/tables/ and <out>/figures/ (default results)")
    parser.add_argument("--paper-dir", type=Path, default=DEFAULT_PAPER_DIR, help="folder of paper_{glue,vision,math}.csv")
    parser.add_argument("--merge-mixed", action="store_true", help="merge cells whose runs differ in config (marked †)")
    parser.add_argument("--only-with-runs", action="store_true", help="skip paper tables that no record belongs to")
    parser.add_argument("--no-figures", action="store_true", help="write the tables only")
    parser.add_argument("--force", action="store_true", help="replace <out>/tables or figures even if not generated by us")
    parser.add_argument("--ablation-runs", type=Path, default=DEFAULT_ABLATION_RUNS,
                        help="records of `make reproduce-ablations` (default results/ablation-runs)")
    args = parser.parse_args(argv)
    from experiments.studies.mini import report

    if report.is_study(args.runs):  # the CPU study (docs/mini.md): its own tables, claims and figures
        try:
            report.write(args.runs.parent, args.out, figures=not args.no_figures, force=args.force,
                              label=_shown(args.runs))
        except FileExistsError as error:
            print(f"make tables: {error}", file=sys.stderr)
            return 2
        return 0
    try:
        loaded = load_records(args.runs)
        paper = load_paper(args.paper_dir)
    except (RecordsError, FileNotFoundError, ValueError) as error:
        print(f"make tables: {error}", file=sys.stderr)
        return 2
    for path, reason in loaded.skipped:
        print(f"WARNING: skipped {path}: {reason}", file=sys.stderr)
    tables, warnings_by_table = build_tables(loaded.records, paper, args.merge_mixed, args.only_with_runs)
    for name, warnings in warnings_by_table.items():
        for warning in warnings:
            print(f"WARNING: {warning}", file=sys.stderr)
    print(f"read {len(loaded.records)} finished records from {args.runs} ({len(loaded.skipped)} skipped)")
    try:
        write_outputs(tables, warnings_by_table, loaded.skipped, args.out, _shown(args.runs), not args.no_figures,
                      args.force, claims_tables(loaded.records, _shown(args.runs)))
    except FileExistsError as error:
        print(f"make tables: {error}", file=sys.stderr)
        return 2
    write_ablation_table(args.ablation_runs, args.out / "tables")  # experiments/report/ablation_table.py
    return 0


if __name__ == "__main__":
    sys.exit(main())
