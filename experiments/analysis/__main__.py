"""`make analysis RUNS=... OUT=...`: distortion of the parameter → update map, loss landscapes and θ histograms.

    python -m experiments.analysis --runs results/mini/runs --out results/analysis
    python -m experiments.analysis --runs results/runs --out /tmp/a --what distortion --directions 64

Works on the records and saved adapters of any runs (CPU mini-scale or paper-scale). Every figure is written with
its data (CSV) and the command that made it (docs/analysis.md).
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from experiments.analysis import landscape, report
from experiments.analysis import runs as run_index
from experiments.analysis.update_map import UpdateMap, measure

log = logging.getLogger("experiments.analysis")
ANALYSES = ("distortion", "landscape", "theta")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m experiments.analysis", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=Path, required=True, help="folder of run records (searched recursively)")
    parser.add_argument("--out", type=Path, required=True, help="folder for the PNG/CSV/cmd files")
    parser.add_argument("--what", nargs="+", choices=ANALYSES, default=list(ANALYSES))
    parser.add_argument(
        "--exact-limit",
        type=int,
        default=512,
        help="exact singular values when the adapter has at most this many parameters",
    )
    parser.add_argument("--lanczos-steps", type=int, default=64, help="Lanczos steps on JᵀJ above the exact limit")
    parser.add_argument("--directions", type=int, default=256, help="random unit directions for the gain spread")
    parser.add_argument("--grid", type=int, default=21, help="landscape grid points per axis (odd: centre included)")
    parser.add_argument("--range", type=float, default=1.0, dest="extent", help="landscape α, β ∈ [-range, range]")
    parser.add_argument("--batches", type=int, default=4, help="validation batches per landscape point")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--landscape-methods", nargs="+", default=["GPart", "Uni-LoRA"])
    parser.add_argument(
        "--theta-methods",
        nargs="+",
        default=["GPart", "Uni-LoRA"],
        help="methods whose trained parameters are one vector θ (labels starting with these)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the random directions")
    parser.add_argument("--tasks", nargs="+", default=None, help="only runs of these tasks (default: every task)")
    args = parser.parse_args(argv)
    for name in ("exact_limit", "lanczos_steps", "directions", "batches", "batch_size"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.grid < 3 or args.grid % 2 == 0:
        parser.error(f"--grid must be an odd integer >= 3 (so the trained point is a grid point), got {args.grid}")
    if not args.extent > 0:
        parser.error(f"--range must be > 0, got {args.extent}")
    return args


def _name(kind: str, group: tuple[str, str], suffix: str = "") -> str:
    return "-".join([kind, *group]) + suffix


def distortion(found: list, args, command: str) -> list[Path]:
    summaries, gains, written = [], [], []
    for run in run_index.one_per_setting(found):
        if not run.record.get("adapted_modules"):  # full FT, head only, BitFit: no parameter → ΔW map to measure
            log.info("distortion: skip %s (%s adapts no module)", run.record["run_id"], run.label)
            continue
        for point in ("init", "trained"):
            _, model, _ = run_index.build(run, trained=point == "trained")
            try:
                update_map = UpdateMap(model, run.head_modules)
            except ValueError as error:  # full FT, head only, BitFit: no adapter map
                log.info("distortion: skip %s (%s)", run.record["run_id"], error)
                break
            start = time.perf_counter()
            result = measure(
                update_map,
                exact_limit=args.exact_limit,
                lanczos_steps=args.lanczos_steps,
                directions=args.directions,
                seed=args.seed,
            )
            model_key, task = run.group
            summaries.append(
                {
                    "model": model_key,
                    "task": task,
                    "label": run.label,
                    "point": point,
                    "run_id": run.record["run_id"],
                    **result.summary(),
                    "seconds": round(time.perf_counter() - start, 2),
                }
            )
            gains += [
                {"model": model_key, "task": task, "label": run.label, "point": point, "gain": g} for g in result.gains
            ]
            log.info(
                "distortion %s %s: κ=%s, σ∈[%.4g, %.4g] (%s)",
                run.label,
                point,
                result.condition,
                result.sigma_min,
                result.sigma_max,
                "exact" if result.exact else "Lanczos",
            )
    if not summaries:
        log.warning("distortion: no run with an adapter map under %s", args.runs)
        return written
    summary, gain_frame = pd.DataFrame(summaries), pd.DataFrame(gains)
    for (model_key, task), rows in summary.groupby(["model", "task"], sort=False):
        group_gains = gain_frame[(gain_frame.model == model_key) & (gain_frame.task == task)]
        figure = report.distortion_figure(
            group_gains, rows, f"Distortion of the parameter → ΔW map: {model_key}, {task}"
        )
        written.append(report.save(figure, rows, args.out, _name("distortion", (model_key, task)), command))
        report.write_csv(group_gains, args.out / f"{_name('distortion', (model_key, task), '-gains')}.csv")
    return written


def validation_batches(task, model, processor, seed: int, count: int, batch_size: int) -> list[dict]:
    """The first ``count`` validation batches exactly as the runner's Trainer would build them."""
    from transformers import Trainer, TrainingArguments

    splits = task.build_splits(processor, seed)
    arguments = TrainingArguments(
        output_dir=tempfile.mkdtemp(prefix="analysis-"),
        report_to=[],
        per_device_eval_batch_size=batch_size,
        label_names=["labels"],
    )
    trainer = Trainer(
        model=model, args=arguments, data_collator=task.data_collator(processor), processing_class=processor
    )
    loader = trainer.get_eval_dataloader(splits.validation)
    return [batch for _, batch in zip(range(count), loader)]


