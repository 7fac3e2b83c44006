"""`make reproduce-mini`: the paper's GLUE claims tested at CPU scale — pretrained MiniLM-L6 on SST-2 and STS-B.

    python -m experiments.studies.mini.driver                 # selection, report runs, d sweep -> results/mini, then tables + claims
    python -m experiments.studies.mini.driver --dry-run       # the runs known so far, their count and the time estimate; runs nothing
    python -m experiments.studies.mini.driver --status        # what has finished, stage by stage, and the choices made; writes nothing
    python -m experiments.studies.mini.driver --smoke --results /tmp/mini   # ~11 tiny runs per task through the whole pipeline

The protocol and the analysis plan are in docs/mini.md, written before the first record. In short: every arm's
learning rate is chosen on seed 0's validation split from a grid of four points a factor √10 apart (one more point
beyond the edge when the winner sits on it); the head lr is chosen the same way on the linear probe and shared by
every arm of the task; seeds 1-5 then report at the chosen lrs; the d sweep scales the chosen θ lr by √(d_main/d).
Selection runs go to <results>/selection/runs, report runs to <results>/runs. Each run is
`python -m experiments.run experiment=glue/base/<method>-<task> +experiment/mini=<method> seed=<s>` plus its cell's
overrides (configs/experiment/mini/*.yaml, each value commented). A small-scale replication, never the paper's numbers.

The driver skips finished runs, and the runner resumes a killed one from its last epoch checkpoint, so rerunning the
same command (in this session or the next) continues where the last one stopped. Runs that wait on a choice start as
soon as the choice is made.

The design (arms, grids, seeds, d, each run's settings, the cost model) is experiments/studies/mini/design.py; this
module reads the records into the plan as far as the choices made allow (`state`), runs it and reports on it.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import experiments
from experiments.runner import executor, records
from experiments.runner.atomic import write_text_atomic
from experiments.runner.executor import status_of
from experiments.studies.mini.design import (
    GRID_STEP,
    SMOKE,
    STUDY,
    TASKS,
    Arm,
    Choice,
    Design,
    Run,
    best_lr,
    estimated_seconds,
    nominal_plan,
    scaled_lr,
    selection_runs,
)

REPO = experiments.REPO
DEFAULT_RESULTS = REPO / "results" / "mini"


# ---------------------------------------------------------------- choices on seed 0's validation split


def choose(runs: list[Run], results: Path) -> tuple[Choice, Run | None]:
    """The choice among `runs` (a grid, perhaps with its edge extension), or the edge extension still to run."""
    scores = {run.lr: validation_score(run, results) for run in runs}
    if any(score is None for score in scores.values()):
        return Choice(None, scores), None
    grid_points = runs[0].arm.grid
    extended = next((lr for lr in scores if lr not in grid_points), None)
    winner = best_lr({lr: s for lr, s in scores.items() if lr in grid_points})
    if extended is not None or winner not in (grid_points[0], grid_points[-1]):
        return Choice(best_lr(scores), scores, extended), None
    factor = GRID_STEP if winner == grid_points[-1] else 1 / GRID_STEP
    lr = float(f"{winner * factor:.3g}")
    extension = dataclasses.replace(runs[0], lr=lr, head_lr=lr if runs[0].arm.is_probe else runs[0].head_lr)
    return Choice(None, scores), extension


def validation_score(run: Run, results: Path) -> float | None:
    record = records.read(record_path(run, results)) or {}
    return record.get("validation_metric") if record.get("status") == "finished" else None


# ---------------------------------------------------------------- the plan, as far as the choices made allow


@dataclass
class State:
    ready: list[Run] = dataclasses.field(default_factory=list)  # runs whose settings are known
    waiting: list[str] = dataclasses.field(default_factory=list)  # what still waits on a choice
    choices: dict = dataclasses.field(default_factory=dict)  # (arm label, task) -> Choice


def state(results: Path, tasks=TASKS, extra=(), design: Design = STUDY) -> State:
    """Every run whose settings the finished records determine, in the order they should run."""
    now = State()
    report, sweep = [], []
    extra = tuple(extra) or design.extra
    for task in tasks:
        probe = _select(now, design.probe, task, None, results, extra)
        if probe.lr is None:
            now.waiting.append(f"{task}: every other arm waits for the head lr (LP grid)")
            continue
        for arm in design.tuned:
            _select(now, arm, task, probe.lr, results, extra)
        for arm in design.report:
            lr = now.choices.get((arm.lr_from or arm.label, task), Choice(None, {})).lr
            if lr is None:
                now.waiting.append(f"{task}: {arm.label} waits for {arm.lr_from or arm.label}'s lr")
                continue
            report += [Run(arm, task, seed, lr, probe.lr, extra=extra) for seed in design.report_seeds]
            if arm.label in design.d_sweep_arms:
                sweep += [
                    Run(arm, task, seed, scaled_lr(lr, d), probe.lr, d, extra=extra)
                    for d in design.d_sweep
                    for seed in design.d_sweep_seeds
                ]
    now.ready += sorted(report, key=lambda r: r.seed) + sweep  # seed by seed: whole tables soonest
    return now


def _select(now: State, arm: Arm, task: str, head_lr: float | None, results: Path, extra) -> Choice:
    runs = selection_runs(arm, task, head_lr, extra)
    choice, extension = choose(runs, results)
    if extension is not None:
        runs.append(extension)
        choice, _ = choose(runs, results)
    now.ready += runs
    now.choices[(arm.label, task)] = choice
    return choice


# ---------------------------------------------------------------- running


@functools.cache
def record_path(run: Run, results: Path) -> Path:
    cfg = experiments.compose(run.overrides(results))
    return Path(cfg.paths.runs_dir) / records.make_run_id(cfg, records.config_hash(cfg)) / "record.json"


# Offline unless the environment says otherwise: the study's models come from PyPI packages, its data from $GLUE_DIR.
ENV_DEFAULTS = {"HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"}


def runner(results: Path, threads: int, label: str = "reproduce-mini") -> executor.Runner:
    """The executor's runner for the study's runs: each run's output in <its root>/logs/<its name>.log."""
    return executor.Runner(
        lambda run: run.overrides(results),
        lambda run: log_file(run, results),
        threads=threads,
        env_defaults=ENV_DEFAULTS,
        label=label,
    )


