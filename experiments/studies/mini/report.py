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
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from experiments.runner import records
from experiments.studies.mini import driver
from experiments.studies.mini import verdicts as plan

TASK_NAMES = {"sst2": "SST-2", "stsb": "STS-B"}
METRIC_NAMES = {"accuracy": "acc", "pearson": "Pearson"}
TASK_METRICS = {"sst2": "accuracy", "stsb": "pearson"}
# Display order of the arms: references first, then the method and its variants.
ARM_ORDER = ("FT", "LoRA", "Uni-LoRA", "GPart", "GPart (non-isometric)", "GPart (balanced)", "LP")
REPORT_COLUMNS = [
    "arm",
    "task",
    "seed",
    "sweep",
    "d",
    "score",
    "trainable_params",
    "best_epoch",
    "last_epoch",
    "lr",
    "head_lr",
    "metric",
    "curve",
    "wall_s",
    "run_id",
]


def is_study(runs: Path) -> bool:
    """Whether a runs folder is the study's (`<results>/runs` with `<results>/selection/runs` beside it)."""
    runs = Path(runs)
    return runs.name == "runs" and (runs.parent / "selection" / "runs").is_dir()


@dataclass
class Study:
    design: driver.Design
    tasks: list[str]
    choices: dict  # (arm label, task) -> driver.Choice
    report: pd.DataFrame  # REPORT_COLUMNS, one row per finished planned run
    planned: int  # report + d-sweep runs known so far
    waiting: list[str] = field(default_factory=list)
    left_out: list[str] = field(default_factory=list)  # run ids under runs/ that are not in the plan
    zero_shot: dict = field(
        default_factory=dict
    )  # experiments/studies/mini/zero_shot.py's file: {"stsb": {"pearson": ..}}

    def chosen(self, label: str, task: str) -> float | None:
        choice = self.choices.get((label, task))
        return None if choice is None else choice.lr

    def validation(self, label: str, task: str) -> float:
        """Seed 0's best validation score × 100 at the arm's chosen lr (NaN while pending)."""
        choice = self.choices.get((label, task))
        if choice is None or choice.lr is None or choice.scores.get(choice.lr) is None:
            return math.nan
        return 100.0 * choice.scores[choice.lr]

    @property
    def admission(self) -> pd.DataFrame:
        return pd.DataFrame(
            [{"task": t, "ft": self.validation(plan.FT, t), "lp": self.validation(plan.LP, t)} for t in self.tasks],
            columns=["task", "ft", "lp"],
        )

    @property
    def main_d(self) -> int:
        return driver.MAIN_D


def _row(run: driver.Run, record: dict) -> dict:
    epochs = record.get("epochs") or []
    metric = record["metric"]
    curve = [
        (int(e["epoch"]), 100.0 * float(e["validation"][metric]))
        for e in epochs
        if isinstance(e.get("validation"), dict) and e["validation"].get(metric) is not None
    ]
    main_d = driver.MAIN_D if run.arm.method in ("gpart", "unilora") else math.nan
    return {
        "arm": run.arm.label,
        "task": run.task,
        "seed": run.seed,
        "sweep": run.d is not None,
        "d": run.d if run.d is not None else main_d,
        "score": 100.0 * float(record["test_metric"]),
        "trainable_params": int(record["trainable_params"]),
        "best_epoch": record.get("best_epoch"),
        "last_epoch": max((int(e["epoch"]) for e in epochs), default=None),
        "lr": run.lr,
        "head_lr": run.head_lr,
        "metric": metric,
        "curve": curve,
        "wall_s": sum(a.get("wall_s", 0.0) for a in record.get("attempts") or []),
        "run_id": record.get("run_id"),
    }


