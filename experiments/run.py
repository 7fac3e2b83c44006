"""The shared runner: one Hydra entry point for every task and method.

    python -m experiments.run experiment=glue/base/gpart-sst2 seed=0
    python -m experiments.run -m experiment=glue/base/gpart-sst2 seed=0,1,2,3,4     # a sweep
    torchrun --nproc_per_node 4 -m experiments.run experiment=...                   # DDP (experiments/runner/distributed.py)

It composes `configs/config.yaml`, instantiates the task (`cfg.task._target_`), builds the model and applies the
method from the registry (`experiments/methods.py`), trains with `transformers.Trainer` (two learning rates: adapter
and head), evaluates validation and test after every epoch, and writes `results/runs/<run_id>/record.json`
(`docs/record-format.md`). A finished record makes a rerun skip; an unfinished one resumes from its last checkpoint.
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Optional

import hydra
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from transformers import Trainer, TrainerCallback, TrainingArguments, set_seed

import experiments  # noqa: F401  (registers the OmegaConf resolvers)
from experiments.runner import config_checks, distributed, records, trackers, resume, run_lock, sweep_summary
from experiments.runner.atomic import atomic_write
from experiments.runner.distributed import is_main_process
from experiments.methods import Method, build_method, is_head_parameter
from experiments.tasks.base import Splits, Task

log = logging.getLogger("experiments.run")


# -- training ---------------------------------------------------------------------------------------------------------
class RunnerTrainer(Trainer):
    """`Trainer` with one learning rate for the adapter and another for the task head (`model.head_modules`)."""

    def __init__(self, *args, head_modules=(), head_lr: float = 0.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.head_modules, self.head_lr = list(head_modules), float(head_lr)
        self.step_losses: list[float] = []
        self.micro_batches = self.examples_seen = 0   # this rank's share of the training data
        self.claim_guard = ClaimGuard()

    def create_optimizer(self, model=None):
        if self.optimizer is None:
            model = self.model if model is None else model
            decay = set(self.get_decay_parameter_names(model))
            groups: dict[tuple, list] = {}
            for name, param in model.named_parameters():
                if param.requires_grad:
                    lr = self.head_lr if is_head_parameter(name, self.head_modules) else self.args.learning_rate
                    weight_decay = self.args.weight_decay if name in decay else 0.0
                    groups.setdefault((lr, weight_decay), []).append(param)
            param_groups = [{"params": p, "lr": lr, "weight_decay": wd} for (lr, wd), p in groups.items()]
            optimizer_cls, kwargs = self.get_optimizer_cls_and_kwargs(self.args, model)
            kwargs.pop("lr", None)
            self.optimizer = optimizer_cls(param_groups, **kwargs)
        return self.optimizer

    def training_step(self, model, inputs, num_items_in_batch=None):
        self.claim_guard.stop_if_lost()
        loss = super().training_step(model, inputs, num_items_in_batch)
        self.step_losses.append(float(loss.detach()))
        self.micro_batches += 1
        self.examples_seen += len(next(iter(inputs.values())))
        return loss

    def _save_checkpoint(self, model, trial):
        # Every rank writes into the checkpoint (its RNG state) and rank 0 rotates the old one away.
        self.claim_guard.check("a checkpoint", collective=True)
        return super()._save_checkpoint(model, trial)


class ClaimGuard:
    """Asked before every write of a run. Rank 0 holds the claim (`claim`), the other ranks none; at the points all
    ranks reach together (`collective`: epoch ends, checkpoints, the end) rank 0's answer is shared, so no rank
    writes for a run its owner has lost."""

    def __init__(self, claim: Optional[run_lock.RunClaim] = None):
        self.claim = claim

    def check(self, what: str, collective: bool = False) -> None:
        problem = None
        if self.claim is not None:
            try:
                self.claim.check(what)
            except run_lock.ClaimLost as lost:
                problem = str(lost)
        if collective:
            problem = distributed.share_from_main(problem)
        if problem:
            raise run_lock.ClaimLost(problem)

    def stop_if_lost(self) -> None:
        """Between steps: stop as soon as the heartbeat has seen the claim go (no file access)."""
        if self.claim is not None and self.claim.lost:
            self.check("anything more")


class PeakMemory:
    """Peak accelerator memory (CUDA max allocated) or, on CPU, peak RSS growth over the RSS at start, sampled by a
    background thread every 20 ms (ru_maxrss is a whole-process lifetime peak, useless for one phase)."""

    def __init__(self):
        self.cuda = torch.cuda.is_available()
        self.kind = "cuda_max_allocated" if self.cuda else "cpu_rss_growth_sampled_20ms"
        self._stop = threading.Event()
        self._peak = 0

    def __enter__(self):
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()
        else:
            import psutil

            process = psutil.Process()
            self._base = process.memory_info().rss

            def sample():
                while not self._stop.wait(0.02):
                    self._peak = max(self._peak, process.memory_info().rss - self._base)

            self._thread = threading.Thread(target=sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc):
        if self.cuda:
            self._peak = torch.cuda.max_memory_allocated()
        else:
            self._stop.set()
            self._thread.join()

    def so_far(self) -> int:
        return int(torch.cuda.max_memory_allocated()) if self.cuda else int(self._peak)

    def result(self) -> dict:
        device = torch.cuda.get_device_name(0) if self.cuda else "cpu"
        return {"peak_bytes": int(self._peak), "device": device, "kind": self.kind}


class EpochRecorder(TrainerCallback):
    """After every epoch: score validation and test with the task, tell the run's record, save the adapter when
    validation improves, and have the record written. Also times optimizer steps and evaluations."""

    def __init__(self, task: Task, splits: Splits, method: Method, record: records.RunRecord, run_dir: Path,
                 save_adapter: bool, guard: Optional[ClaimGuard] = None, test_at: str = "every_epoch"):
        if test_at not in TEST_AT:
            raise ValueError(f"trainer.test_at={test_at!r}; allowed: {', '.join(TEST_AT)}")
        self.task, self.splits, self.method = task, splits, method
        self.record, self.run_dir, self.save_adapter = record, run_dir, save_adapter
        self.guard = guard or ClaimGuard()
        self.test_each_epoch = test_at == "every_epoch"
        self.best_state = BestState(run_dir / BEST_STATE_FILE)
        self.trainer: Optional[RunnerTrainer] = None
        self.step_times: list[float] = []
        self.eval_seconds = 0.0
        self._step_start: Optional[float] = None
        self._train_start: Optional[float] = None
        self.memory: Optional[PeakMemory] = None
        # Kept on every rank (so all ranks run the same evaluations); a resumed run starts at its last entry.
        self._last_evaluated_step = record.last_step()

    def on_train_begin(self, args, state, control, **kwargs):
        self._train_start = time.perf_counter()

    def on_step_begin(self, args, state, control, **kwargs):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self._step_start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        if self._step_start is not None:
            self.step_times.append(time.perf_counter() - self._step_start)

    def on_epoch_end(self, args, state, control, **kwargs):
        self.evaluate_epoch(state)

    def on_train_end(self, args, state, control, **kwargs):
        if self._last_evaluated_step != state.global_step:
            self.evaluate_epoch(state)  # max_steps stopped mid-epoch
        if not self.test_each_epoch:
            self.test_best_epoch()

    def evaluate_epoch(self, state) -> None:
        self._last_evaluated_step = state.global_step
        start = time.perf_counter()
        splits = ("validation", "test") if self.test_each_epoch else ("validation",)
        scores = {split: self.task.evaluate(self.trainer, getattr(self.splits, split), split) for split in splits}
        self.eval_seconds += time.perf_counter() - start
        losses = [loss for rank_losses in distributed.gather_objects(self.trainer.step_losses) for loss in rank_losses]
        epoch = max(1, math.ceil((state.epoch or 0) - 1e-6))
        improved = self.record.note_epoch(epoch, state.global_step, (sum(losses) / len(losses)) if losses else None,
                                          scores)
        self.trainer.step_losses.clear()
        self.guard.check(f"epoch {epoch}", collective=True)
        if improved and not self.test_each_epoch:
            self.best_state.keep(self.trainer.model, write=self.trainer.is_world_process_zero())
        if not self.trainer.is_world_process_zero():
            return
        if improved and self.save_adapter:
            save_directory_atomically(lambda path: self.method.save(self.trainer.model, path),
                                      self.run_dir / "adapter", before_swap=lambda: self.guard.check("adapter/"))
        log.info("epoch %s: %s", epoch, scores)
        self.record.note_progress(**self.progress())

    def test_best_epoch(self) -> None:
        """Score test once, with the validation-picked epoch's trainable weights put back into the model."""
        best = self.record.best_epoch()
        if best is None:
            return
        self.best_state.restore(self.trainer.model)
        start = time.perf_counter()
        scores = self.task.evaluate(self.trainer, self.splits.test, "test")
        self.eval_seconds += time.perf_counter() - start
        self.record.note_test_at_best_epoch(scores)
        log.info("test at the best epoch (%s): %s", best, scores)
        self.guard.check("test at the best epoch", collective=True)
        if self.trainer.is_world_process_zero():
            self.record.write()
            self.best_state.remove()

    def progress(self) -> dict:
        """This process's numbers so far, for its attempt in the record."""
        now = time.perf_counter()
        train_s = now - (now if self._train_start is None else self._train_start) - self.eval_seconds
        return {"train_s": max(train_s, 0.0), "eval_s": self.eval_seconds, "step_times": self.step_times,
                "peak_bytes": self.memory.so_far() if self.memory else None}


