"""Records grouped into cells and tables: which runs form a cell, their median and std over seeds, the paper row
each of our variants compares with, and the verdict; the result is one `TableData` per (table, model).

A cell whose records differ in resolved config (a different `config_hash`) is refused, with the differing keys in the
warnings, unless `merge_mixed`.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd

from experiments.report.table_data import TASK_NAMES, TableData, format_params, verdict
from experiments.report.table_data import missing as _missing
from experiments.runner.records import UNHASHED_ANYWHERE, UNHASHED_TOP

BUDGET_MATCH_FACTOR = 1.5  # our run matches a paper row of its method when budgets agree within this factor
PAPER_METHOD = "GPart"  # the paper's method: its row appears in every table, with or without runs
NOT_IN_SOURCES = "n/a (not in our sources)"
NOT_IN_PAPER = "n/a (not in paper)"
# Keys that never make two runs' configs "different" when explaining a mixed cell: those config_hash leaves out,
# plus per-run identifiers.
IGNORED_CONFIG_KEYS = {*UNHASHED_TOP, *UNHASHED_ANYWHERE, "run_id", "wandb"}


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
        if any(
            json.dumps(v, sort_keys=True, default=str) != json.dumps(values[0], sort_keys=True, default=str)
            for v in values
        ):
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
    warnings.append(
        f"{where}: seeds {sorted(duplicated['seed'].unique().tolist())} were run more than once; "
        f"kept the latest run of each, dropped {dropped}"
    )
    return kept


def aggregate_cell(records: pd.DataFrame, where: str, merge_mixed: bool, warnings: list[str]) -> dict:
    """Median, sample std and n over seeds of one cell's records, or a refusal when their configs differ."""
    groups = [group for _, group in records.groupby(["config_hash", "metric"], sort=False)]
    mixed = len(groups) > 1
    if mixed:
        differences = config_differences([group.iloc[0]["config"] for group in groups])
        if records["metric"].nunique() > 1:
            differences["metric"] = [group.iloc[0]["metric"] for group in groups]
        described = (
            "; ".join(f"{key}: {' vs '.join(map(str, values))}" for key, values in differences.items())
            or f"none outside the ignored keys, yet config_hash differs ({', '.join(records['config_hash'].unique())})"
        )
        runs = " | ".join(", ".join(group["run_id"]) for group in groups)
        if not merge_mixed:
            warnings.append(
                f"refused cell {where}: {len(records)} records with {len(groups)} different configs; "
                f"differing keys: {described} [runs: {runs}]. Pass --merge-mixed to merge them."
            )
            return {
                "status": "refused",
                "n": 0,
                "note": f"refused: mixed configs ({', '.join(differences) or 'config_hash'})",
            }
        warnings.append(f"merged mixed cell {where} as asked (--merge-mixed); differing keys: {described}")
    records = _dedupe_seeds(records, warnings, where)
    scores = records["score"].to_numpy(dtype=float)
    n = len(scores)
    return {
        "status": "merged-mixed" if mixed else "ok",
        "n": n,
        "median": float(np.median(scores)),
        "std": float(np.std(scores, ddof=1)) if n > 1 else math.nan,
        "metric": records["metric"].iloc[0],
        "note": "mixed configs merged (--merge-mixed)" if mixed else "",
        "run_paths": list(records["path"]),
    }


