"""One owner per run folder: atomic claims, heartbeats, takeover of dead owners, waiting, and no debris."""

from __future__ import annotations

import json
import multiprocessing
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from experiments.runner import run_lock
from experiments.runner.run_lock import LOCK_NAME, RunClaimed, claim, orphaned_files


def foreign_owner(run_dir, age_s=0.0, host="node-elsewhere", pid=4242, **scope):
    """A claim written by another process (another node by default; on this host, in our pid namespace unless
    `scope` says otherwise), its heartbeat `age_s` old."""
    run_dir.mkdir(parents=True, exist_ok=True)
    here = run_lock.where_pids_mean_something() if host == socket.gethostname() else {}
    owner = {
        **here,
        "host": host,
        "pid": pid,
        "pid_started": None,
        "started_at": "2026-12-01T00:00:00Z",
        "heartbeat": time.time() - age_s,
        "token": "f" * 32,
        **scope,
    }
    (run_dir / LOCK_NAME).write_text(json.dumps(owner))
    return owner


def test_a_claim_holds_its_owner_and_leaves_nothing_behind(tmp_path):
    with claim(tmp_path / "run") as held:
        owner = json.loads((tmp_path / "run" / LOCK_NAME).read_text())
        assert (owner["host"], owner["pid"]) == (socket.gethostname(), os.getpid())
        assert {"started_at", "heartbeat", "token", "pid_started"} <= set(owner) and held.held
    assert orphaned_files(tmp_path / "run") == []


def test_a_second_claim_of_a_live_owner_is_refused_naming_it(tmp_path):
    foreign_owner(tmp_path, age_s=5)
    with pytest.raises(
        RunClaimed,
        match=r"is being run by pid 4242 on node-elsewhere since 2026-12-01T00:00:00Z "
        r"\(heartbeat [5-9] s ago\)",
    ):
        claim(tmp_path)
    with claim(tmp_path / "other"):
        with pytest.raises(RunClaimed, match=f"pid {os.getpid()}"):
            claim(tmp_path / "other")  # this very process counts as a live owner too


def test_the_owner_refreshes_its_heartbeat(tmp_path):
    with claim(tmp_path, heartbeat_s=0.05, stale_after_s=10) as held:
        first = held.owner["heartbeat"]
        time.sleep(0.4)
        assert json.loads((tmp_path / LOCK_NAME).read_text())["heartbeat"] > first + 0.1


def test_a_stale_heartbeat_is_taken_over(tmp_path):
    dead = foreign_owner(tmp_path, age_s=100)
    with claim(tmp_path, heartbeat_s=1, stale_after_s=60) as held:
        assert held.took_over["token"] == dead["token"] and held.owner["pid"] == os.getpid()
    assert orphaned_files(tmp_path) == []


def test_a_dead_process_on_this_host_is_taken_over_at_once(tmp_path):
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    foreign_owner(tmp_path, age_s=0, host=socket.gethostname(), pid=int(finished.stdout))
    with claim(tmp_path, stale_after_s=3600) as held:  # its heartbeat is fresh, but its pid is gone
        assert held.took_over["pid"] == int(finished.stdout)


def test_a_claim_taken_over_is_no_longer_held(tmp_path):
    held = claim(tmp_path, heartbeat_s=60, stale_after_s=120)
    foreign_owner(tmp_path)  # as if another process judged us dead and claimed the run
    assert not held.held
    held.release()
    assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == 4242  # its claim is not ours to remove


def test_wait_blocks_until_the_owner_releases(tmp_path):
    first = claim(tmp_path, heartbeat_s=0.1, stale_after_s=30)
    threading.Timer(0.5, first.release).start()
    start = time.monotonic()
    with claim(tmp_path, wait=True, poll_s=0.05):
        assert time.monotonic() - start >= 0.4


def test_heartbeat_must_be_shorter_than_staleness(tmp_path):
    with pytest.raises(ValueError, match=r"lock.heartbeat_s=300.0 must be positive and below lock.stale_after_s"):
        claim(tmp_path, heartbeat_s=300.0, stale_after_s=60.0)


def _race(run_dir, start, done, results):
    start.wait()
    try:
        held = claim(run_dir, heartbeat_s=5, stale_after_s=60)
    except RunClaimed:
        results.put(None)
        return
    results.put(os.getpid())
    done.wait(60)  # hold the claim until every racer has tried
    held.release()


def test_processes_racing_for_one_run_get_exactly_one_owner(tmp_path):
    context = multiprocessing.get_context("fork")
    start, done, results = context.Event(), context.Event(), context.Queue()
    workers = [context.Process(target=_race, args=(tmp_path, start, done, results)) for _ in range(6)]
    for worker in workers:
        worker.start()
    start.set()
    outcomes = [results.get(timeout=60) for _ in workers]
    done.set()
    for worker in workers:
        worker.join()
    assert sum(o is not None for o in outcomes) == 1 and orphaned_files(tmp_path) == []


def test_unreadable_lock_counts_as_stale(tmp_path):
    (tmp_path / LOCK_NAME).write_text("{trunc")
    assert run_lock.read_owner(tmp_path / LOCK_NAME)["unreadable"]
    with claim(tmp_path, heartbeat_s=1, stale_after_s=2):
        pass
