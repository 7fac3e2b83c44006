"""The runner's config, checked once before any work: each bad value is named with its key and what is allowed.

Without this, `trainer.sampling=foo` trained silently with random sampling, `task.train_subset=-5` failed inside
sklearn and `trainer.epochs=abc` with a bare `float()` error. Only keys the runner itself reads are checked here;
a task or method checks its own keys when it is built.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Optional

from omegaconf import DictConfig, OmegaConf


class ConfigError(ValueError):
    """One or more config values are not allowed; the message lists each as `key=value: allowed`."""


def _number(value: Any, integer: bool) -> Optional[float]:
    if isinstance(value, bool):
        return None
    if integer:
        return value if isinstance(value, int) else None
    if isinstance(value, (int, float)) and math.isfinite(value):
        return float(value)
    return None


def positive(integer: bool = False) -> tuple[Callable[[Any], bool], str]:
    kind = "integer" if integer else "number"
    return (lambda v: (n := _number(v, integer)) is not None and n > 0), f"a positive {kind}"


def non_negative(integer: bool = False) -> tuple[Callable[[Any], bool], str]:
    kind = "integer" if integer else "number"
    return (lambda v: (n := _number(v, integer)) is not None and n >= 0), f"a {kind} >= 0"


def optional(check: tuple[Callable[[Any], bool], str]) -> tuple[Callable[[Any], bool], str]:
    test, allowed = check
    return (lambda v: v is None or test(v)), f"null or {allowed}"


def one_of(*choices) -> tuple[Callable[[Any], bool], str]:
    return (lambda v: v in choices), "one of " + ", ".join(repr(c) for c in choices)


BOOLEAN = ((lambda v: isinstance(v, bool)), "true or false")
FRACTION = ((lambda v: (n := _number(v, False)) is not None and 0 <= n < 1), "a number in [0, 1)")
MAX_STEPS = (
    (lambda v: isinstance(v, int) and not isinstance(v, bool) and (v == -1 or v > 0)),
    "-1 (no cap) or a positive integer",
)


def sampling_strategies() -> tuple[str, ...]:
    """The values transformers' `TrainingArguments.train_sampling_strategy` declares."""
    from transformers import TrainingArguments

    field = {f.name: f for f in dataclasses.fields(TrainingArguments)}["train_sampling_strategy"]
    return tuple(field.metadata.get("choices", ("random", "sequential", "group_by_length")))


def rules() -> dict[str, tuple[Callable[[Any], bool], str]]:
    """key -> (check, what is allowed). A key absent from the config is not checked (task-specific keys)."""
    return {
        "seed": non_negative(integer=True),
        "trainer.epochs": positive(),
        "trainer.max_steps": MAX_STEPS,
        "trainer.batch_size": positive(integer=True),
        "trainer.eval_batch_size": positive(integer=True),
        "trainer.grad_accum": positive(integer=True),
        "trainer.lr": non_negative(),
        "trainer.head_lr": non_negative(),
        "trainer.weight_decay": non_negative(),
        "trainer.warmup_ratio": FRACTION,
        "trainer.max_grad_norm": non_negative(),
        "trainer.logging_steps": positive(integer=True),
        "trainer.num_workers": non_negative(integer=True),
        "trainer.sampling": one_of(*sampling_strategies()),
        **{
            f"trainer.{flag}": BOOLEAN
            for flag in ("fp16", "bf16", "save_checkpoints", "keep_checkpoints", "save_adapter")
        },
        "task.train_subset": optional(positive(integer=True)),
        "task.test_subset": optional(positive(integer=True)),
        "task.max_length": positive(integer=True),
        "rerun": BOOLEAN,
        "lock.if_claimed": one_of("skip", "wait"),
        "lock.heartbeat_s": positive(),
        "lock.stale_after_s": positive(),
        "logger.mode": one_of("auto", "online", "offline", "disabled"),
    }


_MISSING = object()


def validate(cfg: DictConfig) -> None:
    """Raise `ConfigError` listing every runner key whose value is not allowed."""
    problems = []
    for key, (check, allowed) in rules().items():
        try:
            value = OmegaConf.select(cfg, key, default=_MISSING, throw_on_missing=False)
        except Exception as error:  # an interpolation that cannot resolve
            problems.append(f"{key}: cannot be resolved ({error})")
            continue
        if value is _MISSING:
            continue
        if not check(value):
            problems.append(f"{key}={value!r} is not allowed; expected {allowed}")
    if problems:
        raise ConfigError("invalid runner config:\n  " + "\n  ".join(problems))
