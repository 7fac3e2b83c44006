"""The paper-shape study's tables, claim C1 and figure (`make reproduce-mini-base`, docs/mini-base.md), from its records.

    python -m experiments.report.tables --runs results/mini-base/runs --out results/mini-base

experiments/report/tables.py hands a runs folder over to this module when `<results>/PAPER_SHAPE.txt` marks it
(experiments/studies/mini/paper_shape.py writes the marker). Which records count is decided by the study's own plan
(`paper_shape.state`), replayed on the records themselves: each record is matched to a planned run by what it
says it ran (arm, task, seed, lrs, d, model), so the tables need neither the model nor its run-id digest and a fresh
clone regenerates them byte for byte. The MiniLM study's C1 rows are read from its records (results/mini) for the
comparison the plan asks for.

Writes `<out>/tables/`: `README.md`, `main.{md,csv}`, `checks.{md,csv}`, `claims.{md,csv}`, and for the post-hoc
SST-2 lr-sensitivity runs `sensitivity.{md,csv}` and `sensitivity-pairs.csv`; and `<out>/figures/`: `c1-by-model.png`.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from experiments.studies.mini import design, driver, paper_shape, summary
from experiments.studies.mini import formatting as fmt
from experiments.studies.mini import verdicts as plan
from experiments.studies.mini.collect import REPORT_COLUMNS, report_row

MINILM_LABEL = "MiniLM-L6 (d = 2,880, CPU study)"
BASE_LABEL = "MPNet-base (d = 23,040, this study)"
ARMS = (plan.GPART, plan.UNILORA, plan.FT, plan.LP)


def is_paper_shape(results: Path) -> bool:
    return (Path(results) / paper_shape.MARKER).is_file()


@dataclass
class ShapeStudy:
    tasks: list[str]
    choices: dict  # (arm label, task) -> design.Choice: the lr checks
    report: pd.DataFrame  # collect.REPORT_COLUMNS, one row per finished planned report run
    planned: int
    level_validation: dict  # (FT or LP, task) -> seed 1's best validation score × 100
    minilm_c1: pd.DataFrame  # the CPU study's C1 rows (verdicts.primary)
    minilm_report: pd.DataFrame
    waiting: list[str] = field(default_factory=list)
    left_out: list[str] = field(default_factory=list)
    sensitivity: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=REPORT_COLUMNS))  # post hoc
    sensitivity_planned: int = 0


def collect(results: Path, minilm_results: Path = driver.DEFAULT_RESULTS, tasks=design.TASKS) -> ShapeStudy:
    from experiments.studies.mini import collect as minilm_collect

    results = Path(results)
    found = paper_shape.FinishedRecords(results)
    minilm = minilm_collect.collect(minilm_results, tasks)
    choices = {key: choice.lr for key, choice in minilm.choices.items()}
    now = paper_shape.state(results, choices, tasks, validation=found.validation)
    rows, levels = {"report": [], paper_shape.SENSITIVITY: []}, {}
    planned = dict.fromkeys(rows, 0)
    for run in now.ready:
        if run.stage not in rows:
            continue
        planned[run.stage] += 1
        record = found.get(run)
        if record is None or record.get("test_metric") is None:
            continue
        rows[run.stage].append({**report_row(run, record), "sweep": False})
        if run.arm.label in paper_shape.LEVEL_LINES and record.get("validation_metric") is not None:
            levels[(run.arm.label, run.task)] = 100.0 * float(record["validation_metric"])
    report, sensitivity = (_report_frame(rows[stage]) for stage in rows)
    used = {r["run_id"] for stage_rows in rows.values() for r in stage_rows}
    left_out = sorted(found.run_ids("report") - used)
    minilm_c1 = plan.primary(minilm.report, minilm.admission, minilm.tasks)
    return ShapeStudy(
        list(tasks),
        now.choices,
        report,
        planned["report"],
        levels,
        minilm_c1[minilm_c1["claim"] == "C1"].reset_index(drop=True),
        minilm.report,
        list(now.waiting),
        left_out,
        sensitivity,
        planned[paper_shape.SENSITIVITY],
    )


def _report_frame(rows: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=REPORT_COLUMNS)
    frame["sweep"] = frame["sweep"].astype(bool)
    return frame


# ---------------------------------------------------------------- analysis (docs/mini-base.md's plan)


def admission(study: ShapeStudy) -> pd.DataFrame:
    """FT and LP from seed 1's level-line runs (the plan's stand-in for seed 0's, which this study does not run)."""
    return pd.DataFrame(
        [
            {
                "task": t,
                "ft": study.level_validation.get((plan.FT, t), math.nan),
                "lp": study.level_validation.get((plan.LP, t), math.nan),
            }
            for t in study.tasks
        ],
        columns=["task", "ft", "lp"],
    )


