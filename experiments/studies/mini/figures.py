"""The CPU study's figures: `score-vs-d.png` (GPart and Uni-LoRA against d, FT and LP as level lines) and
`validation-curves.png` (every arm's validation curve for one seed), drawn with matplotlib's Agg backend."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from experiments.studies.mini import formatting as fmt
from experiments.studies.mini import verdicts as plan
from experiments.studies.mini.collect import Study


def _save(figure, path: Path) -> None:
    import matplotlib.pyplot as plt

    figure.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(figure)


def score_vs_d_figure(study: Study, sweep: pd.DataFrame, main: pd.DataFrame, path: Path) -> bool:
    """Per task: GPart and Uni-LoRA against d (log x), the median with whiskers from the lowest to the highest seed (a
    collapsed seed would send a ± std bar past the metric's range), FT and LP as level lines (median, band ± std).

    `sweep` and `main` are the d-sweep and main tables' frames (experiments/studies/mini/report.py)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if sweep["n"].fillna(0).sum() == 0:
        return False
    main = main.set_index(["arm", "task"])
    colours = {"GPart": "black", "Uni-LoRA": "tab:blue", "FT": "tab:green", "LP": "tab:red"}
    figure, axes = plt.subplots(1, len(study.tasks), figsize=(5.0 * len(study.tasks), 4.0), squeeze=False)
    for axis, task in zip(axes[0], study.tasks):
        for arm, group in sweep[(sweep["task"] == task) & (sweep["n"] > 0)].groupby("arm", sort=False):
            axis.errorbar(
                group["d"],
                group["median"],
                yerr=[(group["median"] - group["min"]).fillna(0), (group["max"] - group["median"]).fillna(0)],
                marker="o",
                capsize=3,
                color=colours.get(arm),
                label=f"{arm} (n = {'/'.join(map(str, group['n']))})",
            )
        for arm, style in (("FT", "--"), ("LP", ":")):
            if (arm, task) in main.index and main.loc[(arm, task), "n"] > 0:
                median, std = main.loc[(arm, task), "median"], main.loc[(arm, task), "std"]
                axis.axhline(
                    median,
                    color=colours[arm],
                    linestyle=style,
                    linewidth=1.3,
                    label=f"{arm} (n = {main.loc[(arm, task), 'n']})",
                )
                if not math.isnan(std):
                    axis.axhspan(median - std, median + std, color=colours[arm], alpha=0.12, linewidth=0)
        if task in study.zero_shot:
            axis.axhline(
                study.zero_shot[task]["pearson"],
                color="tab:purple",
                linestyle="-.",
                linewidth=1.1,
                label="zero-shot cosine (no training)",
            )
        ds = sorted(sweep["d"].unique())
        axis.set_xscale("log")
        axis.set_xticks(ds, [f"{int(d):,}" for d in ds])
        axis.minorticks_off()
        axis.set_title(fmt.task_label(task), fontsize=10)
        axis.set_xlabel("d (length of θ, log scale)", fontsize=8)
        axis.set_ylabel("test score × 100", fontsize=8)
        axis.grid(True, alpha=0.3)
        if axis.get_legend_handles_labels()[0]:
            axis.legend(fontsize=7)
    figure.suptitle(
        "MiniLM-L6 (CPU study, not the paper's numbers): score vs d, median and range over seeds; FT and LP "
        "as level lines (band ± std)",
        fontsize=9,
    )
    figure.tight_layout(rect=(0, 0, 1, 0.93))
    _save(figure, path)
    return True


def validation_curves_figure(study: Study, path: Path, seed: int | None = None) -> bool:
    """Per task: every arm's validation score × 100 by epoch for one report seed (the first), best epoch marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    seed = study.design.report_seeds[0] if seed is None else seed
    cells = plan.main_cells(study.report)
    cells = cells[cells["seed"] == seed]
    if cells.empty:
        return False
    palette = plt.get_cmap("tab10")
    figure, axes = plt.subplots(1, len(study.tasks), figsize=(5.0 * len(study.tasks), 4.0), squeeze=False)
    for axis, task in zip(axes[0], study.tasks):
        for i, arm in enumerate(fmt.arms(study)):
            mine = cells[(cells["arm"] == arm) & (cells["task"] == task)]
            if mine.empty:
                continue
            row = mine.iloc[0]
            epochs, values = zip(*row["curve"]) if row["curve"] else ((), ())
            axis.plot(epochs, values, marker=".", color=palette(i), label=arm)
            best = dict(row["curve"]).get(row["best_epoch"])
            if best is not None:
                axis.scatter([row["best_epoch"]], [best], s=60, facecolors="none", edgecolors=[palette(i)])
        axis.set_title(fmt.task_label(task), fontsize=10)
        axis.set_xlabel("epoch", fontsize=8)
        axis.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        axis.set_ylabel("validation score × 100", fontsize=8)
        axis.grid(True, alpha=0.3)
        if axis.get_legend_handles_labels()[0]:
            axis.legend(fontsize=7)
    figure.suptitle(
        f"Validation curves, seed {seed}, every arm at its chosen lr (circle: best epoch, where test is scored)",
        fontsize=9,
    )
    figure.tight_layout(rect=(0, 0, 1, 0.93))
    _save(figure, path)
    return True
