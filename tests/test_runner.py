"""The shared runner end to end on a tiny random RoBERTa and a few dozen rows of ../shared/data/glue/SST-2."""

from __future__ import annotations

import json
import os

import pytest
import torch

from experiments import run as runner
from experiments.methods import is_head_parameter
from experiments.runner import records

# Shapes for the tiny model (hidden 32, 2 layers; q,v adapted -> N = 4 * 32 * 32 = 4096).
TINY_METHOD = {
    "gpart": ["method.config.d=512"],
    "unilora": ["method.config.theta_d_length=512"],
    "vblora": ["+method.config.vector_length=16", "+method.config.num_vectors=16"],
    "fourierft": ["+method.config.n_frequency=100"],
}
METHODS = [
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
]
SCHEMA_KEYS = {
    "schema_version",
    "run_id",
    "status",
    "table",
    "model",
    "method",
    "task",
    "seed",
    "metric",
    "config",
    "config_hash",
    "adapted_space_size",
    "adapted_modules",
    "trainable_params",
    "head_params",
    "epochs",
    "best_epoch",
    "validation_metric",
    "test_metric",
    "test_metrics",
    "timing",
    "memory",
    "adapter_bytes",
    "versions",
    "git",
    "hardware",
    "started_at",
    "finished_at",
    "error",
}
HEAD_PARAMS = 32 * 32 + 32 + 32 * 2 + 2  # RobertaClassificationHead: dense + out_proj


def tiny(glue_dir, tmp_path, method, *extra):
    return [
        f"method={method}",
        "model=tiny-roberta",
        "task=glue/sst2",
        f"task.data_dir={glue_dir}",
        "task.train_subset=48",
        "task.validation_min_rows=8",
        "task.test_subset=24",
        "task.max_length=32",
        "trainer.epochs=2",
        "trainer.batch_size=8",
        "trainer.eval_batch_size=32",
        "trainer.logging_steps=1",
        "trainer.save_checkpoints=false",
        f"paths.root={tmp_path}",
        "logger=none",
        *TINY_METHOD.get(method, []),
        *extra,
    ]


def record_of(cfg):
    run_id = records.make_run_id(cfg, records.config_hash(cfg))
    return records.read(os.path.join(cfg.paths.runs_dir, run_id, "record.json"))


@pytest.mark.parametrize("method", METHODS)
def test_smoke_run_writes_a_complete_record(compose, glue_dir, tmp_path, method):
    cfg = compose(tiny(glue_dir, tmp_path, method))
    record = runner.run(cfg)
    assert record == record_of(cfg)  # what is on disk is what run() returned
    assert SCHEMA_KEYS <= set(record) and record["status"] == "finished" and record["error"] is None
    assert (record["table"], record["model"], record["task"], record["metric"]) == (
        "glue",
        "tiny-roberta",
        "sst2",
        "accuracy",
    )
    assert [e["epoch"] for e in record["epochs"]] == [1, 2]
    best = record["epochs"][record["best_epoch"] - 1]
    assert record["validation_metric"] == max(e["validation"]["accuracy"] for e in record["epochs"])
    assert record["test_metric"] == best["test"]["accuracy"] and 0.0 <= record["test_metric"] <= 1.0
    assert record["head_params"] == HEAD_PARAMS
    assert record["adapter_bytes"] and record["adapter_bytes"] > 0
    assert record["timing"]["median_step_s"] > 0 and record["timing"]["wall_s"] > 0
    assert record["memory"]["peak_bytes"] >= 0 and record["memory"]["kind"]
    assert record["versions"]["torch"] and record["versions"]["peft"] and record["hardware"]["device_name"]
    assert "commit" in record["git"] and "dirty" in record["git"]
    assert record["config"]["seed"] == 0 and record["config"]["method"]["key"] == record["method"]


@pytest.mark.parametrize(
    "method,trainable,size,modules",
    [
        ("gpart", 512, 4096, 4),
        ("lora", 4 * 8 * (32 + 32), 4096, 4),
        ("unilora", 512, 4096, 4),
        ("head_only", 0, None, 0),
        # baselines/: Tied-LoRA r=8 ties A, B per target: 2·8·(32+32) + 4·(8+32); LoRA-XS r=16: 8 modules × 16², its
        # targets add attention-out (32×32) and FFN-out (32×64) to q,v; CondLoRA r=8: 2 targets × 2·8·32.
        ("tied_lora", 2 * 8 * 64 + 4 * (8 + 32), 4096, 4),
        ("lora_xs", 8 * 16 * 16, 4096 + 2 * 1024 + 2 * 2048, 8),
        ("condlora", 2 * 2 * 8 * 32, 4096, 4),
    ],
)
def test_record_counts_follow_the_paper_convention(compose, glue_dir, tmp_path, method, trainable, size, modules):
    """Adapter parameters exclude the head; N is the number of scalars in the adapted q,v weights."""
    record = runner.run(compose(tiny(glue_dir, tmp_path, method, "trainer.epochs=1", "trainer.max_steps=1")))
    assert (record["trainable_params"], record["adapted_space_size"], record["adapted_modules"]) == (
        trainable,
        size,
        modules,
    )


