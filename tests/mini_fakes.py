"""Fake finished records for the CPU study's driver and report tests: written at the paths experiments/studies/mini/driver.py
computes for its planned runs, with only the keys the driver, the report and the claims read."""

from __future__ import annotations

import json
from pathlib import Path

from experiments.studies.mini import driver
from experiments.studies.mini.design import MAIN_D, Design, Run

METRICS = {"sst2": "accuracy", "stsb": "pearson"}


def write_fake(
    run: Run,
    results: Path,
    validation: float,
    test: float | None = None,
    *,
    best_epoch: int = 5,
    epochs: int = 5,
    trainable_params: int | None = None,
    status: str = "finished",
) -> Path:
    """A record for `run` (scores as fractions) at `driver.record_path(run, results)`."""
    path = driver.record_path(run, results)
    path.parent.mkdir(parents=True, exist_ok=True)
    metric = METRICS[run.task]
    params = (
        trainable_params
        if trainable_params is not None
        else {
            "gpart": run.d or MAIN_D,
            "unilora": run.d or MAIN_D,
            "lora": 73_728,
            "full": 22_565_376,
            "head_only": 0,
        }[run.arm.method]
    )
    curve = [
        {"epoch": e, "validation": {metric: validation - 0.01 * abs(best_epoch - e)}} for e in range(1, epochs + 1)
    ]
    record = {
        "schema_version": 1,
        "run_id": path.parent.name,
        "status": status,
        "table": "glue",
        "model": "minilm-l6",
        "method": run.arm.label,
        "task": run.task,
        "seed": run.seed,
        "metric": metric,
        "config": {"seed": run.seed},
        "config_hash": path.parent.name,
        "trainable_params": params,
        "epochs": curve,
        "best_epoch": best_epoch,
        "validation_metric": validation,
        "test_metric": validation if test is None else test,
        "attempts": [{"wall_s": 10.0}],
    }
    path.write_text(json.dumps(record))
    return path


def finish(
    results: Path, tasks, design: Design, validation, test=None, stages=("selection", "report"), **kwargs
) -> int:
    """Write records for every run the plan makes ready, again and again, until nothing new becomes ready.
    `validation(run)` and `test(run)` give the scores (fractions). Returns the number of records written."""
    written = 0
    while True:
        now = driver.state(results, tasks, design=design)
        todo = [
            r for r in now.ready if r.stage in stages and driver.status_of(driver.record_path(r, results)) != "finished"
        ]
        if not todo:
            return written
        for run in todo:
            write_fake(run, results, validation(run), None if test is None else test(run), **kwargs)
            written += 1
