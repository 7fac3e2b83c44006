"""Figures for `make tables`: score vs trainable parameters per table, and score vs d for GPart sweeps (claim C4).

Called by experiments/report/writing.py with the tables it writes (this module reads experiments/report/table_data.py only); writes PNGs (Agg backend, no display needed):
`<table>-<model>_score_vs_params.png` and, when a table holds GPart runs at two or more d,
`<table>-<model>_gpart_score_vs_d.png`.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from experiments.report.table_data import TASK_NAMES, TableData, parse_param_count, row_averages  # noqa: E402
from experiments.report.table_data import missing as _missing  # noqa: E402

SWEEP_METHOD = "GPart"


def _points(data: TableData):
    """(label, method, task, x_ours, median, std, x_paper, paper) per cell, with an "avg" pseudo-task."""
    rows = data.rows.set_index("label")
    averages = row_averages(data).set_index("label")
    for cell in data.cells.itertuples():
        row = rows.loc[cell.label]
        yield _point(cell.label, row, cell.task, cell.median, cell.std, cell.paper)
    for label, avg in averages.iterrows():
        yield _point(label, rows.loc[label], "avg", avg["avg_median"], math.nan, avg["avg_paper"])


def _point(label, row, task, median, std, paper):
    paper_params = parse_param_count(row["paper_key"]) if isinstance(row["paper_key"], str) else None
    return {
        "label": label,
        "method": row["method"],
        "task": task,
        "x_ours": None if _missing(row["params"]) else float(row["params"]),
        "median": float(median),
        "std": float(std),
        "x_paper": paper_params,
        "paper": float(paper) if not _missing(paper) else math.nan,
    }


def _usable(x, y) -> bool:
    return x is not None and not _missing(x) and x > 0 and math.isfinite(y)


def _method_colours(methods: list[str]) -> dict:
    """GPart in black, the peers in tab10 without its grey (grey is kept for the marker-style legend)."""
    palette = [plt.get_cmap("tab10")(i) for i in range(10) if i != 7]
    peers = [m for m in methods if m != SWEEP_METHOD]
    colours = {m: palette[i % len(palette)] for i, m in enumerate(peers)}
    colours[SWEEP_METHOD] = "black"
    return colours


def _grid(count: int):
    columns = min(4, count)
    rows = math.ceil(count / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(max(4.2 * columns, 8.0), 3.4 * rows + 1.2), squeeze=False)
    for axis in axes.flat[count:]:
        axis.set_visible(False)
    return figure, list(axes.flat[:count])


def score_vs_params(data: TableData, path: Path) -> bool:
    """Our medians (filled, ± std) and the paper's values (hollow) against trainable parameters, log x, per task."""
    points = list(_points(data))
    if not any(_usable(p["x_ours"], p["median"]) or _usable(p["x_paper"], p["paper"]) for p in points):
        return False
    methods = list(dict.fromkeys(data.rows["method"]))
    colours = _method_colours(methods)
    tasks = data.tasks + (["avg"] if len(data.tasks) > 1 else [])
    figure, axes = _grid(len(tasks))
    hidden = set()
    for axis, task in zip(axes, tasks):
        for p in (p for p in points if p["task"] == task):
            colour = colours[p["method"]]
            if _usable(p["x_ours"], p["median"]):
                axis.errorbar(
                    p["x_ours"],
                    p["median"],
                    yerr=None if math.isnan(p["std"]) else p["std"],
                    fmt="o",
                    color=colour,
                    markersize=6,
                    capsize=3,
                    zorder=3,
                )
            elif p["x_ours"] == 0 and math.isfinite(p["median"]):  # no place on a log axis: a level line
                axis.axhline(p["median"], color=colour, linestyle="--", linewidth=1.2)
                hidden.add(p["label"])
            if _usable(p["x_paper"], p["paper"]):
                axis.scatter(
                    p["x_paper"], p["paper"], s=70, facecolors="none", edgecolors=[colour], linewidths=1.5, zorder=2
                )
            elif p["x_paper"] == 0 and math.isfinite(p["paper"]):
                axis.axhline(p["paper"], color=colour, linestyle=":", linewidth=1.2)
                hidden.add(p["label"])
        axis.set_xscale("log")
        axis.margins(x=0.12, y=0.15)
        axis.set_title("Average over tasks" if task == "avg" else TASK_NAMES.get(task, task), fontsize=10)
        axis.grid(True, which="major", alpha=0.3)
        axis.set_xlabel("trainable parameters (log)", fontsize=8)
        axis.set_ylabel(f"{data.metrics.get(task, 'score')} × 100" if task != "avg" else "score × 100", fontsize=8)
        axis.tick_params(labelsize=8)
    handles = [Line2D([], [], color=colours[m], marker="o", linestyle="", label=m) for m in methods]
    handles += [
        Line2D([], [], color="0.45", marker="o", linestyle="", label="filled: ours, median ± std over seeds"),
        Line2D(
            [], [], color="0.45", marker="o", markerfacecolor="none", linestyle="", markersize=8, label="hollow: paper"
        ),
    ]
    columns = min(len(handles), max(3, int(figure.get_figwidth() / 1.4)))
    figure.legend(handles=handles, loc="lower center", ncol=columns, fontsize=8, frameon=False)
    suptitle = f"{data.title}: score vs trainable parameters"
    if hidden:
        suptitle += (
            f"\n0 adapter parameters ({', '.join(sorted(hidden))}): horizontal lines, dashed = ours, dotted = paper"
        )
    figure.suptitle(suptitle, fontsize=11)
    legend_rows = math.ceil(len(handles) / columns)
    figure.tight_layout(rect=(0, (0.35 + 0.2 * legend_rows) / figure.get_figheight(), 1, 0.95))
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return True


