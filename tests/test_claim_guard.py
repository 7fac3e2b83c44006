"""Every write of a run goes through its claim: an owner whose claim was taken over stops and writes nothing. A pid
is trusted only inside our own pid namespace; a claim that cannot be written leaves no debris; the end of a launch
says what happened to each run and exits non-zero unless all are finished."""

from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO
from test_run_lock import foreign_owner
from test_run_ownership import dead_pid, run_dir_of
from test_runner import tiny

from experiments import run as runner
from experiments.runner import atomic, records, run_lock, sweep_summary
from experiments.runner.run_lock import ClaimLost, RunClaimed, claim
from experiments.tasks.glue import GlueTask


def take_over_at_second_epoch(monkeypatch, run_dir: Path, pause_s: float, evaluations: list):
    """At the start of epoch 2, another process takes the run over and writes its own files (as after a pause)."""

    def taken(self, args, state, control, **kwargs):
        if state.epoch and state.epoch >= 1 and not evaluations:
            foreign_owner(run_dir)
            (run_dir / "record.json").write_text(json.dumps({"status": "finished", "owner": "theirs"}))
            (run_dir / "adapter" / "theirs").write_text("x")
            (run_dir / "checkpoints" / "theirs").write_text("x")
            evaluations.append("taken")
            time.sleep(pause_s)

    real_evaluate = GlueTask.evaluate

    def counting(self, trainer, dataset, split):
        if evaluations:
            evaluations.append(split)
        return real_evaluate(self, trainer, dataset, split)

    monkeypatch.setattr(runner.EpochRecorder, "on_epoch_begin", taken, raising=False)
    monkeypatch.setattr(GlueTask, "evaluate", counting)


