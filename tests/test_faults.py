"""Slow: sweeps started twice or as an array split the work; kills and full disks at random points are survived.

The full measurement is `python -m experiments.tools.fault_injection --trials N` (a table); these run a few trials."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import REPO
from test_runner import tiny

from experiments.tools import fault_harness, fault_injection

pytestmark = pytest.mark.slow


def launch_sweeps(glue_dir, tmp_path, processes: int, seeds: str) -> list[subprocess.CompletedProcess]:
    """`processes` copies of one `-m` sweep over `seeds`, started at once (two sweeps, or a SLURM array)."""
    overrides = tiny(glue_dir, tmp_path, "lora", "trainer.epochs=1", "trainer.max_steps=3")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    started = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "experiments.run",
                "-m",
                *overrides,
                f"seed={seeds}",
                f"hydra.sweep.dir={tmp_path / f'multirun{i}'}",
            ],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(processes)
    ]
    return [subprocess.CompletedProcess(p.args, p.wait(timeout=1200), *p.communicate()) for p in started]


@pytest.mark.parametrize("processes,seeds", [(2, "0,1,2,3"), (3, "0,1,2")])
def test_concurrent_sweeps_leave_one_finished_record_per_run_and_split_the_work(glue_dir, tmp_path, processes, seeds):
    done = launch_sweeps(glue_dir, tmp_path, processes, seeds)
    assert all(p.returncode == 0 for p in done), [p.stderr[-1500:] for p in done]
    found = sorted((tmp_path / "runs").glob("*/record.json"))
    runs = [json.loads(p.read_text()) for p in found]
    assert sorted(r["seed"] for r in runs) == [int(s) for s in seeds.split(",")]
    assert all(r["status"] == "finished" and len(r["attempts"]) == 1 for r in runs)
    logs = [p.stdout + p.stderr for p in done]
    trained = [log.count("][INFO] - finished ") for log in logs]
    assert sum(trained) == len(runs), f"work doubled: each process trained {trained}"  # each run trained once
    skipped = sum(log.count("claimed by") + log.count("finished record exists") for log in logs)
    print(f"{processes} processes over seeds {seeds}: runs trained per process {trained}, skipped {skipped}")
    assert skipped == len(runs) * (processes - 1)
    assert not list((tmp_path / "runs").glob("*/owner.lock*"))


@pytest.mark.parametrize("fault", ["record_write", "checkpoint_save", "corrupt_checkpoint", "enospc_adapter"])
def test_a_fault_then_a_resume_gives_the_uninterrupted_result(glue_dir, tmp_path, fault):
    reference_root = tmp_path / "reference"
    assert fault_harness.launch(fault_harness.overrides(str(glue_dir), reference_root)).returncode == 0
    reference_dir = fault_harness.run_folder(reference_root)
    reference = {
        "outcome": fault_harness.outcome(json.loads((reference_dir / "record.json").read_text())),
        "adapter": fault_harness.adapter_digest(reference_dir),
    }
    nth = {"record_write": 4, "checkpoint_save": 2, "corrupt_checkpoint": 1, "enospc_adapter": 1}[fault]
    row = fault_injection.trial(fault, nth, 0, str(glue_dir), reference, tmp_path)
    assert row["killed"] or row["failed"]
    assert row["finished"] and row["identical"] and row["intact"], row["notes"]
