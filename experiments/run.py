"""The shared runner: one Hydra entry point for every task and method.

    python -m experiments.run experiment=glue/base/gpart-sst2 seed=0
    python -m experiments.run -m experiment=glue/base/gpart-sst2 seed=0,1,2,3,4     # a sweep
    torchrun --nproc_per_node 4 -m experiments.run experiment=...                   # DDP (experiments/runner/distributed.py)

It composes `configs/config.yaml`, instantiates the task (`cfg.task._target_`), builds the model and applies the
method from the registry (`experiments/methods.py`), trains with `transformers.Trainer` (two learning rates: adapter
and head), evaluates validation and test after every epoch, and writes `results/runs/<run_id>/record.json`
(`docs/record-format.md`). A finished record makes a rerun skip; an unfinished one resumes from its last checkpoint.

This module is the entry point and a run's lifecycle: decide (skip, wait for or claim the run), resume, train, finish
or fail. What training needs (the `Trainer` subclass, the epoch recorder, the memory sampler) is in
`experiments/runner/training.py`; the record is kept and written by `experiments.runner.records.RunRecord`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
import time
import traceback
from pathlib import Path
from typing import Optional

import hydra
from omegaconf import DictConfig

import experiments  # noqa: F401  (registers the OmegaConf resolvers)
from experiments.runner import atomic, config_checks, distributed, records, resume, run_lock, sweep_summary
from experiments.runner.claim_guard import ClaimGuard
from experiments.runner.distributed import is_main_process
from experiments.runner.training import (
    EpochRecorder,
    PeakMemory,
    RunnerTrainer,
    count_parameters,
    make_trainer,
    prepare,
)

log = logging.getLogger("experiments.run")


# -- training ---------------------------------------------------------------------------------------------------------
def train(
    cfg: DictConfig, record: records.RunRecord, run_dir: Path, resume_from: Optional[str], guard: ClaimGuard
) -> RunnerTrainer:
    """Build, train and evaluate the run, telling `record` what happened (it writes at the start of training and
    after every epoch); raises unless the result is finite. Every rank runs it."""
    task, method, model, processor = prepare(cfg)
    trainable_params, head_params = count_parameters(model, list(cfg.model.head_modules))
    adapted_space_size, adapted_modules = method.adapted(model)
    record.note_model(
        trainable_params=trainable_params,
        head_params=head_params,
        adapted_space_size=adapted_space_size,
        adapted_modules=adapted_modules,
    )
    splits = task.build_splits(processor, int(cfg.seed))
    record.note_skipped_rows(getattr(task, "skipped_rows", None))  # task.skip_bad_rows=true
    recorder = EpochRecorder(
        task, splits, method, record, run_dir, bool(cfg.trainer.save_adapter), guard, str(cfg.trainer.test_at)
    )
    trainer = make_trainer(cfg, task, model, processor, splits, recorder, run_dir, record.run_id)
    trainer.claim_guard = guard
    record.note_launch(distributed.describe(trainer.args))

    start = time.perf_counter()
    with PeakMemory() as memory:
        recorder.memory = memory
        trainer.train(resume_from_checkpoint=resume_from)
    record.note_training_end(
        train_s=time.perf_counter() - start - recorder.eval_seconds,
        eval_s=recorder.eval_seconds,
        step_times=recorder.step_times,
        memory=memory.result(),
    )
    record.note_outputs(
        backend=method.backend(model),  # the compute path that actually ran (GPart: torch/Triton)
        per_rank=distributed.per_rank_summary(trainer),
        adapter_bytes=records.directory_bytes(run_dir / "adapter"),
    )
    record.require_finite_result()
    guard.check("the end of the run", collective=True)
    if not cfg.trainer.keep_checkpoints and is_main_process():
        guard.check("removing checkpoints/")
        shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    return trainer


# -- one run, with its record -----------------------------------------------------------------------------------------
def resume_point(run_dir: Path, previous: Optional[dict]) -> tuple[Optional[str], list]:
    """(last checkpoint of an unfinished run, the epochs recorded up to it). Called by the run's owner only."""
    last = resume.usable_checkpoint(run_dir / "checkpoints") if previous else None
    if last is None:
        return None, []
    state = records.read(Path(last) / "trainer_state.json") or {}
    done = round(state.get("epoch") or 0)
    return str(last), [e for e in previous.get("epochs", []) if e["epoch"] <= done]