def log_file(run: Run, results: Path) -> Path:
    return run.root(results) / "logs" / f"{records.slug(run.name)}.log"


def progress(runs: list[Run], finished: list[Run], desc: str) -> executor.Progress:
    """The executor's bar, its ETA weighing each run by the cost model."""
    return executor.Progress(runs, finished, desc, cost=estimated_seconds, unit="cost-s")


def finished_in(results: Path):
    """Whether a run's record under `results` says finished (what the executor skips)."""
    return lambda run: status_of(record_path(run, results)) == "finished"


def shown(path: Path) -> str:
    """A path as generated files print it: relative to the repository when inside it (the same in every checkout)."""
    path = Path(path).resolve()
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def make_tables(results: Path) -> int:
    """`make tables` on the study's records (experiments/studies/mini/report.py through experiments/report/tables.py); for the
    default results folder, the README block too (experiments/studies/mini/summary.py)."""
    command = [
        sys.executable,
        "-m",
        "experiments.report.tables",
        "--runs",
        shown(results / "runs"),
        "--out",
        shown(results),
    ]
    print("$ " + " ".join(command), flush=True)
    code = subprocess.call(command, cwd=REPO)
    if code == 0 and Path(results).resolve() == DEFAULT_RESULTS.resolve():
        summary = [sys.executable, "-m", "experiments.studies.mini.summary", "--results", shown(results)]
        print("$ " + " ".join(summary), flush=True)
        code = subprocess.call(summary, cwd=REPO)
    return code


# ---------------------------------------------------------------- reports of the driver


