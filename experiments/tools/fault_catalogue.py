"""The faults of experiments/tools/fault_injection.py: where each one fires inside a run, armed in the child process
before the runner starts (`arm`), and how many times its scope runs in an uninterrupted run (`calls_per_run`, the
range a trial draws the fatal call from). The kill is SIGKILL, sent by the process to itself.
"""

from __future__ import annotations

import errno
import os
import random
import signal
import sys
import threading
from pathlib import Path

from experiments import REPO
from experiments.tools.fault_harness import BATCH, EPOCHS, ROWS

FAULTS = (
    "mid_epoch",
    "checkpoint_save",
    "adapter_save",
    "record_write",
    "corrupt_checkpoint",
    "enospc_record",
    "enospc_adapter",
)


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


def child(argv: list[str]) -> None:
    fault, nth, seed = argv[0], int(argv[1]), int(argv[2])
    if fault != "none":
        arm(fault, nth, seed)
    from experiments import run as runner

    # Imported (not run as __main__), hydra.main would look for a `configs` package: point it at the folder.
    sys.argv = ["experiments.run", f"--config-path={REPO / 'configs'}", *argv[3:]]
    runner.main()
