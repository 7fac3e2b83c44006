"""The runner with run ownership: a claimed run is skipped naming its owner, a dead owner's run is resumed with
timings accumulated over processes, finished records survive everything but `rerun=true`, a full disk leaves the
previous record and adapter whole, a broken checkpoint is skipped, bad config values and trackers never get far."""

from __future__ import annotations

import errno
import json
import logging
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from test_run_lock import foreign_owner
from test_runner import Killed, record_of, tiny

from experiments import run as runner
from experiments.runner import atomic, config_checks, records, resume
from experiments.runner.run_lock import orphaned_files


def run_dir_of(cfg) -> Path:
    return Path(cfg.paths.runs_dir).resolve() / records.make_run_id(cfg, records.config_hash(cfg))


def test_a_run_claimed_by_a_live_process_is_skipped_naming_it(compose, glue_dir, tmp_path, monkeypatch, caplog):
    cfg = compose(tiny(glue_dir, tmp_path, "head_only", "trainer.epochs=1", "lock.if_claimed=skip"))
    run_dir = run_dir_of(cfg)
    foreign_owner(run_dir, age_s=2)
    (run_dir / "record.json").write_text(json.dumps({"status": "running", "config_hash": records.config_hash(cfg)}))
    before = (run_dir / "record.json").read_bytes()
    monkeypatch.setattr(runner, "train", lambda *a, **k: pytest.fail("a claimed run was trained"))
    with caplog.at_level(logging.INFO, logger="experiments.run"):
        result = runner.run(cfg)
    assert result["status"] == "running"
    assert (run_dir / "record.json").read_bytes() == before  # the owner's record is not touched
    lines = [r.getMessage() for r in caplog.records if "claimed by" in r.getMessage()]
    assert len(lines) == 1 and "pid 4242 on node-elsewhere" in lines[0] and run_dir.name in lines[0]


def kill_in_second_epoch(monkeypatch):
    def die(self, args, state, control, **kwargs):
        if state.epoch and state.epoch >= 1:
            raise Killed()

    monkeypatch.setattr(runner.EpochRecorder, "on_epoch_begin", die, raising=False)


def dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(done.stdout)


def test_a_dead_owner_is_taken_over_and_the_record_accumulates_both_processes(compose, glue_dir, tmp_path, monkeypatch):
    cfg = compose(tiny(glue_dir, tmp_path, "lora", "trainer.save_checkpoints=true"))
    kill_in_second_epoch(monkeypatch)
    with pytest.raises(Killed):
        runner.run(cfg)
    monkeypatch.undo()
    killed = record_of(cfg)
    foreign_owner(run_dir_of(cfg), host=socket.gethostname(), pid=dead_pid())  # as a SIGKILL leaves it
    resumed = runner.run(cfg)
    assert resumed["status"] == "finished" and resumed["resumed"] == 1
    first, second = resumed["attempts"]
    assert first["ended"] == "killed" and second["ended"] == "finished" and first["steps"] > 0
    assert first["wall_s"] == killed["attempts"][0]["wall_s"] > 0
    assert resumed["timing"]["wall_s"] == pytest.approx(first["wall_s"] + second["wall_s"])
    assert resumed["timing"]["eval_s"] == pytest.approx(first["eval_s"] + second["eval_s"])
    assert resumed["memory"]["peak_bytes"] == max(first["peak_bytes"], second["peak_bytes"])
    assert orphaned_files(run_dir_of(cfg)) == []


def test_a_finished_record_is_replaced_only_with_rerun(compose, glue_dir, tmp_path):
    cfg = compose(tiny(glue_dir, tmp_path, "head_only", "trainer.epochs=1", "trainer.max_steps=1"))
    first = runner.run(cfg)
    again = runner.run(
        compose(tiny(glue_dir, tmp_path, "head_only", "trainer.epochs=1", "trainer.max_steps=1", "rerun=true"))
    )
    assert again["started_at"] >= first["started_at"] and again["status"] == "finished" and again["resumed"] == 0
    kept = list(run_dir_of(cfg).glob("record.replaced-*.json"))
    assert len(kept) == 1 and json.loads(kept[0].read_text()) == first


def disk_full_when(condition):
    """os.fsync raising ENOSPC for files matching `condition(path)`, as NFS reports a full disk."""
    real_fsync = os.fsync

    def fsync(fd):
        if condition(os.readlink(f"/proc/self/fd/{fd}")):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_fsync(fd)

    return fsync


def test_a_full_disk_at_a_record_write_keeps_the_previous_record_and_names_the_path(
    compose, glue_dir, tmp_path, monkeypatch
):
    cfg = compose(tiny(glue_dir, tmp_path, "gpart"))
    record_path = run_dir_of(cfg) / "record.json"

    def after_first_epoch(path):
        return (
            ".record.json." in path and record_path.exists() and len(json.loads(record_path.read_text())["epochs"]) >= 1
        )

    monkeypatch.setattr(os, "fsync", disk_full_when(after_first_epoch))
    with pytest.raises(
        OSError,
        match=rf"could not write {record_path} \(No space left on device\); the previous "
        r"record.json is unchanged",
    ):
        runner.run(cfg)
    left = json.loads(record_path.read_text())
    assert left["status"] == "running" and [e["epoch"] for e in left["epochs"]] == [1]
    adapter = run_dir_of(cfg) / "adapter"
    assert sorted(p.name for p in adapter.iterdir()) == ["adapter_config.json", "adapter_model.safetensors"]
    assert not [p for p in run_dir_of(cfg).iterdir() if p.name.startswith(".record.json")]


