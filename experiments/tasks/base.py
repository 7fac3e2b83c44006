"""The task plug-in interface of the shared runner (`python -m experiments.run`).

A *task* knows its data, its model head and its metric; the runner knows nothing about any of them. GLUE
(`experiments/tasks/glue.py`), vision and math each subclass :class:`Task`; the runner only calls the methods below,
in this order::

    task = hydra.utils.instantiate(cfg.task)          # configs/task/<family>/<name>.yaml, via `_target_`
    model, processor = task.build_model(cfg.model)    # pretrained backbone + (new) task head
    splits = task.build_splits(processor, seed)       # Splits(train, validation, test)
    collator = task.data_collator(processor)          # None -> Trainer's default collator
    trainer = Trainer(..., compute_metrics=task.compute_metrics,
                      preprocess_logits_for_metrics=task.preprocess_logits_for_metrics)
    ... after every epoch:  task.evaluate(trainer, splits.validation, "validation")
                            task.evaluate(trainer, splits.test, "test")

Config keys a task reads
------------------------
* Its own file `configs/task/<family>/<name>.yaml`: `_target_` (the subclass), `key` (task key as in the paper
  CSV's `task` column, e.g. `sst2`), `table` (`glue` | `vision` | `math`), `metric` (primary metric name as in the
  CSV's `metric` column) and any task-specific keys (data paths, max length, subset sizes, ...). These become the
  constructor's keyword arguments, so a task declares every key it reads in its ``__init__`` signature.
* `cfg.model` (passed to :meth:`build_model`): `key`, `name_or_path` (hub id or local folder), `target_modules`,
  `head_modules`, and optionally `random_init` (a mapping of config kwargs: build a randomly initialised model of
  that shape instead of loading weights; used by tests) and `tokenizer` (where the tokenizer/processor lives when it
  is not `name_or_path`). A task may read further model keys; it must document them in its own docstring.
* `seed` (passed to :meth:`build_splits`): seeds the held-out validation split so every method sees the same rows.

Protocol (paper, `../shared/reference/setup.md` §2/§3): `validation` is what picks the best epoch (a seeded,
held-out part of train, or the official val split where one exists); `test` is what tables report.

Metric values are fractions (accuracy in [0, 1], correlations in [-1, 1]), as `docs/record-format.md` says.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any, Callable, Optional

from torch import nn


@dataclass
class Splits:
    """The three datasets a run needs. Each is anything `transformers.Trainer` accepts (a `datasets.Dataset` or a
    torch `Dataset` of dicts with the model's input names and `labels`)."""

    train: Any
    validation: Any
    test: Any


class Task(abc.ABC):
    """Base class for a task plug-in. Subclasses implement :meth:`build_model`, :meth:`build_splits` and
    :meth:`compute_metrics`; :meth:`data_collator`, :meth:`evaluate` and
    :meth:`preprocess_logits_for_metrics` have working defaults.

    Args:
        key: task key as in the paper CSV (`sst2`, `cifar10`, `gsm8k`, ...); goes into the run record.
        metric: primary metric name (`accuracy`, `matthews_correlation`, `pearson`, `exact_match`); must be a key
            of the dict :meth:`evaluate` returns. The best epoch maximises it on the validation split.
        table: paper table family (`glue`, `vision`, `math`); goes into the run record.
    """

    #: Whether the model's training loss is a sum over label tokens divided by Trainer's `num_items_in_batch` (the
    #: causal-LM losses of transformers), so that Trainer may count items over all accumulation steps and processes.
    #: False (classification): the loss is a mean over the micro-batch. transformers would otherwise multiply a
    #: **kwargs model's loss by the number of processes (`average_tokens_across_devices`), and RoBERTa's inline
    #: CrossEntropyLoss ignores the count: gradients N times too large under N processes.
    token_level_loss: bool = False

    def __init__(self, key: str, metric: str, table: str):
        self.key = key
        self.metric = metric
        self.table = table

    # -- required -------------------------------------------------------------------------------------------------
    @abc.abstractmethod
    def build_model(self, model_cfg) -> tuple[nn.Module, Any]:
        """Return ``(model, processor)``: the backbone named by `model_cfg` with this task's head attached (the head
        module's name must be listed in `model_cfg.head_modules`), and the tokenizer / image processor the data
        needs (or None). Must not apply any adapter: the runner does that afterwards."""

    @abc.abstractmethod
    def build_splits(self, processor: Any, seed: int) -> Splits:
        """Return the train / validation / test datasets, already tokenised or transformed. Validation must be
        derived deterministically from `seed` (and the task's own config), never from the test split."""

    @abc.abstractmethod
    def compute_metrics(self, eval_pred) -> dict[str, float]:
        """`Trainer`'s ``compute_metrics``: map a `transformers.EvalPrediction` to ``{metric_name: value}``."""

    # -- optional -------------------------------------------------------------------------------------------------
    def data_collator(self, processor: Any) -> Optional[Callable]:
        """The batch collator for `Trainer`; None keeps Trainer's default (with a tokenizer it pads)."""
        return None

    def preprocess_logits_for_metrics(self, logits, labels):
        """Shrink logits before they are gathered for metrics (e.g. argmax for LM heads). Default: unchanged."""
        return logits

    def evaluate(self, trainer, dataset, split: str) -> dict[str, float]:
        """Score `dataset` and return ``{metric_name: value}`` without the split prefix. The default runs
        ``trainer.evaluate`` (so it works unchanged under accelerate / torchrun); a generation task (math)
        overrides this to decode and score answers."""
        raw = trainer.evaluate(eval_dataset=dataset, metric_key_prefix=split)
        prefix = f"{split}_"
        return {
            k[len(prefix) :]: float(v)
            for k, v in raw.items()
            if k.startswith(prefix)
            and isinstance(v, (int, float))
            and k[len(prefix) :] not in {"runtime", "samples_per_second", "steps_per_second", "epoch"}
        }
