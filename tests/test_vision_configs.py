"""Every vision experiment composes with every paper dataset, and its keys are the ones paper_vision.csv uses."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CONFIG_DIR = REPO / "configs"
REFERENCE = REPO.parent / "shared" / "reference" / "paper_vision.csv"
PAPER_TASKS = ["oxford_pets", "stanford_cars", "cifar10", "dtd", "eurosat", "fgvc_aircraft", "resisc45", "cifar100"]
EXPERIMENTS = sorted(
    f"vision/{p.parent.name}/{p.stem}"
    for p in (CONFIG_DIR / "experiment" / "vision").glob("*/*.yaml")
    if p.parent.name in ("base", "large") and not p.stem.startswith("_")
)


def compose(*overrides: str):
    import experiments

    return experiments.compose(overrides)


@pytest.fixture(scope="module")
def paper_keys():
    if not REFERENCE.exists():
        pytest.skip(f"{REFERENCE} not found")
    with open(REFERENCE) as handle:
        rows = list(csv.DictReader(handle))
    return {column: {row[column] for row in rows} for column in ("model", "method", "task")}


def test_task_files_carry_the_paper_task_keys(paper_keys):
    assert set(PAPER_TASKS) == paper_keys["task"]
    for task in PAPER_TASKS:
        cfg = compose("experiment=vision/base/gpart", f"task=vision/{task}")
        assert cfg.task.key == task and cfg.task.table == "vision" and cfg.task.metric == "accuracy"
        assert cfg.task.splits.test is not None  # the paper reports the official test split


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_follows_the_protocol_with_paper_keys(experiment, paper_keys):
    size = experiment.split("/")[1]
    cfg = compose(f"experiment={experiment}", "task=vision/eurosat", "seed=3")
    assert cfg.task.key == "eurosat"  # the command-line dataset wins
    assert cfg.model.key == f"vit-{size}-patch16-224-in21k" and cfg.model.key in paper_keys["model"]
    assert cfg.method.key in paper_keys["method"] | {"LoRA"}  # LoRA: no row in the paper's vision table
    assert list(cfg.model.target_modules) == ["q_proj", "v_proj"]
    t = cfg.trainer  # setup.md §3
    assert (t.epochs, t.grad_accum, t.weight_decay, t.warmup_ratio, t.lr_scheduler, t.fp16) == (
        20,
        4,
        0.01,
        0.4,
        "linear",
        True,
    )
    assert t.batch_size == {"base": 64, "large": 32}[size]
    if cfg.method.key in ("GPart", "Uni-LoRA"):
        budget = {"base": 72_000, "large": 144_000}[size]
        assert cfg.method.config.get("d", cfg.method.config.get("theta_d_length")) == budget
        assert (t.lr, t.head_lr) == (4e-3, 3e-3)
