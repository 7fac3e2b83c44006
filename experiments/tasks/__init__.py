"""Task plug-ins for the shared runner; see `experiments.tasks.base.Task`."""

from experiments.tasks.base import Splits, Task

__all__ = ["Splits", "Task"]
