"""How the runner trains one run: the model it builds, the `Trainer` it drives and what it measures while training.

* :func:`prepare` — seed, build the task, its model and processor, apply the method (also used by the analyses, so
  they rebuild a run's model exactly as it was trained);
* :class:`RunnerTrainer` — `transformers.Trainer` with one learning rate for the adapter and another for the head,
  asking the run's claim before every step and checkpoint;
* :class:`EpochRecorder` — after every epoch: score validation (and test), tell the run's record, keep the best
  adapter; it times optimizer steps and evaluations;
* :class:`PeakMemory` — the peak memory of training.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from pathlib import Path
from typing import Optional

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from transformers import Trainer, TrainerCallback, TrainingArguments, set_seed

from experiments.methods import Method, build_method, is_head_parameter
from experiments.runner import atomic, distributed, trackers
from experiments.runner.claim_guard import ClaimGuard
from experiments.runner.records import RunRecord
from experiments.tasks.base import Splits, Task

log = logging.getLogger("experiments.runner.training")

TEST_AT = ("every_epoch", "best_epoch")
BEST_STATE_FILE = "best-state.safetensors"


# -- building ------------------------------------------------------------------------------------------------------
def prepare(cfg: DictConfig) -> tuple[Task, Method, torch.nn.Module, object]:
    """Seed, build the task, its model and processor, and apply the method."""
    set_seed(int(cfg.seed))
    task = instantiate(cfg.task, _convert_="all")
    if not isinstance(task, Task):
        raise ValueError(
            f"task._target_={cfg.task.get('_target_')!r} built a {type(task).__name__}, "
            "not an experiments.tasks.base.Task"
        )
    model, processor = task.build_model(cfg.model)
    method = build_method(cfg.method, cfg.model)
    return task, method, method.apply(model), processor


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


def training_arguments(cfg: DictConfig, run_dir: Path, run_id: str) -> TrainingArguments:
    t = cfg.trainer
    return TrainingArguments(
        output_dir=str(run_dir / "checkpoints"),
        num_train_epochs=float(t.epochs),
        max_steps=int(t.max_steps),
        per_device_eval_batch_size=int(t.eval_batch_size),
        **distributed.training_arguments(t),  # per-device batch and DDP settings of this launch
        learning_rate=float(t.lr),
        weight_decay=float(t.weight_decay),
        warmup_steps=float(t.warmup_ratio),  # transformers 5: a float < 1 is a ratio of the total steps
        lr_scheduler_type=str(t.lr_scheduler),
        max_grad_norm=float(t.max_grad_norm),
        fp16=bool(t.fp16),
        bf16=bool(t.bf16),
        logging_steps=int(t.logging_steps),
        eval_strategy="no",
        save_strategy="epoch" if t.save_checkpoints else "no",
        save_total_limit=1,
        report_to=list(cfg.logger.report_to),
        run_name=run_id,
        seed=int(cfg.seed),
        data_seed=int(cfg.seed),
        dataloader_num_workers=int(t.num_workers),
        label_names=["labels"],
        train_sampling_strategy=str(t.sampling),
    )


def make_trainer(
    cfg: DictConfig, task: Task, model, processor, splits: Splits, recorder: "EpochRecorder", run_dir: Path, run_id: str
) -> "RunnerTrainer":
    trainer = RunnerTrainer(
        model=model,
        args=training_arguments(cfg, run_dir, run_id),
        train_dataset=splits.train,
        data_collator=task.data_collator(processor),
        processing_class=processor,
        compute_metrics=task.compute_metrics,
        preprocess_logits_for_metrics=task.preprocess_logits_for_metrics,
        callbacks=[recorder],
        head_modules=list(cfg.model.head_modules),
        head_lr=float(cfg.trainer.head_lr),
    )
    trainer.model_accepts_loss_kwargs = task.token_level_loss  # see Task.token_level_loss
    recorder.trainer = trainer
    trackers.tolerate_tracker_failures(trainer)
    return trainer


# -- training ------------------------------------------------------------------------------------------------------
class RunnerTrainer(Trainer):
    """`Trainer` with one learning rate for the adapter and another for the task head (`model.head_modules`)."""

    def __init__(self, *args, head_modules=(), head_lr: float = 0.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.head_modules, self.head_lr = list(head_modules), float(head_lr)
        self.step_losses: list[float] = []
        self.micro_batches = self.examples_seen = 0  # this rank's share of the training data
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

    def __init__(
        self,
        task: Task,
        splits: Splits,
        method: Method,
        record: RunRecord,
        run_dir: Path,
        save_adapter: bool,
        guard: Optional[ClaimGuard] = None,
        test_at: str = "every_epoch",
    ):
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
        improved = self.record.note_epoch(
            epoch, state.global_step, (sum(losses) / len(losses)) if losses else None, scores
        )
        self.trainer.step_losses.clear()
        self.guard.check(f"epoch {epoch}", collective=True)
        if improved and not self.test_each_epoch:
            self.best_state.keep(self.trainer.model, write=self.trainer.is_world_process_zero())
        if not self.trainer.is_world_process_zero():
            return
        if improved and self.save_adapter:
            atomic.save_directory_atomically(
                lambda path: self.method.save(self.trainer.model, path),
                self.run_dir / "adapter",
                before_swap=lambda: self.guard.check("adapter/"),
            )
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
        return {
            "train_s": max(train_s, 0.0),
            "eval_s": self.eval_seconds,
            "step_times": self.step_times,
            "peak_bytes": self.memory.so_far() if self.memory else None,
        }


class BestState:
    """The trainable weights of the best epoch so far, in memory and (for a resumed run) in one file of the run."""

    def __init__(self, path: Path):
        self.path, self.tensors = path, None

    def keep(self, model, write: bool) -> None:
        self.tensors = {
            name: p.detach().to("cpu", copy=True) for name, p in model.named_parameters() if p.requires_grad
        }
        if write:
            from safetensors.torch import save_file

            atomic.atomic_write(self.path, lambda temporary: save_file(self.tensors, str(temporary)))

    def restore(self, model) -> None:
        if self.tensors is None:
            if not self.path.exists():
                raise RuntimeError(
                    f"{self.path}: the best epoch's weights are gone; cannot score test at that "
                    "epoch (rerun with rerun=true)"
                )
            from safetensors.torch import load_file

            self.tensors = load_file(self.path)
        parameters = dict(model.named_parameters())
        with torch.no_grad():
            for name, tensor in self.tensors.items():
                parameters[name].copy_(tensor.to(parameters[name].device))

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