def test_a_full_disk_at_an_adapter_save_keeps_the_previous_adapter(tmp_path):
    target = tmp_path / "adapter"
    atomic.save_directory_atomically(
        lambda path: save_file({"theta": torch.ones(4)}, str(path / "w.safetensors")) if path.mkdir() is None else None,
        target,
    )
    before = (target / "w.safetensors").read_bytes()

    def half_then_full(path):
        path.mkdir()
        (path / "w.safetensors").write_bytes(b"half")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(
        OSError,
        match=rf"could not save {target} \(No space left on device\); the previous "
        r"adapter/ is unchanged",
    ):
        atomic.save_directory_atomically(half_then_full, target)
    assert (target / "w.safetensors").read_bytes() == before and sorted(os.listdir(tmp_path)) == ["adapter"]


def test_a_kill_between_the_adapter_renames_is_recovered(tmp_path):
    old = tmp_path / ".adapter.old"
    old.mkdir()
    (old / "w").write_text("best")
    (tmp_path / ".adapter.tmp").mkdir()  # a half-written new one
    atomic.recover_directory(tmp_path / "adapter")
    assert (tmp_path / "adapter" / "w").read_text() == "best" and sorted(os.listdir(tmp_path)) == ["adapter"]


def checkpoint(folder: Path, step: int) -> Path:
    path = folder / f"checkpoint-{step}"
    path.mkdir(parents=True)
    (path / "trainer_state.json").write_text(json.dumps({"epoch": step, "global_step": step}))
    save_file({"w": torch.arange(1000.0)}, str(path / "model.safetensors"))
    torch.save({"state": {0: torch.ones(100)}}, path / "optimizer.pt")
    return path


@pytest.mark.parametrize("damage", ["truncate_safetensors", "truncate_optimizer", "corrupt_state", "empty"])
def test_a_broken_newest_checkpoint_falls_back_to_the_previous_one(tmp_path, caplog, damage):
    older, newer = checkpoint(tmp_path, 5), checkpoint(tmp_path, 10)
    if damage == "truncate_safetensors":
        os.truncate(newer / "model.safetensors", 2000)
    elif damage == "truncate_optimizer":
        os.truncate(newer / "optimizer.pt", 300)
    elif damage == "corrupt_state":
        (newer / "trainer_state.json").write_text('{"epoch": 1')
    else:
        for file in newer.iterdir():
            file.unlink()
    with caplog.at_level(logging.WARNING, logger="experiments.runner.resume"):
        assert resume.usable_checkpoint(tmp_path) == older
    assert not newer.exists() and "checkpoint-10 is broken" in caplog.text and "the previous one" in caplog.text


def test_no_usable_checkpoint_means_starting_over_with_a_warning(tmp_path, caplog):
    only = checkpoint(tmp_path, 5)
    os.truncate(only / "model.safetensors", 10)
    with caplog.at_level(logging.WARNING, logger="experiments.runner.resume"):
        assert resume.usable_checkpoint(tmp_path) is None
    assert "the run starts over" in caplog.text


@pytest.mark.parametrize(
    "override,message",
    [
        (
            "trainer.sampling=foo",
            r"trainer.sampling='foo' is not allowed; expected one of 'random', 'sequential', "
            r"'group_by_length'",
        ),
        ("task.train_subset=-5", r"task.train_subset=-5 is not allowed; expected null or a positive integer"),
        ("trainer.epochs=abc", r"trainer.epochs='abc' is not allowed; expected a positive number"),
        ("trainer.max_steps=0", r"trainer.max_steps=0 is not allowed; expected -1 \(no cap\) or a positive integer"),
        ("lock.if_claimed=steal", r"lock.if_claimed='steal' is not allowed; expected one of 'skip', 'wait'"),
        ("trainer.warmup_ratio=1.5", r"trainer.warmup_ratio=1.5 is not allowed; expected a number in \[0, 1\)"),
    ],
)
def test_bad_runner_values_are_refused_up_front_naming_key_value_and_allowed(
    compose, glue_dir, tmp_path, override, message
):
    cfg = compose(tiny(glue_dir, tmp_path, "gpart", override))
    with pytest.raises(config_checks.ConfigError, match=message):
        runner.run(cfg)
    assert not (tmp_path / "runs").exists()  # nothing written


def test_every_shipped_default_passes_validation(compose):
    for overrides in ([], ["experiment=glue/base/gpart-sst2"], ["task=vision/cifar10", "model=tiny-vit"]):
        config_checks.validate(compose(overrides))


def test_a_tracker_that_cannot_start_never_kills_the_run(compose, glue_dir, tmp_path, monkeypatch, caplog):
    import wandb

    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_MODE", "offline")

    def no_network(*args, **kwargs):
        raise wandb.errors.CommError("could not reach api.wandb.ai")

    monkeypatch.setattr(wandb, "init", no_network)
    cfg = compose(tiny(glue_dir, tmp_path, "head_only", "trainer.epochs=1", "trainer.max_steps=2", "logger=wandb"))
    with caplog.at_level(logging.WARNING, logger="experiments.runner.trackers"):
        record = runner.run(cfg)
    assert record["status"] == "finished" and record["test_metric"] is not None
    assert (
        "WandbCallback failed in on_train_begin (CommError: could not reach api.wandb.ai); the run continues"
        in caplog.text
    )


def test_a_run_logging_to_wandb_offline_finishes_with_its_local_files(compose, glue_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    cfg = compose(tiny(glue_dir, tmp_path, "head_only", "trainer.epochs=1", "trainer.max_steps=2", "logger=wandb"))
    record = runner.run(cfg)
    assert record["status"] == "finished" and os.environ["WANDB_MODE"] == "offline"
    assert list((tmp_path / "wandb").glob("offline-run-*")), "wandb wrote no offline run"
