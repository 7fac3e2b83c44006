"""Finding analysable runs among records, and rebuilding a run's model at initialisation and at its trained point.

A run is analysable when its record is ``finished`` and its folder holds the saved ``adapter/``. The model is
rebuilt from the record's own resolved config through the runner's ``prepare`` (same seed, so the same partition,
projection or LoRA init), which gives the initial point; the method's ``load`` then puts the trained adapter in.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import OmegaConf

from experiments.runner import records

log = logging.getLogger(__name__)

# GPartConfig fields whose non-default value makes a run a variant, with the tag it gets in labels.
VARIANT_TAGS = {
    ("isometric", False): "non-isometric",
    ("assignment", "balanced"): "balanced",
    ("projection", "fastfood"): "Fastfood",
    ("partition_scope", "transformer_block"): "block scope",
    ("grouping", "signed_magnitude"): "signed-magnitude",
}


@dataclass
class Run:
    record: dict
    directory: Path

    @property
    def label(self) -> str:
        """The paper's method key, plus the variant it is (e.g. ``GPart (non-isometric)``)."""
        options = (self.record.get("config", {}).get("method", {}) or {}).get("config") or {}
        method = self.record["method"]
        tags = [
            tag
            for (key, value), tag in VARIANT_TAGS.items()
            if options.get(key, object()) == value and tag not in method
        ]  # `GPart (balanced)` is named already
        return method + (f" ({', '.join(tags)})" if tags else "")

    @property
    def group(self) -> tuple[str, str]:
        return self.record["model"], self.record["task"]

    @property
    def head_modules(self) -> list[str]:
        return list(self.record["config"]["model"].get("head_modules") or [])


def find_runs(runs_dir: Path) -> list[Run]:
    """Finished runs with a saved adapter, sorted by (model, task, label, trainable params, seed)."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        raise FileNotFoundError(f"runs directory {runs_dir} does not exist (RUNS=... names a folder of run records)")
    found = []
    for path in sorted(runs_dir.rglob("record.json")):
        record = records.read(path)
        if not record or record.get("status") != "finished":
            continue
        if not (path.parent / "adapter").is_dir():
            log.info("skip %s: no saved adapter", path.parent.name)
            continue
        found.append(Run(record, path.parent))
    found.sort(key=lambda r: (*r.group, r.label, r.record.get("trainable_params") or 0, r.record.get("seed", 0)))
    return found


def one_per_setting(runs: list[Run]) -> list[Run]:
    """The lowest-seed run of every (model, task, label, trainable parameters)."""
    chosen = {}
    for run in runs:
        chosen.setdefault((*run.group, run.label, run.record.get("trainable_params")), run)
    return list(chosen.values())


def main_budget(runs: list[Run]) -> list[Run]:
    """Per (model, task, label): the lowest-seed run at the budget with the most runs (ties: the larger budget). In a
    study with a d sweep (results/mini) that is the main d, whose report seeds outnumber the sweep's."""
    counts: dict = {}
    for run in runs:
        key = (*run.group, run.label)
        budget = run.record.get("trainable_params") or 0
        counts.setdefault(key, {}).setdefault(budget, []).append(run)
    chosen = []
    for budgets in counts.values():
        budget = max(budgets, key=lambda b: (len(budgets[b]), b))
        chosen.append(min(budgets[budget], key=lambda r: r.record.get("seed", 0)))
    return chosen


def localised(node, glue_dir: str | None = None):
    """A record's config made runnable here: `<shared-data>/...` (experiments/runner/portable.py) back to this checkout's
    shared data folder, and a GLUE `data_dir` that is not here to `$GLUE_DIR` when that is set."""
    import experiments

    if isinstance(node, dict):
        out = {key: localised(value, glue_dir) for key, value in node.items()}
        data_dir = out.get("data_dir")
        if isinstance(data_dir, str) and glue_dir and not Path(data_dir).exists():
            out["data_dir"] = glue_dir
        return out
    if isinstance(node, list):
        return [localised(value, glue_dir) for value in node]
    if isinstance(node, str) and node.startswith("<shared-data>"):
        return str(experiments.shared_data_dir()) + node[len("<shared-data>") :]
    return node


def build(run: Run, trained: bool, dtype=torch.float64):
    """(task, model, processor): the run's model at initialisation, or with its trained adapter loaded."""
    import os

    from experiments.runner.training import (
        prepare,  # the runner's own model building, so nothing here can drift from it
    )

    cfg = OmegaConf.create(localised(run.record["config"], os.environ.get("GLUE_DIR") or None))
    task, method, model, processor = prepare(cfg)
    if trained:
        model = method.load(model, run.directory / "adapter")
    return task, model.to(dtype).eval(), processor
