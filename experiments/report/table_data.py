"""What `make tables` builds and its figures draw: one table's data (`TableData`), the verdict rule, row averages.

experiments/report/cells.py builds `TableData` from run records, experiments/report/rendering.py writes it as text and
experiments/report/figures.py draws it. All of them import this module and it imports none of them.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import pandas as pd

ONE_POINT = 1.0  # smallest tolerance, in points (percent)
STD_FACTOR = 2.0  # tolerance is also at least this many of our sample stds over seeds

TABLE_NAMES = {"glue": "GLUE", "vision": "Image classification", "math": "Math reasoning"}
TASK_NAMES = {
    "sst2": "SST-2",
    "mrpc": "MRPC",
    "cola": "CoLA",
    "qnli": "QNLI",
    "rte": "RTE",
    "stsb": "STS-B",
    "oxford_pets": "OxfordPets",
    "stanford_cars": "StanfordCars",
    "cifar10": "CIFAR10",
    "dtd": "DTD",
    "eurosat": "EuroSAT",
    "fgvc_aircraft": "FGVC",
    "resisc45": "RESISC45",
    "cifar100": "CIFAR100",
    "gsm8k": "GSM8K",
    "math": "MATH",
    "math500": "MATH500",
}


def parse_param_count(text) -> int | None:
    """`0.295M` -> 295000, `72K` -> 72000, `125M`, `1.2B`; `-` (no adapter parameters) -> 0; empty -> None."""
    if text is None or (isinstance(text, float) and math.isnan(text)):
        return None
    text = str(text).strip()
    if text == "":
        return None
    if text in {"-", "–", "—"}:
        return 0
    match = re.fullmatch(r"([0-9]*\.?[0-9]+)\s*([KMB]?)", text, flags=re.IGNORECASE)
    if not match:
        raise ValueError(
            f"trainable_params={text!r} is not a parameter count; expected e.g. '0.295M', '72K', '125M', '-' or ''"
        )
    scale = {"": 1, "K": 1e3, "M": 1e6, "B": 1e9}[match.group(2).upper()]
    return int(round(float(match.group(1)) * scale))


def format_params(count) -> str:
    """295000 -> `295K`, 1_900_000 -> `1.9M`: a parameter count as the tables write it; unknown -> `?`."""
    if count is None or (isinstance(count, float) and math.isnan(count)):
        return "?"
    count = int(count)
    if count < 1_000:
        return str(count)
    if count < 1_000_000:
        return f"{count / 1e3:.4g}K"
    if count < 1_000_000_000:
        return f"{count / 1e6:.4g}M"
    return f"{count / 1e9:.4g}B"


def verdict(delta: float, std: float, n: int) -> tuple[float, str]:
    """(tolerance, verdict) for Δ = ours − paper under the rule experiments.report.rendering.VERDICT_RULE states."""
    tolerance = max(ONE_POINT, STD_FACTOR * std) if n > 1 and math.isfinite(std) else ONE_POINT
    if abs(round(delta, 9)) <= tolerance:  # rounding: 95.6 − 94.6 must count as exactly 1 point
        return tolerance, "reproduced"
    return tolerance, "below" if delta < 0 else "above"


@dataclass
class TableData:
    table: str
    model: str
    tasks: list[str]
    metrics: dict[str, str]  # task -> metric name
    rows: pd.DataFrame  # one row per method variant (label, method, params, paper_params text, efficiency)
    cells: pd.DataFrame  # one row per (row label, task): ours, paper, Δ, verdict
    in_paper: bool
    sources: list[tuple[str, str]]  # (source, note)
    n_records: int

    @property
    def name(self) -> str:
        return f"{self.table}-{self.model}"

    @property
    def title(self) -> str:
        return f"{TABLE_NAMES.get(self.table, self.table)} — {self.model}"


def missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def row_averages(data: TableData) -> pd.DataFrame:
    """Per row: mean over the table's tasks of our medians and of the paper's values (only when every task has one)."""
    out = []
    for label, cells in data.cells.groupby("label", sort=False):
        ours = cells["median"].mean() if cells["median"].notna().all() else math.nan
        theirs = cells["paper"].astype(float).mean() if cells["paper"].notna().all() else math.nan
        delta = ours - theirs
        tolerance, outcome = verdict(delta, math.nan, 1) if math.isfinite(delta) else (math.nan, "")
        out.append(
            {
                "label": label,
                "avg_median": ours,
                "avg_tasks": int(cells["median"].notna().sum()),
                "avg_paper": theirs,
                "avg_delta": delta,
                "avg_tolerance": tolerance,
                "avg_verdict": outcome,
            }
        )
    return pd.DataFrame(out)