def primary_c1(study: ShapeStudy) -> pd.DataFrame:
    """C1 per task on seeds 1-3, Holm over the tasks (verdicts.primary: the other claims have no runs, so no test)."""
    frame = plan.primary(study.report, admission(study), study.tasks, seeds=len(paper_shape.REPORT_SEEDS))
    return frame[frame["claim"] == "C1"].reset_index(drop=True)


def pooled_c1(study: ShapeStudy) -> dict:
    """C1 on the per-seed mean normalised score over admitted tasks, seed 1's FT and LP standing for every seed."""
    entry = plan.admitted(admission(study))
    tasks = [t for t in study.tasks if entry.get(t) is True]
    levels = {arm: plan.scores(study.report, arm) for arm in (plan.FT, plan.LP)}

    def normalised(arm: str) -> pd.Series:
        per_task = {}
        for task in tasks:
            ft, lp = (levels[a].get((task, paper_shape.LEVEL_SEEDS[0]), math.nan) for a in (plan.FT, plan.LP))
            per_task[task] = (plan.scores(study.report, arm, task) - lp) / (ft - lp)
        table = pd.DataFrame(per_task)
        return table.dropna().mean(axis=1) if tasks and not table.empty else pd.Series(dtype=float)

    differences = plan.paired(normalised(plan.GPART), normalised(plan.UNILORA))
    mean, low, high = plan.interval(differences)
    p_supported, _ = plan.tests("non-inferiority", differences, plan.NORMALISED_MARGIN)
    if not tasks:
        outcome = "pending" if any(v is None for v in entry.values()) else "no claim"
    elif len(differences) < 2:
        outcome = "not run" if differences.empty else "not"
    else:
        outcome = "consistent with" if p_supported < plan.ALPHA else "not"
    return {
        "tasks": ", ".join(tasks),
        "n": len(differences),
        "mean": mean,
        "low95": low,
        "high95": high,
        "p_supported": p_supported,
        "outcome": outcome,
    }


# ---------------------------------------------------------------- tables


def _header(title: str, label: str) -> list[str]:
    return [
        f"# {title}",
        "",
        "Generated by `make tables` (experiments/studies/mini/paper_shape_report.py) from the finished run records "
        f"under `{label}` and the plan of experiments/studies/mini/paper_shape.py (protocol and analysis plan: "
        "docs/mini-base.md). Do not edit by hand. **A small-scale replication on CPU (MPNet-base at the paper's "
        "N and d, a few hundred steps), never the paper's numbers.**",
        "",
    ]


def main_frame(study: ShapeStudy) -> pd.DataFrame:
    rows = []
    for arm in ARMS:
        for task in study.tasks:
            mine = study.report[(study.report["arm"] == arm) & (study.report["task"] == task)].sort_values("seed")
            last = (mine["best_epoch"] == mine["last_epoch"]).sum()
            rows.append(
                {
                    "arm": arm,
                    "task": task,
                    **fmt.cell_stats(mine["score"]),
                    "lr": mine["lr"].iloc[0] if len(mine) else _planned_lr(study, arm, task),
                    "trainable_params": int(mine["trainable_params"].median()) if len(mine) else None,
                    "best_epoch_last": int(last),
                    "seeds": " ".join(str(s) for s in mine["seed"]),
                }
            )
    frame = pd.DataFrame(rows)
    frame["trainable_params"] = frame["trainable_params"].astype("Int64")
    return frame


def _planned_lr(study: ShapeStudy, arm: str, task: str) -> float | None:
    choice = study.choices.get((arm, task))
    return None if choice is None else choice.lr


def main_markdown(study: ShapeStudy, frame: pd.DataFrame, label: str) -> str:
    lines = _header("Main table: MPNet-base, GPart and Uni-LoRA at d = 23,040", label)
    seeds = ", ".join(map(str, paper_shape.REPORT_SEEDS))
    lines += [
        f"Test metric × 100 on the GLUE dev split, scored once at the validation-picked epoch: median ± sample std "
        f"over seeds {seeds} for GPart and Uni-LoRA (θ lr checked on seed 0's validation split, `checks.md`); FT and "
        "LP are single seed-1 runs at the MiniLM study's lrs, level lines only. Trainable parameters exclude the "
        "task head. *last*: runs whose best validation epoch is the last one.",
        "",
    ]
    header = ["Arm", "Trainable params", *map(fmt.task_label, study.tasks)]
    header += [f"lr {fmt.TASK_NAMES.get(t, t)}" for t in study.tasks] + ["last"]
    rows = fmt.main_rows(frame, ARMS, study.tasks)
    return "\n".join(lines + fmt.table(header, rows) + [""])


