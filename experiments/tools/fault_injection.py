"""Fault injection: kill runs at random points, fill the disk, corrupt checkpoints — then resume and compare.

    python -m experiments.tools.fault_injection --trials 3          # every fault, 3 trials each; prints a table
    python -m experiments.tools.fault_injection --faults checkpoint_save,record_write --trials 10 --seed 1

Each trial trains a tiny random RoBERTa on 48 SST-2 rows (3 epochs, a checkpoint per epoch) in a subprocess that
dies at the injected fault, then reruns the same command (a plain resume) and checks what it left:

* **finished**: exactly one record, status `finished`;
* **identical**: its per-epoch metrics, train losses, best epoch and test metric equal an uninterrupted run's, and the
  adapter's bytes are the same (CPU runs are deterministic);
* **intact**: no half-written file visible (no temp/staging files, no checkpoints left), every JSON parses, and no
  orphaned lock.

Faults (the kill is SIGKILL, sent by the process to itself; inside a scope it fires after a random delay, or right as
the scope returns when that comes first):

| fault | what happens |
|---|---|
| `mid_epoch` | killed inside a random optimizer step |
| `checkpoint_save` | killed inside `Trainer._save_checkpoint` of a random epoch |
| `adapter_save` | killed inside the best-adapter save of a random improving epoch |
| `record_write` | killed inside a random atomic record write |
| `corrupt_checkpoint` | killed at the start of epoch 3, then the newest checkpoint's weights are truncated |
| `enospc_record` | `fsync` of a record write fails with ENOSPC at a random epoch; then the disk is "freed" |
| `enospc_adapter` | the adapter save fails with ENOSPC half-way; then the disk is "freed" |

For the ENOSPC faults, "intact" also requires that the failing process named the path in its error and left the
previous record (valid JSON) and adapter (whole safetensors) in place.

Races over the run's claim (each a scenario of its own; "first" is the process that must give way):

| case | what happens |
|---|---|
| `paused_owner` | the owner is paused (SIGSTOP) after epoch 1 past `lock.stale_after_s`; a second launch takes over and finishes; then the first continues: it must stop with "lost its claim", non-zero, and change nothing |
| `ddp_claim_race` | two `torchrun` launches (2 gloo ranks each) of one run, the second while the first trains: the second's ranks wait on the claim and skip the finished run; one record, trained once, equal to a torchrun reference |
| `foreign_pidns` | the owner runs in another pid namespace with our hostname (`unshare`, a container with host networking); a second launch (`lock.if_claimed=skip`) must not call it dead |
| `nan_labels` | STS-B with a `nan` score: the launch fails naming file and line and records nothing finished; fixed, the rerun equals an STS-B reference |
"""

from __future__ import annotations

import argparse
import errno
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from experiments import REPO

FAULTS = (
    "mid_epoch",
    "checkpoint_save",
    "adapter_save",
    "record_write",
    "corrupt_checkpoint",
    "enospc_record",
    "enospc_adapter",
)
SCENARIOS = ("paused_owner", "ddp_claim_race", "foreign_pidns", "nan_labels")
TORCHRUN = str(Path(sys.executable).parent / "torchrun")
UNSHARE = ["unshare", "--user", "--map-root-user", "--pid", "--fork", "--mount-proc"]
EPOCHS, ROWS, BATCH = 3, 48, 8


def overrides(glue_dir: str, root: Path) -> list[str]:
    return [
        "method=gpart",
        "model=tiny-roberta",
        "task=glue/sst2",
        f"task.data_dir={glue_dir}",
        f"task.train_subset={ROWS}",
        "task.validation_min_rows=8",
        "task.test_subset=24",
        "task.max_length=32",
        f"trainer.epochs={EPOCHS}",
        f"trainer.batch_size={BATCH}",
        "trainer.eval_batch_size=32",
        "method.config.d=512",
        "trainer.lr=5e-2",
        "trainer.head_lr=5e-2",
        "trainer.save_checkpoints=true",
        f"paths.root={root}",
        "logger=none",
        f"hydra.run.dir={root}/hydra",
    ]