TEST_AT = ("every_epoch", "best_epoch")
BEST_STATE_FILE = "best-state.safetensors"


class BestState:
    """The trainable weights of the best epoch so far, in memory and (for a resumed run) in one file of the run."""

    def __init__(self, path: Path):
        self.path, self.tensors = path, None

    def keep(self, model, write: bool) -> None:
        self.tensors = {name: p.detach().to("cpu", copy=True) for name, p in model.named_parameters()
                        if p.requires_grad}
        if write:
            from safetensors.torch import save_file

            atomic_write(self.path, lambda temporary: save_file(self.tensors, str(temporary)))

    def restore(self, model) -> None:
        if self.tensors is None:
            if not self.path.exists():
                raise RuntimeError(f"{self.path}: the best epoch's weights are gone; cannot score test at that "
                                   "epoch (rerun with rerun=true)")
            from safetensors.torch import load_file

            self.tensors = load_file(self.path)
        parameters = dict(model.named_parameters())
        with torch.no_grad():
            for name, tensor in self.tensors.items():
                parameters[name].copy_(tensor.to(parameters[name].device))

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def save_directory_atomically(save, target: Path, before_swap=None) -> None:
    """Save into a hidden staging folder, then swap it in; at every instant `target` or `.<target>.old` is whole
    (`recover_directory` puts the old one back after a kill between the two renames). A failed save (a full disk)
    leaves the previous `target` untouched and names it. `before_swap` may refuse the swap by raising (the claim
    was lost); the staging folder is then removed. Only the run's owner (rank 0) calls it."""
    staging, old = target.with_name(f".{target.name}.tmp"), target.with_name(f".{target.name}.old")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        save(staging)
    except OSError as error:
        shutil.rmtree(staging, ignore_errors=True)
        raise OSError(error.errno, f"could not save {target} ({error.strerror or error}); "
                                   f"the previous {target.name}/ is unchanged") from error
    try:
        if before_swap is not None:
            before_swap()
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        os.replace(target, old)
    os.replace(staging, target)
    shutil.rmtree(old, ignore_errors=True)