def run(cfg: DictConfig) -> dict:
    """Run one configuration and return its record: skipped when a finished record exists (unless `rerun=true`)
    or when another live process owns the run (`lock.if_claimed=skip`; `wait`, the default, waits for it). Under a
    launcher rank 0 alone decides (it claims the run) and every rank follows its decision."""
    config_checks.validate(cfg)
    configure_logger(cfg)
    digest = records.config_hash(cfg)
    run_id = records.make_run_id(cfg, digest)
    run_dir = Path(cfg.paths.runs_dir).resolve() / run_id
    distributed.start_process_group(cfg.trainer)
    claim, plan = decide_on_main(cfg, run_id, digest, run_dir) if is_main_process() else (None, None)
    plan = distributed.share_from_main(plan)
    if plan["action"] == "error":
        raise RuntimeError(f"{run_id}: rank 0 could not start the run ({plan['error']}); this rank stops too")
    if plan["action"] == "skip":
        return plan["record"]
    with claim if claim is not None else contextlib.nullcontext():
        return run_owned(cfg, run_id, digest, run_dir, plan, ClaimGuard(claim))


def decide_on_main(
    cfg: DictConfig, run_id: str, digest: str, run_dir: Path
) -> tuple[Optional[run_lock.RunClaim], dict]:
    """Rank 0's decision; an error is shared with the other ranks before it is raised, so none waits for it."""
    try:
        return decide(cfg, run_id, digest, run_dir)
    except BaseException as error:
        distributed.share_from_main({"action": "error", "error": f"{type(error).__name__}: {error}"})
        raise


def decide(cfg: DictConfig, run_id: str, digest: str, run_dir: Path) -> tuple[Optional[run_lock.RunClaim], dict]:
    """(the claim, the plan): skip a finished run, skip (or wait for) one another process holds, or claim it, clean
    up after a killed predecessor and find the checkpoint to resume from."""
    rerun = bool(cfg.get("rerun", False))
    previous = existing_record(run_dir, digest)
    if previous and previous.get("status") == "finished" and not rerun:
        return None, skip_finished(run_id, previous)
    try:
        claim = run_lock.claim(
            run_dir,
            wait=cfg.lock.if_claimed == "wait",
            heartbeat_s=float(cfg.lock.heartbeat_s),
            stale_after_s=float(cfg.lock.stale_after_s),
        )
    except run_lock.RunClaimed as claimed:
        log.info("skip %s: claimed by %s", run_id, run_lock.describe(claimed.owner))
        record = previous or {"run_id": run_id, "status": "claimed"}
        return None, {"action": "skip", "record": {**record, "skipped": "claimed", "owner": claimed.owner}}
    try:
        previous = existing_record(run_dir, digest)  # the owner we waited for may have finished it
        if previous and previous.get("status") == "finished":
            if not rerun:
                claim.release()
                return None, skip_finished(run_id, previous)
            keep_replaced_record(run_dir, previous)
            previous = None
        atomic.recover_directory(run_dir / "adapter")  # the owner cleans up what a killed predecessor left
        resume.remove_temporaries(run_dir)
        resume_from, epochs = resume_point(run_dir, previous)
    except BaseException:
        claim.release()
        raise
    return claim, {"action": "train", "previous": previous, "resume_from": resume_from, "epochs": epochs}


def skip_finished(run_id: str, previous: dict) -> dict:
    log.info("skip %s: finished record exists", run_id)
    return {"action": "skip", "record": previous}


def existing_record(run_dir: Path, digest: str) -> Optional[dict]:
    previous = records.read(run_dir / "record.json")
    if previous and previous.get("config_hash") != digest:
        raise ValueError(
            f"{run_dir} holds a record of a different configuration (hash "
            f"{previous.get('config_hash')}, this run {digest}); refusing to overwrite it"
        )
    return previous


def keep_replaced_record(run_dir: Path, finished: dict) -> None:
    """`rerun=true`: the finished record moves aside (never silently lost) and the run starts over."""
    stamp = records.slug(finished.get("finished_at") or records.utc_now())
    os.replace(run_dir / "record.json", run_dir / f"record.replaced-{stamp}.json")
    shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    log.info("rerun %s: the finished record is kept as record.replaced-%s.json", run_dir.name, stamp)