# -- in the child: arm one fault, then run the runner's Hydra entry point -------------------------------------------
def _die() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def _kill_inside(owner, name: str, nth: int, max_delay_s: float) -> None:
    """On the `nth` call of owner.name, SIGKILL this process after a random delay, or as the call returns."""
    real = getattr(owner, name)
    calls = {"n": 0}

    def wrapped(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] != nth:
            return real(*args, **kwargs)
        threading.Timer(random.uniform(0, max_delay_s), _die).start()
        result = real(*args, **kwargs)
        _die()
        return result

    setattr(owner, name, wrapped)


def arm(fault: str, nth: int, seed: int) -> None:
    random.seed(seed)
    import transformers

    from experiments import run as runner
    from experiments.runner import atomic, records, training

    if fault == "mid_epoch":
        _kill_inside(training.RunnerTrainer, "training_step", nth, 0.05)
    elif fault == "checkpoint_save":
        _kill_inside(transformers.Trainer, "_save_checkpoint", nth, 0.3)
    elif fault == "adapter_save":
        _kill_inside(atomic, "save_directory_atomically", nth, 0.05)
    elif fault == "record_write":
        _kill_inside(records, "write_atomic", nth, 0.01)
    elif fault == "corrupt_checkpoint":

        def die_at_last_epoch(self, args, state, control, **kwargs):
            if state.epoch and state.epoch >= EPOCHS - 1:
                _die()

        runner.EpochRecorder.on_epoch_begin = die_at_last_epoch
    elif fault == "enospc_record":
        real_fsync = os.fsync
        calls = {"n": 0}

        def fsync(fd):
            if ".record.json." in os.readlink(f"/proc/self/fd/{fd}"):
                calls["n"] += 1
                if calls["n"] >= nth:  # the disk stays full: the failure record cannot be written either
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return real_fsync(fd)

        atomic.os.fsync = fsync
    elif fault == "enospc_adapter":
        import gpart.io

        real_atomic_write, calls = gpart.io._atomic_write, {"n": 0}

        def half_then_full(path):
            Path(path).write_bytes(b"\0" * 100)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        def atomic_write(target, write):
            if target.name == gpart.io.WEIGHTS_NAME:
                calls["n"] += 1
                if calls["n"] == nth:
                    return real_atomic_write(target, half_then_full)
            return real_atomic_write(target, write)

        gpart.io._atomic_write = atomic_write
    else:
        raise ValueError(f"fault {fault!r} is not known; allowed: {FAULTS}")


def child(argv: list[str]) -> None:
    fault, nth, seed = argv[0], int(argv[1]), int(argv[2])
    if fault != "none":
        arm(fault, nth, seed)
    from experiments import run as runner

    # Imported (not run as __main__), hydra.main would look for a `configs` package: point it at the folder.
    sys.argv = ["experiments.run", f"--config-path={REPO / 'configs'}", *argv[3:]]
    runner.main()


# -- in the parent: trials and checks -------------------------------------------------------------------------------
def child_env() -> dict:
    return dict(
        os.environ,
        OMP_NUM_THREADS="1",
        HF_HUB_OFFLINE="1",
        WANDB_MODE="disabled",
        TOKENIZERS_PARALLELISM="false",
        PYTHONPATH=str(REPO),
    )


def child_command(args: list[str], fault: str = "none", nth: int = 0, seed: int = 0, prefix=()) -> list[str]:
    return [
        *prefix,
        sys.executable,
        "-m",
        "experiments.tools.fault_injection",
        "--child",
        fault,
        str(nth),
        str(seed),
        *args,
    ]