def checks_frame(study: ShapeStudy) -> pd.DataFrame:
    rows = [
        {"task": task, "arm": label, "lr": lr, "validation": score, "chosen": lr == choice.lr}
        for (label, task), choice in study.choices.items()
        for lr, score in sorted(choice.scores.items())
    ]
    return pd.DataFrame(rows, columns=["task", "arm", "lr", "validation", "chosen"])


def checks_markdown(study: ShapeStudy, frame: pd.DataFrame, label: str) -> str:
    lines = _header("The θ-lr checks (seed 0, validation split)", label)
    lines += [
        "Each method starts from the θ lr the MiniLM study chose for it on the task (N/d is the same, so under "
        "AdamW the same lr moves each adapted weight by the same step) and checks that lr ÷ √10, × 1 and × √10 on "
        "seed 0's validation split (best epoch; ties to the smaller lr). While the winner sits on an edge of the "
        "points run so far, one more point √10 beyond it, at most three (docs/mini-base.md, \"Deviations\"). "
        "Scores × 100; **bold**: chosen.",
        "",
    ]
    rows = []
    for (arm_label, task), choice in study.choices.items():
        cells = [
            ("**{}: {}**" if lr == choice.lr else "{}: {}").format(
                fmt.lr(lr), "pending" if score is None else fmt.num(100 * score)
            )
            for lr, score in sorted(choice.scores.items())
        ]
        rows.append([fmt.TASK_NAMES.get(task, task), arm_label, ", ".join(cells), fmt.lr(choice.lr)])
    lines += fmt.table(["task", "arm", "validation score × 100 by θ lr", "chosen lr"], rows)
    return "\n".join(lines + [""])


# ---------------------------------------------------------------- post hoc: SST-2 lr sensitivity


def sensitivity_cells(study: ShapeStudy) -> dict:
    """(arm, task, role) -> (lr, test score per seed): each checked arm at its chosen and its runner-up lr (the report
    and the sensitivity frames each hold one lr per arm and task)."""
    cells = {}
    for task in paper_shape.SENSITIVITY_TASKS:
        for arm in paper_shape.CHECKED:
            choice = study.choices.get((arm, task))
            if choice is None or choice.lr is None:
                continue
            second = paper_shape.runner_up(choice.scores, choice.lr)
            cells[(arm, task, "chosen")] = (choice.lr, plan.scores(study.report, arm, task))
            cells[(arm, task, "runner-up")] = (second, plan.scores(study.sensitivity, arm, task))
    return cells


