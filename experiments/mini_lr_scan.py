"""A diagnostic beside `make reproduce-mini`: the θ learning rate of GPart and Uni-LoRA at d = 2,880, scanned.

    python -m experiments.mini_lr_scan              # runs what is missing, then writes <results>/lr-scan/README.md
    python -m experiments.mini_lr_scan --dry-run    # the runs only
    python -m experiments.mini_lr_scan --report     # the README and figure from the records so far; runs nothing

Why. In the mini sweep GPart at the paper's θ lr (5e-3) sits below Uni-LoRA and below its own non-isometric ablation.
Under AdamW every θ coordinate moves about lr per step whatever the scale of its gradient, and the isometric map
spreads it over a group of g = N/d ≈ 614 weights with entries 1/√g: each adapted weight moves ≈ lr/√g ≈ lr/25 per
step, the non-isometric map's by lr. Isometric GPart with lr·√g and weight decay wd/√g follows the non-isometric
trajectory exactly (equal groups, no clipping; tests/test_gpart_isometry_adam.py). With 3 epochs (162 steps) the
sweep may measure this step size rather than the geometry. The scan asks: (1) does GPart's score rise with its θ lr
and is its best lr above the paper's, (2) at each method's best lr (chosen on validation), what is left of the gap to
Uni-LoRA, and (3) does GPart at lr·√g, wd/√g land where the non-isometric run did?

Post hoc and one seed: it was planned after the sweep's seed-0 and seed-1 results, so it explains the sweep and never
replaces a claim's verdict. SST-2 and STS-B (the two tasks where the methods separate), seed 0, the sweep's protocol
and tuned head lrs; only `method.lr` (and, for the equivalence run, `trainer.weight_decay`) changes. The paper-lr
cells and the references are the sweep's own seed-0 records, read, not rerun. Runs go to <results>/lr-scan/runs.
"""
from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from experiments import mini, mini_summary, records
from experiments.atomic import atomic_write, write_text_atomic

TASKS = ("sst2", "stsb")
SEED = 0
LRS = (1.5e-3, 5e-3, 1.5e-2, 5e-2, 1.5e-1)   # about ×3 apart around the paper's 5e-3 (setup.md §2), 100× in all
LABELS = {"GPart": "GPart", "Uni-LoRA": "Uni-LoRA", "non-isometric": "GPart (non-isometric)", "FT": "FT"}
SCANNED = ("GPart", "Uni-LoRA")
FOLDER = mini_summary.LR_SCAN


def variant(label: str) -> mini.Variant:
    return next(v for v in mini.MAIN_METHODS if v.label == LABELS[label])


@dataclass(frozen=True)
class Cell:
    """One point of the scan: a run and where its record lives (the sweep's folder for the paper-lr cells)."""

    kind: str          # "scan" | "equivalent" | "reference"
    label: str         # a LABELS key
    task: str
    lr: float | None   # θ lr (None: the method's own, for references)
    run: mini.Run
    results: Path
    weight_decay: float | None = None   # set where the cell changes it (the equivalence run)

    @cached_property
    def record_path(self) -> Path:   # composes the run's Hydra config: once per cell
        return mini.record_path(self.run, self.results)


def reference(label: str, task: str, head_lrs: dict, results: Path) -> Cell:
    run = mini.with_head_lrs([mini.Run(variant(label), task, SEED)], head_lrs)[0]
    return Cell("reference", label, task, None, run, results)


def paper_values(results: Path, head_lrs: dict) -> tuple[float, float, float]:
    """(θ lr, weight decay, group size N/d) of the sweep's GPart run: the values the scan starts from."""
    record = records.read(reference("GPart", TASKS[0], head_lrs, results).record_path)
    if not record or record.get("status") != "finished":
        raise SystemExit(f"mini_lr_scan: the sweep's GPart {TASKS[0]} seed-{SEED} record is not finished under "
                         f"{results}/runs; run `make reproduce-mini` first")
    config = record["config"]
    return (float(config["method"]["lr"]), float(config["trainer"]["weight_decay"]),
            record["adapted_space_size"] / config["method"]["config"]["d"])


def plan(results: Path, head_lrs: dict, paper: tuple[float, float, float]) -> list[Cell]:
    """Every cell of the scan, from `paper` = paper_values(results, head_lrs)."""
    paper_lr, weight_decay, group = paper
    scan_results, cells = results / FOLDER, []
    for task in TASKS:
        for label in SCANNED:
            for lr in LRS:
                if math.isclose(lr, paper_lr):
                    cells.append(Cell("scan", label, task, lr, reference(label, task, head_lrs, results).run, results))
                else:
                    run = mini.with_head_lrs([mini.Run(variant(label), task, SEED, (f"method.lr={lr:g}",))],
                                             head_lrs)[0]
                    cells.append(Cell("scan", label, task, lr, run, scan_results))
        equivalent_lr, equivalent_decay = paper_lr * math.sqrt(group), weight_decay / math.sqrt(group)
        run = mini.with_head_lrs([mini.Run(variant("GPart"), task, SEED, (
            f"method.lr={equivalent_lr:.6g}", f"trainer.weight_decay={equivalent_decay:.6g}"))], head_lrs)[0]
        cells.append(Cell("equivalent", "GPart", task, equivalent_lr, run, scan_results, equivalent_decay))
        cells += [reference(label, task, head_lrs, results) for label in ("non-isometric", "FT")]
    return cells


