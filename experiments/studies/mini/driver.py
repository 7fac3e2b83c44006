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
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import math
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import experiments
from experiments.runner import executor, records
from experiments.runner.atomic import write_text_atomic
from experiments.runner.executor import status_of

REPO = experiments.REPO
DEFAULT_RESULTS = REPO / "results" / "mini"

# Rows drawn (seeded, stratified) from each task's GLUE train split; 500 of them are held out for validation. Test is
# the full GLUE dev split. docs/mini.md, "Protocol".
TRAIN_ROWS = {"sst2": 3500, "stsb": 2500}
TASKS = tuple(TRAIN_ROWS)
SELECTION_SEED = 0
REPORT_SEEDS = (1, 2, 3, 4, 5)
D_SWEEP_SEEDS = (1, 2, 3)
ADAPTED_SIZE = 1_769_472  # MiniLM-L6 q,v: 6 layers x 2 x 384 x 384
MAIN_D = 2880  # configs/experiment/mini/gpart.yaml: the paper's d/N (23,040 / 14,155,776)
D_SWEEP = (288, 28800)  # 100x around nothing: 10x below and above MAIN_D
GRID_STEP = math.sqrt(10)


def grid(lowest: float, points: int = 4) -> tuple[float, ...]:
    """`points` learning rates a factor √10 apart, from `lowest` up, each to three significant digits."""
    return tuple(float(f"{lowest * GRID_STEP**i:.3g}") for i in range(points))


@dataclass(frozen=True)
class Arm:
    """A row of the study: a method (its config name) under a table label, with the grid its lr is chosen from."""

    label: str  # `method.key` of the records: the table row and the claims' name
    method: str  # configs/method/<method>.yaml and configs/experiment/mini/<method>.yaml
    lr_key: str = "trainer.lr"  # the override its grid sets
    lowest: float | None = None  # the grid's lowest point; None: the arm takes `lr_from`'s choice
    overrides: tuple[str, ...] = ()
    lr_from: str | None = None
    points: int = 4  # grid size: 4 in the study (docs/mini.md); only the smoke design uses fewer

    @property
    def grid(self) -> tuple[float, ...]:
        return grid(self.lowest, self.points) if self.lowest is not None else ()

    @property
    def is_probe(self) -> bool:
        """The linear probe: its grid is the head lr (the study's PROBE and the smoke's copy of it)."""
        return self.lr_key == "trainer.head_lr"


GROUP_SIZE = ADAPTED_SIZE / MAIN_D  # g = N/d = 614.4 coordinates per θ entry
PROBE = Arm("LP", "head_only", "trainer.head_lr", 1e-3)  # head lr 1e-3 (setup.md §2's) and up
TUNED_ARMS = (
    Arm("GPart", "gpart", lowest=5e-3),  # from setup.md §2's θ lr 5e-3 up
    # Under AdamW the isometric map moves each weight √g times less per step than the plain one at the same lr
    # (tests/test_gpart_isometry_adam.py), so its natural grid is GPart's divided by √g.
    Arm(
        "GPart (non-isometric)",
        "gpart",
        lowest=5e-3 / math.sqrt(GROUP_SIZE),
        overrides=("method.config.isometric=false",),
    ),
    Arm("Uni-LoRA", "unilora", lowest=5e-3 / GRID_STEP),  # setup.md §2's 5e-3 second
    Arm("LoRA", "lora", lowest=5e-4 / GRID_STEP),  # setup.md §2's 5e-4 (SST-2) second
    Arm("FT", "full", lowest=5e-6),  # around setup.md §2's 2e-5
)
# Claim C5 compares the two assignments at identical settings: the balanced arm takes GPart's chosen lr.
BALANCED = Arm("GPart (balanced)", "gpart", overrides=("method.config.assignment=balanced",), lr_from="GPart")
REPORT_ARMS = (*TUNED_ARMS, PROBE, BALANCED)
D_SWEEP_ARMS = ("GPart", "Uni-LoRA")
ARMS = {arm.label: arm for arm in (PROBE, *REPORT_ARMS)}