def sensitivity_frames(study: ShapeStudy) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The scores at each (arm, lr role), and GPart − Uni-LoRA for the four pairings of roles (no test)."""
    cells = sensitivity_cells(study)
    scores = pd.DataFrame(
        [
            {
                "task": task,
                "arm": arm,
                "role": role,
                "lr": lr,
                "validation_seed0": study.choices[(arm, task)].scores.get(lr),
                **{f"test_s{s}": values.get(s, math.nan) for s in paper_shape.REPORT_SEEDS},
                "median": values.median() if len(values) else math.nan,
            }
            for (arm, task, role), (lr, values) in cells.items()
        ]
    )
    pairs = []
    for task in paper_shape.SENSITIVITY_TASKS:
        for g_role, u_role in itertools.product(("chosen", "runner-up"), repeat=2):
            g, u = cells.get((plan.GPART, task, g_role)), cells.get((plan.UNILORA, task, u_role))
            if g is None or u is None:
                continue
            differences = plan.paired(g[1], u[1])
            mean, low, high = plan.interval(differences)
            pairs.append(
                {
                    "task": task,
                    "gpart_role": g_role,
                    "unilora_role": u_role,
                    "gpart_lr": g[0],
                    "unilora_lr": u[0],
                    "n": len(differences),
                    "mean": mean,
                    "low95": low,
                    "high95": high,
                }
            )
    return scores, pd.DataFrame(pairs)


def sensitivity_markdown(study: ShapeStudy, scores: pd.DataFrame, pairs: pd.DataFrame, label: str) -> str:
    lines = _header("Post hoc: how C1's SST-2 reading depends on the lr choice (exploratory)", label)
    seeds = ", ".join(map(str, paper_shape.REPORT_SEEDS))
    lines += [
        "Chosen by the outcome, after every report run's test score was known (docs/mini-base.md, \"Deviations\"): "
        f"each checked arm also runs seeds {seeds} at its check's runner-up lr (the best of its other points, ties "
        "to the smaller lr). No test, no Holm, no verdict: the primary C1 rows in `claims.md` stand. "
        f"{len(study.sensitivity)} of {study.sensitivity_planned} runs finished.",
        "",
        "## Test scores × 100 by lr",
        "",
    ]
    seed_columns = [f"test_s{s}" for s in paper_shape.REPORT_SEEDS]
    rows = [
        [fmt.TASK_NAMES.get(r.task, r.task), r.arm, r.role, fmt.lr(r.lr), _score(r.validation_seed0)]
        + [fmt.num(getattr(r, c)) for c in seed_columns]
        + [fmt.num(r.median)]
        for r in scores.itertuples()
    ]
    header = ["task", "arm", "lr role", "θ lr", "seed-0 validation"] + [f"seed {s}" for s in paper_shape.REPORT_SEEDS]
    lines += fmt.table(header + ["median"], rows) + ["", "## GPart − Uni-LoRA, paired by seed", ""]
    rows = [
        [
            fmt.TASK_NAMES.get(r.task, r.task),
            f"{fmt.lr(r.gpart_lr)} ({r.gpart_role})",
            f"{fmt.lr(r.unilora_lr)} ({r.unilora_role})",
            str(r.n),
            fmt.num(r.mean, sign=True),
            fmt.interval(r.low95, r.high95),
        ]
        for r in pairs.itertuples()
    ]
    lines += fmt.table(["task", "GPart lr", "Uni-LoRA lr", "pairs", "mean Δ", "95% interval"], rows)
    return "\n".join(lines + [""])


def _score(validation: float | None) -> str:
    return "—" if validation is None else fmt.num(100 * validation)


# ---------------------------------------------------------------- claim C1

CAN = (
    "whether, at the paper's N = 14,155,776, d = 23,040 and group size, on a second pretrained encoder family, GPart "
    "stays within 1 point of Uni-LoRA (or falls behind by more) on SST-2 and STS-B after a few hundred steps, each "
    "at its checked θ lr"
)
CANNOT = (
    "RoBERTa itself, full training sets and the paper's epochs, other tasks; whether GPart is *better* (only "
    "non-inferiority is tested); differences under about 2–3 points (3 seeds); FT and LP are untuned single runs"
)


def claims_frame(study: ShapeStudy) -> pd.DataFrame:
    columns = ["model", "task", "n", "mean", "low95", "high95"]
    columns += ["p_supported", "holm_supported", "p_contradicted", "holm_contradicted", "verdict", "complete"]
    frames = [primary_c1(study).assign(model=BASE_LABEL), study.minilm_c1.assign(model=MINILM_LABEL)]
    return pd.concat([f[columns] for f in frames], ignore_index=True)


def claims_markdown(study: ShapeStudy, frame: pd.DataFrame, pooled: dict, label: str) -> str:
    lines = _header("Claim C1 at the paper's shape: GPart ≥ Uni-LoRA at equal d", label)
    lines += ["## Admission", ""]
    lines += [
        "A task carries the claim if FT − LP ≥ 3 points on the best validation score of seed 1's level-line runs "
        "(docs/mini-base.md: this study runs no seed 0 FT or LP).",
        "",
    ]
    entry = plan.admitted(admission(study))
    rows = [
        [
            fmt.TASK_NAMES.get(r.task, r.task),
            fmt.num(r.ft),
            fmt.num(r.lp),
            fmt.num(r.ft - r.lp, sign=True),
            {True: "yes", False: "no", None: "pending"}[entry.get(r.task)],
        ]
        for r in admission(study).itertuples()
    ]
    lines += fmt.table(["task", "FT (validation)", "LP (validation)", "FT − LP", "admitted (≥ 3)"], rows) + [""]
    lines += ["## C1 per task, beside the CPU study's", ""]
    lines += [
        "Δ = GPart − Uni-LoRA in points (test metric × 100), paired by seed; one-sided Student t, α = 0.05, "
        "margin m = 1: *supported* if H0: Δ ≤ −m is rejected, *contradicted* if H0: Δ ≥ −m is rejected, after Holm "
        "over the study's tasks (each study its own families); otherwise *inconclusive*. *interim*: fewer pairs "
        "than seeds planned.",
        "",
    ]
    rows = [
        [
            r.model,
            fmt.TASK_NAMES.get(r.task, r.task),
            str(r.n),
            fmt.num(r.mean, sign=True),
            fmt.interval(r.low95, r.high95),
            f"{fmt.p_value(r.p_supported)} / {fmt.p_value(r.holm_supported)}",
            f"{fmt.p_value(r.p_contradicted)} / {fmt.p_value(r.holm_contradicted)}",
            f"**{r.verdict}**" + ("" if r.complete or r.n == 0 else f" (interim, n = {r.n})"),
        ]
        for r in frame.itertuples()
    ]
    header = ["model", "task", "pairs", "mean Δ", "95% interval", "p supported (raw / Holm)"]
    lines += fmt.table(header + ["p contradicted (raw / Holm)", "verdict"], rows) + [""]
    lines += ["## Secondary: pooled over admitted tasks on the normalised score", ""]
    lines += [
        "Per seed, the mean over admitted tasks of (score − LP) / (FT − LP), seed 1's FT and LP standing for every "
        "seed; GPart − Uni-LoRA, non-inferiority at margin 0.1 on this scale; no Holm.",
        "",
    ]
    row = [
        pooled["tasks"] or "—",
        str(pooled["n"]),
        fmt.num(pooled["mean"], 3, sign=True),
        fmt.interval(pooled["low95"], pooled["high95"]),
        fmt.p_value(pooled["p_supported"]),
        f"**{pooled['outcome']}**",
    ]
    lines += fmt.table(["tasks", "seeds", "mean Δ (normalised)", "95% interval", "p supported", "outcome"], [row])
    convergence = plan.convergence(study.report)
    lines += ["", "## Convergence", ""]
    rows = [[r.row, str(r.runs), str(int(r.at_last)), f"{100 * r.share:.0f}%"] for r in convergence.itertuples()]
    lines += fmt.table(["arm", "runs", "best epoch = last", "share"], rows) + [""]
    lines += [plan.convergence_sentence(convergence), ""]
    lines += ["## What this study can and cannot decide", "", f"It can decide {CAN}.", f"It cannot decide: {CANNOT}."]
    return "\n".join(lines + [""])


# ---------------------------------------------------------------- figure


COLOURS = {plan.GPART: "black", plan.UNILORA: "tab:blue", plan.FT: "tab:green", plan.LP: "tab:red"}
LEVEL_STYLES = {plan.FT: "--", plan.LP: ":"}


def _draw_task(axis, task: str, models) -> None:
    """One task's panel: per model, each seed's score and the median of GPart and Uni-LoRA, FT and LP as marks."""
    for x, (_, report) in enumerate(models):
        for offset, arm in ((-0.12, plan.GPART), (0.12, plan.UNILORA)):
            values = plan.scores(report, arm, task)
            if not values.empty:
                axis.scatter([x + offset] * len(values), values, s=14, color=COLOURS[arm], alpha=0.45)
                axis.scatter([x + offset], [values.median()], s=70, marker="_", color=COLOURS[arm], linewidths=2.5)
        for arm, style in LEVEL_STYLES.items():
            values = plan.scores(report, arm, task)
            if not values.empty:
                axis.hlines(values.median(), x - 0.35, x + 0.35, colors=COLOURS[arm], linestyles=style)
    axis.set_xticks(range(len(models)), [label.replace(" (", "\n(") for label, _ in models], fontsize=8)
    axis.set_xlim(-0.6, len(models) - 0.4)
    axis.set_title(fmt.task_label(task), fontsize=10)
    axis.set_ylabel("test score × 100", fontsize=8)
    axis.grid(True, axis="y", alpha=0.3)


def c1_figure(study: ShapeStudy, path: Path) -> bool:
    """Per task: GPart and Uni-LoRA test scores (each seed, and the median) on MiniLM-L6 and on MPNet-base, each
    model's FT and LP median as level marks across its group; one legend below the panels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.lines
    import matplotlib.pyplot as plt

    if study.report.empty:
        return False
    models = ((MINILM_LABEL, study.minilm_report), (BASE_LABEL, study.report))
    figure, axes = plt.subplots(1, len(study.tasks), figsize=(5.0 * len(study.tasks), 4.4), squeeze=False)
    for axis, task in zip(axes[0], study.tasks):
        _draw_task(axis, task, models)
    handles = [
        matplotlib.lines.Line2D(
            [], [], color=COLOURS[arm], marker="o", linestyle="", label=f"{arm} (seed; bar: median)"
        )
        for arm in (plan.GPART, plan.UNILORA)
    ] + [
        matplotlib.lines.Line2D([], [], color=COLOURS[arm], linestyle=style, label=f"{arm} (median)")
        for arm, style in LEVEL_STYLES.items()
    ]
    figure.legend(handles=handles, loc="lower center", ncol=4, fontsize=8, frameon=False)
    figure.suptitle(
        "C1 at two shapes (CPU, not the paper's numbers): GPart vs Uni-LoRA at equal d, test scores per seed",
        fontsize=9,
    )
    figure.tight_layout(rect=(0, 0.07, 1, 0.94))
    figure.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(figure)
    return True