def snapshot(run_dir: Path) -> dict:
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in sorted(run_dir.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("heartbeat_s,stops_before", [(0.1, "the next step"), (30, "the epoch's writes")])
def test_an_owner_that_lost_its_claim_writes_nothing_more(
    compose, glue_dir, tmp_path, monkeypatch, heartbeat_s, stops_before
):
    cfg = compose(
        tiny(
            glue_dir,
            tmp_path,
            "gpart",
            "trainer.epochs=3",
            "trainer.save_checkpoints=true",
            f"lock.heartbeat_s={heartbeat_s}",
        )
    )
    run_dir, evaluations = run_dir_of(cfg), []
    take_over_at_second_epoch(
        monkeypatch, run_dir, pause_s=3 * heartbeat_s if heartbeat_s < 1 else 0, evaluations=evaluations
    )
    with pytest.raises(
        ClaimLost,
        match=rf"{run_dir.name}: this process \(pid {os.getpid()}\) lost its claim on the "
        r"run \(now pid 4242 on node-elsewhere .*\), probably .*; not writing .*, stopping",
    ):
        runner.run(cfg)
    theirs = snapshot(run_dir)
    assert json.loads(theirs["record.json"]) == {"status": "finished", "owner": "theirs"}
    assert "adapter/theirs" in theirs and "checkpoints/theirs" in theirs
    assert not [name for name in theirs if name.startswith("checkpoints/checkpoint-") and "-10/" in name]
    if stops_before == "the next step":
        assert evaluations == ["taken"]  # no evaluation after the takeover: it stopped at the next step
    assert not list(run_dir.glob(".adapter.*"))


def test_a_refused_adapter_swap_leaves_the_adapter_and_no_staging(tmp_path):
    target = tmp_path / "adapter"
    target.mkdir()
    (target / "w").write_text("best")

    def lost():
        raise ClaimLost("lost")

    with pytest.raises(ClaimLost):
        atomic.save_directory_atomically(
            lambda path: path.mkdir() or (path / "w").write_text("new"), target, before_swap=lost
        )
    assert (target / "w").read_text() == "best" and sorted(os.listdir(tmp_path)) == ["adapter"]


def test_a_live_owner_in_another_pid_namespace_is_not_declared_dead(tmp_path):
    foreign_owner(tmp_path, host=socket.gethostname(), pid=dead_pid(), pid_namespace="pid:[1]")
    with pytest.raises(RunClaimed):  # its pid means nothing here: only its (fresh) heartbeat counts
        claim(tmp_path, stale_after_s=3600)
    foreign_owner(tmp_path, host=socket.gethostname(), pid=dead_pid(), boot_id="another-boot")
    with pytest.raises(RunClaimed):
        claim(tmp_path, stale_after_s=3600)
    foreign_owner(tmp_path, age_s=100, host=socket.gethostname(), pid=dead_pid(), pid_namespace="pid:[1]")
    with claim(tmp_path, heartbeat_s=1, stale_after_s=60) as held:  # a stale heartbeat still is
        assert held.took_over["pid_namespace"] == "pid:[1]"


def unshare_works() -> bool:
    try:
        return (
            subprocess.run(
                ["unshare", "--user", "--map-root-user", "--pid", "--fork", "--mount-proc", "true"],
                capture_output=True,
                timeout=20,
            ).returncode
            == 0
        )
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.mark.skipif(not unshare_works(), reason="unshare (user + pid namespaces) is not available here")
def test_a_real_owner_in_a_container_with_our_hostname_keeps_its_claim(tmp_path):
    script = (
        "import sys, time; from experiments.runner.run_lock import claim; "
        f"held = claim({str(tmp_path)!r}, heartbeat_s=1, stale_after_s=60); print('held', flush=True); "
        "sys.stdin.read(); held.release()"
    )
    owner = subprocess.Popen(
        ["unshare", "--user", "--map-root-user", "--pid", "--fork", "--mount-proc", sys.executable, "-c", script],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert owner.stdout.readline().strip() == "held"
        inside = run_lock.read_owner(tmp_path / run_lock.LOCK_NAME)
        assert (
            inside["host"] == socket.gethostname()
            and inside["pid_namespace"] != run_lock.where_pids_mean_something()["pid_namespace"]
        )
        with pytest.raises(RunClaimed, match=f"pid {inside['pid']} on {socket.gethostname()}"):
            claim(tmp_path, stale_after_s=60)
    finally:
        owner.stdin.close()
        owner.wait(timeout=60)
    assert not (tmp_path / run_lock.LOCK_NAME).exists()  # it released its own claim


def test_a_claim_that_cannot_be_written_leaves_no_debris_and_names_the_folder(tmp_path, monkeypatch):
    real_write = Path.write_text

    def full_disk(self, text, *args, **kwargs):
        if self.name.startswith(f".{run_lock.LOCK_NAME}."):
            real_write(self, text[:5], *args, **kwargs)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(self, text, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", full_disk)
    with pytest.raises(OSError, match=rf"could not claim {tmp_path} \(No space left on device\)"):
        claim(tmp_path)
    assert os.listdir(tmp_path) == []


def entry(outcome, run_id="r", run_dir=None):
    return {"run_id": run_id, "run_dir": str(run_dir) if run_dir else None, "outcome": outcome, "detail": ""}


def test_the_summary_counts_each_outcome_and_sets_the_exit_status(tmp_path):
    text, code = sweep_summary.summarize([entry("finished"), entry("claimed", "b"), entry("finished")])
    assert code == sweep_summary.EXIT_UNFINISHED == 75
    assert (
        text.startswith(
            "summary of 3 run(s): 2 finished, 1 skipped because another process holds them, 0 lost "
            "their claim, 0 failed"
        )
        and "  claimed: b" in text
    )
    assert sweep_summary.summarize([entry("finished"), entry("failed"), entry("claimed")])[1] == 1
    assert sweep_summary.summarize([entry("lost_claim")])[1] == 1
    assert sweep_summary.summarize([entry("finished")])[1] == 0
    assert sweep_summary.summarize([])[1] == 1  # a launch that ran nothing did not finish anything
    (tmp_path / "record.json").write_text(json.dumps({"status": "finished"}))
    assert sweep_summary.summarize([entry("claimed", run_dir=tmp_path)])[1] == 0  # finished by its owner since


def test_a_restart_without_a_usable_checkpoint_keeps_the_killed_attempt_in_the_timings(tmp_path):
    previous = {
        "attempts": [
            {
                "wall_s": 50.0,
                "train_s": 40.0,
                "eval_s": 5.0,
                "steps": 10,
                "median_step_s": 4.0,
                "peak_bytes": 7,
                "ended": "running",
            }
        ]
    }
    record = records.RunRecord(
        tmp_path / "record.json",
        {"timing": {}, "memory": {"peak_bytes": None}},
        writes=False,
        clock_start=time.perf_counter() - 20.0,
    )
    record.start_attempt(previous, resuming=False)
    record.note_training_end(
        train_s=15.0,
        eval_s=2.0,
        step_times=[1.0] * 5,
        memory={"peak_bytes": 3, "device": "cpu", "kind": "cpu_rss_growth_sampled_20ms"},
    )
    data = record.data
    assert [a["ended"] for a in data["attempts"]] == ["killed", "running"] and data["resumed"] == 0
    assert data["timing"]["wall_s"] == pytest.approx(70.0, abs=5) and data["timing"]["train_s"] == 55.0
    assert data["memory"]["peak_bytes"] == 7 and not (tmp_path / "record.json").exists()


def test_two_sweeps_started_in_one_second_get_their_own_folders(compose):
    import experiments

    cfg = experiments.compose(return_hydra_config=True)
    assert cfg.hydra.sweep.dir.endswith(f"-{os.environ['GPART_LAUNCH_ID']}")
    assert os.environ["GPART_LAUNCH_ID"] == str(os.getpid())  # this test process launched it


def test_a_corrupt_record_read_by_the_summary_leaves_the_run_claimed(tmp_path):
    (tmp_path / "record.json").write_text("{")
    assert sweep_summary.summarize([entry("claimed", run_dir=tmp_path)])[1] == 75