def build_tables(
    records: pd.DataFrame, paper: pd.DataFrame, merge_mixed: bool = False, only_with_runs: bool = False
) -> tuple[list[TableData], dict[str, list[str]]]:
    """One `TableData` per paper table and per other (table, model) with records, and each table's warnings."""
    tables, warnings_by_table = [], {}
    for table, model in _table_keys(records, paper):
        warnings: list[str] = []
        data = build_table(table, model, records, paper, merge_mixed, warnings)
        if only_with_runs and data.n_records == 0:
            continue
        tables.append(data)
        warnings_by_table[data.name] = warnings
    return tables, warnings_by_table


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
    paper_keys = paper_rows.drop_duplicates(["method", "trainable_params"])[
        ["method", "trainable_params", "paper_params", "order"]
    ]
    budget = {
        (m, t): p for m, t, p in zip(paper_keys["method"], paper_keys["trainable_params"], paper_keys["paper_params"])
    }
    # A paper row compares with one of our variants only: the nearest budget keeps it.
    for (method, key), group in ours.dropna(subset=["paper_key"]).groupby(["method", "paper_key"]):
        theirs = budget[(method, key)]
        if len(group) > 1 and theirs is not None and not pd.isna(theirs):
            nearest = group["params"].map(lambda p, theirs=theirs: _log_distance(p, theirs)).astype(float).idxmin()
            ours.loc[group.index.drop(nearest), "paper_key"] = None
    matched = set(zip(ours["method"], ours["paper_key"]))
    unmatched = [(m, t) not in matched for m, t in zip(paper_keys["method"], paper_keys["trainable_params"])]
    paper_only = paper_keys.loc[np.array(unmatched, dtype=bool)]
    rows = pd.concat(
        [
            ours,
            pd.DataFrame({"method": paper_only["method"], "params": None, "paper_key": paper_only["trainable_params"]}),
        ],
        ignore_index=True,
    )
    if PAPER_METHOD not in set(rows["method"]):  # the method under test has a row in every table, runs or not
        rows = pd.concat(
            [rows, pd.DataFrame({"method": [PAPER_METHOD], "params": [None], "paper_key": [None]})], ignore_index=True
        )
    first_of_method = paper_keys.groupby("method")["order"].min().to_dict()
    order_of_key = {
        (m, t): o for m, t, o in zip(paper_keys["method"], paper_keys["trainable_params"], paper_keys["order"])
    }
    fallback = {m: len(paper_keys) + i for m, i in method_order.items()}
    rows["sort"] = [
        order_of_key.get((m, k), first_of_method.get(m, fallback.get(m, math.inf)))
        for m, k in zip(rows["method"], rows["paper_key"])
    ]
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
    return {
        "median_step_s": median("median_step_s"),
        "peak_bytes": median("peak_bytes"),
        "adapter_bytes": median("adapter_bytes"),
        "d": d,
        "memory_device": devices,
    }


def _paper_cell(paper_cells: dict, method: str, key, task: str) -> dict:
    row = paper_cells.get((method, key, task)) if isinstance(key, str) else None
    if row is None:
        return {"paper": math.nan, "paper_std": math.nan, "paper_text": NOT_IN_PAPER, "paper_metric": None}
    if pd.isna(row["value"]):
        text = NOT_IN_SOURCES
    else:
        text = f"paper {row['value_text']}" + (f" ± {row['std_text']}" if row["std_text"] else "")
    return {"paper": row["value"], "paper_std": row["std"], "paper_text": text, "paper_metric": row["metric"]}


def build_table(
    table: str, model: str, records: pd.DataFrame, paper: pd.DataFrame, merge_mixed: bool, warnings: list[str]
) -> TableData:
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
        mine = (
            records.iloc[0:0]
            if _missing(row.params)
            else records[(records["method"] == row.method) & (records["trainable_params"] == row.params)]
        )
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
    return TableData(
        table, model, tasks, metrics, rows, pd.DataFrame(cells), not paper_rows.empty, sources, len(records)
    )


def _cell(row, task: str, records, paper_cell: dict, where: str, merge_mixed: bool, warnings: list[str]):
    """One table cell (ours, paper, Δ, verdict) and the paths of the runs it aggregates."""
    ours = (
        aggregate_cell(records, where, merge_mixed, warnings) if records is not None else {"status": "no runs", "n": 0}
    )
    cell = {
        "label": row.label,
        "method": row.method,
        "task": task,
        **paper_cell,
        "status": ours["status"],
        "n": ours["n"],
        "median": ours.get("median", math.nan),
        "std": ours.get("std", math.nan),
        "note": ours.get("note", ""),
    }
    if ours.get("metric") and cell["paper_metric"] and ours["metric"] != cell["paper_metric"]:
        warnings.append(
            f"{where}: our metric {ours['metric']!r} is not the paper's {cell['paper_metric']!r}; not compared"
        )
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
