"""The CPU study's design (docs/mini.md, "Protocol"): which arms, lr grids, seeds and d it plans, and the settings
of each run (`Run.overrides`, which its run id hashes); the selection rule on seed 0's validation split
(`best_lr`); the smoke design; and the cost model the ETA and `--dry-run` weigh runs by (`estimated_seconds`,
`nominal_plan`). Nothing here reads a record: experiments/studies/mini/driver.py turns the records into the plan
as far as the choices made allow, and runs it."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

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


# ---------------------------------------------------------------- the lr choice on seed 0's validation split


@dataclass(frozen=True)
class Choice:
    lr: float | None  # None until every grid point (and an edge extension) has finished
    scores: dict  # lr -> best validation score (None: not finished)
    extended: float | None = None  # the point added beyond the grid's edge, if any

    def scores_text(self) -> str:
        """'lr: validation score × 100' for each point run, '…' where a run has not finished."""
        return ", ".join(
            f"{lr:g}: {'…' if score is None else f'{100 * score:.2f}'}" for lr, score in sorted(self.scores.items())
        )

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


# ---------------------------------------------------------------- the smoke design

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