def collect(results: Path, tasks=driver.TASKS) -> Study:
    """The study as its finished records and the driver's plan define it (read-only)."""
    results = Path(results)
    design = driver.design_of(results)
    now = driver.state(results, tasks, design=design)
    rows, planned_ids, planned = [], set(), 0
    for run in now.ready:
        if run.stage != "report":
            continue
        planned += 1
        path = driver.record_path(run, results)
        planned_ids.add(path.parent.name)
        record = records.read(path) or {}
        if record.get("status") == "finished" and record.get("test_metric") is not None:
            rows.append(_row(run, record))
    report = pd.DataFrame(rows, columns=REPORT_COLUMNS)
    report["sweep"] = report["sweep"].astype(bool)
    present = sorted(p.parent.name for p in (results / "runs").glob("*/record.json"))
    left_out = [run_id for run_id in present if run_id not in planned_ids]
    from experiments.studies.mini import zero_shot

    return Study(
        design, list(tasks), now.choices, report, planned, list(now.waiting), left_out, zero_shot.read(results)
    )


# ---------------------------------------------------------------- formatting


def _num(value: float, digits: int = 2, sign: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    text = f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"
    return text.replace("-", "−")


def _p(value: float) -> str:
    if value is None or math.isnan(value):
        return "—"
    return "<0.0001" if value < 1e-4 else f"{value:.4f}"


def _params(count) -> str:
    if count is None or (isinstance(count, float) and math.isnan(count)):
        return "—"
    count = int(count)
    return f"{count / 1e6:.2f}M" if count >= 1_000_000 else f"{count:,}"


def _lr(value) -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:g}"


def task_label(task: str) -> str:
    metric = TASK_METRICS.get(task, "")
    return f"{TASK_NAMES.get(task, task)} ({METRIC_NAMES.get(metric, metric)})"


def _table(header: list[str], rows: list[list[str]], align: str | None = None) -> list[str]:
    rule = align or "|" + "|".join("---" for _ in header) + "|"
    return ["| " + " | ".join(header) + " |", rule] + [
        "| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows
    ]


def _arms(study: Study) -> list[str]:
    labels = list(study.design.arms)
    return [a for a in ARM_ORDER if a in labels] + [a for a in labels if a not in ARM_ORDER]


def _round(frame: pd.DataFrame, digits: int = 4, keep=("lr", "head_lr")) -> pd.DataFrame:
    """Floats to `digits` decimals (what the Markdown shows, without float noise); learning rates kept as chosen."""
    frame = frame.copy()
    numeric = [c for c in frame.select_dtypes("float").columns if c not in keep]
    frame[numeric] = frame[numeric].round(digits)
    return frame


def _header(study: Study, title: str, label: str) -> list[str]:
    lines = [
        f"# {title}",
        "",
        f"Generated by `make tables` (experiments/studies/mini/report.py) from the finished run records "
        f"under `{label}` and the plan of experiments/studies/mini/driver.py (protocol and analysis plan: docs/mini.md). Do not "
        "edit by hand. **A small-scale replication on CPU (MiniLM-L6), never the paper's numbers.**",
        "",
    ]
    if study.design is driver.SMOKE:
        lines += ["**SMOKE**: tiny runs that check the pipeline (`--smoke`). Nothing here is a result.", ""]
    return lines


def cell_stats(scores: pd.Series) -> dict:
    values = scores.to_numpy(dtype=float)
    n = len(values)
    return {
        "n": n,
        "median": float(np.median(values)) if n else math.nan,
        "std": float(np.std(values, ddof=1)) if n > 1 else math.nan,
        "mean": float(values.mean()) if n else math.nan,
    }


def _cell_text(stat: dict, pending: bool = True) -> str:
    if stat["n"] == 0:
        return "— (pending)" if pending else "—"
    spread = f" ± {_num(stat['std'])}" if stat["n"] > 1 else ""
    return f"{_num(stat['median'])}{spread} (n={stat['n']})"


# ---------------------------------------------------------------- main table


