"""The GPart ablation table (`make reproduce-ablations`, and `make tables` when ablation runs exist).

Rows come from the run records' own configs, not from file names: a GPart record's variant is its `method.config`
values of the ablated fields (isometric, assignment, projection, partition_scope, grouping, init_bound, d), compared
with the reference setting of setup.md §1–2; a Uni-LoRA record's variant is its θ length. Each GPart row is compared
with the reference GPart row and with Uni-LoRA at the same d. Cells are the median over seeds (± std, n),
in points ×100. The paper's own ablation numbers are unknown (setup.md: the paper's body could not be read), so the
table shows our runs only.

    python -m experiments.report.ablation_table --runs results/ablation-runs --out results/tables
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

from experiments.runner.atomic import write_text_atomic

DEFAULT_ABLATION_RUNS = Path("results/ablation-runs")
# The reference GPart setting: setup.md §1 (isometric, stateless HEAD default, one global random partition) and
# §2 (d = 23,040). Records written before a field existed ran its default, which is this value.
REFERENCE = {
    "isometric": True,
    "assignment": "stateless",
    "projection": "partition",
    "partition_scope": "global",
    "grouping": "random",
    "init_bound": 0.0,
    "d": 23040,
}
AXES = {
    "isometric": "isometry",
    "assignment": "group assignment",
    "projection": "partition vs Fastfood (DID)",
    "partition_scope": "partition scope",
    "grouping": "grouping",
    "init_bound": "θ initialisation",
    "d": "d sweep",
}
TASK_ORDER = ["sst2", "mrpc", "cola", "qnli", "rte", "stsb"]


def load_ablation_records(runs_dir: Path) -> pd.DataFrame:
    """One row per finished GPart or Uni-LoRA record under `runs_dir`, with its variant fields."""
    rows = []
    for path in sorted(Path(runs_dir).rglob("record.json")):
        try:
            record = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            print(f"WARNING: skipped {path}: unreadable: {error}", file=sys.stderr)
            continue
        if record.get("status") != "finished" or record.get("method") not in ("GPart", "Uni-LoRA"):
            continue
        config = ((record.get("config") or {}).get("method") or {}).get("config") or {}
        row = {
            "model": record["model"],
            "task": record["task"],
            "seed": record["seed"],
            "score": 100.0 * float(record["test_metric"]),
            "method": record["method"],
        }
        if record["method"] == "GPart":
            row.update({field: config.get(field, default) for field, default in REFERENCE.items()})
        else:
            row["d"] = config.get("theta_d_length")
        rows.append(row)
    return pd.DataFrame(rows)


def _variant(row: pd.Series) -> tuple[str, str]:
    """(axis, label) of one record's setting."""
    if row["method"] == "Uni-LoRA":
        axis = "reference" if row["d"] == REFERENCE["d"] else AXES["d"]
        return axis, f"Uni-LoRA d={int(row['d']):,}"
    changed = [field for field, value in REFERENCE.items() if row[field] != value]
    if not changed:
        return "reference", f"GPart d={REFERENCE['d']:,} (setup.md)"
    axis = AXES[changed[0]] if len(changed) == 1 else "combined"
    return axis, "GPart " + ", ".join(f"{field}={_text(row[field])}" for field in changed)


def _text(value) -> str:
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)


