"""The CPU study's tables, claims and figures (`make reproduce-mini`, docs/mini.md), from its records.

    python -m experiments.report.tables --runs results/mini/runs --out results/mini     # what `make tables` runs for it

experiments/report/tables.py hands a runs folder over to this module when the folder is a study's (`<results>/runs` beside
`<results>/selection/runs`). Which records count is decided by experiments/studies/mini/driver.py's own plan (`driver.state`): the
report cells hold exactly the planned report runs at the chosen lrs (seeds 1-5, and the d sweep's seeds); selection
runs (seed 0) enter only the selection table and the admission rule; any other record under `runs/` is listed as
left out. Everything written is a function of the records: no absolute path, no time, a fixed order, so a fresh
clone reproduces the committed files byte for byte.

Writes `<out>/tables/`: `README.md` (index), `main.{md,csv}`, `d-sweep.{md,csv}`, `selection.{md,csv}`,
`claims.{md,csv}` (experiments/studies/mini/verdicts.py); and `<out>/figures/`: `score-vs-d.png`, `validation-curves.png`.

`write` is the entry. It reads the records through experiments/studies/mini/collect.py, writes the main, d-sweep and
selection tables and the index itself, the claims through experiments/studies/mini/claims_table.py and the figures
through experiments/studies/mini/figures.py (shared text helpers: experiments/studies/mini/formatting.py).
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from experiments.studies.mini import design, driver
from experiments.studies.mini import formatting as fmt
from experiments.studies.mini import verdicts as plan
from experiments.studies.mini.claims_table import (
    ADMISSION_HEADER,
    admission_rows,
    claims_csv,
    claims_frames,
    claims_markdown,
)
from experiments.studies.mini.collect import Study, collect
from experiments.studies.mini.figures import score_vs_d_figure, validation_curves_figure

# ---------------------------------------------------------------- main table


def main_frame(study: Study) -> pd.DataFrame:
    """Per arm and task: n, median, sample std and mean over the report seeds; trainable params; lrs; the share of
    runs whose best validation epoch is the last."""
    cells = plan.main_cells(study.report)
    rows = []
    for arm in fmt.arms(study):
        source = study.design.arms[arm].lr_from or arm
        for task in study.tasks:
            mine = cells[(cells["arm"] == arm) & (cells["task"] == task)].sort_values("seed")
            stat = fmt.cell_stats(mine["score"])
            at_last = (mine["best_epoch"] == mine["last_epoch"]).sum()
            rows.append(
                {
                    "arm": arm,
                    "task": task,
                    **stat,
                    "trainable_params": int(mine["trainable_params"].median()) if len(mine) else None,
                    "lr": study.chosen(source, task),
                    "head_lr": study.chosen(plan.LP, task),
                    "best_epoch_last": int(at_last),
                    "seeds": " ".join(str(s) for s in mine["seed"]),
                }
            )
    frame = pd.DataFrame(rows)
    frame["trainable_params"] = frame["trainable_params"].astype("Int64")
    return frame


def main_markdown(study: Study, frame: pd.DataFrame, label: str) -> str:
    seeds = ", ".join(map(str, study.design.report_seeds))
    lines = fmt.file_header(study, "Main table: every arm at its chosen lr", label)
    lines += [
        f"Test metric × 100 on the GLUE dev split, scored once at the validation-picked epoch: **median ± sample "
        f"std (ddof = 1) over seeds {seeds}** (n = seeds finished). Trainable parameters exclude the task head "
        "(every arm trains the same head). lr: the arm's lr chosen on seed 0's validation split (θ lr for GPart "
        "and Uni-LoRA, adapter lr for LoRA, every weight's for FT, head lr for LP); GPart (balanced) takes "
        "GPart's; every arm uses the task's head lr (LP's choice). *last*: runs whose best validation epoch is "
        "the last one (docs/mini.md, convergence).",
        "",
    ]
    header = [
        "Arm",
        "Trainable params",
        *(fmt.task_label(t) for t in study.tasks),
        *(f"lr {fmt.TASK_NAMES.get(t, t)}" for t in study.tasks),
        "last",
    ]
    rows = fmt.main_rows(frame, fmt.arms(study), study.tasks)
    if study.zero_shot:
        rows.append(
            [
                "*zero-shot cosine, mean-pooled (no training)*",
                "0",
                *(fmt.num(study.zero_shot[t]["pearson"]) if t in study.zero_shot else "—" for t in study.tasks),
                *("—" for _ in study.tasks),
                "—",
            ]
        )
    lines += fmt.table(header, rows)
    head = ", ".join(f"{fmt.TASK_NAMES.get(t, t)} {fmt.lr(study.chosen(plan.LP, t))}" for t in study.tasks)
    lines += ["", f"Head lr (LP's choice, shared by every arm of the task): {head}.", ""]
    return "\n".join(lines)


# ---------------------------------------------------------------- d sweep


def sweep_frame(study: Study) -> pd.DataFrame:
    """GPart and Uni-LoRA at every d: the sweep's seeds at its d, the report seeds at the main d."""
    report = study.report
    rows = []
    ds = sorted({*study.design.d_sweep, design.MAIN_D})
    for arm in study.design.d_sweep_arms:
        source = study.design.arms[arm]
        for task in study.tasks:
            for d in ds:
                if d == design.MAIN_D:
                    mine = plan.main_cells(report)
                    mine = mine[(mine["arm"] == arm) & (mine["task"] == task)]
                    lr = study.chosen(source.label, task)
                else:
                    mine = report[
                        report["sweep"] & (report["arm"] == arm) & (report["task"] == task) & (report["d"] == d)
                    ]
                    chosen = study.chosen(source.label, task)
                    lr = None if chosen is None else design.scaled_lr(chosen, d)
                mine = mine.sort_values("seed")
                rows.append(
                    {
                        "arm": arm,
                        "task": task,
                        "d": d,
                        **fmt.cell_stats(mine["score"]),
                        "min": mine["score"].min() if len(mine) else None,
                        "max": mine["score"].max() if len(mine) else None,
                        "lr": lr,
                        "trainable_params": int(mine["trainable_params"].median()) if len(mine) else None,
                        "seeds": " ".join(str(s) for s in mine["seed"]),
                    }
                )
    frame = pd.DataFrame(
        rows,
        columns=["arm", "task", "d", "n", "median", "std", "mean", "min", "max", "lr", "trainable_params", "seeds"],
    )
    frame["trainable_params"] = frame["trainable_params"].astype("Int64")
    return frame


