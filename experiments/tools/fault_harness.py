"""The tiny run that every trial of experiments/tools/fault_injection.py trains, launched in a child process, and
what the checks read back from its folder: the record's outcome, the adapter's digest, and any debris (half-written
files, checkpoints, locks). The child is `python -m experiments.tools.fault_injection --child <fault> <nth> <seed>
<overrides>`: it arms the fault (experiments/tools/fault_catalogue.py), then runs the runner.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

from experiments import REPO

TORCHRUN = str(Path(sys.executable).parent / "torchrun")
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


def stsb_overrides(glue_dir: str, root: Path) -> list[str]:
    return [a.replace("task=glue/sst2", "task=glue/stsb") for a in overrides(glue_dir, root)]


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


def start(command: list[str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(command, cwd=REPO, env=child_env(), stdout=open(log, "w"), stderr=subprocess.STDOUT)


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


def safetensors_whole(folder: Path) -> bool:
    from experiments.runner.resume import _safetensors_problem

    return all(_safetensors_problem(p) is None for p in folder.glob("*.safetensors"))


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