@dataclass(frozen=True)
class Design:
    """Which arms, seeds and d the driver plans. STUDY is docs/mini.md's; SMOKE a handful of tiny runs through the
    same code (state, choose, tables, claims) to check the pipeline end to end. The runs' settings come from Run and
    Arm alone, so a design changes which runs exist, never what a given run computes."""

    name: str
    probe: Arm
    tuned: tuple[Arm, ...]
    report: tuple[Arm, ...]
    report_seeds: tuple[int, ...]
    d_sweep: tuple[int, ...]
    d_sweep_seeds: tuple[int, ...]
    d_sweep_arms: tuple[str, ...]
    extra: tuple[str, ...] = ()  # overrides appended to every run (the smoke's cuts)

    @property
    def arms(self) -> dict[str, Arm]:
        return {arm.label: arm for arm in (self.probe, *self.report)}


STUDY = Design("study", PROBE, TUNED_ARMS, REPORT_ARMS, REPORT_SEEDS, D_SWEEP, D_SWEEP_SEEDS, D_SWEEP_ARMS)


@dataclass(frozen=True)
class Run:
    arm: Arm
    task: str
    seed: int
    lr: float  # the value of arm.lr_key (the head lr for the probe)
    head_lr: float
    d: int | None = None  # None: the arm's main d
    stage: str = "report"  # "selection" runs go to <results>/selection/runs, the others to <results>/runs
    extra: tuple[str, ...] = ()  # the smoke test's cuts

    def root(self, results: Path) -> Path:
        return results / "selection" if self.stage == "selection" else results

    def overrides(self, results: Path) -> list[str]:
        label = self.arm.label.replace("'", "")
        lrs = [f"{self.arm.lr_key}={self.lr:g}"] + (
            [] if self.arm.lr_key == "trainer.head_lr" else [f"trainer.head_lr={self.head_lr:g}"]
        )
        size = [] if self.d is None else [d_override(self.arm.method, self.d)]
        return [
            f"experiment=glue/base/{self.arm.method}-{self.task}",
            f"+experiment/mini={self.arm.method}",
            *self.arm.overrides,
            f"task.train_subset={TRAIN_ROWS[self.task]}",
            *lrs,
            *size,
            *self.extra,
            f"method.key='{label}'",
            f"seed={self.seed}",
            f"paths.root={self.root(results)}",
            "logger=none",
        ]

    @property
    def name(self) -> str:
        size = [] if self.d is None else [f"d={self.d}"]
        return " ".join([self.arm.label, *size, self.task, f"lr={self.lr:g}", f"s{self.seed}"])


def d_override(method: str, d: int) -> str:
    return f"method.config.d={d}" if method == "gpart" else f"method.config.theta_d_length={d}"


def scaled_lr(lr: float, d: int) -> float:
    """The d sweep's rule: under AdamW each weight moves ∝ lr·√(d/N) per step, so lr·√(MAIN_D/d) keeps that step."""
    return float(f"{lr * math.sqrt(MAIN_D / d):.3g}")


# ---------------------------------------------------------------- choices on seed 0's validation split


@dataclass(frozen=True)
class Choice:
    lr: float | None  # None until every grid point (and an edge extension) has finished
    scores: dict  # lr -> best validation score (None: not finished)
    extended: float | None = None  # the point added beyond the grid's edge, if any

    @property
    def at_edge(self) -> bool:
        finished = {lr: s for lr, s in self.scores.items() if s is not None}
        return bool(finished) and self.lr in (min(finished), max(finished))


def best_lr(scores: dict) -> float:
    """The lr with the best validation score; ties go to the smaller lr."""
    return max(sorted(scores), key=lambda lr: (scores[lr], -lr))


def selection_runs(arm: Arm, task: str, head_lr: float, extra=()) -> list[Run]:
    return [
        Run(arm, task, SELECTION_SEED, lr, head_lr if not arm.is_probe else lr, stage="selection", extra=extra)
        for lr in arm.grid
    ]


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


