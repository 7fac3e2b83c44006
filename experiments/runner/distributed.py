"""Data-parallel runs of the runner: torchrun, `accelerate launch` and SLURM jobs, with the Trainer doing the DDP.

The runner stays the same program on every rank; this module holds what differs:

* :func:`training_arguments` — the `TrainingArguments` keywords that put `Trainer` in distributed mode and keep the
  paper's global batch. On a machine without an accelerator transformers leaves `use_cpu` off, accelerate then finds
  no device for `LOCAL_RANK` and reports `DistributedType.NO` although it has already opened a process group: every
  rank trains alone on the whole train set ("process group is initialized, but parallel_mode !=
  ParallelMode.DISTRIBUTED"). Setting `use_cpu` under a launcher selects accelerate's MULTI_CPU (gloo) path.
* :func:`split_global_batch` — `trainer.batch_size × trainer.grad_accum` is the batch of one optimizer step as the
  paper states it; under N processes it is split over them (accumulation first, then the per-device batch).
* :func:`is_main_process` / :func:`gather_objects` — rank 0 alone writes files; evaluation results are gathered.
* :func:`share_from_main` — rank 0 decides whether a run is trained (it holds the run's claim) and whether the claim
  is still held before each write; every rank follows that answer, so no two ranks ever work on different runs.
* :func:`quiet_hydra_on_other_ranks` — Hydra's own files (`.hydra/`, the job log, `multirun.yaml`) from rank 0 only.

θ is one parameter used by every GPart layer: autograd sums its contributions before its gradient accumulator runs,
so DDP's reducer sees it ready once per backward, in one bucket, and all-reduces it once (the Triton kernels' atomics
are per rank, before that all-reduce). No parameter of the suite's models is unused in a step, so
`find_unused_parameters` is off by default (`trainer.ddp.find_unused_parameters`).
"""

from __future__ import annotations

import atexit
import hashlib
import logging
import math
import os
import shutil
import signal
import tempfile
import threading
from datetime import timedelta
from typing import Any, Optional

import torch

log = logging.getLogger(__name__)