# ---------------------------------------------------------------- the report


def scores(cells: list[Cell]) -> list[dict]:
    rows = []
    for cell in cells:
        record = records.read(cell.record_path) or {}
        done = record.get("status") == "finished"
        rows.append({"kind": cell.kind, "label": cell.label, "task": cell.task, "lr": cell.lr,
                     "test": 100 * record["test_metric"] if done else None,
                     "validation": 100 * record["validation_metric"] if done else None,
                     "weight_decay": cell.weight_decay})
    return rows


def best_on_validation(rows: list[dict], label: str, task: str) -> dict | None:
    """The scan cell with the best validation score (ties: the smaller lr); None until the whole scan finished."""
    scan = [r for r in rows if r["kind"] == "scan" and r["label"] == label and r["task"] == task]
    if not scan or any(r["validation"] is None for r in scan):
        return None
    return max(sorted(scan, key=lambda r: r["lr"]), key=lambda r: r["validation"])


def _score(row: dict | None) -> str:
    return "—" if row is None or row["test"] is None else f"{row['test']:.2f} ({row['validation']:.2f})"


def _find(rows, **keys) -> dict | None:
    return next((r for r in rows if all(r[k] == v for k, v in keys.items())), None)


def task_section(rows: list[dict], task: str, metric: str, paper_lr: float) -> list[str]:
    lines = [f"### {mini_summary.task_label(task)}", "", "| θ lr | " + " | ".join(SCANNED) + " |",
             "|---:|" + "---:|" * len(SCANNED)]
    best = {label: best_on_validation(rows, label, task) for label in SCANNED}
    for lr in LRS:
        cells = []
        for label in SCANNED:
            row = _find(rows, kind="scan", label=label, task=task, lr=lr)
            text = _score(row)
            cells.append(f"**{text}**" if best[label] is row and row is not None else text)
        lines.append(f"| {lr:g} | " + " | ".join(cells) + " |")
    equivalent = _find(rows, kind="equivalent", task=task)
    noniso, full = _find(rows, kind="reference", label="non-isometric", task=task), _find(rows, kind="reference",
                                                                                         label="FT", task=task)
    lines += ["", f"- GPart at θ lr {equivalent['lr']:.4g} with weight decay {equivalent['weight_decay']:.4g} "
              f"(lr·√g, wd/√g): **{_score(equivalent)}**; GPart (non-isometric) at the paper's lr, sweep run: "
              f"{_score(noniso)}; FT, sweep run: {_score(full)}."]
    if all(best.values()):
        gap = best["GPart"]["test"] - best["Uni-LoRA"]["test"]
        paper = [_find(rows, kind="scan", label=label, task=task, lr=paper_lr) for label in SCANNED]
        paper_gap = paper[0]["test"] - paper[1]["test"] if all(r and r["test"] is not None for r in paper) else None
        lines.append(f"- Each method at its best θ lr on validation (GPart {best['GPart']['lr']:g}, Uni-LoRA "
                     f"{best['Uni-LoRA']['lr']:g}): GPart − Uni-LoRA = **{gap:+.2f}** {metric} points on the test "
                     "split" + ("" if paper_gap is None else f" (at the paper's lr: {paper_gap:+.2f})") + ".")
    return lines + [""]


def report(rows: list[dict], paper_lr: float, group: float) -> str:
    from experiments.tables import METRIC_NAMES

    done = sum(r["test"] is not None for r in rows)
    lines = ["# θ-lr scan beside the CPU-scale replication (a post-hoc diagnostic, one seed)", "",
             "Generated by `python -m experiments.mini_lr_scan` from the records (experiments/mini_lr_scan.py says "
             "why and how). MiniLM-L6, seed 0, the protocol and head lrs of `make reproduce-mini`; only the θ lr "
             f"changes. d = 2,880 over N = {group * 2880:,.0f} adapted weights: groups of g = N/d = {group:.1f}, "
             f"√g = {math.sqrt(group):.2f}. Cells: test score × 100 (validation score × 100); **bold**: the lr the "
             "validation split picks. The paper's lr "
             f"({paper_lr:g}) cells are the sweep's own seed-0 runs. One seed: differences of a few points are "
             "within seed noise (see the sweep's ± std). Not a claim verdict: the pre-registered claims are in "
             "`../tables/claims-glue-minilm-l6.md`.", "", f"{done}/{len(rows)} cells finished.", ""]
    for task in TASKS:
        metric = mini_summary.task_metric(task)
        lines += task_section(rows, task, METRIC_NAMES.get(metric, metric), paper_lr)
    lines += ["![score vs θ lr](lr_scan.png)", ""]
    return "\n".join(lines)