def launch(args: list[str], fault: str = "none", nth: int = 0, seed: int = 0, timeout: int = 900):
    return subprocess.run(
        child_command(args, fault, nth, seed),
        cwd=REPO,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_folder(root: Path) -> Path:
    found = list((root / "runs").glob("*/"))
    if len(found) != 1:
        raise RuntimeError(f"expected one run folder under {root}/runs, found {found}")
    return found[0]


def adapter_digest(run_dir: Path) -> str:
    digest = hashlib.sha256()
    for file in sorted((run_dir / "adapter").iterdir()):
        digest.update(file.name.encode() + file.read_bytes())
    return digest.hexdigest()


def outcome(record: dict) -> dict:
    keep = ("epoch", "step", "train_loss", "validation", "test")
    return {
        "epochs": [{k: e[k] for k in keep} for e in record["epochs"]],
        "best_epoch": record["best_epoch"],
        "test_metric": record["test_metric"],
        "test_metrics": record["test_metrics"],
    }


def debris(run_dir: Path) -> list[str]:
    """Half-written or leftover files: hidden temp/staging files, checkpoints, lock files, unparsable JSON."""
    from experiments.runner.run_lock import orphaned_files

    left = [p.name for p in run_dir.iterdir() if p.name.startswith(".") or p.name == "checkpoints"]
    left += [p.name for p in orphaned_files(run_dir)]
    for path in run_dir.rglob("*.json"):
        try:
            json.loads(path.read_text())
        except ValueError:
            left.append(f"{path.name} (not JSON)")
    return left


def calls_per_run() -> dict[str, int]:
    """How many times each fault's scope runs in an uninterrupted run (the range of `nth`)."""
    steps = EPOCHS * -(-(ROWS - 8) // BATCH)  # 8 rows held out for validation
    return {
        "mid_epoch": steps,
        "checkpoint_save": EPOCHS,
        "adapter_save": 1,
        "record_write": 2 + EPOCHS + 1,
        "corrupt_checkpoint": 1,
        "enospc_record": 2 + EPOCHS,
        "enospc_adapter": 1,
    }


def trial(fault: str, nth: int, seed: int, glue_dir: str, reference: dict, work: Path) -> dict:
    root = Path(tempfile.mkdtemp(prefix=f"{fault}-", dir=work))
    args = overrides(glue_dir, root)
    first = launch(args, fault, nth, seed)
    row = {
        "fault": fault,
        "nth": nth,
        "killed": first.returncode == -signal.SIGKILL,
        "failed": first.returncode == 1,
        "notes": [],
    }
    run_dir = run_folder(root)
    if fault == "corrupt_checkpoint":
        for weights in (run_dir / "checkpoints").glob("checkpoint-*/*.safetensors"):
            os.truncate(weights, weights.stat().st_size // 2)
    if fault.startswith("enospc"):
        row["killed"] = False
        named = "No space left on device" in first.stderr and (
            str(run_dir / "record.json") in first.stderr or str(run_dir / "adapter") in first.stderr
        )
        left = json.loads((run_dir / "record.json").read_text())  # raises if half-written
        adapter_whole = not (run_dir / "adapter").exists() or _safetensors_whole(run_dir / "adapter")
        if not (named and adapter_whole and left["status"] in ("running", "failed")):
            row["notes"].append(
                f"after ENOSPC: path named={named}, adapter whole={adapter_whole}, record={left['status']}"
            )
    second = launch(args)
    record = json.loads((run_dir / "record.json").read_text()) if (run_dir / "record.json").exists() else {}
    row["finished"] = second.returncode == 0 and record.get("status") == "finished"
    row["identical"] = (
        row["finished"] and outcome(record) == reference["outcome"] and adapter_digest(run_dir) == reference["adapter"]
    )
    row["resumed"] = record.get("resumed")
    left = debris(run_dir)
    row["intact"] = not left and not row["notes"]
    if left:
        row["notes"].append(f"left: {left}")
    if not row["finished"]:
        row["notes"].append(second.stderr[-400:])
    return row


# -- races over the claim ------------------------------------------------------------------------------------------
def start(command: list[str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(command, cwd=REPO, env=child_env(), stdout=open(log, "w"), stderr=subprocess.STDOUT)


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


def stsb_overrides(glue_dir: str, root: Path) -> list[str]:
    return [a.replace("task=glue/sst2", "task=glue/stsb") for a in overrides(glue_dir, root)]


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


def reference_run(kind: str, glue_dir: str, work: Path) -> dict:
    """An uninterrupted run's outcome and adapter digest: SST-2 in one process or under torchrun, or STS-B."""
    root = work / f"reference-{kind}"
    args = stsb_overrides(glue_dir, root) if kind == "stsb" else overrides(glue_dir, root)
    if kind.endswith("ddp"):
        command = [TORCHRUN, "--standalone", "--nproc_per_node=2", "-m", "experiments.run", *args]
        done = subprocess.run(command, cwd=REPO, env=child_env(), capture_output=True, text=True, timeout=900)
    else:
        done = launch(args)
    if done.returncode != 0:
        raise RuntimeError(f"the {kind} reference run failed:\n{done.stderr[-3000:]}")
    run_dir = run_folder(root)
    return {"outcome": outcome(json.loads((run_dir / "record.json").read_text())), "adapter": adapter_digest(run_dir)}


def _safetensors_whole(folder: Path) -> bool:
    from experiments.runner.resume import _safetensors_problem

    return all(_safetensors_problem(p) is None for p in folder.glob("*.safetensors"))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=3, help="trials per fault (default 3)")
    parser.add_argument(
        "--faults",
        default=",".join(FAULTS + SCENARIOS),
        help=f"comma-separated subset of {','.join(FAULTS + SCENARIOS)}",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill points")
    parser.add_argument("--glue-dir", default=os.environ.get("GLUE_DIR") or str(REPO.parent / "shared/data/glue"))
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temp folder)")
    args = parser.parse_args(argv)
    faults = [f.strip() for f in args.faults.split(",") if f.strip()]
    unknown = sorted(set(faults) - set(FAULTS) - set(SCENARIOS))
    if unknown:
        parser.error(f"--faults: unknown {unknown}; allowed: {', '.join(FAULTS + SCENARIOS)}")
    if args.trials < 1:
        parser.error(f"--trials={args.trials} must be >= 1")
    if not (Path(args.glue_dir) / "SST-2" / "train.tsv").exists():
        parser.error(f"--glue-dir={args.glue_dir!r} holds no SST-2/train.tsv (set GLUE_DIR)")
    work = args.work or Path(tempfile.mkdtemp(prefix="gpart-faults-"))
    work.mkdir(parents=True, exist_ok=True)

    start = time.perf_counter()
    cache: dict[str, dict] = {}

    def references(kind: str) -> dict:
        if kind not in cache:
            cache[kind] = reference_run(kind, args.glue_dir, work)
            print(
                f"reference run ({kind}): test {cache[kind]['outcome']['test_metric']:.4f}, best epoch "
                f"{cache[kind]['outcome']['best_epoch']}, {time.perf_counter() - start:.0f} s",
                flush=True,
            )
        return cache[kind]

    rng = random.Random(args.seed)
    limits = calls_per_run()
    rows = []
    for fault in faults:
        for index in range(args.trials):
            if fault in SCENARIOS:
                row = scenario(fault, args.glue_dir, work, references)
            else:
                nth = rng.randint(2 if fault == "enospc_record" else 1, limits[fault])  # 2: a previous record exists
                row = trial(fault, nth, rng.randrange(2**31), args.glue_dir, references("sst2"), work)
            rows.append(row)
            print(
                f"  {fault:<18} trial {index + 1}: call {row['nth']:>2}, killed={row['killed']}, "
                f"finished={row['finished']}, identical={row['identical']}, intact={row['intact']} "
                f"{'; '.join(row['notes'])[:300]}",
                flush=True,
            )
    print_table(rows, time.perf_counter() - start)
    return 0 if all(r["finished"] and r["identical"] and r["intact"] for r in rows) else 1


def print_table(rows: list[dict], seconds: float) -> None:
    print(
        "\n| fault | trials | killed / failed first | finished | identical metrics + adapter | files intact, "
        "no lock | resumed (times) |\n|---|---:|---:|---:|---:|---:|---|"
    )
    for fault in dict.fromkeys(r["fault"] for r in rows):
        mine = [r for r in rows if r["fault"] == fault]
        stopped = sum(r["killed"] or r["failed"] for r in mine)
        resumed = sorted({r["resumed"] for r in mine if r["resumed"] is not None})
        print(
            f"| {fault} | {len(mine)} | {stopped} | {sum(r['finished'] for r in mine)} | "
            f"{sum(r['identical'] for r in mine)} | {sum(r['intact'] for r in mine)} | {resumed} |"
        )
    print(f"\n{len(rows)} trials in {seconds:.0f} s")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2:])
    else:
        sys.exit(main())