def launched_world_size() -> int:
    """Processes the launcher started (torchrun / accelerate / submitit export WORLD_SIZE); 1 without a launcher."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def process_group() -> tuple[int, int]:
    """(rank, number of processes) of the initialised process group; (0, 1) without one. Work is split by this."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def is_main_process() -> bool:
    """Rank 0 (of the group, or as the launcher numbered it before the group exists), or a single process. Only it
    writes records, adapters and predictions, and cleans up checkpoints."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank() == 0
    return int(os.environ.get("RANK", "0")) == 0


def has_accelerator() -> bool:
    accelerator = getattr(torch, "accelerator", None)
    if accelerator is not None:
        return accelerator.is_available()
    return torch.cuda.is_available()


def split_global_batch(batch_size: int, grad_accum: int, processes: int, keep_global: bool = True) -> tuple[int, int]:
    """(per-device batch, accumulation steps) with per-device × accumulation × processes = batch_size × grad_accum.

    The processes take what they can from the accumulation steps first (same per-device memory, fewer sequential
    micro-batches), the rest from the per-device batch. With `keep_global` false the batch is per device and the
    global batch grows with the number of processes (the behaviour of a plain `Trainer`)."""
    for name, value in (("trainer.batch_size", batch_size), ("trainer.grad_accum", grad_accum)):
        if int(value) < 1:
            raise ValueError(f"{name}={value!r} must be a positive integer")
    if not keep_global or processes == 1:
        return batch_size, grad_accum
    from_accumulation = math.gcd(grad_accum, processes)
    from_batch = processes // from_accumulation
    if batch_size % from_batch:
        raise ValueError(
            f"trainer.batch_size={batch_size} x trainer.grad_accum={grad_accum} (global batch "
            f"{batch_size * grad_accum}) cannot be split evenly over {processes} processes; use a number of processes "
            f"that divides it, change the batch, or set trainer.keep_global_batch=false to make trainer.batch_size "
            "a per-device batch"
        )
    return batch_size // from_batch, grad_accum // from_accumulation


def training_arguments(trainer_cfg) -> dict[str, Any]:
    """Keyword arguments of `TrainingArguments` for this launch: batch split, device selection and DDP options."""
    processes = launched_world_size()
    per_device, accumulation = split_global_batch(
        int(trainer_cfg.batch_size),
        int(trainer_cfg.grad_accum),
        processes,
        bool(trainer_cfg.get("keep_global_batch", True)),
    )
    ddp = trainer_cfg.get("ddp") or {}
    kwargs = dict(
        per_device_train_batch_size=per_device,
        gradient_accumulation_steps=accumulation,
        ddp_timeout=int(ddp.get("timeout", 1800)),
        ddp_backend=ddp.get("backend"),
        ddp_find_unused_parameters=bool(ddp.get("find_unused_parameters", False)),
        # Buffers are constants here (position ids, GPart's scale); broadcasting them every step is waste.
        ddp_broadcast_buffers=False,
    )
    if processes > 1 and not has_accelerator():
        kwargs["use_cpu"] = True
        init_cpu_process_group(kwargs["ddp_timeout"], kwargs["ddp_backend"] or "gloo")
    return kwargs


def start_process_group(trainer_cfg) -> None:
    """Under a launcher, open the default process group before the first run decision (accelerate and the Trainer
    reuse it): CPU with gloo; with an accelerator the backend accelerate would pick (NCCL on CUDA), on this rank's
    device."""
    if launched_world_size() == 1 or torch.distributed.is_initialized():
        return
    ddp = trainer_cfg.get("ddp") or {}
    timeout_s, backend = int(ddp.get("timeout", 1800)), ddp.get("backend")
    if not has_accelerator():
        init_cpu_process_group(timeout_s, backend or "gloo")
        return
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    torch.distributed.init_process_group(backend=backend, timeout=timedelta(seconds=timeout_s))


_DECISIONS: dict[str, Any] = {}
# Rank 0 may wait for another owner's run (lock.if_claimed=wait) while the other ranks wait for its decision; a dead
# rank 0 ends the job through the launcher, so this only bounds a rank 0 that hangs.
DECISION_TIMEOUT = timedelta(days=7)


def share_from_main(value: Any) -> Any:
    """Rank 0's `value` on every rank (a pickled broadcast over a gloo group, which works beside NCCL); `value`
    itself in a single process. Every rank must call it at the same point."""
    if launched_world_size() == 1:
        return value
    if not torch.distributed.is_initialized():
        raise RuntimeError("share_from_main under a launcher needs the process group: call start_process_group first")
    if "group" not in _DECISIONS:
        _DECISIONS["group"] = torch.distributed.new_group(backend="gloo", timeout=DECISION_TIMEOUT)
    box = [value if is_main_process() else None]
    torch.distributed.broadcast_object_list(box, src=0, group=_DECISIONS["group"])
    return box[0]


def init_cpu_process_group(timeout_s: int, backend: str) -> None:
    """Open the CPU process group ourselves: transformers' CPU path does not pass `ddp_timeout` on, and a rank
    waiting on a dead peer must give up after `trainer.ddp.timeout`, not torch's default. accelerate reuses it."""
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend=backend, timeout=timedelta(seconds=timeout_s))


def describe(args) -> dict:
    """What the record says about the launch (`TrainingArguments` after the Trainer set up its devices)."""
    processes = args.world_size
    return {
        "world_size": processes,
        "parallel_mode": str(args.parallel_mode.value),
        "backend": torch.distributed.get_backend() if torch.distributed.is_initialized() else None,
        "per_device_batch_size": args.per_device_train_batch_size,
        "grad_accum": args.gradient_accumulation_steps,
        "global_batch_size": args.per_device_train_batch_size * args.gradient_accumulation_steps * processes,
    }


