"""The command line behind `make reproduce-glue|vision|math|ablations`: each family of GPU runs, expanded into
launches of `python -m experiments.run`, run by the executor that the CPU study shares (experiments/runner/executor.py).

    python -m experiments.runner.sweep glue --sizes base --tasks "sst2 rte" --methods "gpart lora" --seeds 0,1
    python -m experiments.runner.sweep vision --dry-run          # the download plan, then the commands still to run
    python -m experiments.runner.sweep math --models smoke --status   # what has finished; writes nothing
    python -m experiments.runner.sweep ablations --tasks rte trainer.num_workers=8   # trailing words: overrides

A family expands into launches, one per setting (an experiment, with its task): `python -m experiments.run -m
<setting> seed=<seeds> <overrides>`, a Hydra multirun over the seeds, so that a launcher override (`hydra/launcher=slurm
hydra.launcher.partition=...`) fans the seeds out. A run is finished when the record at <runs_dir>/<run id>/record.json
says so, the run id computed by experiments/runner/records.py from the composed config; a launch runs only the seeds
not finished yet, and the runner resumes a killed run from its last checkpoint, so rerunning the same command goes on
where the last one stopped. Launches run `--jobs` at a time (default 1: one GPU), each with its output in a log file,
under one progress bar. At the end a summary lists the runs not finished (exit 1: run the same command again); once
every run has finished, the family's tables are built (`make tables`' step, or the ablation table).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import experiments
from experiments.runner import records
from experiments.runner.executor import Plan, Progress, Runner, add_worker_options, run_until_done, shown, status_of

REPO = experiments.REPO
CONFIGS = experiments.CONFIGS


# ---------------------------------------------------------------- the families of `make reproduce-*`

GLUE_TASKS = ("sst2", "mrpc", "cola", "qnli", "rte", "stsb")
GLUE_METHODS = (
    "gpart",
    "lora",
    "unilora",
    "vera",
    "vblora",
    "fourierft",
    "full",
    "bitfit",
    "head_only",
    "tied_lora",
    "lora_xs",
    "condlora",
)
GLUE_SIZES = ("base", "large")
GLUE_SEEDS = (0, 1, 2, 3, 4)
VISION_DATASETS = ("oxford_pets", "stanford_cars", "cifar10", "dtd", "eurosat", "fgvc_aircraft", "resisc45", "cifar100")
VISION_SIZES = ("base", "large")
VISION_SEEDS = (0, 1, 2, 3, 4)
MATH_MODELS = ("qwen2.5-0.5b", "gemma-7b", "mistral-7b-v0.1", "qwen2.5-7b", "llama-3.1-8b")
MATH_TASKS = ("gsm8k", "math")
MATH_SEEDS = (0,)
# GPart ablations on RoBERTa-base GLUE (configs/experiment/ablation/: deltas composed onto glue/base/<method>-<task>),
# each beside Uni-LoRA at the same d; records go to their own folder so the paper tables stay one setting per cell.
ABLATION_VARIANTS = ("isometric-off", "balanced", "fastfood", "block-scope", "signed-magnitude")
ABLATION_DS = ("5760", "11520", "46080", "92160")
ABLATION_SEEDS = (0, 1, 2)
ABLATION_RUNS = "results/ablation-runs"
# The runs the download plan composes: downloads do not depend on the method, so one method's runs stand for all.
PLAN_METHOD = "gpart"


@dataclass(frozen=True)
class Launch:
    """One `python -m experiments.run -m` command: a setting (experiment=..., task=...) over its seeds."""

    setting: tuple[str, ...]
    seeds: tuple[int, ...]
    extra: tuple[str, ...] = ()  # after the seeds: the family's runs folder, then the caller's overrides

    @property
    def name(self) -> str:
        return " ".join(self.setting)

    def overrides(self) -> list[str]:
        return [*self.setting, "seed=" + ",".join(map(str, self.seeds)), *self.extra]

    def arguments(self) -> list[str]:
        return ["-m", *self.overrides()]

    def with_seeds(self, seeds) -> Launch:
        return dataclasses.replace(self, seeds=tuple(seeds))


@dataclass
class Expansion:
    """A family's launches in the order they run, and the settings it leaves out."""

    launches: list[Launch] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # settings without an experiment file, one line each