def main_frame(study: Study) -> pd.DataFrame:
    """Per arm and task: n, median, sample std and mean over the report seeds; trainable params; lrs; the share of
    runs whose best validation epoch is the last."""
    cells = plan.main_cells(study.report)
    rows = []
    for arm in _arms(study):
        source = study.design.arms[arm].lr_from or arm
        for task in study.tasks:
            mine = cells[(cells["arm"] == arm) & (cells["task"] == task)].sort_values("seed")
            stat = cell_stats(mine["score"])
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
    lines = _header(study, "Main table: every arm at its chosen lr", label)
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
        *(task_label(t) for t in study.tasks),
        *(f"lr {TASK_NAMES.get(t, t)}" for t in study.tasks),
        "last",
    ]
    rows = []
    for arm in _arms(study):
        mine = frame[frame["arm"] == arm].set_index("task")
        params = mine["trainable_params"].dropna()
        runs, last = int(mine["n"].sum()), int(mine["best_epoch_last"].sum())
        rows.append(
            [
                arm,
                _params(params.iloc[0]) if len(params) else "—",
                *(_cell_text(mine.loc[t].to_dict()) for t in study.tasks),
                *(_lr(mine.loc[t, "lr"]) for t in study.tasks),
                f"{last}/{runs}" if runs else "—",
            ]
        )
    if study.zero_shot:
        rows.append(
            [
                "*zero-shot cosine, mean-pooled (no training)*",
                "0",
                *(_num(study.zero_shot[t]["pearson"]) if t in study.zero_shot else "—" for t in study.tasks),
                *("—" for _ in study.tasks),
                "—",
            ]
        )
    lines += _table(header, rows)
    head = ", ".join(f"{TASK_NAMES.get(t, t)} {_lr(study.chosen(plan.LP, t))}" for t in study.tasks)
    lines += ["", f"Head lr (LP's choice, shared by every arm of the task): {head}.", ""]
    return "\n".join(lines)


# ---------------------------------------------------------------- d sweep


def sweep_frame(study: Study) -> pd.DataFrame:
    """GPart and Uni-LoRA at every d: the sweep's seeds at its d, the report seeds at the main d."""
    report = study.report
    rows = []
    ds = sorted({*study.design.d_sweep, driver.MAIN_D})
    for arm in study.design.d_sweep_arms:
        source = study.design.arms[arm]
        for task in study.tasks:
            for d in ds:
                if d == driver.MAIN_D:
                    mine = plan.main_cells(report)
                    mine = mine[(mine["arm"] == arm) & (mine["task"] == task)]
                    lr = study.chosen(source.label, task)
                else:
                    mine = report[
                        report["sweep"] & (report["arm"] == arm) & (report["task"] == task) & (report["d"] == d)
                    ]
                    chosen = study.chosen(source.label, task)
                    lr = None if chosen is None else driver.scaled_lr(chosen, d)
                mine = mine.sort_values("seed")
                rows.append(
                    {
                        "arm": arm,
                        "task": task,
                        "d": d,
                        **cell_stats(mine["score"]),
                        "lr": lr,
                        "trainable_params": int(mine["trainable_params"].median()) if len(mine) else None,
                        "seeds": " ".join(str(s) for s in mine["seed"]),
                    }
                )
    frame = pd.DataFrame(
        rows, columns=["arm", "task", "d", "n", "median", "std", "mean", "lr", "trainable_params", "seeds"]
    )
    frame["trainable_params"] = frame["trainable_params"].astype("Int64")
    return frame


def sweep_markdown(study: Study, frame: pd.DataFrame, label: str) -> str:
    lines = _header(study, "The d sweep (claim C4)", label)
    lines += [
        f"GPart and Uni-LoRA at d = {', '.join(f'{d:,}' for d in study.design.d_sweep)} (seeds "
        f"{', '.join(map(str, study.design.d_sweep_seeds))}) and at the main d = {driver.MAIN_D:,} (the report "
        "runs, seeds " + ", ".join(map(str, study.design.report_seeds)) + "). θ lr = the main d's chosen lr × "
        f"√({driver.MAIN_D:,}/d); head lr: the task's. Test metric × 100: median ± sample std (n).",
        "",
    ]
    header = ["Arm", "d", *(task_label(t) for t in study.tasks), *(f"θ lr {TASK_NAMES.get(t, t)}" for t in study.tasks)]
    rows = []
    for (arm, d), group in frame.groupby(["arm", "d"], sort=False):
        by_task = group.set_index("task")
        rows.append(
            [
                arm,
                f"{int(d):,}",
                *(_cell_text(by_task.loc[t].to_dict()) for t in study.tasks),
                *(_lr(by_task.loc[t, "lr"]) for t in study.tasks),
            ]
        )
    lines += _table(header, rows) + [""]
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