# ---------------------------------------------------------------- cost model (for the ETA and --dry-run)
# Mean MiniLM tokens per example (train, GLUE dev), measured on 2,000-row samples at max length 128.
TOKENS = {"sst2": (13.3, 25.2), "stsb": (27.9, 31.5)}
DEV_ROWS = {"sst2": 872, "stsb": 1500}
VALIDATION_ROWS = 500  # configs/experiment/mini/_protocol.yaml
EPOCHS = 5  # configs/experiment/mini/_protocol.yaml
# Single-thread CPU seconds per token, measured side by side (batch 32 x 64, MiniLM-L6, on a loaded 2-core machine):
# GPart 1.40 s/step, LoRA 1.43, Uni-LoRA 1.36, full FT 1.99, head-only 0.71; inference 1.1 s per 64 x 64.
TRAIN_S_PER_TOKEN = {
    "gpart": 1.40 / 2048,
    "unilora": 1.36 / 2048,
    "lora": 1.43 / 2048,
    "full": 1.99 / 2048,
    "head_only": 0.71 / 2048,
}
EVAL_S_PER_TOKEN = 1.1 / 4096
START_S = 15.0  # python + torch + transformers import, model load, tokenisation
SIDE_BY_SIDE = 1.35  # two runs on 2 cores take 1.35x one thread alone (measured over 153 MiniLM-L6 runs)


def estimated_seconds(run: Run) -> float:
    """Wall seconds of one run on one core, two runs side by side, under the cost model above (the ETA's weights)."""
    train_tokens, test_tokens = TOKENS[run.task]
    train_rows = TRAIN_ROWS[run.task] - VALIDATION_ROWS
    train = EPOCHS * train_rows * train_tokens * TRAIN_S_PER_TOKEN[run.arm.method]
    evaluate = (EPOCHS * VALIDATION_ROWS * train_tokens + DEV_ROWS[run.task] * test_tokens) * EVAL_S_PER_TOKEN
    return SIDE_BY_SIDE * (START_S + train + evaluate)


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


def nominal_plan(tasks=TASKS, design: Design = STUDY) -> list[Run]:
    """Every run of the study with placeholder lrs (no edge extensions): what the ETA and --dry-run count."""
    runs = []
    for task in tasks:
        runs += selection_runs(design.probe, task, 0.0)
        runs += [r for arm in design.tuned for r in selection_runs(arm, task, 0.0)]
        runs += [Run(arm, task, seed, 0.0, 0.0) for arm in design.report for seed in design.report_seeds]
        runs += [
            Run(design.arms[label], task, seed, 0.0, 0.0, d)
            for label in design.d_sweep_arms
            for d in design.d_sweep
            for seed in design.d_sweep_seeds
        ]
    return runs


# ---------------------------------------------------------------- reports of the driver


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
        cells = ", ".join(
            f"{lr:g}: {'…' if score is None else f'{100 * score:.2f}'}" for lr, score in sorted(choice.scores.items())
        )
        note = "edge extended" if choice.extended is not None else ""
        note += "; chosen at the edge" if choice.lr is not None and choice.at_edge else ""
        lines.append(
            f"| {task} | {label} | {cells} | {'—' if choice.lr is None else f'{choice.lr:g}'} | {note.strip('; ')} |"
        )
    return "\n".join(lines) + "\n"


SMOKE_ROWS = 120
# Appended after each run's own overrides (the last value of a key wins): tiny data, one epoch, short sequences.
SMOKE_CUTS = (
    "task.validation_min_rows=40",
    "task.test_subset=64",
    "trainer.epochs=1",
    "task.max_length=32",
    f"task.train_subset={SMOKE_ROWS}",
)


def _one_point(arm: Arm) -> Arm:
    return dataclasses.replace(arm, points=1)


_SMOKE_TUNED = (_one_point(TUNED_ARMS[0]), _one_point(ARMS["FT"]))  # GPart and FT
# The smoke: a handful of runs through the real code path (about 11 per task, ~20 s each): the probe, GPart and FT
# each on a one-point grid (so the edge extension runs too), one report seed, GPart (balanced) at GPart's lr, and
# one d of the sweep. Enough for every table, figure and claim to be built (most claims read "not run").
SMOKE = Design(
    "smoke",
    _one_point(PROBE),
    _SMOKE_TUNED,
    (*_SMOKE_TUNED, _one_point(PROBE), BALANCED),
    report_seeds=(1,),
    d_sweep=(D_SWEEP[0],),
    d_sweep_seeds=(1,),
    d_sweep_arms=("GPart",),
    extra=SMOKE_CUTS,
)
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
