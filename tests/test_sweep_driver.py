"""`make reproduce-glue|vision|math|ablations` through `python -m experiments.runner.sweep`: the runs it expands are
those the Makefile's shell loops expanded (derived here the loops' way), `--status` writes nothing, finished runs are
skipped and the others run with only their unfinished seeds. Nothing trains: the executor is a fake that writes
records, or each launch runs under a prefix that does nothing."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from experiments import CONFIGS, REPO
from experiments.runner import executor, records, sweep

# The lists of the Makefile's loops, as it spelled them.
GLUE_TASKS = "sst2 mrpc cola qnli rte stsb"
GLUE_METHODS = "gpart lora unilora vera vblora fourierft full bitfit head_only tied_lora lora_xs condlora"
VISION_DATASETS = "oxford_pets stanford_cars cifar10 dtd eurosat fgvc_aircraft resisc45 cifar100"
MATH_MODELS = "qwen2.5-0.5b gemma-7b mistral-7b-v0.1 qwen2.5-7b llama-3.1-8b"
ABLATION_VARIANTS = "isometric-off balanced fastfood block-scope signed-magnitude"
ABLATION_D = "5760 11520 46080 92160"


def listed(folder: str) -> list[str]:
    """`ls configs/experiment/<folder> | grep -v '^_' | sed 's/\\.yaml$//'`: the methods when METHODS is unset."""
    names = sorted(os.listdir(CONFIGS / "experiment" / folder))
    return [name.removesuffix(".yaml") for name in names if not name.startswith("_")]


def old_glue(MODEL="", METHODS="", TASKS="", SEEDS="", GLUE_ARGS=""):
    runs, skipped = [], []
    for size in (MODEL or "base large").split():
        for method in (METHODS or GLUE_METHODS).split():
            for task in (TASKS or GLUE_TASKS).split():
                if not (CONFIGS / "experiment" / "glue" / size / f"{method}-{task}.yaml").is_file():
                    skipped.append(
                        f"# skip glue/{size}/{method}-{task}: no experiment file (no published row or setting)"
                    )
                    continue
                runs.append(
                    " ".join(
                        [f"experiment=glue/{size}/{method}-{task}", f"seed={SEEDS or '0,1,2,3,4'}", *GLUE_ARGS.split()]
                    )
                )
    return runs, skipped


def old_vision(SIZES="", METHODS="", DATASETS="", SEEDS="", VISION_ARGS=""):
    return [
        " ".join(
            [
                f"experiment=vision/{size}/{method}",
                f"task=vision/{dataset}",
                f"seed={SEEDS or '0,1,2,3,4'}",
                *VISION_ARGS.split(),
            ]
        )
        for size in (SIZES or "base large").split()
        for method in METHODS.split() or listed(f"vision/{size}")
        for dataset in (DATASETS or VISION_DATASETS).split()
    ], []


def old_math(MODEL="", METHODS="", TASKS="", SEEDS="", MATH_ARGS=""):
    runs = []
    for model in (MODEL or MATH_MODELS).split():
        for method in METHODS.split() or listed(f"math/{model}"):
            for task in (TASKS or "gsm8k math").split():
                task = "math500" if f"{model}/{task}" == "smoke/math" else task
                runs.append(
                    " ".join(
                        [
                            f"experiment=math/{model}/{method}",
                            f"task=math/{task}",
                            f"seed={SEEDS or 0}",
                            *MATH_ARGS.split(),
                        ]
                    )
                )
    return runs, []


def old_ablations(TASKS="", VARIANTS="", DS="", SEEDS="", ABLATION_RUNS="results/ablation-runs", ABLATION_ARGS=""):
    runs = []
    for task in (TASKS or GLUE_TASKS).split():
        experiments = [f"glue/base/gpart-{task}", f"glue/base/unilora-{task}"]
        experiments += [f"[glue/base/gpart-{task},ablation/{v}]" for v in (VARIANTS or ABLATION_VARIANTS).split()]
        for d in (DS or ABLATION_D).split():
            experiments += [
                f"[glue/base/gpart-{task},ablation/d-sweep/gpart-{d}]",
                f"[glue/base/unilora-{task},ablation/d-sweep/unilora-{d}]",
            ]
        runs += [
            " ".join(
                [
                    f"experiment={e}",
                    f"seed={SEEDS or '0,1,2'}",
                    f"paths.runs_dir={ABLATION_RUNS}",
                    *ABLATION_ARGS.split(),
                ]
            )
            for e in experiments
        ]
    return runs, []


OLD = {"glue": old_glue, "vision": old_vision, "math": old_math, "ablations": old_ablations}
CASES = [
    ("glue", {}),
    (
        "glue",
        {
            "MODEL": "base",
            "TASKS": "sst2 rte",
            "METHODS": "gpart lora condlora lora_xs",
            "SEEDS": "0,1",
            "GLUE_ARGS": "trainer.epochs=1 hydra/launcher=slurm",
        },
    ),
    ("glue", {"MODEL": "large", "METHODS": "tied_lora lora_xs", "TASKS": "cola"}),
    ("vision", {}),
    (
        "vision",
        {
            "SIZES": "base",
            "DATASETS": "cifar10 dtd",
            "METHODS": "gpart lp",
            "SEEDS": "0,1",
            "VISION_ARGS": "trainer.num_workers=16 logger=wandb",
        },
    ),
    ("math", {}),
    ("math", {"MODEL": "smoke"}),
    (
        "math",
        {
            "MODEL": "qwen2.5-0.5b smoke",
            "METHODS": "gpart lora",
            "TASKS": "math",
            "SEEDS": "0,1",
            "MATH_ARGS": "trainer.epochs=1",
        },
    ),
    ("ablations", {}),
    (
        "ablations",
        {
            "TASKS": "rte",
            "VARIANTS": "fastfood",
            "DS": "5760",
            "SEEDS": "0",
            "ABLATION_RUNS": "/tmp/abl",
            "ABLATION_ARGS": "trainer.epochs=1",
        },
    ),
]


def make_command(family: str, variables: dict) -> list[str]:
    """The sweep's arguments as the target passes them (`make -n`: printed, not run)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAKE")}
    assignments = [f"{k}={v}" for k, v in variables.items()]
    printed = subprocess.run(
        [
            "make",
            "-n",
            "--no-print-directory",
            "-o",
            ".venv/.installed-stamp",
            f"reproduce-{family}",
            "PY=python",
            *assignments,
        ],
        cwd=REPO,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    words = shlex.split(printed)
    assert words[:3] == ["python", "-m", "experiments.runner.sweep"], printed
    return words[3:]


@pytest.mark.skipif(shutil.which("make") is None, reason="make not installed")
@pytest.mark.parametrize("family, variables", CASES, ids=[f"{f}-{'-'.join(v) or 'defaults'}" for f, v in CASES])
def test_the_targets_expand_the_runs_of_the_makefile_loops(family, variables):
    args = sweep.parser().parse_args(make_command(family, variables))
    expansion = sweep.EXPAND[family](args)
    runs, skipped = OLD[family](**variables)
    assert [" ".join(launch.overrides()) for launch in expansion.launches] == runs
    assert expansion.skipped == skipped
    if family == "glue" and variables.get("MODEL") == "base":
        assert skipped  # LoRA-XS has large files only: the skip rule is exercised


def test_a_dry_run_prints_the_download_plan_then_the_commands(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(executor, "execute", forbidden)
    root = f"paths.root={tmp_path / 'results'}"
    assert (
        sweep.main(
            [
                "glue",
                "--sizes",
                "base",
                "--tasks",
                "rte",
                "--methods",
                "gpart lora_xs",
                "--seeds",
                "0,1",
                "--dry-run",
                root,
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "roberta-base" in out and "nyu-mll/glue" in out
    assert out.index("Download plan") < out.index(
        "-m experiments.run -m experiment=glue/base/gpart-rte seed=0,1 " + root
    )
    assert "# skip glue/base/lora_xs-rte: no experiment file" in out
    assert not (tmp_path / "results").exists()


# ---------------------------------------------------------------- records: finished ones skipped, --status read-only


def forbidden(*args, **kwargs):
    raise AssertionError("nothing may run here")


def record_path(overrides: list[str]) -> Path:
    """Where experiments/run.py puts the record of one run (composed per seed, independently of the driver)."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    return Path(cfg.paths.runs_dir) / records.make_run_id(cfg, records.config_hash(cfg)) / "record.json"


def write_record(overrides: list[str], status: str = "finished") -> Path:
    path = record_path(overrides)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"schema_version": 1, "run_id": path.parent.name, "status": status}))
    return path


def narrow_glue(tmp_path: Path) -> tuple[list[str], list[str]]:
    """GPart, LoRA and Uni-LoRA on RTE, seeds 0 and 1, into tmp_path; and the overrides every run gets."""
    extra = [f"paths.root={tmp_path / 'results'}", f"paths.hydra_dir={tmp_path / 'outputs'}"]
    return [
        "glue",
        "--sizes",
        "base",
        "--methods",
        "gpart lora unilora",
        "--tasks",
        "rte",
        "--seeds",
        "0,1",
        *extra,
    ], extra


def files(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


def test_status_and_dry_run_write_nothing(tmp_path, monkeypatch, capsys):
    argv, extra = narrow_glue(tmp_path)
    write_record(["experiment=glue/base/gpart-rte", "seed=0", *extra])
    write_record(["experiment=glue/base/lora-rte", "seed=1", *extra], status="running")
    monkeypatch.setattr(executor, "execute", forbidden)
    monkeypatch.chdir(tmp_path)
    outputs = REPO / "outputs"
    before, repo_outputs = files(tmp_path), outputs.exists() and files(outputs)
    assert sweep.main([*argv, "--status"]) == 0
    assert files(tmp_path) == before and (outputs.exists() and files(outputs)) == repo_outputs
    out = capsys.readouterr().out
    assert "1/2 finished  experiment=glue/base/gpart-rte seed=0,1" in out
    assert "0/2 finished  experiment=glue/base/lora-rte seed=0,1" in out
    assert "glue: 1 of 6 runs finished in 3 launches" in out
    assert sweep.main([*argv, "--dry-run", "--no-plan"]) == 0 and files(tmp_path) == before
    commands = capsys.readouterr().out.splitlines()
    assert [c.split(" -m experiments.run -m ")[1].split(" paths.")[0] for c in commands] == [
        "experiment=glue/base/gpart-rte seed=1",
        "experiment=glue/base/lora-rte seed=0,1",
        "experiment=glue/base/unilora-rte seed=0,1",
    ]


def test_finished_runs_are_skipped_and_the_others_run_with_their_seeds(tmp_path, monkeypatch, capsys):
    argv, extra = narrow_glue(tmp_path)
    for seed in (0, 1):
        write_record(["experiment=glue/base/gpart-rte", f"seed={seed}", *extra])
    write_record(["experiment=glue/base/lora-rte", "seed=0", *extra])
    write_record(["experiment=glue/base/lora-rte", "seed=1", *extra], status="running")  # killed: resumes
    ran, built = [], []

    def succeed(todo, runner, jobs, progress, announce=False):
        for launch in todo:
            ran.append(runner.command(launch)[1:])
            for seed in launch.seeds:
                write_record([*launch.setting, f"seed={seed}", *launch.extra])
            progress.finished(launch)
        return []

    monkeypatch.setattr(executor, "execute", succeed)
    monkeypatch.setattr(sweep, "tables", lambda args, where: built.append(sweep.table_commands(args, where)) or 0)
    assert sweep.main(argv) == 0
    assert ran == [
        ["-m", "experiments.run", "-m", "experiment=glue/base/lora-rte", "seed=1", *extra],
        ["-m", "experiments.run", "-m", "experiment=glue/base/unilora-rte", "seed=0,1", *extra],
    ]
    assert "sweep glue: 6 of 6 runs finished" in capsys.readouterr().out
    (command,) = built[0]
    assert command[1:] == [
        "-m",
        "experiments.report.tables",
        "--runs",
        str(tmp_path / "results" / "runs"),
        "--out",
        "results",
    ]
    ran.clear()
    assert sweep.main(argv) == 0 and ran == []  # all finished: nothing runs again


def test_runs_not_finished_are_listed_and_the_exit_is_1_without_tables(tmp_path, monkeypatch, capsys):
    argv, extra = narrow_glue(tmp_path)
    write_record(["experiment=glue/base/lora-rte", "seed=1", *extra], status="failed")
    monkeypatch.setattr(sweep, "tables", forbidden)
    # Each launch runs under `true`: it ends at once, without error and without a record.
    assert sweep.main([*argv, "--prefix", "true"]) == 1
    out = capsys.readouterr().out
    assert "sweep glue: 0 of 6 runs finished" in out
    assert "experiment=glue/base/lora-rte seed=1: failed" in out
    assert "experiment=glue/base/gpart-rte seed=0: pending" in out
    log = (tmp_path / "outputs" / "sweeps" / "glue" / "experiment-glue-base-gpart-rte.log").read_text()
    assert f"$ true python -m experiments.run -m experiment=glue/base/gpart-rte seed=0,1 {' '.join(extra)}" in log


def test_the_bar_grows_with_a_plan_that_grows_instead_of_passing_its_total(capsys):
    """A round can add runs the first plan did not know (an lr grid's edge extension): the count never reads n/m
    with n > m and the bar never exceeds its total."""
    progress = executor.Progress(["a", "b"], [], "study", cost=lambda job: 10.0)
    for job in ("a", "b", "edge"):
        progress.finished(job)
        assert progress.done <= progress.total
        assert progress.bar.n <= progress.bar.total
    assert (progress.done, progress.total) == (3, 3)
    assert progress._desc() == "study 3/3 runs"
    progress.close()
