"""Slow, several processes: under torchrun every rank follows rank 0's claim decision (a claimed run is skipped by
all ranks at once, a sweep never puts two ranks on two runs), and an owner paused past the staleness limit stops
without touching the run its successor finished."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
from conftest import REPO, compose_config
from test_distributed import environment, runner_command
from test_run_lock import foreign_owner
from test_runner import tiny

from experiments.runner import records
from experiments.tools import fault_scenarios

pytestmark = pytest.mark.slow


def claimed_elsewhere(overrides: list[str]) -> tuple[Path, bytes]:
    """Plant a live claim (another node, fresh heartbeat) and its running record on the run of `overrides`."""
    cfg = compose_config(overrides)
    digest = records.config_hash(cfg)
    run_dir = Path(cfg.paths.runs_dir).resolve() / records.make_run_id(cfg, digest)
    foreign_owner(run_dir)
    (run_dir / "record.json").write_text(json.dumps({"status": "running", "config_hash": digest}))
    return run_dir, (run_dir / "record.json").read_bytes()


def torchrun(args: list[str], tmp_path: Path, glue_dir: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**environment(tmp_path), "GLUE_DIR": str(glue_dir)}
    return subprocess.run(
        runner_command(args, tmp_path, 2)[:-1] + [f"paths.root={tmp_path}"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_a_second_torchrun_of_a_claimed_run_stops_every_rank_at_once(glue_dir, tmp_path):
    overrides = tiny(glue_dir, tmp_path, "gpart", "trainer.epochs=1", "lock.if_claimed=skip")
    run_dir, planted = claimed_elsewhere(overrides)
    start = time.monotonic()
    done = torchrun([*overrides, "trainer.ddp.timeout=300"], tmp_path, glue_dir)
    assert time.monotonic() - start < 200, "a rank waited for a process group that rank 0 never joined"
    assert done.returncode != 0 and "1 skipped because another process holds them" in done.stdout + done.stderr
    assert sorted(p.name for p in run_dir.iterdir()) == ["owner.lock", "record.json"]
    assert (run_dir / "record.json").read_bytes() == planted


def test_a_torchrun_sweep_never_puts_its_ranks_on_two_runs(glue_dir, tmp_path):
    overrides = tiny(
        glue_dir,
        tmp_path,
        "gpart",
        "trainer.epochs=1",
        "trainer.max_steps=2",
        "trainer.save_checkpoints=true",
        "lock.if_claimed=skip",
    )
    claimed_dir, planted = claimed_elsewhere([*overrides, "seed=0"])
    done = torchrun(["-m", *overrides, "seed=0,1", f"hydra.sweep.dir={tmp_path / 'sweep'}"], tmp_path, glue_dir)
    output = done.stdout + done.stderr
    assert done.returncode != 0, output[-3000:]  # seed 0 is not finished: a requeue must know
    assert "summary of 2 run(s): 1 finished, 1 skipped because another process holds them" in output
    assert sorted(p.name for p in claimed_dir.iterdir()) == ["owner.lock", "record.json"]  # no rank wrote there
    assert (claimed_dir / "record.json").read_bytes() == planted
    (trained,) = [json.loads(p.read_text()) for p in tmp_path.glob("runs/*/record.json") if p.parent != claimed_dir]
    assert trained["seed"] == 1 and trained["status"] == "finished"
    ranks = trained["distributed"]["per_rank"]
    assert trained["distributed"]["world_size"] == 2 and len(ranks) == 2
    assert ranks[0]["trainable_sha256"] == ranks[1]["trainable_sha256"]  # both ranks trained seed 1 together
    assert ranks[0]["micro_batches"] == ranks[1]["micro_batches"] == 2


def test_a_paused_owner_stops_without_touching_the_run_its_successor_finished(glue_dir, tmp_path):
    row = fault_scenarios.paused_owner_trial(str(glue_dir), tmp_path)
    assert row["finished"] and row["intact"], row["notes"]