def cost_check(results: Path) -> dict[tuple[str, str], tuple[int, float]]:
    """Measured over estimated wall time of the finished runs under `results`, per (method, task): how far the ETA's
    weights are off on this machine. A report, not a target: walls move with whatever else the machine runs."""
    cells: dict[tuple[str, str], list[float]] = {}
    for path in sorted(results.glob("**/runs/*/record.json")):
        record = records.read(path) or {}
        if record.get("status") != "finished":
            continue
        method = record["command"].split("experiment=glue/base/")[1].split("-")[0]
        cell = cells.setdefault((method, record["task"]), [0, 0.0, 0.0])
        run = Run(Arm(method, method), record["task"], 0, 0.0, 0.0)
        cell[0], cell[1], cell[2] = cell[0] + 1, cell[1] + record["timing"]["wall_s"], cell[2] + estimated_seconds(run)
    return {key: (int(n), measured / estimated) for key, (n, measured, estimated) in sorted(cells.items())}


def selection_summary(now: State) -> str:
    """results/mini/selection/README.md: every grid, its validation scores and the choice."""
    lines = [
        "# Learning-rate selection (seed 0, validation split)",
        "",
        "Generated by `python -m experiments.studies.mini.driver` from the records in `runs/`. Each arm's lr is the grid point "
        "with the best validation score (the held-out training rows: 525 on SST-2, 500 on STS-B; ties to the "
        "smaller lr), after one more "
        "point beyond the edge when the winner sat on it (docs/mini.md). The probe's grid is the head lr, which "
        "every arm of the task then uses. No choice reads the test split.",
        "",
        "| task | arm | lr grid: validation score × 100 | chosen | note |",
        "|---|---|---|---:|---|",
    ]
    for (label, task), choice in now.choices.items():
        cells = choice.scores_text()
        note = "edge extended" if choice.extended is not None else ""
        note += "; chosen at the edge" if choice.lr is not None and choice.at_edge else ""
        lines.append(
            f"| {task} | {label} | {cells} | {'—' if choice.lr is None else f'{choice.lr:g}'} | {note.strip('; ')} |"
        )
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- command line

SMOKE_MARKER = "SMOKE.txt"  # in a results folder written by --smoke: its tables are a pipeline check, not results


def design_of(results: Path) -> Design:
    """The design a results folder was written with: SMOKE when the smoke's marker is there, else the study's."""
    return SMOKE if (Path(results) / SMOKE_MARKER).is_file() else STUDY


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--results",
        type=Path,
        default=DEFAULT_RESULTS,
        help="selection runs go to <results>/selection/runs, the others to <results>/runs (default results/mini)",
    )
    executor.add_worker_options(parser)
    parser.add_argument("--tasks", default=",".join(TASKS), help="comma-separated subset of " + ",".join(TASKS))
    parser.add_argument("--dry-run", action="store_true", help="list the runs known so far and the time estimate")
    parser.add_argument("--status", action="store_true", help="what has finished and the choices made; writes nothing")
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="a handful of tiny runs through the whole pipeline, "
        "tables and claims included (a check, not results; ~11 runs per task)",
    )
    parser.add_argument("--no-tables", action="store_true", help="do not run `experiments.report.tables` at the end")
    args = parser.parse_args(argv)
    tasks = tuple(t for t in args.tasks.split(",") if t)
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        parser.error(f"--tasks: {unknown} not among {list(TASKS)}")
    results = args.results.resolve()
    design = SMOKE if args.smoke else design_of(results)
    if args.status:
        return status(results, tasks, design)
    if args.dry_run:
        return dry_run(results, tasks, design, args.jobs)
    if design is SMOKE and not args.smoke:
        parser.error(f"--results={results} holds a smoke run ({SMOKE_MARKER}); pass --smoke or another folder")
    if args.smoke and design_of(results) is not SMOKE and (results / "selection" / "runs").is_dir():
        parser.error(f"--smoke: {results} holds the study's runs; give the smoke a folder of its own (--results)")
    problem = glue_problem(tasks)
    if problem:
        print(f"reproduce-mini: {problem}", file=sys.stderr)
        return 2
    if design is SMOKE:
        write_text_atomic(
            results / SMOKE_MARKER,
            "Written by `python -m experiments.studies.mini.driver --smoke`: tiny runs that "
            "check the pipeline. Nothing here is a result.\n",
        )
    failures = sweep(results, tasks, design, args.jobs, args.threads)
    if not failures and design is STUDY and "stsb" in tasks and not (results / "zero-shot.json").is_file():
        print(
            "$ python -m experiments.studies.mini.zero_shot  # STS-B's zero-shot reference (docs/mini.md)", flush=True
        )
        if (
            subprocess.call(
                [sys.executable, "-m", "experiments.studies.mini.zero_shot", "--results", shown(results)],
                cwd=REPO,
                env=dict(os.environ, OMP_NUM_THREADS="1"),
            )
            != 0
        ):
            failures.append("experiments.studies.mini.zero_shot failed")
    if not args.no_tables and not failures:
        if make_tables(results) != 0:
            failures.append("experiments.report.tables failed")
    if failures:
        print("reproduce-mini: some runs failed (rerun the same command to retry them):\n  " + "\n  ".join(failures))
        return 1
    print(f"reproduce-mini: done; tables and claims in {results}/tables, figures in {results}/figures")
    return 0