# ---------------------------------------------------------------- writing


def compute_text(results: Path) -> str:
    """Runs, run-hours and the wall time with a run in flight, from every finished record's attempts."""
    span = summary.in_flight_span(results)
    if span is None:
        return summary.compute_line(results)
    hours, first, last = span
    return f"{summary.compute_line(results)} {hours:.1f} h of wall with a run in flight, {first} to {last} UTC."


def index_markdown(study: ShapeStudy, label: str, files: list[str], figures: list[str], compute: str = "") -> str:
    finished = len(study.report)
    state = "complete" if finished == study.planned and not study.waiting and finished else "in progress"
    lines = _header("Paper-shape study: generated tables", label)
    lines += [f"{finished} of {study.planned} report runs known so far have finished ({state}).", ""]
    if study.sensitivity_planned:
        done = len(study.sensitivity)
        lines += [
            f"Post hoc (`sensitivity.md`): {done} of {study.sensitivity_planned} lr-sensitivity runs finished.",
            "",
        ]
    lines += [f"Compute (every finished record): {compute}", ""] if compute else []
    lines += [f"- [{name}]({name})" for name in files if name.endswith(".md")]
    lines += [f"- figure: [`../figures/{name}`](../figures/{name})" for name in figures]
    if study.waiting:
        lines += ["", "Waiting:", ""] + [f"- {line}" for line in study.waiting]
    if study.left_out:
        lines += ["", "Records under `runs/` that are not in the plan (not used):", ""]
        lines += [f"- `{run_id}`" for run_id in study.left_out]
    return "\n".join(lines) + "\n"


