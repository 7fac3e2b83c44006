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

The parts: where each fault fires (experiments/tools/fault_catalogue.py), the tiny run, its child process and what is
read back from its folder (experiments/tools/fault_harness.py), the claim races and the NaN label
(experiments/tools/fault_scenarios.py); this module runs the trials and prints the table.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import tempfile
import time
from pathlib import Path

from experiments import REPO
from experiments.tools.fault_catalogue import FAULTS, calls_per_run, child
from experiments.tools.fault_harness import (
    adapter_digest,
    debris,
    launch,
    outcome,
    overrides,
    reference_run,
    run_folder,
    safetensors_whole,
)
from experiments.tools.fault_scenarios import SCENARIOS, scenario


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
        adapter_whole = not (run_dir / "adapter").exists() or safetensors_whole(run_dir / "adapter")
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