def recover_directory(target: Path) -> None:
    """Undo what a kill inside `save_directory_atomically` left: a half-written staging folder, or the old copy
    moved aside without the new one in place."""
    staging, old = target.with_name(f".{target.name}.tmp"), target.with_name(f".{target.name}.old")
    shutil.rmtree(staging, ignore_errors=True)
    if old.exists():
        if target.exists():
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(old, target)


def training_arguments(cfg: DictConfig, run_dir: Path, run_id: str) -> TrainingArguments:
    t = cfg.trainer
    return TrainingArguments(
        output_dir=str(run_dir / "checkpoints"),
        num_train_epochs=float(t.epochs), max_steps=int(t.max_steps),
        per_device_eval_batch_size=int(t.eval_batch_size),
        **distributed.training_arguments(t),  # per-device batch and DDP settings of this launch
        learning_rate=float(t.lr), weight_decay=float(t.weight_decay),
        warmup_steps=float(t.warmup_ratio),  # transformers 5: a float < 1 is a ratio of the total steps
        lr_scheduler_type=str(t.lr_scheduler), max_grad_norm=float(t.max_grad_norm),
        fp16=bool(t.fp16), bf16=bool(t.bf16),
        logging_steps=int(t.logging_steps), eval_strategy="no",
        save_strategy="epoch" if t.save_checkpoints else "no", save_total_limit=1,
        report_to=list(cfg.logger.report_to), run_name=run_id,
        seed=int(cfg.seed), data_seed=int(cfg.seed),
        dataloader_num_workers=int(t.num_workers), label_names=["labels"],
        train_sampling_strategy=str(t.sampling),
    )


def count_parameters(model, head_modules) -> tuple[int, int]:
    """(trainable adapter parameters, trainable head parameters)."""
    adapter = head = 0
    for name, param in model.named_parameters():
        if param.requires_grad:
            if is_head_parameter(name, head_modules):
                head += param.numel()
            else:
                adapter += param.numel()
    return adapter, head