def admission_rows(study: Study) -> list[list[str]]:
    rows = []
    entry = plan.admitted(study.admission)
    for row in study.admission.itertuples():
        status = {True: "yes", False: "no: its rows read *no claim*", None: "pending"}[entry[row.task]]
        rows.append(
            [TASK_NAMES.get(row.task, row.task), _num(row.ft), _num(row.lp), _num(row.ft - row.lp, sign=True), status]
        )
    return rows


ADMISSION_HEADER = ["task", "FT (validation)", "LP (validation)", "FT − LP", f"admitted (≥ {plan.ADMISSION_GAP:g})"]


def selection_markdown(study: Study, frame: pd.DataFrame, label: str) -> str:
    lines = _header(study, "Learning-rate selection and admission (seed 0, validation split)", label)
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
            text = f"{row.lr:g}: {'…' if math.isnan(row.validation) else _num(row.validation)}"
            text = f"**{text}**" if row.chosen else (f"*{text}*" if row.extension else text)
            cells.append(text)
        rows.append([TASK_NAMES.get(task, task), label_, ", ".join(cells), _lr(choice.lr)])
    lines += _table(header, rows)
    lines += [
        "",
        "**Admission rule** (applied before any claim is read): a task carries claims only if FT beats LP by "
        f"at least {plan.ADMISSION_GAP:g} points on seed 0's validation split, each at its chosen lr.",
        "",
    ]
    lines += _table(ADMISSION_HEADER, admission_rows(study)) + [""]
    return "\n".join(lines)


# ---------------------------------------------------------------- claims


def claims_frames(study: Study) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    seeds = len(study.design.report_seeds)
    return (
        plan.primary(study.report, study.admission, study.tasks, seeds),
        plan.secondary(study.report, study.admission, study.tasks),
        plan.c4(study.report, study.admission, study.tasks, study.design.d_sweep_arms),
        plan.convergence(study.report),
    )


def claims_csv(primary: pd.DataFrame, secondary: pd.DataFrame, c4: pd.DataFrame) -> pd.DataFrame:
    claims = {c.name: c for c in plan.PRIMARY}
    rows = []
    for row in primary.itertuples():
        rows.append(
            {
                "claim": row.claim,
                "analysis": "primary",
                "scope": row.task,
                "comparison": row.comparison,
                "test": row.test,
                "margin": row.margin,
                "n": row.n,
                "mean": row.mean,
                "low95": row.low95,
                "high95": row.high95,
                "low90": row.low90,
                "high90": row.high90,
                "p_supported": row.p_supported,
                "holm_supported": row.holm_supported,
                "p_contradicted": row.p_contradicted,
                "holm_contradicted": row.holm_contradicted,
                "parameter_ratio": row.parameter_ratio,
                "verdict": row.verdict,
                "can_decide": claims[row.claim].can,
                "cannot_decide": claims[row.claim].cannot,
            }
        )
    for row in secondary.itertuples():
        rows.append(
            {
                "claim": row.claim,
                "analysis": "secondary (normalised, pooled)",
                "scope": row.tasks,
                "comparison": row.comparison,
                "test": row.test,
                "margin": row.margin,
                "n": row.n,
                "mean": row.mean,
                "low95": row.low95,
                "high95": row.high95,
                "p_supported": row.p_supported,
                "p_contradicted": row.p_contradicted,
                "verdict": row.outcome,
                "can_decide": claims[row.claim].can,
                "cannot_decide": claims[row.claim].cannot,
            }
        )
    for row in c4.itertuples():
        rows.append(
            {
                "claim": "C4",
                "analysis": "secondary (d sweep)",
                "scope": row.scope,
                "comparison": row.comparison,
                "test": "95% interval above 0",
                "n": row.n,
                "mean": row.mean,
                "low95": row.low95,
                "high95": row.high95,
                "gap_to_ft": row.gap_to_ft,
                "gap_low95": row.gap_low95,
                "gap_high95": row.gap_high95,
                "verdict": row.outcome,
                "can_decide": plan.C4_CAN,
                "cannot_decide": plan.C4_CANNOT,
            }
        )
    columns = [
        "claim",
        "analysis",
        "scope",
        "comparison",
        "test",
        "margin",
        "n",
        "mean",
        "low95",
        "high95",
        "low90",
        "high90",
        "p_supported",
        "holm_supported",
        "p_contradicted",
        "holm_contradicted",
        "parameter_ratio",
        "gap_to_ft",
        "gap_low95",
        "gap_high95",
        "verdict",
        "can_decide",
        "cannot_decide",
    ]
    return _round(pd.DataFrame(rows, columns=columns), 4)