def sweep_markdown(study: Study, frame: pd.DataFrame, label: str) -> str:
    lines = fmt.file_header(study, "The d sweep (claim C4)", label)
    lines += [
        f"GPart and Uni-LoRA at d = {', '.join(f'{d:,}' for d in study.design.d_sweep)} (seeds "
        f"{', '.join(map(str, study.design.d_sweep_seeds))}) and at the main d = {design.MAIN_D:,} (the report "
        "runs, seeds " + ", ".join(map(str, study.design.report_seeds)) + "). θ lr = the main d's chosen lr × "
        f"√({design.MAIN_D:,}/d); head lr: the task's. Test metric × 100: median ± sample std (n).",
        "",
    ]
    header = [
        "Arm",
        "d",
        *(fmt.task_label(t) for t in study.tasks),
        *(f"θ lr {fmt.TASK_NAMES.get(t, t)}" for t in study.tasks),
    ]
    rows = []
    for (arm, d), group in frame.groupby(["arm", "d"], sort=False):
        by_task = group.set_index("task")
        rows.append(
            [
                arm,
                f"{int(d):,}",
                *(fmt.cell_text(by_task.loc[t].to_dict()) for t in study.tasks),
                *(fmt.lr(by_task.loc[t, "lr"]) for t in study.tasks),
            ]
        )
    lines += fmt.table(header, rows) + [""]
    return "\n".join(lines)


# ---------------------------------------------------------------- selection


def selection_frame(study: Study) -> pd.DataFrame:
    rows = []
    for (label, task), choice in study.choices.items():
        for lr, score in sorted(choice.scores.items()):
            rows.append(
                {
                    "task": task,
                    "arm": label,
                    "lr": lr,
                    "validation": math.nan if score is None else 100.0 * score,
                    "chosen": choice.lr is not None and lr == choice.lr,
                    "extension": lr == choice.extended,
                }
            )
    return pd.DataFrame(rows, columns=["task", "arm", "lr", "validation", "chosen", "extension"])