def sweep(results: Path, tasks, design: Design, jobs: int, threads: int) -> list[str]:
    """Run whatever the finished records allow, again and again, until every run of the study has finished."""
    nominal = nominal_plan(tasks, design)

    def plan() -> State:
        now = state(results, tasks, design=design)
        write_text_atomic(results / "selection" / "README.md", selection_summary(now))
        return now

    def start(now: State, todo: list[Run]) -> executor.Progress:
        done = len(now.ready) - len(todo)
        print(
            f"reproduce-mini: {done} runs finished, {len(todo)} ready, about {len(nominal)} in all -> "
            f"{results}; finished runs are skipped, killed ones resume",
            flush=True,
        )
        return progress(nominal, nominal[:done], "reproduce-mini")

    return executor.run_until_done(plan, finished_in(results), runner(results, threads), jobs, start)


def status(results: Path, tasks, design: Design = STUDY) -> int:
    """Read-only: finished runs per stage and the choices made so far."""
    now = state(results, tasks, design=design)
    by_stage: dict[str, list[int]] = {}
    for run in now.ready:
        stage = "d sweep" if run.d is not None else run.stage
        counts = by_stage.setdefault(stage, [0, 0])
        counts[0] += status_of(record_path(run, results)) == "finished"
        counts[1] += 1
    for stage, (finished, known) in by_stage.items():
        print(f"{stage:10s} {finished}/{known} runs finished")
    for (label, task), choice in now.choices.items():
        print(f"choice     {task} {label}: {'pending' if choice.lr is None else f'lr {choice.lr:g}'}")
    for line in now.waiting:
        print(f"waiting    {line}")
    total = len(nominal_plan(tasks, design))
    finished = sum(f for f, _ in by_stage.values())
    known = sum(k for _, k in by_stage.values())
    complete = finished == known and not now.waiting and finished >= total
    print(
        f"{finished} of {known} known runs finished (about {total} in all without edge extensions)"
        + (": the study is complete" if complete else "")
    )
    return 0


def glue_problem(tasks) -> str | None:
    """Why the GLUE train splits cannot be read (`$GLUE_DIR`, else the hub), or None: checked before any run starts."""
    from experiments.tasks.glue import GlueTask

    for task in tasks:
        try:
            GlueTask(key=task, metric="accuracy", data_dir=os.environ.get("GLUE_DIR") or None).load_raw()
        except (ValueError, RuntimeError, OSError) as error:
            return f"cannot load GLUE {task}: {error}"
    return None


def dry_run(results: Path, tasks, design: Design, jobs: int) -> int:
    now = state(results, tasks, design=design)
    for run in now.ready:
        print(
            f"{run.name:60s} ~{estimated_seconds(run):4.0f} s  python -m experiments.run "
            + " ".join(run.overrides(results))
        )
    for line in now.waiting:
        print(f"# {line}")
    nominal = nominal_plan(tasks, design)
    total = sum(estimated_seconds(r) for r in nominal)
    print(
        f"{len(now.ready)} runs known now; about {len(nominal)} in all (without edge extensions): "
        f"~{total / 3600:.1f} run-hours under the cost model (two runs side by side), ~{total / 3600 / jobs:.1f} h "
        f"wall with {jobs} jobs"
    )
    for (method, task), (count, ratio) in cost_check(results).items():
        print(f"# cost model: {method:9s} {task:5s} measured/estimated {ratio:4.2f} over {count} finished runs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