def prepare(cfg: DictConfig) -> tuple[Task, Method, torch.nn.Module, object]:
    """Seed, build the task, its model and processor, and apply the method."""
    set_seed(int(cfg.seed))
    task = instantiate(cfg.task, _convert_="all")
    if not isinstance(task, Task):
        raise ValueError(f"task._target_={cfg.task.get('_target_')!r} built a {type(task).__name__}, "
                         "not an experiments.tasks.base.Task")
    model, processor = task.build_model(cfg.model)
    method = build_method(cfg.method, cfg.model)
    return task, method, method.apply(model), processor


def make_trainer(cfg: DictConfig, task: Task, model, processor, splits: Splits, recorder: "EpochRecorder",
                 run_dir: Path, run_id: str) -> RunnerTrainer:
    trainer = RunnerTrainer(
        model=model, args=training_arguments(cfg, run_dir, run_id),
        train_dataset=splits.train, data_collator=task.data_collator(processor), processing_class=processor,
        compute_metrics=task.compute_metrics, preprocess_logits_for_metrics=task.preprocess_logits_for_metrics,
        callbacks=[recorder], head_modules=list(cfg.model.head_modules), head_lr=float(cfg.trainer.head_lr))
    trainer.model_accepts_loss_kwargs = task.token_level_loss   # see Task.token_level_loss
    recorder.trainer = trainer
    trackers.tolerate_tracker_failures(trainer)
    return trainer


def train(cfg: DictConfig, record: records.RunRecord, run_dir: Path, resume_from: Optional[str],
          guard: ClaimGuard) -> RunnerTrainer:
    """Build, train and evaluate the run, telling `record` what happened (it writes at the start of training and
    after every epoch); raises unless the result is finite. Every rank runs it."""
    task, method, model, processor = prepare(cfg)
    trainable_params, head_params = count_parameters(model, list(cfg.model.head_modules))
    adapted_space_size, adapted_modules = method.adapted(model)
    record.note_model(trainable_params=trainable_params, head_params=head_params,
                      adapted_space_size=adapted_space_size, adapted_modules=adapted_modules)
    splits = task.build_splits(processor, int(cfg.seed))
    record.note_skipped_rows(getattr(task, "skipped_rows", None))  # task.skip_bad_rows=true
    recorder = EpochRecorder(task, splits, method, record, run_dir, bool(cfg.trainer.save_adapter), guard,
                             str(cfg.trainer.test_at))
    trainer = make_trainer(cfg, task, model, processor, splits, recorder, run_dir, record.run_id)
    trainer.claim_guard = guard
    record.note_launch(distributed.describe(trainer.args))

    start = time.perf_counter()
    with PeakMemory() as memory:
        recorder.memory = memory
        trainer.train(resume_from_checkpoint=resume_from)
    record.note_training_end(train_s=time.perf_counter() - start - recorder.eval_seconds,
                             eval_s=recorder.eval_seconds, step_times=recorder.step_times, memory=memory.result())
    record.note_outputs(backend=method.backend(model),  # the compute path that actually ran (GPart: torch/Triton)
                        per_rank=distributed.per_rank_summary(trainer),
                        adapter_bytes=records.directory_bytes(run_dir / "adapter"))
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


def decide_on_main(cfg: DictConfig, run_id: str, digest: str, run_dir: Path) -> tuple[Optional[run_lock.RunClaim],
                                                                                      dict]:
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
        claim = run_lock.claim(run_dir, wait=cfg.lock.if_claimed == "wait", heartbeat_s=float(cfg.lock.heartbeat_s),
                               stale_after_s=float(cfg.lock.stale_after_s))
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
        recover_directory(run_dir / "adapter")  # the owner cleans up what a killed predecessor left
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
        raise ValueError(f"{run_dir} holds a record of a different configuration (hash "
                         f"{previous.get('config_hash')}, this run {digest}); refusing to overwrite it")
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
    log.info("finished %s: %s %s = %s (best epoch %s)", run_id, cfg.task.key, cfg.task.metric,
             record.data["test_metric"], record.data["best_epoch"])
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
    entry = sweep_summary.note(output_dir, record.get("run_id"), run_dir_of(cfg), sweep_summary.outcome_of(record),
                               run_lock.describe(record["owner"]) if record.get("owner") else "")
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
    return sweep_summary.note(output_dir, run_dir.name if run_dir else None, run_dir, kind,
                              f"{type(error).__name__}: {error}")


if __name__ == "__main__":
    sys.argv = distributed.quiet_hydra_on_other_ranks(sys.argv)
    main()
