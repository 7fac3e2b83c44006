"""`make demo`: the real pretrained MiniLM-L6 fine-tuned on CPU, offline, with GPart, LoRA, Uni-LoRA, full FT and
head-only, through the shared runner; prints accuracy, trainable params, step time and peak memory per method.

Data: SST-2 (a seeded 2,000-row train subset, 300 of them held out for the best epoch; the full 872-sentence GLUE
validation split as test) when GLUE data is reachable (`$GLUE_DIR` or the hub); otherwise the project's own
synthetic sentiment task (`experiments/tasks/synthetic.py`), so the demo never fails for want of data.

Budget rules follow the paper: each method runs its own `experiment=glue/base/<method>-sst2` config (GPart d = 23,040
= Uni-LoRA's θ length, per-method lrs from setup.md §2), with the model swapped for MiniLM and the epochs, sequence
length and train size cut to fit a CPU. Each method runs in its own process so peak-memory figures do not mix.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from hydra import compose, initialize_config_dir
from tqdm.auto import tqdm

import experiments  # noqa: F401  (resolvers)
from experiments import records
from experiments.atomic import write_text_atomic
from experiments.tasks.glue import GlueTask

REPO = Path(__file__).resolve().parents[1]
METHODS = ["gpart", "lora", "unilora", "full", "head_only"]
# What the demo changes from the paper's SST-2 experiment files, to fit 2 CPU cores in minutes.
# Head lr 1e-2 for every method: ~110 optimizer steps are too few for a fresh head at the paper's SST-2 head lrs;
# 1e-2 is the largest head lr of GPart's own roberta-base configs (RTE, setup.md §2). Adapter lrs stay the paper's.
CPU_BUDGET = ["model=minilm-l6", "task.max_length=64", "trainer.head_lr=1e-2",
              "trainer.sampling=group_by_length", "trainer.save_checkpoints=false", "trainer.logging_steps=20"]


def glue_reachable() -> tuple[bool, str]:
    """Whether SST-2 can be loaded (local `$GLUE_DIR` first, then the hub), and a line saying from where / why not."""
    data_dir = os.environ.get("GLUE_DIR") or None
    try:
        raw = GlueTask(key="sst2", metric="accuracy", data_dir=data_dir).load_raw()
    except (ValueError, RuntimeError) as error:
        return False, str(error).split(". ")[0]
    source = f"GLUE_DIR={data_dir}" if data_dir else "hub nyu-mll/glue"
    return True, f"SST-2 from {source}: {len(raw['train']['label'])} train rows, {len(raw['test']['label'])} test rows"


def overrides_for(method: str, use_glue: bool, epochs: int, results: Path) -> list[str]:
    task = ["task.train_subset=2000"] if use_glue else ["task=synthetic"]  # synthetic: 2,000 rows by construction
    return [f"experiment=glue/base/{method}-sst2", *task, *CPU_BUDGET, f"trainer.epochs={epochs}",
            f"paths.root={results}", "logger=none"]


def record_path(overrides: list[str]) -> Path:
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    run_id = records.make_run_id(cfg, records.config_hash(cfg))
    return Path(cfg.paths.runs_dir) / run_id / "record.json"


def run_method(overrides: list[str], log_file: Path) -> None:
    env = dict(os.environ, HF_HUB_OFFLINE=os.environ.get("HF_HUB_OFFLINE", "1"),
               WANDB_MODE=os.environ.get("WANDB_MODE", "disabled"))
    with open(log_file, "w") as log:
        done = subprocess.run([sys.executable, "-m", "experiments.run", *overrides], cwd=REPO, env=env,
                              stdout=log, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        raise SystemExit(f"demo: `python -m experiments.run {' '.join(overrides)}` failed; see {log_file}")


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


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--results", type=Path, default=REPO / "results" / "demo")
    parser.add_argument("--synthetic", action="store_true", help="use the synthetic task even if GLUE is reachable")
    args = parser.parse_args(argv)

    use_glue, why = (False, "--synthetic given") if args.synthetic else glue_reachable()
    print(f"demo data: {why}" if use_glue else
          f"demo data: no GLUE data reachable ({why}); using the synthetic sentiment task")
    args.results.mkdir(parents=True, exist_ok=True)
    rows, start = [], time.perf_counter()
    methods = tqdm(args.methods.split(","), desc="demo", unit="method", file=sys.stdout)
    for method in methods:
        overrides = overrides_for(method, use_glue, args.epochs, args.results.resolve())
        log_file = args.results / f"{method}-{'sst2' if use_glue else 'synthetic'}.log"
        methods.write(f"[{time.perf_counter() - start:5.0f}s] python -m experiments.run {' '.join(overrides)}\n"
                      f"        training progress: tail -f {log_file}")
        run_method(overrides, log_file)
        rows.append(records.read(record_path(overrides)))
    text = table(rows)
    print(f"\nMiniLM-L6 (pretrained, CPU, {os.cpu_count()} cores), {args.epochs} epochs, "
          f"total {time.perf_counter() - start:.0f}s; test = "
          f"{'the 872 SST-2 validation sentences' if use_glue else 'the 872 synthetic test sentences'}\n")
    print(text)
    write_text_atomic(args.results / f"table-{'sst2' if use_glue else 'synthetic'}.md", text + "\n")


if __name__ == "__main__":
    main()