def landscapes(found: list, args, command: str) -> list[Path]:
    # Each method at its main budget (in the CPU study, GPart and Uni-LoRA at d = 2,880, not the d sweep's ends).
    wanted = {label: [r for r in run_index.main_budget(found) if r.label == label] for label in args.landscape_methods}
    written = []
    for group in dict.fromkeys(r.group for runs in wanted.values() for r in runs):
        pair = {label: next((r for r in runs if r.group == group), None) for label, runs in wanted.items()}
        pair = {label: run for label, run in pair.items() if run is not None}
        if not pair:
            continue
        axis = np.linspace(-args.extent, args.extent, args.grid)
        surfaces, rows = {}, []
        for label, run in pair.items():
            task, model, processor = run_index.build(run, trained=True, dtype=torch.float32)
            batches = validation_batches(task, model, processor, int(run.record["seed"]), args.batches, args.batch_size)
            params = UpdateMap(model, run.head_modules).params
            first, second = landscape.random_directions([p.detach() for p in params], seed=args.seed)
            surface = landscape.loss_surface(
                landscape.validation_loss(model, batches),
                params,
                first,
                second,
                axis,
                axis,
                description=f"landscape {label} {group[1]}",
            )
            surfaces[f"{label} (seed {run.record['seed']})"] = surface
            rows += [
                {"label": label, "run_id": run.record["run_id"], "alpha": a, "beta": b, "loss": surface[i, j]}
                for i, b in enumerate(axis)
                for j, a in enumerate(axis)
            ]
        figure = report.landscape_figure(
            surfaces, axis, axis, f"Validation loss around the trained adapter: {group[0]}, {group[1]}"
        )
        written.append(report.save(figure, pd.DataFrame(rows), args.out, _name("landscape", group), command))
    return written


def theta_histograms(found: list, args, command: str) -> list[Path]:
    written = []
    chosen = [r for r in found if any(r.label.startswith(m) for m in args.theta_methods)]
    for group in dict.fromkeys(r.group for r in chosen):
        vectors, rows = {}, []
        for run in (r for r in chosen if r.group == group):
            _, model, _ = run_index.build(run, trained=True, dtype=torch.float32)
            values = UpdateMap(model, run.head_modules).point().numpy()
            label = f"{run.label} s{run.record['seed']}"
            vectors[label] = values
            rows.append(
                {
                    "label": run.label,
                    "seed": run.record["seed"],
                    "run_id": run.record["run_id"],
                    "size": values.size,
                    "mean": values.mean(),
                    "std": values.std(),
                    "abs_max": np.abs(values).max(),
                    "zero_fraction": float((values == 0).mean()),
                }
            )
        figure = report.theta_figure(vectors, f"Trained θ: {group[0]}, {group[1]}")
        written.append(report.save(figure, pd.DataFrame(rows), args.out, _name("theta", group), command))
    return written


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parse_args(argv)
    command = report.command_line() if argv is None else "python -m experiments.analysis " + " ".join(argv)
    try:
        found = run_index.find_runs(args.runs)
    except FileNotFoundError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.tasks:
        found = [run for run in found if run.record.get("task") in args.tasks]
    if not found:
        print(
            f"error: no finished run with a saved adapter under {args.runs}"
            + (f" for tasks {args.tasks}" if args.tasks else ""),
            file=sys.stderr,
        )
        return 2
    steps = {"distortion": distortion, "landscape": landscapes, "theta": theta_histograms}
    for what in args.what:
        start = time.perf_counter()
        for path in steps[what](found, args, command):
            print(f"wrote {path}")
        print(f"{what}: {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