def write(
    results: Path,
    out: Path | None = None,
    figures: bool = True,
    force: bool = False,
    label: str | None = None,
    minilm_results: Path = driver.DEFAULT_RESULTS,
) -> list[Path]:
    """Write `<out>/tables/` (and `<out>/figures/`) for the paper-shape study in `results`, swapped in atomically."""
    from experiments.report.writing import staged_outputs

    results = Path(results)
    out = Path(out) if out is not None else results
    label = label or driver.shown(results / "runs")
    study = collect(results, minilm_results)
    main, checks, claims = main_frame(study), checks_frame(study), claims_frame(study)
    sensitivity, pairings = sensitivity_frames(study)
    pooled = pooled_c1(study)
    texts = {
        "main.md": main_markdown(study, main, label),
        "main.csv": fmt.rounded(main).to_csv(index=False),
        "checks.md": checks_markdown(study, checks, label),
        "checks.csv": fmt.rounded(checks, keep=("lr",)).to_csv(index=False),
        "claims.md": claims_markdown(study, claims, pooled, label),
        "claims.csv": fmt.rounded(claims).to_csv(index=False),
        "sensitivity.md": sensitivity_markdown(study, sensitivity, pairings, label),
        "sensitivity.csv": fmt.rounded(sensitivity).to_csv(index=False),
        "sensitivity-pairs.csv": fmt.rounded(pairings, keep=("gpart_lr", "unilora_lr")).to_csv(index=False),
    }
    with staged_outputs(out, figures, force, shown=driver.shown) as staged:
        drawn = ["c1-by-model.png"] if figures and c1_figure(study, staged["figures"] / "c1-by-model.png") else []
        texts["README.md"] = index_markdown(study, label, list(texts), drawn, compute_text(results))
        for name, text in texts.items():
            (staged["tables"] / name).write_text(text)
    return staged.written
