"""`make reproduce-mini-base`: claim C1 at the paper's own shape — MPNet-base (12 x 768), q,v, N = 14,155,776, d = 23,040.

    python -m experiments.studies.mini.paper_shape             # lr check, report runs, level lines -> results/mini-base, then tables
    python -m experiments.studies.mini.paper_shape --status    # what has finished and the choices made; writes nothing
    python -m experiments.studies.mini.paper_shape --dry-run   # the runs known so far and the time estimate

Protocol and analysis plan: docs/mini-base.md. The CPU study's protocol (docs/mini.md: head, rows, epochs, test once at the validation-picked epoch, analysis plan)
with all-mpnet-base-v2 (configs/model/mpnet-base.yaml) in place of MiniLM-L6, GPart and Uni-LoRA at setup.md §2's
d = 23,040. N/d = 614.4 equals the MiniLM study's, so under AdamW the same θ lr moves each weight by the same step:
each method starts from the lr the MiniLM study chose for it on that task, and a 3-point check on seed 0's validation
split (that lr ÷√10, ×1, ×√10) picks the one used. The head lr is the MiniLM study's (chosen on its probe). Seeds
1-3 report; FT (at the MiniLM study's FT lr) and the probe run seed 1 only, as level lines. It needs the MiniLM
study's selection first (`make reproduce-mini`), and about 5 hours of wall on two cores.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from experiments.runner import executor, records
from experiments.studies.mini import design, driver

DEFAULT_RESULTS = driver.REPO / "results" / "mini-base"
MODEL_KEY = "mpnet-base"
MODEL = (f"model={MODEL_KEY}",)
D = 23_040  # setup.md §2 (RoBERTa-base, q,v)
CHECKED = ("GPart", "Uni-LoRA")  # claim C1's two arms
LEVEL_LINES = ("FT", "LP")
REPORT_SEEDS = (1, 2, 3)
LEVEL_SEEDS = (1,)
MARKER = "PAPER_SHAPE.txt"  # in the results folder: `make tables` reads it as this study's (paper_shape_report.py)
CHECK_POINTS = 3  # the lr carried from MiniLM, ÷√10 and ×√10
MAX_EXTENSIONS = 3  # more points past a winning edge, one at a time (docs/mini-base.md, "Deviations")
# Post hoc, the task chosen by the outcome: each checked arm's runner-up lr too (docs/mini-base.md, "Deviations").
SENSITIVITY_TASKS = ("sst2",)
SENSITIVITY = "sensitivity"  # those runs' stage: records under <results>/runs, never in the main table or C1
SLOWER = 5.0  # MPNet-base vs MiniLM-L6 seconds per step on 2 cores: about 5x (the ETA only)


def _number(value) -> str | None:
    return None if value is None else f"{float(value):.6g}"


def _d_of(config: dict) -> int | None:
    method = (config.get("method") or {}).get("config") or {}
    value = method.get("d", method.get("theta_d_length"))
    return None if value is None else int(value)


def record_key(record: dict) -> tuple:
    trainer = record["config"]["trainer"]
    probe = record["method"] == "LP"
    return (
        record["method"],
        record["task"],
        int(record["seed"]),
        None if probe else _number(trainer.get("lr")),
        _number(trainer.get("head_lr")),
        _d_of(record["config"]),
    )


def run_key(run: design.Run) -> tuple:
    return (
        run.arm.label,
        run.task,
        run.seed,
        None if run.arm.is_probe else _number(run.lr),
        _number(run.head_lr),
        run.d,
    )


class FinishedRecords:
    """The finished records of one study folder (`runs/` and `selection/runs/`), found by what they ran (arm, task,
    seed, lrs, d, model key) rather than at their run ids, which hash the model's files: `--status`, `--dry-run` and
    the tables work without the model installed."""

    def __init__(self, results: Path, model: str = MODEL_KEY):
        self.by_stage: dict[str, dict[tuple, dict]] = {}
        for stage, folder in (("report", results / "runs"), ("selection", results / "selection" / "runs")):
            found = {}
            for path in sorted(folder.glob("*/record.json")):
                record = records.read(path) or {}
                if record.get("status") == "finished" and record.get("model") == model:
                    found[record_key(record)] = record
            self.by_stage[stage] = found

    def get(self, run: design.Run) -> dict | None:
        folder = "selection" if run.stage == "selection" else "report"
        return self.by_stage.get(folder, {}).get(run_key(run))

    def validation(self, run: design.Run, results: Path | None = None) -> float | None:
        record = self.get(run)
        return None if record is None else record.get("validation_metric")

    def run_ids(self, stage: str) -> set[str]:
        return {r.get("run_id") for r in self.by_stage.get(stage, {}).values()}


def minilm_choices(minilm_results: Path = driver.DEFAULT_RESULTS, tasks=design.TASKS) -> dict:
    """(arm label, task) -> the lr the MiniLM study chose (None while it has not)."""
    return {key: choice.lr for key, choice in driver.state(minilm_results, tasks).choices.items()}


def check_runs(arm: design.Arm, task: str, lr: float, head_lr: float) -> list[design.Run]:
    points = [float(f"{lr * factor:.3g}") for factor in (1 / design.GRID_STEP, 1.0, design.GRID_STEP)]
    return [design.Run(arm, task, design.SELECTION_SEED, point, head_lr, D, "selection", MODEL) for point in points]


def checked_lr(runs: list[design.Run], results: Path, validation) -> tuple[list[design.Run], float | None, dict]:
    """The check's runs (its edge extensions added), the chosen lr (None while pending) and the scores by lr.

    While the winner sits on an edge of the points run so far (ties go to the smaller lr, so a check where every
    point collapses to the constant prediction extends downward), one more point √10 beyond that edge is run, at
    most MAX_EXTENSIONS times: an lr carried over from another model can be off by more than one grid step
    (docs/mini-base.md, "Deviations")."""
    runs = list(runs)
    while True:
        scores = {run.lr: validation(run, results) for run in runs}
        if None in scores.values():
            return runs, None, scores
        chosen, edges = design.best_lr(scores), (min(scores), max(scores))
        if chosen not in edges or len(runs) - CHECK_POINTS >= MAX_EXTENSIONS:
            return runs, chosen, scores
        step = 1 / design.GRID_STEP if chosen == edges[0] else design.GRID_STEP
        runs.append(dataclasses.replace(runs[0], lr=float(f"{chosen * step:.3g}")))


def state(results: Path, minilm: dict, tasks=design.TASKS, validation=None) -> driver.State:
    """The runs the finished records allow. `validation(run, results)`: a finished run's validation score, or None
    (default: read at the run's id, which needs the model; the report reads the records instead)."""
    validation = validation or driver.validation_score
    now, reports, level_lines, sensitivity = driver.State(), [], [], []
    for task in tasks:
        head_lr = minilm.get(("LP", task))
        if head_lr is None:
            now.waiting.append(f"{task}: waits for the MiniLM study's head lr (make reproduce-mini)")
            continue
        for label in CHECKED:
            lr = minilm.get((label, task))
            if lr is None:
                now.waiting.append(f"{task}: {label} waits for the MiniLM study's lr")
                continue
            runs, chosen, scores = checked_lr(check_runs(design.ARMS[label], task, lr, head_lr), results, validation)
            now.ready += runs
            now.choices[(label, task)] = design.Choice(chosen, scores)
            if chosen is None:
                continue
            reports += [dataclasses.replace(runs[0], seed=s, lr=chosen, stage="report") for s in REPORT_SEEDS]
            if task in SENSITIVITY_TASKS:
                second = runner_up(scores, chosen)
                sensitivity += [
                    dataclasses.replace(runs[0], seed=s, lr=second, stage=SENSITIVITY) for s in REPORT_SEEDS
                ]
        for label in LEVEL_LINES:
            lr = minilm.get((label, task))
            if lr is not None:
                level_lines += [
                    design.Run(design.ARMS[label], task, s, lr, head_lr, None, "report", MODEL) for s in LEVEL_SEEDS
                ]
    # the checks first (they gate the reports, and an extension runs after its check), the post-hoc runs last
    now.ready += reports + level_lines + sensitivity
    return now


def runner_up(scores: dict, chosen: float) -> float:
    """The check's second choice: the best of its other points by the same rule (ties to the smaller lr)."""
    return design.best_lr({lr: score for lr, score in scores.items() if lr != chosen})


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS)
    parser.add_argument(
        "--minilm-results",
        type=Path,
        default=driver.DEFAULT_RESULTS,
        help="the MiniLM study whose lr choices this one starts from",
    )
    executor.add_worker_options(parser)
    parser.add_argument("--status", action="store_true", help="what has finished and the choices made; writes nothing")
    parser.add_argument("--dry-run", action="store_true", help="the runs known so far and the time estimate")
    parser.add_argument("--no-tables", action="store_true")
    args = parser.parse_args(argv)
    results = args.results.resolve()
    minilm = minilm_choices(args.minilm_results.resolve())
    if args.status or args.dry_run:  # from the records alone: no model needed
        found = FinishedRecords(results)
        now = state(results, minilm, validation=found.validation)
        return report(now, results, args.dry_run, args.jobs, lambda run: found.get(run) is not None)
    results.mkdir(parents=True, exist_ok=True)
    (results / MARKER).write_text(
        "A paper-shape study folder (make reproduce-mini-base, docs/mini-base.md): `make tables` reads it with "
        "experiments/studies/mini/paper_shape_report.py.\n"
    )
    failures = executor.run_until_done(
        lambda: state(results, minilm),
        driver.finished_in(results),
        driver.runner(results, args.threads, "reproduce-mini-base"),
        args.jobs,
        lambda now, todo: driver.progress(now.ready, [r for r in now.ready if r not in todo], "reproduce-mini-base"),
    )
    if not failures and not args.no_tables and driver.make_tables(results) != 0:
        failures.append("experiments.report.tables failed")
    for line in failures:
        print(f"reproduce-mini-base: {line}")
    return 1 if failures else 0


def report(now: driver.State, results: Path, commands: bool, jobs: int, finished_run) -> int:
    todo = [run for run in now.ready if not finished_run(run)]
    for run in now.ready if commands else []:
        print(f"{run.name:60s} python -m experiments.run " + " ".join(run.overrides(results)))
    for (label, task), choice in now.choices.items():
        print(
            f"choice  {task} {label}: {'pending' if choice.lr is None else f'lr {choice.lr:g}'}  ({choice.scores_text()})"
        )
    for line in now.waiting:
        print(f"waiting {line}")
    hours = sum(design.estimated_seconds(r) for r in todo) * SLOWER / 3600
    print(
        f"{len(now.ready) - len(todo)}/{len(now.ready)} runs finished of those known now; the {len(todo)} left: "
        f"~{hours:.1f} run-hours, ~{hours / jobs:.1f} h wall with {jobs} jobs"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
