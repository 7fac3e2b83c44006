"""Shared test fixtures (keep small): offline env, the shared data folder, and composing runner configs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from experiments import shared_data_dir

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Triton binds interpreter mode when it is first imported (its own jit'd helpers included), so it must be set before
# any test imports it. CPU runs never pick the Triton backend on their own ("auto" means CUDA only).
os.environ.setdefault("TRITON_INTERPRET", "1")

REPO = Path(__file__).resolve().parents[1]


def pytest_configure(config):
    """Under pytest-xdist (`make test` runs `-n 2`) the workers already fill the cores, so each one's torch and OpenMP
    get one thread (GPART_TEST_WORKER_THREADS to change it); left alone, every worker's torch takes every core and
    n workers oversubscribe them n times. A single-process run keeps torch's defaults."""
    if not hasattr(config, "workerinput"):  # the controller or a plain run, not an xdist worker
        return
    threads = os.environ.get("GPART_TEST_WORKER_THREADS", "1")
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = threads  # also what the subprocesses a test starts inherit
    import torch

    torch.set_num_threads(int(threads))


CONFIGS = REPO / "configs"
SHARED_DATA = shared_data_dir()


@pytest.fixture(scope="session")
def glue_dir() -> Path:
    path = SHARED_DATA / "glue"
    if not (path / "SST-2" / "train.tsv").exists():
        pytest.skip(f"GLUE TSVs not found at {path} (set GPART_SHARED_DATA)")
    return path


def compose_config(overrides: list[str]):
    """The runner's config as `python -m experiments.run <overrides>` would see it."""
    import experiments

    return experiments.compose(overrides)


@pytest.fixture
def compose():
    return compose_config
