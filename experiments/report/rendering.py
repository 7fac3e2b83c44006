"""`TableData` rendered as text: the Markdown table with its legend, the machine-readable CSV frame, the index of
generated files; and `read_markdown_table`, which reads a generated Markdown table back into pandas.
"""

from __future__ import annotations

import io
import math
import re
from pathlib import Path

import pandas as pd

from experiments.report.cells import NOT_IN_PAPER, NOT_IN_SOURCES
from experiments.report.table_data import (
    ONE_POINT,
    STD_FACTOR,
    TASK_NAMES,
    TableData,
    format_params,
    row_averages,
)
from experiments.report.table_data import (
    missing as _missing,
)

VERDICT_RULE = (
    f"reproduced if |Δ| ≤ max({ONE_POINT:g} point, {STD_FACTOR:g}·std) where std is our sample std over seeds "
    f"(ddof=1; the {ONE_POINT:g}-point rule alone when n = 1); below if Δ < −tolerance; above if Δ > +tolerance"
)
METRIC_NAMES = {"accuracy": "acc", "matthews_correlation": "MCC", "pearson": "Pearson", "exact_match": "EM"}


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
    return (
        f"{TASK_NAMES.get(task, task)} ({METRIC_NAMES.get(metric, metric)})" if metric else TASK_NAMES.get(task, task)
    )


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
        line["Peak memory"] = _bytes_text(row.peak_bytes) + (
            f" ({row.memory_device})" if math.isfinite(row.peak_bytes) else ""
        )
        line["Adapter size"] = _bytes_text(row.adapter_bytes)
        lines.append(line)
    return pd.DataFrame(lines)


def csv_frame(data: TableData) -> pd.DataFrame:
    """The same table with numbers in their own columns (`<task>.median`, `<task>.delta`, ...), for machines."""
    averages = row_averages(data).set_index("label")
    by_cell = {(c["label"], c["task"]): c for c in data.cells.to_dict("records")}
    lines = []
    for row in data.rows.itertuples():
        line = {
            "method": row.label,
            "method_key": row.method,
            "trainable_params": None if _missing(row.params) else row.params,
            "paper_trainable_params": row.paper_key if isinstance(row.paper_key, str) else None,
        }
        for task in data.tasks:
            cell = by_cell[(row.label, task)]
            line.update(
                {
                    f"{task}.n": cell["n"],
                    f"{task}.median": cell["median"],
                    f"{task}.std": cell["std"],
                    f"{task}.paper": cell["paper"],
                    f"{task}.paper_std": cell["paper_std"],
                    f"{task}.delta": cell["delta"],
                    f"{task}.tolerance": cell["tolerance"],
                    f"{task}.verdict": cell["verdict"],
                    f"{task}.status": cell["status"],
                }
            )
        avg = averages.loc[row.label]
        line.update(
            {
                "avg.median": avg["avg_median"],
                "avg.paper": avg["avg_paper"],
                "avg.delta": avg["avg_delta"],
                "avg.verdict": avg["avg_verdict"],
                "median_step_s": row.median_step_s,
                "peak_memory_bytes": row.peak_bytes,
                "memory_device": row.memory_device,
                "adapter_bytes": row.adapter_bytes,
            }
        )
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
    paper_line = (
        "Published cells from `results/paper/` (copies of `../shared/reference/`); sources below."
        if data.in_paper
        else f"The paper has no {data.table}/{data.model} table: paper columns read \"{NOT_IN_PAPER}\"."
    )
    lines = [
        f"# {data.title}",
        "",
        f"Generated by `make tables` (`python -m experiments.report.tables`) from {data.n_records} finished run records "
        f"under `{runs_label}`. Do not edit by hand.",
        "",
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
        "- † : cell merged from runs with different configs because `--merge-mixed` was given.",
        "",
        _markdown_table(markdown_frame(data)),
        "",
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
    frame = pd.read_csv(
        io.StringIO("\n".join(table)), sep=r"\s*(?<!\\)\|\s*", engine="python", dtype=str, keep_default_na=False
    )
    frame = frame.drop(columns=[c for c in frame.columns if c == "" or c.startswith("Unnamed")])
    return frame.apply(lambda column: column.str.replace("\\|", "|", regex=False))


def render_index(
    tables: list[TableData], skipped: list[tuple[str, str]], runs_label: str, extra_files: dict[str, str] | None = None
) -> str:
    lines = [
        "# Generated tables",
        "",
        f"Built by `make tables` from the run records under `{runs_label}`. Do not edit; rerun `make tables`.",
        "",
        "| table | runs | file |",
        "|---|---:|---|",
    ]
    lines += [
        f"| {data.title} | {data.n_records} | [{data.name}.md]({data.name}.md), [csv]({data.name}.csv) |"
        for data in tables
    ]
    claims = [name for name in (extra_files or {}) if name.startswith("claims-") and name.endswith(".md")]
    if claims:
        lines += ["", "Claims of the paper tested on the records (experiments/report/claims.py):", ""]
        lines += [f"- [{name}]({name}), [csv]({name[:-3]}.csv)" for name in claims]
    if skipped:
        lines += ["", "Records left out:", ""] + [f"- `{path}`: {reason}" for path, reason in skipped]
    return "\n".join(lines) + "\n"