def expand_glue(args) -> Expansion:
    """Every size x method x task with an experiment file; the others are named and skipped."""
    out = Expansion()
    for size in args.sizes or GLUE_SIZES:
        for method in args.methods or GLUE_METHODS:
            for task in args.tasks or GLUE_TASKS:
                name = f"glue/{size}/{method}-{task}"
                if not (CONFIGS / "experiment" / f"{name}.yaml").is_file():
                    out.skipped.append(f"# skip {name}: no experiment file (no published row or setting)")
                    continue
                out.launches.append(Launch((f"experiment={name}",), args.seeds or GLUE_SEEDS, tuple(args.overrides)))
    return out


def experiment_files(folder: str) -> tuple[str, ...]:
    """The experiments of configs/experiment/<folder>, by name, without the shared `_*.yaml` parts."""
    path = CONFIGS / "experiment" / folder
    if not path.is_dir():
        raise SweepError(f"no experiments for {folder}: {shown(path)} does not exist")
    return tuple(sorted(p.stem for p in path.glob("*.yaml") if not p.name.startswith("_")))


def expand_vision(args) -> Expansion:
    return Expansion(
        [
            Launch(
                (f"experiment=vision/{size}/{method}", f"task=vision/{dataset}"),
                args.seeds or VISION_SEEDS,
                tuple(args.overrides),
            )
            for size in args.sizes or VISION_SIZES
            for method in args.methods or experiment_files(f"vision/{size}")
            for dataset in args.datasets or VISION_DATASETS
        ]
    )


def math_task(model: str, task: str) -> str:
    """MODEL=smoke stays offline: full MATH exists only on the hub, so its MATH run scores MATH500, the 500-problem
    subset shipped in ../shared/data/math500 (configs/task/math/math500.yaml). Other models keep task=math/math."""
    return "math500" if (model, task) == ("smoke", "math") else task


def expand_math(args) -> Expansion:
    return Expansion(
        [
            Launch(
                (f"experiment=math/{model}/{method}", f"task=math/{math_task(model, task)}"),
                args.seeds or MATH_SEEDS,
                tuple(args.overrides),
            )
            for model in args.models or MATH_MODELS
            for method in args.methods or experiment_files(f"math/{model}")
            for task in args.tasks or MATH_TASKS
        ]
    )


def ablation_experiments(task: str, variants, ds) -> list[str]:
    """The reference GPart and Uni-LoRA, each GPart variant, then GPart and Uni-LoRA at each d."""
    gpart, unilora = f"glue/base/gpart-{task}", f"glue/base/unilora-{task}"
    return [
        gpart,
        unilora,
        *(f"[{gpart},ablation/{v}]" for v in variants),
        *(
            e
            for d in ds
            for e in (f"[{gpart},ablation/d-sweep/gpart-{d}]", f"[{unilora},ablation/d-sweep/unilora-{d}]")
        ),
    ]


def expand_ablations(args) -> Expansion:
    extra = (f"paths.runs_dir={args.runs_dir}", *args.overrides)
    return Expansion(
        [
            Launch((f"experiment={experiment}",), args.seeds or ABLATION_SEEDS, extra)
            for task in args.tasks or GLUE_TASKS
            for experiment in ablation_experiments(task, args.variants or ABLATION_VARIANTS, args.ds or ABLATION_DS)
        ]
    )