@pytest.mark.parametrize("method", [m for m in METHODS if m != "full"])
def test_only_adapter_and_head_parameters_move(compose, glue_dir, tmp_path, method):
    from hydra.utils import instantiate

    from experiments.methods import build_method

    cfg = compose(tiny(glue_dir, tmp_path, method, "trainer.max_steps=3", "trainer.lr=5e-2", "trainer.head_lr=5e-2"))
    task = instantiate(cfg.task, _convert_="all")
    model, processor = task.build_model(cfg.model)
    backbone = {id(p): name for name, p in model.named_parameters()}  # the pretrained model's own tensors
    method_impl = build_method(cfg.method, cfg.model)
    model = method_impl.apply(model)
    before = {id(p): p.detach().clone() for p in model.parameters()}
    splits = task.build_splits(processor, 0)
    record = records.RunRecord(tmp_path / "record.json", {"epochs": [], "run_id": "t"})
    recorder = runner.EpochRecorder(task, splits, method_impl, record, tmp_path, False)
    recorder.evaluate_epoch = lambda state: None
    runner.make_trainer(cfg, task, model, processor, splits, recorder, tmp_path, "t").train()

    moved = [(name, p) for name, p in model.named_parameters() if not torch.equal(before[id(p)], p.detach())]
    assert moved, f"{method}: nothing trained"
    for name, param in moved:
        if id(param) in backbone:  # a pretrained tensor moved: only the head (or BitFit's biases) may
            allowed = is_head_parameter(backbone[id(param)], cfg.model.head_modules) or (
                method == "bitfit" and name.endswith(".bias")
            )
            assert allowed, f"{method}: frozen pretrained weight {backbone[id(param)]} moved"
    if method not in ("head_only", "bitfit"):
        assert any(id(p) not in backbone and not is_head_parameter(n, cfg.model.head_modules) for n, p in moved), (
            f"{method}: the adapter did not move"
        )
    if method == "head_only":
        assert all(is_head_parameter(n, cfg.model.head_modules) for n, _ in moved)


def test_adapter_and_head_get_their_own_learning_rates(compose, glue_dir, tmp_path):
    cfg = compose(tiny(glue_dir, tmp_path, "gpart", "trainer.lr=3e-3", "trainer.head_lr=7e-4"))
    task, method, model, processor = runner.prepare(cfg)
    splits = task.build_splits(processor, 0)
    recorder = runner.EpochRecorder(
        task, splits, method, records.RunRecord(tmp_path / "record.json", {"epochs": []}), tmp_path, False
    )
    trainer = runner.make_trainer(cfg, task, model, processor, splits, recorder, tmp_path, "t")
    optimizer = trainer.create_optimizer()
    names = {id(p): n for n, p in model.named_parameters()}
    for group in optimizer.param_groups:
        for param in group["params"]:
            expected = 7e-4 if is_head_parameter(names[id(param)], ["classifier"]) else 3e-3
            assert group["lr"] == pytest.approx(expected), names[id(param)]
    trained = sum(p.numel() for g in optimizer.param_groups for p in g["params"])
    assert trained == 512 + HEAD_PARAMS


def test_d_larger_than_N_is_a_clear_error_and_a_failed_record(compose, glue_dir, tmp_path):
    cfg = compose(tiny(glue_dir, tmp_path, "gpart", "method.config.d=100000"))
    with pytest.raises(ValueError, match="d=100000"):
        runner.run(cfg)
    record = record_of(cfg)
    assert record["status"] == "failed" and "d=100000" in record["error"] and record["test_metric"] is None


def test_target_modules_matching_nothing_is_an_error(compose, glue_dir, tmp_path):
    cfg = compose(tiny(glue_dir, tmp_path, "lora", "model.target_modules=[q_proj]"))
    with pytest.raises(ValueError, match="q_proj"):
        runner.run(cfg)


def test_missing_data_folder_is_a_clear_error(compose, tmp_path):
    cfg = compose(tiny(tmp_path / "no_glue_here", tmp_path, "lora"))
    with pytest.raises(ValueError, match="does not exist"):
        runner.run(cfg)


def test_finished_run_is_skipped_on_rerun(compose, glue_dir, tmp_path, monkeypatch):
    cfg = compose(tiny(glue_dir, tmp_path, "head_only", "trainer.epochs=1"))
    first = runner.run(cfg)
    monkeypatch.setattr(runner, "train", lambda *a, **k: pytest.fail("a finished run was trained again"))
    assert runner.run(cfg) == first


class Killed(BaseException):
    """Stands in for SIGKILL: not an Exception, so nothing marks the record failed."""


