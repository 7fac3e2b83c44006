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
    import experiments  # noqa: F401  (resolvers)
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        return compose("config", overrides=overrides)


@pytest.fixture
def compose():
    return compose_config