def build_ablation_table(records: pd.DataFrame) -> pd.DataFrame:
    """Rows: reference, then each axis's variants, then the d sweep (GPart and Uni-LoRA per d); columns: each task's
    median ± std (n), the average of task medians (complete rows only), and its Δ vs reference and vs Uni-LoRA."""
    records = records.copy()
    records[["axis", "variant"]] = [_variant(row) for _, row in records.iterrows()]
    tasks = [t for t in TASK_ORDER if t in set(records["task"])] + sorted(set(records["task"]) - set(TASK_ORDER))
    cells = records.groupby(["axis", "variant", "method", "d", "task"])["score"].agg(["median", "std", "count"])
    rows = []
    for (axis, variant, method, d), group in cells.groupby(level=[0, 1, 2, 3]):
        by_task = group.droplevel([0, 1, 2, 3])
        row = {"axis": axis, "variant": variant, "method": method, "d": int(d)}
        for task in tasks:
            row[task] = _cell(by_task.loc[task]) if task in by_task.index else ""
        complete = all(task in by_task.index for task in tasks)
        row["avg"] = round(by_task["median"].mean(), 2) if complete else None
        rows.append(row)
    table = pd.DataFrame(rows)
    reference = table.loc[table["axis"] == "reference", "avg"]
    unilora = table[table["method"] == "Uni-LoRA"].set_index("d")["avg"]
    table["Δ vs reference"] = [
        _delta(a, reference.iloc[0] if len(reference) else None) if m == "GPart" else None
        for a, m in zip(table["avg"], table["method"])
    ]
    table["Δ vs Uni-LoRA same d"] = [
        _delta(a, unilora.get(d)) if m == "GPart" else None
        for a, m, d in zip(table["avg"], table["method"], table["d"])
    ]
    order = {axis: i for i, axis in enumerate(["reference", *AXES.values(), "combined"])}
    table["_order"] = [
        (order[a], d if a == AXES["d"] else 0, m != "GPart")
        for a, d, m in zip(table["axis"], table["d"], table["method"])
    ]
    return table.sort_values("_order", kind="stable").drop(columns="_order").reset_index(drop=True)


def _cell(stats: pd.Series) -> str:
    std = "" if pd.isna(stats["std"]) else f" ± {stats['std']:.2f}"
    return f"{stats['median']:.2f}{std} (n={int(stats['count'])})"


def _delta(value, other):
    if value is None or other is None or pd.isna(value) or pd.isna(other):
        return None
    return round(value - other, 2)


def render(table: pd.DataFrame, model: str, runs_label: str) -> str:
    shown = table.drop(columns=["method"]).astype(object).fillna("")
    shown["d"] = [f"{d:,}" for d in table["d"]]
    lines = [
        f"# GLUE {model}: GPart ablations",
        "",
        f"Built from the run records under `{runs_label}` (`make reproduce-ablations`); do not edit. Test-split "
        "score ×100, median over seeds ± std (n); `avg` only where a row has every task. The paper's ablation "
        "numbers are unknown (setup.md: its body could not be read): these are our runs only.",
        "",
        "| " + " | ".join(shown.columns) + " |",
        "|" + "---|" * len(shown.columns),
    ]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in shown.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def write_ablation_table(runs_dir: Path, out_dir: Path) -> list[Path]:
    """Write `glue_<model>_ablations.{md,csv}` per model into `out_dir`; nothing (and a note) without runs."""
    runs_dir, out_dir = Path(runs_dir), Path(out_dir)
    records = load_ablation_records(runs_dir) if runs_dir.is_dir() else pd.DataFrame()
    if records.empty:
        print(f"no ablation table: no finished GPart/Uni-LoRA records under {runs_dir} (make reproduce-ablations)")
        return []
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for model, group in records.groupby("model"):
        table = build_ablation_table(group)
        stem = out_dir / f"glue_{model}_ablations"
        write_text_atomic(stem.with_suffix(".md"), render(table, model, str(runs_dir)))
        write_text_atomic(stem.with_suffix(".csv"), table.to_csv(index=False))
        written += [stem.with_suffix(".md"), stem.with_suffix(".csv")]
    print(f"wrote {', '.join(str(p) for p in written)} from {len(records)} records")
    return written


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, default=DEFAULT_ABLATION_RUNS, help="folder searched for */record.json")
    parser.add_argument("--out", type=Path, default=Path("results/tables"), help="folder the table is written to")
    args = parser.parse_args(argv)
    write_ablation_table(args.runs, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