def test_killed_run_leaves_an_unfinished_record_and_resumes_from_its_checkpoint(
    compose, glue_dir, tmp_path, monkeypatch
):
    cfg = compose(tiny(glue_dir, tmp_path, "lora", "trainer.save_checkpoints=true"))

    def die_in_second_epoch(self, args, state, control, **kwargs):
        if state.epoch and state.epoch >= 1:
            raise Killed()

    monkeypatch.setattr(runner.EpochRecorder, "on_epoch_begin", die_in_second_epoch, raising=False)
    with pytest.raises(Killed):
        runner.run(cfg)
    killed = record_of(cfg)  # valid JSON, honest status, first epoch kept
    assert killed["status"] == "running" and killed["finished_at"] is None and killed["test_metric"] is not None
    assert [e["epoch"] for e in killed["epochs"]] == [1]
    run_dir = os.path.join(cfg.paths.runs_dir, killed["run_id"])
    checkpoint, kept = runner.resume_point(__import__("pathlib").Path(run_dir), killed)
    assert checkpoint is not None and [e["epoch"] for e in kept] == [1]

    monkeypatch.undo()
    resumed = runner.run(cfg)
    assert resumed["status"] == "finished" and [e["epoch"] for e in resumed["epochs"]] == [1, 2]
    assert resumed["epochs"][0] == killed["epochs"][0] and resumed["started_at"] == killed["started_at"]
    assert resumed["epochs"][1]["step"] > resumed["epochs"][0]["step"]


def test_write_atomic_never_leaves_a_partial_file(tmp_path, monkeypatch):
    path = tmp_path / "record.json"
    records.write_atomic(path, {"status": "running"})
    monkeypatch.setattr(os, "replace", lambda *a: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError):
        records.write_atomic(path, {"status": "finished"})
    assert json.loads(path.read_text()) == {"status": "running"}
    assert [p.name for p in tmp_path.iterdir()] == ["record.json"]


def test_best_epoch_maximises_validation_and_prefers_the_earliest_tie():
    epochs = [
        {"epoch": 1, "validation": {"accuracy": 0.7}, "test": {"accuracy": 0.9}},
        {"epoch": 2, "validation": {"accuracy": 0.8}, "test": {"accuracy": 0.6}},
        {"epoch": 3, "validation": {"accuracy": 0.8}, "test": {"accuracy": 0.5}},
    ]
    record = records.finalize({"epochs": epochs, "metric": "accuracy"})
    assert (record["best_epoch"], record["validation_metric"], record["test_metric"]) == (2, 0.8, 0.6)


def test_wandb_mode_auto_is_offline_without_an_api_key(compose, tmp_path, monkeypatch):
    for key in ("WANDB_API_KEY", "WANDB_MODE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    runner.configure_logger(compose(["logger=wandb"]))
    assert os.environ["WANDB_MODE"] == "offline" and os.environ["WANDB_PROJECT"] == "gpart-repro"
    runner.configure_logger(compose(["logger=wandb", "logger.mode=disabled"]))
    assert os.environ["WANDB_MODE"] == "disabled"
    assert list(compose(["logger=wandb"]).logger.report_to) == ["wandb"]
    assert list(compose(["logger=none"]).logger.report_to) == []


@pytest.mark.slow
def test_cli_sweep_writes_one_record_per_seed_and_a_rerun_skips_them(glue_dir, tmp_path):
    import subprocess
    import sys

    from conftest import REPO

    overrides = [o for o in tiny(glue_dir, tmp_path, "lora", "trainer.epochs=1", "trainer.max_steps=2")]
    command = [
        sys.executable,
        "-m",
        "experiments.run",
        "-m",
        *overrides,
        "seed=0,1",
        f"hydra.sweep.dir={tmp_path / 'multirun'}",
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    first = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-2000:]
    found = sorted((tmp_path / "runs").glob("*/record.json"))
    records_ = [json.loads(p.read_text()) for p in found]
    assert sorted(r["seed"] for r in records_) == [0, 1] and all(r["status"] == "finished" for r in records_)
    assert len({r["config_hash"] for r in records_}) == 1

    again = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert (
        again.returncode == 0
        and again.stdout.count("finished record exists") + again.stderr.count("finished record exists") == 2
    )
    assert [json.loads(p.read_text()) for p in found] == records_


@pytest.mark.parametrize(
    "method, backend",
    [
        ("gpart", {"requested": "auto", "ran": ["torch"], "fallback": None, "refused": {}}),
        ("lora", None),
    ],
)
def test_record_names_the_compute_path_that_ran(compose, glue_dir, tmp_path, method, backend):
    """GPart's `auto` on CPU runs the torch path; the record says so (on a GPU: ["triton"], or the fallback)."""
    record = runner.run(compose(tiny(glue_dir, tmp_path, method, "trainer.epochs=1", "trainer.max_steps=1")))
    assert record["backend"] == backend
