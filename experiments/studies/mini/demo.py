"""`make demo`: a preview of `make reproduce-mini` — pretrained MiniLM-L6 on SST-2, seed 0, GPart, Uni-LoRA, LoRA,
full FT and the linear probe, on CPU and offline, through the shared runner.

Each method's row is **the study's SST-2 seed-0 cell at its tuned lrs**: the selection run (docs/mini.md) at the lr
`make reproduce-mini` chose for the arm, with the head lr it chose on the probe. When that run's record is in
results/mini/selection/runs (committed with the study) the demo reuses it and trains nothing; otherwise it runs that
exact cell into results/demo (about 3-5 minutes a run on one core).

Before the study has chosen an arm's lr, the demo says so and runs a documented **fallback** for that arm: the grid
point nearest setup.md §2's lr (FALLBACK_LRS), the head lr the probe chose or else FALLBACK_HEAD_LR, cut to 2,000
train rows and 3 epochs (FALLBACK_CUTS) so that five runs fit in about 5 minutes on 2 cores. Untuned and cut: a
preview, not a study cell. Without GLUE data (`$GLUE_DIR` or the hub) it runs the project's synthetic sentiment task
instead (`experiments/tasks/synthetic.py`), so the demo never fails for want of data.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import experiments  # noqa: F401  (resolvers)
from experiments import REPO
from experiments.runner import executor, records
from experiments.runner.atomic import write_text_atomic
from experiments.studies.mini import design, driver
from experiments.tasks.glue import GlueTask

TASK = "sst2"
ARM_OF = {"gpart": "GPart", "unilora": "Uni-LoRA", "lora": "LoRA", "full": "FT", "head_only": "LP"}
METHODS = list(ARM_OF)
# Before the study's choice: each arm's grid point nearest setup.md §2's lr (GPart and Uni-LoRA θ 5e-3, LoRA 5e-4,
# FT 2e-5 -> 1.58e-5), and a head lr from the probe's grid, 1e-2 (the head is new and the fallback run is short).
FALLBACK_LRS = {"GPart": 5e-3, "Uni-LoRA": 5e-3, "LoRA": 5e-4, "FT": 1.58e-5}
FALLBACK_HEAD_LR = 1e-2
FALLBACK_CUTS = ("task.train_subset=2000", "trainer.epochs=3")
# The synthetic task has its own fixed 2,000 rows: the run's task.train_subset is added, set and removed again.
SYNTHETIC_TASK = ("task=synthetic", "+task.train_subset=null")
SYNTHETIC = ("~task.train_subset", "trainer.epochs=3")
FULL_TABLE = "make reproduce-mini   # every arm, SST-2 and STS-B, lrs tuned, seeds 1-5, d sweep, claims (docs/mini.md)"


@dataclass(frozen=True)
class Cell:
    method: str
    run: design.Run
    source: str  # "reused", "study cell" or "fallback"
    record: Path  # where its record is (reused) or will be (run now)

    @property
    def note(self) -> str:
        return {
            "reused": "the study's selection record, reused",
            "study cell": "the study's cell at its tuned lrs, run now",
            "fallback": "fallback: untuned lr, 2,000 rows, 3 epochs",
        }.get(self.source, self.source)


def glue_reachable() -> tuple[bool, str]:
    """Whether SST-2 can be loaded (local `$GLUE_DIR` first, then the hub), and a line saying from where / why not."""
    data_dir = os.environ.get("GLUE_DIR") or None
    try:
        raw = GlueTask(key="sst2", metric="accuracy", data_dir=data_dir).load_raw()
    except (ValueError, RuntimeError) as error:
        return False, str(error).split(". ")[0]
    source = f"GLUE_DIR={data_dir}" if data_dir else "hub nyu-mll/glue"
    return True, f"SST-2 from {source}: {len(raw['train']['label'])} train rows, {len(raw['test']['label'])} test rows"


def study_choices(study: Path = driver.DEFAULT_RESULTS) -> dict[str, float]:
    """The lrs `make reproduce-mini` chose on SST-2 so far: {arm label: lr} (LP's is the head lr); read-only."""
    now = driver.state(study, (TASK,))
    return {label: choice.lr for (label, task), choice in now.choices.items() if choice.lr is not None}


def plan_cells(
    methods: list[str],
    use_glue: bool,
    results: Path,
    study: Path = driver.DEFAULT_RESULTS,
    chosen: dict[str, float] | None = None,
) -> list[Cell]:
    """One cell per method: the study's SST-2 seed-0 cell at its tuned lrs (reused when its record is in `study`), or
    the fallback."""
    chosen = study_choices(study) if chosen is None else chosen
    head = chosen.get("LP")
    cells = []
    for method in methods:
        arm = design.ARMS[ARM_OF[method]]
        lr = head if arm.is_probe else chosen.get(arm.label)
        tuned = lr is not None and head is not None
        if not tuned:
            lr = (head or FALLBACK_HEAD_LR) if arm.is_probe else FALLBACK_LRS[arm.label]
        run = design.Run(
            arm, TASK, design.SELECTION_SEED, lr, lr if arm.is_probe else (head or FALLBACK_HEAD_LR), stage="selection"
        )
        if not use_glue:
            synthetic = dataclasses.replace(arm, overrides=(*arm.overrides, *SYNTHETIC_TASK))
            cells.append(
                _cell(
                    method,
                    dataclasses.replace(run, arm=synthetic, extra=SYNTHETIC),
                    "fallback" if not tuned else "tuned lrs, synthetic task",
                    results,
                )
            )
        elif tuned and executor.status_of(driver.record_path(run, study)) == "finished":
            cells.append(Cell(method, run, "reused", driver.record_path(run, study)))
        elif tuned:
            cells.append(_cell(method, run, "study cell", results))
        else:
            cells.append(_cell(method, dataclasses.replace(run, extra=FALLBACK_CUTS), "fallback", results))
    return cells


def _cell(method: str, run: design.Run, source: str, results: Path) -> Cell:
    return Cell(method, run, source, driver.record_path(run, results))


def overrides_for(
    method: str,
    use_glue: bool,
    results: Path,
    study: Path = driver.DEFAULT_RESULTS,
    chosen: dict[str, float] | None = None,
) -> list[str]:
    (cell,) = plan_cells([method], use_glue, results, study, chosen)
    return cell.run.overrides(results)


def table(cells: list[Cell], rows: list[dict]) -> str:
    header = [
        "method",
        "lr",
        "head lr",
        "row",
        "test acc",
        "best epoch",
        "trainable (adapter)",
        "head",
        "median step (s)",
        "peak mem (MiB)",
        "wall (s)",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for cell, r in zip(cells, rows):
        memory = (r.get("memory") or {}).get("peak_bytes")
        timing = r.get("timing") or {}
        lr = "—" if cell.run.arm.is_probe else f"{cell.run.lr:g}"
        values = [
            r["method"],
            lr,
            f"{cell.run.head_lr:g}",
            cell.note,
            f"{100 * r['test_metric']:.1f}",
            str(r["best_epoch"]),
            f"{r['trainable_params']:,}",
            f"{r.get('head_params', 0):,}",
            f"{timing.get('median_step_s', float('nan')):.3f}",
            "—" if memory is None else f"{memory / 2**20:.0f}",
            f"{timing.get('wall_s', float('nan')):.0f}",
        ]
        lines.append("| " + " | ".join(values) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated subset of {','.join(METHODS)}")
    parser.add_argument(
        "--results",
        type=Path,
        default=REPO / "results" / "demo",
        help="where runs the demo trains itself go (reused study records stay where they are)",
    )
    parser.add_argument(
        "--study",
        type=Path,
        default=driver.DEFAULT_RESULTS,
        help="the study whose choices and selection records the demo reuses (default results/mini)",
    )
    parser.add_argument("--synthetic", action="store_true", help="use the synthetic task even if GLUE is reachable")
    executor.add_worker_options(parser)
    args = parser.parse_args(argv)
    methods = [m for m in args.methods.split(",") if m]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        parser.error(f"--methods: {unknown} not among {METHODS}")

    use_glue, why = (False, "--synthetic given") if args.synthetic else glue_reachable()
    print(
        f"demo data: {why}"
        if use_glue
        else f"demo data: no GLUE data reachable ({why}); using the synthetic sentiment task"
    )
    results = args.results.resolve()
    chosen = study_choices(args.study)
    if "LP" not in chosen:
        print(
            f"demo: `make reproduce-mini` has not chosen SST-2's lrs yet ({driver.shown(args.study)}): fallback lrs "
            f"(the grid point nearest setup.md §2's; head lr {FALLBACK_HEAD_LR:g}), 2,000 rows, 3 epochs — a "
            "preview, not the study's cells"
        )
    cells = plan_cells(methods, use_glue, results, args.study, chosen)
    for cell in cells:
        print(f"demo: {ARM_OF[cell.method]:9s} lr {cell.run.lr:g}, head lr {cell.run.head_lr:g}: {cell.note}")
    todo = [c for c in cells if c.source != "reused" and executor.status_of(c.record) != "finished"]
    print(
        f"demo: {len(cells)} rows, {len(todo)} to train (finished ones reused; delete {args.results} to rerun); "
        f"per-run logs under {results}",
        flush=True,
    )
    start = time.perf_counter()
    if todo:
        progress = driver.progress([c.run for c in todo], [], "demo")
        failures = executor.execute(
            [c.run for c in todo], driver.runner(results, args.threads, "demo"), args.jobs, progress
        )
        progress.close()
        if failures:
            print("demo: runs failed:\n  " + "\n  ".join(failures))
            return 1
    text = table(cells, [records.read(cell.record) for cell in cells])
    name = "sst2" if use_glue else "synthetic"
    test = "the 872 SST-2 GLUE dev sentences" if use_glue else "the 872 synthetic test sentences"
    print(
        f"\nMiniLM-L6 (pretrained, CPU), seed 0, {time.perf_counter() - start:.0f} s; test = {test}; a small-scale "
        "preview, not the paper's numbers\n"
    )
    print(text)
    write_text_atomic(args.results / f"table-{name}.md", text + "\n")
    print(f"\nThe study, with both tasks, seeds 1-5, the GPart variants, the d sweep and the claims:\n  {FULL_TABLE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