def selection_markdown(study: Study, frame: pd.DataFrame, label: str) -> str:
    lines = fmt.file_header(study, "Learning-rate selection and admission (seed 0, validation split)", label)
    lines += [
        "Each arm's lr: the grid point with the best validation score (best epoch, the held-out training rows: "
        "525 on SST-2, 500 on STS-B; ties to the smaller lr), after one more point beyond the edge when the winner sat on it. LP's "
        "grid is the head lr, which every arm of the task then uses. No choice reads the test split. Scores "
        "× 100; **bold**: chosen; *italic*: the edge extension. The driver writes the same choices to "
        "`selection/README.md` as it goes.",
        "",
    ]
    header = ["task", "arm", "validation score × 100 by lr", "chosen lr"]
    rows = []
    for (label_, task), choice in study.choices.items():
        mine = frame[(frame["arm"] == label_) & (frame["task"] == task)]
        cells = []
        for row in mine.itertuples():
            text = f"{row.lr:g}: {'…' if math.isnan(row.validation) else fmt.num(row.validation)}"
            text = f"**{text}**" if row.chosen else (f"*{text}*" if row.extension else text)
            cells.append(text)
        rows.append([fmt.TASK_NAMES.get(task, task), label_, ", ".join(cells), fmt.lr(choice.lr)])
    lines += fmt.table(header, rows)
    lines += [
        "",
        "**Admission rule** (applied before any claim is read): a task carries claims only if FT beats LP by "
        f"at least {plan.ADMISSION_GAP:g} points on seed 0's validation split, each at its chosen lr.",
        "",
    ]
    lines += fmt.table(ADMISSION_HEADER, admission_rows(study)) + [""]
    return "\n".join(lines)


# ---------------------------------------------------------------- writing


def index_markdown(study: Study, label: str, files: list[str], figures: list[str]) -> str:
    finished = len(study.report)
    lines = fmt.file_header(study, "CPU study: generated tables", label)
    state = "complete" if finished == study.planned and not study.waiting and finished else "in progress"
    lines += [f"{finished} of {study.planned} report and d-sweep runs known so far have finished ({state}).", ""]
    lines += [f"- [{name}]({name})" for name in files if name.endswith(".md")]
    lines += [f"- figure: [`../figures/{name}`](../figures/{name})" for name in figures]
    if study.waiting:
        lines += ["", "Waiting on a choice:", ""] + [f"- {line}" for line in study.waiting]
    if study.left_out:
        lines += ["", "Records under `runs/` that are not in the plan (not used):", ""]
        lines += [f"- `{run_id}`" for run_id in study.left_out]
    return "\n".join(lines) + "\n"


def files(study: Study, label: str) -> dict[str, str]:
    """{file name: text} of every table of the study."""
    main, sweep, selection = main_frame(study), sweep_frame(study), selection_frame(study)
    primary, secondary, c4, convergence = claims_frames(study)
    out = {
        "main.md": main_markdown(study, main, label),
        "main.csv": fmt.rounded(main).to_csv(index=False),
        "d-sweep.md": sweep_markdown(study, sweep, label),
        "d-sweep.csv": fmt.rounded(sweep).to_csv(index=False),
        "selection.md": selection_markdown(study, selection, label),
        "selection.csv": fmt.rounded(selection).to_csv(index=False),
        "claims.md": claims_markdown(study, primary, secondary, c4, convergence, label),
        "claims.csv": claims_csv(primary, secondary, c4).to_csv(index=False),
    }
    return out


def draw(study: Study, folder: Path) -> list[str]:
    written = []
    if score_vs_d_figure(study, sweep_frame(study), main_frame(study), folder / "score-vs-d.png"):
        written.append("score-vs-d.png")
    if validation_curves_figure(study, folder / "validation-curves.png"):
        written.append("validation-curves.png")
    return written


def write(
    results: Path, out: Path | None = None, figures: bool = True, force: bool = False, label: str | None = None
) -> list[Path]:
    """Write `<out>/tables/` (and `<out>/figures/`) for the study in `results`; both folders replaced atomically."""
    from experiments.report.writing import staged_outputs

    results = Path(results)
    out = Path(out) if out is not None else results
    label = label or driver.shown(results / "runs")
    study = collect(results)
    with staged_outputs(out, figures, force, shown=driver.shown) as staged:
        texts = files(study, label)
        drawn = draw(study, staged["figures"]) if figures else []
        texts["README.md"] = index_markdown(study, label, list(texts), drawn)
        for name, text in texts.items():
            (staged["tables"] / name).write_text(text)
    return staged.written