def download_runs(args) -> list[str]:
    """The runs whose configs the download plan reads: every model (size) x task (dataset) with the first method.
    None for the ablations: their downloads are reproduce-glue's (RoBERTa-base, GLUE)."""
    if args.family == "ablations":
        return []
    method = (args.methods or (PLAN_METHOD,))[0]
    if args.family == "glue":
        names = [
            f"glue/{size}/{method}-{task}" for size in args.sizes or GLUE_SIZES for task in args.tasks or GLUE_TASKS
        ]
        return [f"experiment={name}" for name in names if (CONFIGS / "experiment" / f"{name}.yaml").is_file()]
    if args.family == "vision":
        return [
            f"experiment=vision/{size}/{method} task=vision/{dataset}"
            for size in args.sizes or VISION_SIZES
            for dataset in args.datasets or VISION_DATASETS
        ]
    return [
        f"experiment=math/{model}/{method} task=math/{math_task(model, task)}"
        for model in args.models or MATH_MODELS
        for task in args.tasks or MATH_TASKS
    ]


EXPAND = {"glue": expand_glue, "vision": expand_vision, "math": expand_math, "ablations": expand_ablations}


# ---------------------------------------------------------------- where each run's record is


class SweepError(Exception):
    """A sweep that cannot be planned (an unknown folder, a config that does not compose): said before any run."""


@dataclass(frozen=True)
class Located:
    records: dict[int, Path]  # seed -> <runs_dir>/<run id>/record.json
    runs_dir: Path
    logs: Path  # the launch's log folder: under the Hydra output folder, never under results/


Where = dict[tuple[str, ...], Located]  # a launch's setting -> where its runs are (whichever of its seeds it runs)


def from_repo(path: str) -> Path:
    """A config path as the runs see it: they start in the repository, so a relative one is taken from there."""
    return Path(path) if Path(path).is_absolute() else REPO / path


def locate(launches: Sequence[Launch], family: str) -> Where:
    """Each launch's record paths. One composition per launch: the run id hashes the config without its seed
    (records.config_hash pins it), so only the id's seed part differs between the seeds."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    found = {}
    for launch in launches:
        try:
            cfg = experiments.compose([*launch.setting, f"seed={launch.seeds[0]}", *launch.extra])
            digest = records.config_hash(cfg)
        except (HydraException, OmegaConfBaseException, ValueError) as error:
            raise SweepError(
                f"cannot tell which runs of `{' '.join(launch.overrides())}` are finished: its "
                f"config does not compose ({type(error).__name__}: {error})"
            ) from None
        runs_dir = from_repo(cfg.paths.runs_dir)
        paths = {}
        for seed in launch.seeds:
            cfg.seed = seed
            paths[seed] = runs_dir / records.make_run_id(cfg, digest) / "record.json"
        found[launch.setting] = Located(paths, runs_dir, from_repo(cfg.paths.hydra_dir) / "sweeps" / family)
    return found


def split(launch: Launch, where: Where) -> tuple[Launch, Launch]:
    """(its finished runs, the others), each as a launch over those seeds."""
    records_of = where[launch.setting].records
    done = [seed for seed in launch.seeds if status_of(records_of[seed]) == "finished"]
    return launch.with_seeds(done), launch.with_seeds(s for s in launch.seeds if s not in done)


# ---------------------------------------------------------------- the command line


def words(text: str) -> tuple[str, ...]:
    """A list option as the Makefile passes it: words separated by spaces or commas; empty: the family's default."""
    return tuple(text.replace(",", " ").split())


