"""The CPU study as its records define it: `collect` reads the finished records under `<results>/runs` that
experiments/studies/mini/driver.py's own plan names into a `Study` (the report cells, the lr choices, the admission
inputs, what is waiting and what is left out); `is_study` tells a study's runs folder from any other."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from experiments.runner import records
from experiments.studies.mini import driver
from experiments.studies.mini import verdicts as plan
from experiments.studies.mini.design import MAIN_D, TASKS, Design, Run

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
    design: Design
    tasks: list[str]
    choices: dict  # (arm label, task) -> design.Choice
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
        return MAIN_D


def report_row(run: Run, record: dict) -> dict:
    epochs = record.get("epochs") or []
    metric = record["metric"]
    curve = [
        (int(e["epoch"]), 100.0 * float(e["validation"][metric]))
        for e in epochs
        if isinstance(e.get("validation"), dict) and e["validation"].get(metric) is not None
    ]
    main_d = MAIN_D if run.arm.method in ("gpart", "unilora") else math.nan
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


def collect(results: Path, tasks=TASKS) -> Study:
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
            rows.append(report_row(run, record))
    report = pd.DataFrame(rows, columns=REPORT_COLUMNS)
    report["sweep"] = report["sweep"].astype(bool)
    present = sorted(p.parent.name for p in (results / "runs").glob("*/record.json"))
    left_out = [run_id for run_id in present if run_id not in planned_ids]
    from experiments.studies.mini import zero_shot

    return Study(
        design, list(tasks), now.choices, report, planned, list(now.waiting), left_out, zero_shot.read(results)
    )
