"""The scenarios of experiments/tools/fault_injection.py that are not one kill and a resume: races over the run's claim
(a paused owner, two torchrun launches, an owner in another pid namespace) and a NaN label in the training data. Each
returns a row of the same shape as a fault trial, judged against an uninterrupted reference run.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from experiments.tools.fault_harness import (
    TORCHRUN,
    adapter_digest,
    child_command,
    debris,
    launch,
    outcome,
    overrides,
    run_folder,
    start,
    stsb_overrides,
)

SCENARIOS = ("paused_owner", "ddp_claim_race", "foreign_pidns", "nan_labels")
UNSHARE = ["unshare", "--user", "--map-root-user", "--pid", "--fork", "--mount-proc"]


def wait_for_first_epoch(root: Path, process: subprocess.Popen, timeout_s: float = 600) -> Path:
    """The run folder once its record holds an epoch and its first checkpoint is whole."""
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        found = list((root / "runs").glob("*/record.json"))
        if found and list(found[0].parent.glob("checkpoints/checkpoint-*/trainer_state.json")):
            try:
                if json.loads(found[0].read_text())["epochs"]:
                    return found[0].parent
            except (ValueError, KeyError):
                pass
        if process.poll() is not None:
            raise RuntimeError(f"the owner ended ({process.returncode}) before its first epoch")
        time.sleep(0.1)
    raise RuntimeError(f"no first epoch within {timeout_s} s")


def own_hydra_dir(args: list[str], folder: Path) -> list[str]:
    """`args` with a Hydra run folder of this launch's own (two launches of one run must not share one)."""
    return [a for a in args if not a.startswith("hydra.run.dir=")] + [f"hydra.run.dir={folder}"]


def snapshot(run_dir: Path) -> dict:
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in sorted(run_dir.rglob("*")) if p.is_file()}


def judged(row: dict, run_dir: Path, reference: dict, notes: list[str]) -> dict:
    """Fill finished / identical / intact from the run folder as the last process left it."""
    record = json.loads((run_dir / "record.json").read_text()) if (run_dir / "record.json").exists() else {}
    row["finished"] = row.get("finished", True) and record.get("status") == "finished"
    row["identical"] = (
        row["finished"] and outcome(record) == reference["outcome"] and adapter_digest(run_dir) == reference["adapter"]
    )
    row["resumed"] = record.get("resumed")
    left = debris(run_dir)
    row["notes"] = notes + ([f"left: {left}"] if left else [])
    row["intact"] = not row["notes"]
    return row


def paused_owner_trial(glue_dir: str, work: Path, reference: dict | None = None) -> dict:
    root = Path(tempfile.mkdtemp(prefix="paused_owner-", dir=work))
    args = [*overrides(glue_dir, root), "lock.heartbeat_s=0.5", "lock.stale_after_s=4"]
    owner = start(child_command(own_hydra_dir(args, root / "hydra-first")), root / "first.log")
    notes = []
    try:
        run_dir = wait_for_first_epoch(root, owner)
        os.kill(owner.pid, signal.SIGSTOP)
        second = launch(own_hydra_dir(args, root / "hydra-second"))
        finished = snapshot(run_dir)
    finally:
        os.kill(owner.pid, signal.SIGCONT)
    code = owner.wait(timeout=600)
    said = (root / "first.log").read_text()
    if second.returncode != 0:
        notes.append(f"the second launch failed: {second.stderr[-400:]}")
    if code == 0 or "lost its claim" not in said:
        notes.append(f"the paused owner went on (exit {code}): {said[-400:]}")
    if snapshot(run_dir) != finished:
        notes.append("the paused owner changed the finished run's files")
    row = {"fault": "paused_owner", "nth": 1, "killed": False, "failed": code != 0, "finished": second.returncode == 0}
    return (
        judged(row, run_dir, reference, notes)
        if reference
        else {**row, "notes": notes, "intact": not notes and not debris(run_dir)}
    )