def seed_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(word) for word in words(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: seeds are integers separated by commas, e.g. 0,1,2") from None


def parser() -> argparse.ArgumentParser:
    main_parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    families = main_parser.add_subparsers(dest="family", required=True, metavar="{glue,vision,math,ablations}")
    glue = families.add_parser("glue", help="RoBERTa base + large GLUE tables (setup.md §2)")
    glue.add_argument("--sizes", type=words, default=(), help="default: " + " ".join(GLUE_SIZES))
    glue.add_argument("--methods", type=words, default=(), help="default: " + " ".join(GLUE_METHODS))
    glue.add_argument("--tasks", type=words, default=(), help="default: " + " ".join(GLUE_TASKS))
    vision = families.add_parser("vision", help="ViT-B + ViT-L vision tables (setup.md §3)")
    vision.add_argument("--sizes", type=words, default=(), help="default: " + " ".join(VISION_SIZES))
    vision.add_argument("--methods", type=words, default=(), help="default: every configs/experiment/vision/<size>/")
    vision.add_argument("--datasets", type=words, default=(), help="default: " + " ".join(VISION_DATASETS))
    math = families.add_parser("math", help="MetaMathQA -> GSM8K / MATH (setup.md §4); --models smoke runs offline")
    math.add_argument("--models", type=words, default=(), help="default: " + " ".join(MATH_MODELS))
    math.add_argument("--methods", type=words, default=(), help="default: every configs/experiment/math/<model>/")
    math.add_argument("--tasks", type=words, default=(), help="default: " + " ".join(MATH_TASKS))
    ablations = families.add_parser("ablations", help="GPart ablations + d sweep vs Uni-LoRA, RoBERTa-base GLUE")
    ablations.add_argument("--tasks", type=words, default=(), help="default: " + " ".join(GLUE_TASKS))
    ablations.add_argument("--variants", type=words, default=(), help="default: " + " ".join(ABLATION_VARIANTS))
    ablations.add_argument("--ds", type=words, default=(), help="default: " + " ".join(ABLATION_DS))
    ablations.add_argument("--runs-dir", default=ABLATION_RUNS, help=f"where the records go (default {ABLATION_RUNS})")
    seeds = {"glue": GLUE_SEEDS, "vision": VISION_SEEDS, "math": MATH_SEEDS, "ablations": ABLATION_SEEDS}
    for name, family in families.choices.items():
        family.add_argument(
            "--seeds",
            type=seed_list,
            default=(),
            help="comma-separated (default " + ",".join(map(str, seeds[name])) + ")",
        )
        add_worker_options(family, jobs=1, threads=None, unit="launches")
        family.add_argument(
            "--dry-run", action="store_true", help="the download plan, then the commands still to run; runs nothing"
        )
        family.add_argument("--no-plan", action="store_true", help="--dry-run without the download plan")
        family.add_argument("--status", action="store_true", help="runs finished per launch; writes nothing")
        family.add_argument(
            "--prefix", type=str.split, default=(), help="a command each launch runs under, e.g. \"srun --gres=gpu:1\""
        )
        family.add_argument("--no-tables", action="store_true", help="no tables at the end")
        if name != "ablations":
            family.add_argument("--tables-runs", help="the records the tables read (default: the sweep's runs folder)")
            family.add_argument("--tables-out", default="results", help="where the tables go (default results)")
        family.add_argument("--tables-args", type=str.split, default=(), help="more options of the tables step")
        family.add_argument("overrides", nargs="*", help="Hydra overrides appended to every run")
    return main_parser


def command_line(prefix: Sequence[str], launch: Launch) -> str:
    return " ".join([*prefix, shown(Path(sys.executable)), "-m", "experiments.run", *launch.arguments()])


def dry_run(args, expansion: Expansion, where: Where) -> int:
    """The download plan, then each launch as it would run now: its unfinished seeds, or `# finished:`."""
    runs = download_runs(args)
    if runs and not args.no_plan:
        from experiments.tools import download_plan

        download_plan.main([word for run in runs for word in ("--run", run)])
    for line in expansion.skipped:
        print(line)
    for launch in expansion.launches:
        _, left = split(launch, where)
        print(command_line(args.prefix, left) if left.seeds else "# finished: " + command_line(args.prefix, launch))
    return 0


def status(args, expansion: Expansion, where: Where) -> int:
    """Read-only: finished runs per launch, then in all."""
    for line in expansion.skipped:
        print(line)
    for launch in expansion.launches:
        done, _ = split(launch, where)
        print(f"{len(done.seeds)}/{len(launch.seeds)} finished  {' '.join(launch.overrides())}")
    finished, total = count_runs(expansion, where)
    print(
        f"{args.family}: {finished} of {total} runs finished in {len(expansion.launches)} launches"
        + (": the sweep is complete" if finished == total else "")
    )
    return 0


def count_runs(expansion: Expansion, where: Where) -> tuple[int, int]:
    finished = sum(len(split(launch, where)[0].seeds) for launch in expansion.launches)
    return finished, sum(len(launch.seeds) for launch in expansion.launches)


def seeds_in(launch: Launch) -> int:
    return len(launch.seeds)


def run(args, expansion: Expansion, where: Where) -> int:
    """Run every launch's unfinished seeds, `--jobs` at a time; then the summary, and the tables when all finished."""
    label = f"sweep {args.family}"
    runner = Runner(
        Launch.arguments,
        lambda launch: where[launch.setting].logs / f"{records.slug(launch.name)}.log",
        threads=args.threads,
        env_defaults={"WANDB_MODE": "disabled"},
        prefix=args.prefix,
        label=label,
    )

    def plan() -> Plan:
        return Plan([left for launch in expansion.launches if (left := split(launch, where)[1]).seeds])

    def start(now: Plan, todo: list[Launch]) -> Progress:
        finished, total = count_runs(expansion, where)
        print(
            f"{label}: {finished} of {total} runs finished, {total - finished} to run in {len(todo)} launches, "
            f"{args.jobs} at a time; finished runs are skipped, killed ones resume",
            flush=True,
        )
        done = [split(launch, where)[0] for launch in expansion.launches]
        return Progress(expansion.launches, [part for part in done if part.seeds], label, cost=seeds_in, count=seeds_in)

    for line in expansion.skipped:
        print(line)
    failures = run_until_done(
        plan, lambda launch: not split(launch, where)[1].seeds, runner, args.jobs, start, announce=True
    )
    if not summary(args, expansion, where, failures):
        return 1
    return 0 if args.no_tables else tables(args, where)


def summary(args, expansion: Expansion, where: Where, failures: list[str]) -> bool:
    """The sweep's last word: how many runs finished, and each one that did not. True when all did."""
    finished, total = count_runs(expansion, where)
    print(f"sweep {args.family}: {finished} of {total} runs finished")
    if finished == total:
        return True
    print("runs not finished (run the same command again to retry them; finished runs are skipped):")
    for launch in expansion.launches:
        records_of = where[launch.setting].records
        for seed in split(launch, where)[1].seeds:
            print(f"  {launch.name} seed={seed}: {status_of(records_of[seed])}  ({shown(records_of[seed])})")
    for line in failures:
        print(f"  {line}")
    return False


def table_commands(args, where: Where) -> list[list[str]]:
    """What the target built once every run had finished: `make tables` (the paper tables), or for the ablations
    the ablation table."""
    python = [sys.executable, "-m"]
    if args.family == "ablations":
        return [
            [
                *python,
                "experiments.report.ablation_table",
                "--runs",
                args.runs_dir,
                "--out",
                "results/tables",
                *args.tables_args,
            ]
        ]
    runs = args.tables_runs or (shown(next(iter(where.values())).runs_dir) if where else "results/runs")
    return [[*python, "experiments.report.tables", "--runs", runs, "--out", args.tables_out, *args.tables_args]]


def tables(args, where: Where) -> int:
    env = {"HF_HUB_OFFLINE": "1", **os.environ}  # `make tables` is offline unless told otherwise
    for command in table_commands(args, where):
        print("$ " + " ".join([shown(Path(command[0])), *command[1:]]), flush=True)
        code = subprocess.call(command, cwd=REPO, env=env)
        if code:
            return code
    return 0


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    try:
        expansion = EXPAND[args.family](args)
        where = locate(expansion.launches, args.family)
    except SweepError as error:
        print(f"sweep {args.family}: {error}", file=sys.stderr)
        return 2
    if args.status:
        return status(args, expansion, where)
    if args.dry_run:
        return dry_run(args, expansion, where)
    return run(args, expansion, where)


if __name__ == "__main__":
    sys.exit(main())
