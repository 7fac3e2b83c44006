"""Experiment trackers (wandb, …) never kill a run: a tracker that cannot start or log is switched off with a warning.

`Trainer` calls its reporting callbacks (`report_to`) inside training; a `wandb.init` that fails (no network, a bad
API key, a full disk under ``wandb/``) would otherwise end a run hours in, and its local record with it. Each such
callback is wrapped: the first exception it raises is logged as a warning naming the tracker, and from then on the
tracker is skipped while training, evaluation and the local record carry on.
"""

from __future__ import annotations

import logging

from transformers import TrainerCallback

log = logging.getLogger("experiments.runner.trackers")
EVENTS = tuple(name for name in vars(TrainerCallback) if name.startswith("on_"))


class TolerantCallback(TrainerCallback):
    """Forwards every event to `inner`; after its first exception, drops it for the rest of the run."""

    def __init__(self, inner: TrainerCallback):
        self.inner = inner
        self.failed = False

    def _forward(self, event: str, *args, **kwargs):
        if self.failed:
            return None
        try:
            return getattr(self.inner, event)(*args, **kwargs)
        except Exception as error:
            self.failed = True
            log.warning(
                "%s failed in %s (%s: %s); the run continues without it and keeps its local record",
                type(self.inner).__name__,
                event,
                type(error).__name__,
                error,
            )
            return None


def _make_event(event: str):
    def forward(self, *args, **kwargs):
        return self._forward(event, *args, **kwargs)

    forward.__name__ = event
    return forward


for _event in EVENTS:
    setattr(TolerantCallback, _event, _make_event(_event))


def is_tracker(callback: TrainerCallback) -> bool:
    """Callbacks `report_to` adds: they live in `transformers.integrations`."""
    return type(callback).__module__.startswith("transformers.integrations")


def tolerate_tracker_failures(trainer) -> None:
    """Wrap the trainer's tracker callbacks in place (call once, after building the trainer)."""
    handler = trainer.callback_handler
    handler.callbacks = [
        TolerantCallback(c) if is_tracker(c) and not isinstance(c, TolerantCallback) else c for c in handler.callbacks
    ]