def ddp_claim_race_trial(glue_dir: str, work: Path, reference: dict) -> dict:
    root = Path(tempfile.mkdtemp(prefix="ddp_claim_race-", dir=work))
    args = overrides(glue_dir, root)
    torchrun = [TORCHRUN, "--standalone", "--nproc_per_node=2", "-m", "experiments.run"]
    first = start([*torchrun, *own_hydra_dir(args, root / "hydra-first")], root / "first.log")
    run_dir = wait_for_first_epoch(root, first)
    second = start([*torchrun, *own_hydra_dir(args, root / "hydra-second")], root / "second.log")
    codes = (first.wait(timeout=900), second.wait(timeout=900))
    logs = [(root / name).read_text() for name in ("first.log", "second.log")]
    notes = [f"exit codes {codes}"] if codes != (0, 0) else []
    trained = [log.count("][INFO] - finished ") for log in logs]
    if not trained[0] or trained[1] or "finished record exists" not in logs[1]:
        notes.append(f"runs trained per launch {trained}; second: {logs[1][-300:]}")
    record = json.loads((run_dir / "record.json").read_text())
    if len(record.get("attempts", [])) != 1 or record["distributed"]["world_size"] != 2:
        notes.append(f"attempts {record.get('attempts')}")
    row = {"fault": "ddp_claim_race", "nth": 1, "killed": False, "failed": False}
    return judged(row, run_dir, reference, notes)


def foreign_pidns_trial(glue_dir: str, work: Path, reference: dict) -> dict:
    import psutil

    root = Path(tempfile.mkdtemp(prefix="foreign_pidns-", dir=work))
    args = overrides(glue_dir, root)
    owner = start(child_command(own_hydra_dir(args, root / "hydra-first"), prefix=UNSHARE), root / "first.log")
    run_dir = wait_for_first_epoch(root, owner)
    inside = [p for p in psutil.Process(owner.pid).children(recursive=True) if "--child" in p.cmdline()]
    for process in inside:  # held still (heartbeat fresh) so the second launch surely meets it alive
        process.suspend()
    try:
        second = launch([*own_hydra_dir(args, root / "hydra-second"), "lock.if_claimed=skip"])
    finally:
        for process in inside:
            process.resume()
    code = owner.wait(timeout=900)
    notes = []
    if second.returncode != 75 or "claimed by" not in second.stdout + second.stderr:
        notes.append(
            f"the second launch did not leave the live owner alone (exit {second.returncode}): {second.stderr[-300:]}"
        )
    row = {"fault": "foreign_pidns", "nth": 1, "killed": False, "failed": False, "finished": code == 0}
    return judged(row, run_dir, reference, notes)


def nan_labels_trial(glue_dir: str, work: Path, reference: dict) -> dict:
    root = Path(tempfile.mkdtemp(prefix="nan_labels-", dir=work))
    data = root / "glue"
    shutil.copytree(Path(glue_dir) / "STS-B", data / "STS-B")
    original = (data / "STS-B" / "train.tsv").read_text(encoding="utf-8")
    lines = original.splitlines(keepends=True)
    (data / "STS-B" / "train.tsv").write_text(
        lines[0] + lines[1].rsplit("\t", 1)[0] + "\tnan\n" + "".join(lines[1:]), encoding="utf-8"
    )
    first = launch(stsb_overrides(str(data), root))
    notes = []
    if first.returncode == 0 or f"{data / 'STS-B' / 'train.tsv'}: line 2 has score='nan'" not in first.stderr:
        notes.append(f"the NaN label was not refused by file and line (exit {first.returncode}): {first.stderr[-300:]}")
    left = list((root / "runs").glob("*/record.json"))
    if left and json.loads(left[0].read_text())["status"] == "finished":
        notes.append("a run with a NaN label was recorded as finished")
    (data / "STS-B" / "train.tsv").write_text(original, encoding="utf-8")
    second = launch(stsb_overrides(str(data), root))
    row = {
        "fault": "nan_labels",
        "nth": 1,
        "killed": False,
        "failed": first.returncode != 0,
        "finished": second.returncode == 0,
    }
    return judged(row, run_folder(root), reference, notes)


def scenario(name: str, glue_dir: str, work: Path, references) -> dict:
    if name == "paused_owner":
        return paused_owner_trial(glue_dir, work, references("sst2"))
    if name == "ddp_claim_race":
        return ddp_claim_race_trial(glue_dir, work, references("sst2-ddp"))
    if name == "foreign_pidns":
        if subprocess.run([*UNSHARE, "true"], capture_output=True).returncode != 0:
            return {
                "fault": name,
                "nth": 0,
                "killed": False,
                "failed": False,
                "finished": False,
                "identical": False,
                "intact": False,
                "resumed": None,
                "notes": ["unshare (user + pid namespaces) unavailable"],
            }
        return foreign_pidns_trial(glue_dir, work, references("sst2"))
    return nan_labels_trial(glue_dir, work, references("stsb"))