def _interval(low: float, high: float) -> str:
    return "—" if math.isnan(low) else f"[{_num(low, sign=True)}, {_num(high, sign=True)}]"


def _verdict_text(verdict: str, complete: bool = True, n: int = 0) -> str:
    text = f"**{verdict}**"
    if verdict in ("supported", "contradicted", "inconclusive") and not complete:
        text += f" (interim, n = {n})"
    return text


def summary_rows(study: Study, primary: pd.DataFrame, secondary: pd.DataFrame, c4: pd.DataFrame) -> list[list[str]]:
    rows = []
    for claim in plan.PRIMARY:
        mine = primary[primary["claim"] == claim.name].set_index("task")
        per_task = "; ".join(f"{TASK_NAMES.get(t, t)}: {mine.loc[t, 'verdict']}" for t in study.tasks)
        pooled = secondary.set_index("claim").loc[claim.name, "outcome"]
        rows.append([claim.name, claim.statement, per_task, pooled, claim.can, claim.cannot])
    c4_rows = c4[c4["arm"] == plan.GPART]
    per_task = (
        "; ".join(
            f"{TASK_NAMES.get(r.scope, r.scope) if r.scope in study.tasks else 'pooled'}: {r.outcome}"
            for r in c4_rows.itertuples()
        )
        or "not run"
    )
    rows.insert(
        3,
        [
            "C4",
            "GPart's score rises with d toward FT",
            "— (a secondary claim: no Holm family)",
            f"d = 28,800 − d = 288: {per_task}",
            plan.C4_CAN,
            plan.C4_CANNOT,
        ],
    )
    return rows