def draw(rows: list[dict], path: Path) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not any(r["test"] is not None for r in rows if r["kind"] == "scan"):
        return False
    figure, axes = plt.subplots(1, len(TASKS), figsize=(5.2 * len(TASKS), 4.0), squeeze=False)
    colours = {"GPart": "black", "Uni-LoRA": plt.get_cmap("tab10")(0), "non-isometric": plt.get_cmap("tab10")(1),
               "FT": plt.get_cmap("tab10")(2)}
    for axis, task in zip(axes.flat, TASKS):
        for label in SCANNED:
            points = sorted((r["lr"], r["test"]) for r in rows if r["kind"] == "scan" and r["label"] == label
                            and r["task"] == task and r["test"] is not None)
            if points:
                axis.plot(*zip(*points), marker="o", color=colours[label], label=label)
        for label, style in (("non-isometric", "--"), ("FT", ":")):
            row = _find(rows, kind="reference", label=label, task=task)
            if row and row["test"] is not None:
                axis.axhline(row["test"], color=colours[label], linestyle=style,
                             label=f"{LABELS[label]} (paper lr, sweep)")
        row = _find(rows, kind="equivalent", task=task)
        if row and row["test"] is not None:
            axis.scatter([row["lr"]], [row["test"]], marker="*", s=160, color=colours["non-isometric"], zorder=3,
                         label="GPart at lr·√g, wd/√g")
        axis.set_xscale("log")
        axis.set_xlabel("θ learning rate (log scale)", fontsize=8)
        axis.set_ylabel("test score × 100", fontsize=8)
        axis.set_title(mini_summary.task_label(task), fontsize=10)
        axis.grid(True, alpha=0.3)
        axis.legend(fontsize=7)
    figure.suptitle("MiniLM-L6, d = 2,880, seed 0: score vs θ lr (post-hoc diagnostic, one seed)", fontsize=10)
    figure.tight_layout(rect=(0, 0, 1, 0.93))
    atomic_write(path, lambda temporary: figure.savefig(temporary, dpi=110, format="png"))
    plt.close(figure)
    return True


# ---------------------------------------------------------------- entry point


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, default=mini.DEFAULT_RESULTS, help="the sweep's results folder "
                        "(default results/mini); the scan's runs go to <results>/lr-scan/runs")
    mini.add_worker_options(parser)
    parser.add_argument("--dry-run", action="store_true", help="list the runs only")
    parser.add_argument("--report", action="store_true", help="write the README and figure only; run nothing")
    args = parser.parse_args(argv)
    results = args.results.resolve()
    head_lrs = mini.choose_head_lrs(mini.trial_scores(mini.tuning_plan(), results))
    if head_lrs is None:
        print(f"mini_lr_scan: the head-lr trials under {results}/tuning are not all finished; run "
              "`make reproduce-mini` first", file=sys.stderr)
        return 2
    paper = paper_values(results, head_lrs)
    cells = plan(results, head_lrs, paper)
    todo = [c for c in cells if mini.status_of(c.record_path) != "finished"]
    if args.dry_run:
        for cell in todo:
            print(f"{cell.run.name:60s} -> {cell.results}")
        print(f"{len(todo)} of {len(cells)} cells to run")
        return 0
    failures = []
    missing_references = [c for c in todo if c.results == results]
    if missing_references and not args.report:
        print("mini_lr_scan: the sweep has not finished these seed-0 runs; `make reproduce-mini` runs them:\n  "
              + "\n  ".join(c.run.name for c in missing_references), file=sys.stderr)
    to_run = [] if args.report else [c for c in todo if c.results != results]
    if to_run:
        scan_results = results / FOLDER
        progress = mini.Progress([c.run for c in to_run], [], "lr-scan")
        failures = mini.execute([c.run for c in to_run], scan_results, args.jobs, args.threads, progress)
        progress.close()
    out = results / FOLDER
    rows = scores(cells)
    write_text_atomic(out / "README.md", report(rows, paper[0], paper[2]))
    draw(rows, out / "lr_scan.png")
    print(f"mini_lr_scan: {out / 'README.md'}")
    if results == mini.DEFAULT_RESULTS.resolve() and (results / "tables" / f"{mini_summary.TABLE}.csv").is_file():
        mini_summary.main(["--results", str(results)])   # the README's results block links the report
    if failures:
        print("mini_lr_scan: some runs failed (rerun to retry):\n  " + "\n  ".join(failures))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
