"""End to end through the shared runner: tiny random ViT on a few hundred real MNIST images (../shared/data/mnist),
run record included; the saved adapter restores the recorded test accuracy in a fresh model; a target list that
adapts nothing fails the run with a clear message."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from experiments import shared_data_dir

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
pytestmark = pytest.mark.skipif(
    not (shared_data_dir() / "mnist" / "t10k-images-idx3-ubyte.gz").exists(), reason="../shared/data/mnist not found"
)


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("WANDB_MODE", "disabled")


def compose(*overrides: str):
    import experiments

    return experiments.compose(overrides)


def run(tmp_path: Path, *overrides: str) -> dict:
    from experiments.run import run as run_config

    return run_config(compose(*overrides, f"paths.root={tmp_path}", "seed=0"))


@torch.no_grad()
def accuracy_and_loss(model, dataset) -> tuple[float, float]:
    model.eval()
    hits, loss = 0, 0.0
    for batch in torch.utils.data.DataLoader(dataset, batch_size=128):
        logits = model(pixel_values=batch["pixel_values"]).logits
        hits += (logits.argmax(-1) == batch["labels"]).sum().item()
        loss += torch.nn.functional.cross_entropy(logits, batch["labels"], reduction="sum").item()
    return hits / len(dataset), loss / len(dataset)


def test_gpart_smoke_run_writes_a_complete_record_and_a_restorable_adapter(tmp_path):
    from hydra.utils import instantiate
    from transformers import set_seed

    from gpart import load_adapter

    record = run(tmp_path, "experiment=vision/smoke/gpart")
    run_dir = tmp_path / "runs" / record["run_id"]
    assert json.loads((run_dir / "record.json").read_text())["status"] == "finished"
    assert (record["table"], record["model"], record["method"], record["task"]) == (
        "vision",
        "tiny-vit",
        "GPart",
        "mnist",
    )
    # tiny ViT: 2 layers × (q, v) of 32 × 32; head 32 × 10 + 10
    assert (record["adapted_modules"], record["adapted_space_size"]) == (4, 4 * 32 * 32)
    assert (record["trainable_params"], record["head_params"]) == (512, 330)
    validation = [e["validation"]["accuracy"] for e in record["epochs"]]
    assert len(validation) == 2 and record["best_epoch"] == record["epochs"][int(np.argmax(validation))]["epoch"]
    best = next(e for e in record["epochs"] if e["epoch"] == record["best_epoch"])
    assert record["test_metric"] == best["test"]["accuracy"] and 0.0 <= record["test_metric"] <= 1.0

    # A fresh process would rebuild the same random backbone from the seed; the adapter restores the best epoch.
    cfg = compose("experiment=vision/smoke/gpart", f"paths.root={tmp_path}", "seed=0")
    set_seed(0)
    task = instantiate(cfg.task, _convert_="all")
    model, processor = task.build_model(cfg.model)
    model = load_adapter(model, run_dir / "adapter")
    test_split = task.build_splits(processor, 0).test
    assert len(test_split) == 256
    restored_accuracy, restored_loss = accuracy_and_loss(model, test_split)
    assert restored_accuracy == pytest.approx(record["test_metric"], abs=1e-9)
    # the loss is sensitive to every weight (accuracy alone could match by chance near chance level)
    assert restored_loss == pytest.approx(best["test"]["loss"], rel=1e-4)
    set_seed(0)
    untrained, _ = task.build_model(cfg.model)
    assert accuracy_and_loss(untrained, test_split)[1] != pytest.approx(best["test"]["loss"], rel=1e-4)


def test_transformers_4_target_names_fail_the_run_loudly(tmp_path):
    with pytest.raises(ValueError, match=r"matches no module.*\['q_proj', 'v_proj'\]"):
        run(tmp_path, "experiment=vision/smoke/gpart", "model.target_modules=[query,value]")
    (record_file,) = (tmp_path / "runs").glob("*/record.json")
    record = json.loads(record_file.read_text())
    assert record["status"] == "failed" and "q_proj" in record["error"]


@pytest.mark.slow
@pytest.mark.parametrize(
    "method, adapted_modules, key",
    [
        ("unilora", 4, "Uni-LoRA"),
        ("lora", 4, "LoRA"),
        ("fourierft", 4, "FourierFT"),
        ("full", 0, "FF"),
        ("lp", 0, "LP"),
    ],
)
def test_every_smoke_method_runs_and_records_its_adapted_modules(tmp_path, method, adapted_modules, key):
    record = run(tmp_path, f"experiment=vision/smoke/{method}")
    assert record["status"] == "finished" and record["method"] == key
    assert record["adapted_modules"] == adapted_modules
    assert record["head_params"] == 330
    if method == "lp":
        assert record["trainable_params"] == 0
    assert record["test_metric"] is not None and len(record["epochs"]) == 2