def trainable_fingerprint(model: torch.nn.Module, limit: int = 50_000_000) -> Optional[str]:
    """sha256 of the trainable parameters' bytes (names in order), or None above `limit` elements (full fine-tuning
    of a large model: too slow to hash). Equal on every rank iff DDP kept the replicas identical."""
    trainable = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    if sum(p.numel() for _, p in trainable) > limit:
        return None
    digest = hashlib.sha256()
    for name, param in trainable:
        digest.update(name.encode())
        digest.update(param.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def per_rank_summary(trainer) -> list[dict]:
    """Each rank's share of the training data and its trainable-parameter fingerprint, gathered in rank order."""
    mine = {
        "micro_batches": trainer.micro_batches,
        "examples": trainer.examples_seen,
        "trainable_sha256": trainable_fingerprint(trainer.model),
    }
    ranks = gather_objects(mine)
    if len({r["trainable_sha256"] for r in ranks}) > 1:
        log.warning("the ranks' trainable parameters differ after training: %s", ranks)
    return ranks


def gather_objects(value: Any) -> list[Any]:
    """`value` of every rank, in rank order (all ranks receive the list); `[value]` in a single process."""
    processes = process_group()[1]
    if processes == 1:
        return [value]
    gathered: list[Any] = [None] * processes
    torch.distributed.all_gather_object(gathered, value)
    return gathered


def requested_processes(launcher_argv: list[str]) -> Optional[int]:
    """`--num_processes N` (or `=N`) of an `accelerate launch` command line; None without one."""
    for index, arg in enumerate(launcher_argv):
        if arg.startswith("--num_processes="):
            value = arg.split("=", 1)[1]
        elif arg == "--num_processes" and index + 1 < len(launcher_argv):
            value = launcher_argv[index + 1]
        else:
            continue
        return int(value) if value.isdigit() else None
    return None


def launcher_dropped_processes(launcher_argv: Optional[list[str]] = None) -> Optional[str]:
    """A warning when `accelerate launch --num_processes N` (N > 1) started one process: without GPUs its simple
    launcher ignores the number unless `--multi_gpu` is given. None when nothing was dropped."""
    if "ACCELERATE_USE_CPU" not in os.environ or launched_world_size() > 1:
        return None  # not accelerate's single-process launcher
    if launcher_argv is None:
        try:
            import psutil

            launcher_argv = psutil.Process().parent().cmdline()
        except Exception:
            return None
    wanted = requested_processes(launcher_argv)
    if not wanted or wanted < 2:
        return None
    return (
        f"accelerate launch --num_processes {wanted} started ONE process: on a machine without GPUs accelerate "
        f"needs --multi_gpu to start {wanted} (accelerate launch --multi_gpu --num_processes {wanted} ...); this "
        "run trains in a single process"
    )


class StoppedByLauncher(RuntimeError):
    """SIGTERM under a launcher: torchrun stops every rank when one fails (or the job was cancelled)."""


def raise_on_sigterm() -> None:
    """Under a launcher, turn SIGTERM into :class:`StoppedByLauncher`, so that rank 0 marks its record `failed`
    in the grace period before the launcher's SIGKILL. A single process keeps Python's default."""
    if launched_world_size() > 1 and threading.current_thread() is threading.main_thread():

        def stop(signum, frame):
            raise StoppedByLauncher("stopped by the launcher (SIGTERM): another rank failed or the job was cancelled")

        signal.signal(signal.SIGTERM, stop)


def quiet_hydra_on_other_ranks(argv: list[str]) -> list[str]:
    """Command-line overrides that keep ranks other than 0 from writing Hydra's files: no `.hydra/` folder, logs to
    the console only, and their (otherwise colliding) run/sweep folders in a temporary folder removed at exit."""
    if int(os.environ.get("RANK", "0")) == 0:
        return argv
    scratch = tempfile.mkdtemp(prefix=f"gpart-hydra-rank{os.environ['RANK']}-")
    atexit.register(shutil.rmtree, scratch, ignore_errors=True)
    extra = ["hydra.output_subdir=null", f"hydra.run.dir={scratch}/run", f"hydra.sweep.dir={scratch}/sweep"]
    if not any(arg.startswith(("hydra/job_logging=", "hydra.job_logging")) for arg in argv):
        extra.append("hydra/job_logging=stdout")
    return argv + extra
