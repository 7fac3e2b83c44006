"""`make demo`: a five-minute preview of `make reproduce-mini` — pretrained MiniLM-L6 on SST-2, one seed, GPart,
Uni-LoRA, LoRA, full FT and head-only, on CPU and offline, through the shared runner.

Each run is exactly the sweep's SST-2 seed-0 cell of its method (configs/experiment/mini/: the paper's SST-2
experiment with the small model's protocol — 2,000 train rows of which 300 held out pick the best of 3 epochs, the
872 GLUE dev sentences as test, max length 128, GPart d = 2,880 = Uni-LoRA's θ length), with the head lr the sweep's
tuning chose (results/mini/tuning) or, before that tuning has run, the demo's own fallback. Two runs at a time, one
core each. Without GLUE data (`$GLUE_DIR` or the hub) it runs the project's synthetic sentiment task instead
(`experiments/tasks/synthetic.py`), so the demo never fails for want of data.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import experiments  # noqa: F401  (resolvers)
from experiments import mini, records
from experiments.atomic import write_text_atomic
from experiments.tasks.glue import GlueTask

REPO = Path(__file__).resolve().parents[1]
METHODS = ["gpart", "unilora", "lora", "full", "head_only"]
# Head lr before `make reproduce-mini` has tuned it: the largest of the trial grid (mini.TUNING_HEAD_LRS), for every
# method alike; the tuned choice replaces it as soon as results/mini/tuning holds every trial.
FALLBACK_HEAD_LR = 1e-2
FULL_TABLE = "make reproduce-mini   # every method, 5 GLUE tasks, 3 seeds, ablations, d sweep, claims (docs/mini.md)"


def glue_reachable() -> tuple[bool, str]:
    """Whether SST-2 can be loaded (local `$GLUE_DIR` first, then the hub), and a line saying from where / why not."""
    data_dir = os.environ.get("GLUE_DIR") or None
    try:
        raw = GlueTask(key="sst2", metric="accuracy", data_dir=data_dir).load_raw()
    except (ValueError, RuntimeError) as error:
        return False, str(error).split(". ")[0]
    source = f"GLUE_DIR={data_dir}" if data_dir else "hub nyu-mll/glue"
    return True, f"SST-2 from {source}: {len(raw['train']['label'])} train rows, {len(raw['test']['label'])} test rows"


def head_lrs() -> tuple[dict[str, float], str]:
    """The sweep's tuned head lr per method when its trials are all done, else the fallback; and a line saying so."""
    chosen = mini.choose_head_lrs(mini.trial_scores(mini.tuning_plan(), mini.DEFAULT_RESULTS))
    if chosen:
        return chosen, "head lr tuned by `make reproduce-mini` (results/mini/tuning/README.md)"
    return ({m: FALLBACK_HEAD_LR for m in METHODS},
            f"head lr {FALLBACK_HEAD_LR:g} for every method (the sweep's tuning has not run yet)")


def demo_runs(methods: list[str], use_glue: bool, lrs: dict[str, float]) -> list[mini.Run]:
    # The synthetic task has its own fixed 2,000 rows (no train_subset) and a table of its own.
    task = () if use_glue else ("task=synthetic", "~task.train_subset")
    variants = {v.method: v for v in mini.MAIN_METHODS[:5]}
    return [mini.Run(variants[m], "sst2", 0, (f"trainer.head_lr={lrs[m]:g}", *task)) for m in methods]


def overrides_for(method: str, use_glue: bool, results: Path, head_lr: float = FALLBACK_HEAD_LR) -> list[str]:
    (run,) = demo_runs([method], use_glue, {method: head_lr})
    return run.overrides(results)


def record_path(overrides: list[str]) -> Path:
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    return Path(cfg.paths.runs_dir) / records.make_run_id(cfg, records.config_hash(cfg)) / "record.json"


def table(rows: list[dict]) -> str:
    header = ["method", "task", "test acc", "best epoch", "trainable (adapter)", "head", "median step (s)",
              "peak mem (MiB)", "wall (s)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        memory = r["memory"]["peak_bytes"]
        cells = [r["method"], r["task"], f"{100 * r['test_metric']:.1f}", str(r["best_epoch"]),
                 f"{r['trainable_params']:,}", f"{r['head_params']:,}", f"{r['timing']['median_step_s']:.3f}",
                 f"{memory / 2**20:.0f}", f"{r['timing']['wall_s']:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--results", type=Path, default=REPO / "results" / "demo")
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time, one core each (default 2)")
    parser.add_argument("--synthetic", action="store_true", help="use the synthetic task even if GLUE is reachable")
    args = parser.parse_args(argv)
    methods = [m for m in args.methods.split(",") if m]
    unknown = [m for m in methods if m not in METHODS]
    if unknown or args.jobs < 1:
        parser.error(f"--methods: {unknown} not among {METHODS}" if unknown else f"--jobs={args.jobs}: must be ≥ 1")

    use_glue, why = (False, "--synthetic given") if args.synthetic else glue_reachable()
    print(f"demo data: {why}" if use_glue else
          f"demo data: no GLUE data reachable ({why}); using the synthetic sentiment task")
    lrs, lr_source = head_lrs()
    print(f"demo: {lr_source}")
    results = args.results.resolve()
    runs = demo_runs(methods, use_glue, lrs)
    paths = [mini.record_path(run, results) for run in runs]
    done = [run for run, path in zip(runs, paths) if mini.status_of(path) == "finished"]
    print(f"demo: {len(runs)} runs ({len(done)} finished already, reused; delete {args.results} to rerun); "
          f"per-run logs under {results / 'logs'}", flush=True)
    start = time.perf_counter()
    progress = mini.Progress(runs, done, "demo")
    failures = mini.execute([r for r in runs if r not in done], results, args.jobs, 1, progress)
    progress.close()
    if failures:
        print("demo: runs failed:\n  " + "\n  ".join(failures))
        return 1
    text = table([records.read(path) for path in paths])
    name = "sst2" if use_glue else "synthetic"
    print(f"\nMiniLM-L6 (pretrained, CPU, {os.cpu_count()} cores), seed 0, {time.perf_counter() - start:.0f}s; test = "
          f"{'the 872 SST-2 GLUE dev sentences' if use_glue else 'the 872 synthetic test sentences'}; "
          "a small-scale preview, not the paper's numbers\n")
    print(text)
    write_text_atomic(args.results / f"table-{name}.md", text + "\n")
    print(f"\nThe full table, with 5 GLUE tasks, 3 seeds, the ablations, the d sweep and the claims:\n  {FULL_TABLE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