def claims_markdown(
    study: Study,
    primary: pd.DataFrame,
    secondary: pd.DataFrame,
    c4: pd.DataFrame,
    convergence: pd.DataFrame,
    label: str,
) -> str:
    lines = _header(study, "Claims C1–C5 at CPU scale, tested as docs/mini.md's analysis plan states", label)
    lines += [
        f"Differences Δ in points (test metric × 100), paired by (task, seed) over seeds "
        f"{', '.join(map(str, study.design.report_seeds))}; each arm at its own chosen lr. Verdicts are this "
        "study's, for MiniLM-L6 after a few hundred steps, never the paper's.",
        "",
        "## Summary",
        "",
    ]
    lines += _table(
        [
            "claim",
            "paper's statement",
            "primary verdict per task (Holm)",
            "pooled, normalised (secondary)",
            "this study can decide",
            "it cannot decide",
        ],
        summary_rows(study, primary, secondary, c4),
    )
    lines += [
        "",
        "## Admission",
        "",
        f"A task carries claims only if FT − LP ≥ {plan.ADMISSION_GAP:g} points on seed 0's validation split, "
        "each at its chosen lr (selection records).",
        "",
    ]
    lines += _table(ADMISSION_HEADER, admission_rows(study))
    lines += [
        "",
        "## Primary tests, per task",
        "",
        f"One-sided Student t on the paired differences (n − 1 degrees of freedom), α = {plan.ALPHA:g}, margin "
        f"m = {plan.MARGIN:g} point. Non-inferiority (C1, C2): *supported* if H0: Δ ≤ −m is rejected, "
        "*contradicted* if H0: Δ ≥ −m is rejected; C2 also needs LoRA/GPart trainable parameters ≥ "
        f"{plan.PARAM_RATIO:g} (else *contradicted*). Superiority (C3): H0: Δ ≤ 0 / H0: Δ ≥ 0. Equivalence "
        "(C5, two one-sided tests): *supported* if both H0: Δ ≤ −m and H0: Δ ≥ m are rejected (90% interval "
        "inside ±m), *contradicted* if the 90% interval lies wholly outside ±m. **Holm**: the supported tests of "
        "all claims and admitted tasks form one family, the contradicted tests another; a verdict needs its "
        "test's Holm-adjusted p < α, otherwise *inconclusive*. *interim*: fewer pairs than seeds planned.",
        "",
    ]
    rows = []
    for row in primary.itertuples():
        interval90 = f" (90%: {_interval(row.low90, row.high90)})" if row.test == "equivalence" else ""
        note = (
            f"LoRA/GPart parameters {row.parameter_ratio:.1f}×"
            if row.claim == "C2" and not math.isnan(row.parameter_ratio)
            else ""
        )
        rows.append(
            [
                row.claim,
                TASK_NAMES.get(row.task, row.task),
                row.comparison,
                row.test,
                str(row.n),
                _num(row.mean, sign=True),
                _interval(row.low95, row.high95) + interval90,
                f"{_p(row.p_supported)} / {_p(row.holm_supported)}",
                f"{_p(row.p_contradicted)} / {_p(row.holm_contradicted)}",
                _verdict_text(row.verdict, row.complete, row.n),
                note,
            ]
        )
    lines += _table(
        [
            "claim",
            "task",
            "Δ",
            "test",
            "pairs",
            "mean",
            "95% interval",
            "p supported (raw / Holm)",
            "p contradicted (raw / Holm)",
            "verdict",
            "note",
        ],
        rows,
    )
    lines += [
        "",
        "## Secondary: pooled over admitted tasks on the normalised score",
        "",
        "Per task and seed, (score − LP) / (FT − LP) with the same seed's LP and FT; averaged over the admitted "
        "tasks per seed (a seed missing on any of them is left out); the same four tests on the per-seed "
        f"averages with margin {plan.NORMALISED_MARGIN:g} on this scale. Not Holm-corrected; *consistent with* "
        "the claim if its supported test has p < α, else *not*.",
        "",
    ]
    rows = [
        [
            row.claim,
            row.comparison,
            row.tasks or "—",
            row.test,
            str(row.n),
            _num(row.mean, 3, sign=True),
            "—" if math.isnan(row.low95) else f"[{_num(row.low95, 3, sign=True)}, {_num(row.high95, 3, sign=True)}]",
            _p(row.p_supported),
            f"**{row.outcome}**",
        ]
        for row in secondary.itertuples()
    ]
    lines += _table(
        ["claim", "Δ (normalised)", "tasks", "test", "seeds", "mean", "95% interval", "p supported", "outcome"], rows
    )
    lines += [
        "",
        "## Secondary: C4, the d sweep",
        "",
        "Largest − smallest d of the sweep, per task (paired by seed) and pooled on the normalised score; "
        "*supported* if the 95% interval lies above 0. Beside it, the gap to FT at the largest d: FT − the arm, "
        "in points per task and 1 − the normalised score pooled.",
        "",
    ]
    rows = [
        [
            row.comparison,
            TASK_NAMES.get(row.scope, row.scope),
            str(row.n),
            _num(row.mean, 3 if row.scope not in study.tasks else 2, sign=True),
            _interval(row.low95, row.high95)
            if row.scope in study.tasks
            else (
                "—" if math.isnan(row.low95) else f"[{_num(row.low95, 3, sign=True)}, {_num(row.high95, 3, sign=True)}]"
            ),
            f"**{row.outcome}**",
            _num(row.gap_to_ft, 3 if row.scope not in study.tasks else 2, sign=True),
        ]
        for row in c4.itertuples()
    ]
    lines += (
        _table(["difference", "scope", "pairs", "mean", "95% interval", "outcome", "gap to FT at the largest d"], rows)
        if rows
        else ["Pending: the sweep has no runs at two d yet."]
    )
    lines += [
        "",
        "## Secondary: convergence",
        "",
        "Report runs whose best validation epoch is the last of their epochs, per arm (all tasks).",
        "",
    ]
    rows = [[r.row, str(r.runs), str(r.at_last), f"{100 * r.share:.0f}%"] for r in convergence.itertuples()]
    lines += (_table(["arm", "runs", "best epoch = last", "share"], rows) if rows else []) + [
        "",
        plan.convergence_sentence(convergence),
        "",
    ]
    lines += [
        "## What this study can and cannot decide",
        "",
        "It can say whether, for a small sentence encoder, a few hundred steps and each arm at its own tuned lr, "
        "GPart is non-inferior to Uni-LoRA and LoRA on two tasks, whether isometry helps at tuned lrs, and "
        "whether the assignment matters. It cannot speak for RoBERTa-base/-large, for full training sets and "
        "25–160 epochs, for GLUE tasks it does not run, for the paper's other domains (math, vision), or for "
        "differences smaller than about 1–2 points (5 seeds). (docs/mini.md)",
        "",
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------- figures


def _save(figure, path: Path) -> None:
    import matplotlib.pyplot as plt

    figure.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(figure)


def score_vs_d_figure(study: Study, sweep: pd.DataFrame, path: Path) -> bool:
    """Per task: GPart and Uni-LoRA median ± std against d (log x), FT and LP as level lines (median, band ± std)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if sweep["n"].fillna(0).sum() == 0:
        return False
    main = main_frame(study).set_index(["arm", "task"])
    colours = {"GPart": "black", "Uni-LoRA": "tab:blue", "FT": "tab:green", "LP": "tab:red"}
    figure, axes = plt.subplots(1, len(study.tasks), figsize=(5.0 * len(study.tasks), 4.0), squeeze=False)
    for axis, task in zip(axes[0], study.tasks):
        for arm, group in sweep[(sweep["task"] == task) & (sweep["n"] > 0)].groupby("arm", sort=False):
            axis.errorbar(
                group["d"],
                group["median"],
                yerr=group["std"].fillna(0),
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
        axis.set_title(task_label(task), fontsize=10)
        axis.set_xlabel("d (length of θ, log scale)", fontsize=8)
        axis.set_ylabel("test score × 100", fontsize=8)
        axis.grid(True, alpha=0.3)
        if axis.get_legend_handles_labels()[0]:
            axis.legend(fontsize=7)
    figure.suptitle(
        "MiniLM-L6 (CPU study, not the paper's numbers): score vs d, median ± std over seeds; FT and LP "
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
        for i, arm in enumerate(_arms(study)):
            mine = cells[(cells["arm"] == arm) & (cells["task"] == task)]
            if mine.empty:
                continue
            row = mine.iloc[0]
            epochs, values = zip(*row["curve"]) if row["curve"] else ((), ())
            axis.plot(epochs, values, marker=".", color=palette(i), label=arm)
            best = dict(row["curve"]).get(row["best_epoch"])
            if best is not None:
                axis.scatter([row["best_epoch"]], [best], s=60, facecolors="none", edgecolors=[palette(i)])
        axis.set_title(task_label(task), fontsize=10)
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


# ---------------------------------------------------------------- writing


def index_markdown(study: Study, label: str, files: list[str], figures: list[str]) -> str:
    finished = len(study.report)
    lines = _header(study, "CPU study: generated tables", label)
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
        "main.csv": _round(main).to_csv(index=False),
        "d-sweep.md": sweep_markdown(study, sweep, label),
        "d-sweep.csv": _round(sweep).to_csv(index=False),
        "selection.md": selection_markdown(study, selection, label),
        "selection.csv": _round(selection).to_csv(index=False),
        "claims.md": claims_markdown(study, primary, secondary, c4, convergence, label),
        "claims.csv": claims_csv(primary, secondary, c4).to_csv(index=False),
    }
    return out


def draw(study: Study, folder: Path) -> list[str]:
    written = []
    if score_vs_d_figure(study, sweep_frame(study), folder / "score-vs-d.png"):
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