def run_owned(cfg: DictConfig, run_id: str, digest: str, run_dir: Path, plan: dict, guard: ClaimGuard) -> dict:
    """Train the run rank 0 holds (resuming an unfinished one, as `plan` says) and return its record."""
    previous, resume_from = plan["previous"], plan["resume_from"]
    record = records.RunRecord.begin(cfg, run_id, digest, run_dir / "record.json", guard, writes=is_main_process())
    if resume_from:
        log.info("resume %s from %s", run_id, resume_from)
    record.start_attempt(previous, resuming=bool(resume_from), epochs=plan["epochs"])
    try:
        train(cfg, record, run_dir, resume_from, guard)
    except run_lock.ClaimLost as lost:
        log.error("%s", lost)  # another process owns the run now: nothing more is written
        raise
    except Exception as error:
        record.fail(error)
        log.error("run %s failed:\n%s", run_id, traceback.format_exc())
        raise
    record.finish()
    log.info(
        "finished %s: %s %s = %s (best epoch %s)",
        run_id,
        cfg.task.key,
        cfg.task.metric,
        record.data["test_metric"],
        record.data["best_epoch"],
    )
    return record.data


def configure_logger(cfg: DictConfig) -> None:
    """wandb through Trainer's report_to; `mode: auto` is online with an API key configured, offline without."""
    logger = cfg.logger
    if logger.name != "wandb":
        return
    mode = logger.get("mode", "auto")
    if mode == "auto":
        mode = os.environ.get("WANDB_MODE") or ("online" if _wandb_key_configured() else "offline")
    os.environ["WANDB_MODE"] = mode
    os.environ["WANDB_PROJECT"] = str(logger.project)
    for key, value in (("WANDB_ENTITY", logger.get("entity")), ("WANDB_RUN_GROUP", logger.get("group"))):
        if value:
            os.environ[key] = str(value)
    if logger.get("tags"):
        os.environ["WANDB_TAGS"] = ",".join(str(t) for t in logger.tags)


def _wandb_key_configured() -> bool:
    netrc = Path.home() / ".netrc"
    return bool(os.environ.get("WANDB_API_KEY")) or (netrc.exists() and "api.wandb.ai" in netrc.read_text())


@hydra.main(version_base="1.3", config_path="../configs", config_name="config")
def main(cfg: DictConfig) -> Optional[float]:
    """One job. A single run ends with its summary and a non-zero exit unless finished; a job of a `-m` sweep
    records its outcome and lets the sweep go on (`SweepSummary` reports at the end), except under a launcher, where
    a run that failed on one rank ends the process (the other ranks would wait in the next run's collectives)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    distributed.raise_on_sigterm()
    dropped = distributed.launcher_dropped_processes()
    if dropped:
        log.warning("%s", dropped)
    hydra_cfg = HydraConfig.get()
    sweeping = hydra_cfg.mode == RunMode.MULTIRUN
    output_dir = Path(hydra_cfg.runtime.output_dir)
    try:
        record = run(cfg)
    except Exception as error:
        entry = note_failure(cfg, output_dir, error)
        if not sweeping:
            sweep_summary.report([entry])
            raise
        log.exception("%s: %s", entry["run_id"], entry["detail"])
        if distributed.launched_world_size() > 1:
            raise SystemExit(sweep_summary.EXIT_FAILED) from error
        return None
    entry = sweep_summary.note(
        output_dir,
        record.get("run_id"),
        run_dir_of(cfg),
        sweep_summary.outcome_of(record),
        run_lock.describe(record["owner"]) if record.get("owner") else "",
    )
    if not sweeping:
        code = sweep_summary.report([entry])
        if code:
            raise SystemExit(code)
    return record.get("test_metric")


def run_dir_of(cfg: DictConfig) -> Optional[Path]:
    try:
        return Path(cfg.paths.runs_dir).resolve() / records.make_run_id(cfg, records.config_hash(cfg))
    except Exception:  # a config too broken to name its run
        return None


def note_failure(cfg: DictConfig, output_dir: Path, error: Exception) -> dict:
    run_dir = run_dir_of(cfg)
    kind = sweep_summary.LOST if isinstance(error, run_lock.ClaimLost) else sweep_summary.FAILED
    return sweep_summary.note(
        output_dir, run_dir.name if run_dir else None, run_dir, kind, f"{type(error).__name__}: {error}"
    )


if __name__ == "__main__":
    sys.argv = distributed.quiet_hydra_on_other_ranks(sys.argv)
    main()