SWEEP_PEER = "Uni-LoRA"
LEVEL_METHODS = {"FT": "--", "LP": ":"}  # drawn as level lines: they have no d


def _sweep_rows(data: TableData, method: str):
    rows = data.rows
    return rows.loc[(rows["method"] == method) & rows["params"].notna() & rows["d"].notna()]


def score_vs_d(data: TableData, path: Path) -> bool:
    """Claim C4: per task where GPart ran at two or more d, GPart's and Uni-LoRA's median ± std over seeds against d
    (log x), full fine-tuning and head-only as level lines (median, band ± std); paper cells hollow."""
    sweep = {m: _sweep_rows(data, m) for m in (SWEEP_METHOD, SWEEP_PEER)}
    if sweep[SWEEP_METHOD]["d"].nunique() < 2:
        return False
    cells = data.cells.merge(data.rows[["label", "d", "paper_key"]], on="label")
    swept = cells[cells["label"].isin(sweep[SWEEP_METHOD]["label"]) & cells["median"].notna()]
    tasks = [t for t in data.tasks if swept.loc[swept["task"] == t, "d"].nunique() >= 2]
    figure, axes = _grid(len(tasks))
    colours = {
        SWEEP_METHOD: "black",
        SWEEP_PEER: plt.get_cmap("tab10")(0),
        "FT": plt.get_cmap("tab10")(2),
        "LP": plt.get_cmap("tab10")(3),
    }
    for axis, task in zip(axes, tasks):
        for method, rows in sweep.items():
            group = cells[cells["label"].isin(rows["label"]) & (cells["task"] == task) & cells["median"].notna()]
            group = group.sort_values("d")
            if len(group):
                axis.errorbar(
                    group["d"],
                    group["median"],
                    yerr=group["std"].fillna(0),
                    marker="o",
                    capsize=3,
                    color=colours[method],
                    label=method,
                )
            for key, value in zip(group["paper_key"], group["paper"]):
                if isinstance(key, str) and not _missing(value):
                    axis.scatter(
                        parse_param_count(key),
                        float(value),
                        s=80,
                        facecolors="none",
                        edgecolors=[colours[method]],
                        linewidths=1.5,
                        zorder=3,
                    )
        for method, style in LEVEL_METHODS.items():
            level = cells[(cells["method"] == method) & (cells["task"] == task) & cells["median"].notna()]
            for median, std in zip(level["median"], level["std"]):
                axis.axhline(median, color=colours[method], linestyle=style, linewidth=1.3, label=method)
                if not _missing(std):
                    axis.axhspan(median - std, median + std, color=colours[method], alpha=0.12, linewidth=0)
        ds = sorted(set(swept.loc[swept["task"] == task, "d"]))
        axis.set_xscale("log")
        axis.set_xticks(ds, [f"{int(d):,}" for d in ds], fontsize=7)
        axis.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        axis.set_title(TASK_NAMES.get(task, task), fontsize=10)
        axis.set_xlabel("d (length of θ, log scale)", fontsize=8)
        axis.set_ylabel(f"{data.metrics.get(task, 'score')} × 100", fontsize=8)
        axis.grid(True, alpha=0.3)
        axis.tick_params(labelsize=8)
        axis.legend(fontsize=7)
    figure.suptitle(
        f"{data.title}: score vs d (median ± std over seeds; FT and head-only (LP) as level lines, "
        "band ± std; hollow: paper)",
        fontsize=10,
    )
    figure.tight_layout(rect=(0, 0, 1, 0.93))
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return True


def draw_all(tables: list[TableData], folder: Path) -> list[Path]:
    written = []
    for data in tables:
        for suffix, draw in (("score_vs_params", score_vs_params), ("gpart_score_vs_d", score_vs_d)):
            path = Path(folder) / f"{data.name}_{suffix}.png"
            if draw(data, path):
                written.append(path)
    return written
