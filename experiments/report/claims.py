"""The paper's claims tested on run records: paired differences over tasks × seeds, 95% intervals, verdicts.

`make tables` calls `claims_tables(records)` (records = `experiments.report.loading.load_records(...).records`, one row per
finished run) and writes `claims-<table>-<model>.{md,csv}` for every (table, model) whose records hold GPart and at
least one peer a claim needs. This module reads only that DataFrame; it imports nothing of tables or figures.

Claims, each a difference in points (test metric × 100) paired by (task, seed) — the same seed means the
same data subset, split and partition seed, so pairing removes most of the seed-to-seed noise:

- C1  GPart ≥ Uni-LoRA at equal d, overall and per task (and at each other d both methods ran).
- C2  GPart within 1 point of LoRA with ≥ 10× fewer trainable parameters.
- C3  isometric GPart ≥ non-isometric GPart (`GPart (non-isometric)`).
- C4  GPart's score rises with d toward full fine-tuning: GPart at its largest d − GPart at its smallest d (FT's
      score is the same in both arms of a pair, so this is also how much the gap to FT shrinks).
- C5  `stateless` and `balanced` assignment differ by less than the seed spread (`GPart (balanced)`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

GPART, UNILORA, LORA, FT = "GPart", "Uni-LoRA", "LoRA", "FT"
NON_ISOMETRIC, BALANCED = "GPart (non-isometric)", "GPart (balanced)"
CONFIDENCE = 0.95
LORA_MARGIN = 1.0  # C2: "within 1 point"
PARAM_RATIO = 10.0  # C2: "with at least 10x fewer trainable parameters"

RULES = [
    "**Interval**: mean of the paired differences ± t(0.975, n−1)·sd/√n over the n (task, seed) pairs present for "
    "both arms (Student t over the pairs; no interval when n < 2).",
    "**≥ claims (C1, C3, C4)**: *supported* if the interval lies above 0, *contradicted* if it lies below 0, "
    "*inconclusive* if it contains 0.",
    f"**C2**: *supported* if the LoRA/GPart parameter ratio is ≥ {PARAM_RATIO:g} and the interval's lower end is ≥ "
    f"−{LORA_MARGIN:g}; *contradicted* if the ratio is < {PARAM_RATIO:g} or the interval's upper end is < "
    f"−{LORA_MARGIN:g}; otherwise *inconclusive*.",
    "**C5**: the seed spread s is GPart's (stateless) sample std over seeds, pooled over tasks (root mean of the "
    "per-task variances). *supported* if the interval lies inside (−s, s), *contradicted* if it lies wholly outside "
    "it, otherwise *inconclusive*.",
]


@dataclass
class Claim:
    claim: str
    scope: str
    comparison: str
    n: int
    mean: float
    low: float
    high: float
    threshold: str
    verdict: str
    note: str = ""


def interval(differences) -> tuple[float, float, float]:
    """(mean, low, high): Student-t 95% interval of the mean of paired differences; NaN bounds when n < 2."""
    values = np.asarray(differences, dtype=float)
    if len(values) == 0:
        return math.nan, math.nan, math.nan
    mean = float(values.mean())
    if len(values) < 2:
        return mean, math.nan, math.nan
    half = float(stats.t.ppf(0.5 + CONFIDENCE / 2, len(values) - 1) * values.std(ddof=1) / math.sqrt(len(values)))
    return mean, mean - half, mean + half


def at_least(low: float, high: float, threshold: float = 0.0) -> str:
    """Verdict for "difference ≥ threshold" from its interval."""
    if math.isnan(low):
        return "inconclusive"
    if low > threshold:
        return "supported"
    if high < threshold:
        return "contradicted"
    return "inconclusive"


def _theta_length(config) -> int | None:
    method = (config or {}).get("method") or {}
    inner = method.get("config")
    return inner.get("theta_d_length") if isinstance(inner, dict) else None


def d_of(records: pd.DataFrame) -> pd.Series:
    """GPart's d, Uni-LoRA's θ length (`method.config.theta_d_length`), else the trainable parameters."""
    theta = pd.to_numeric(records["config"].map(_theta_length), errors="coerce")
    d = pd.to_numeric(records["d"], errors="coerce").fillna(theta)
    return d.fillna(records["trainable_params"]).astype(int)


def _scores(records: pd.DataFrame, method: str, d: int | None = None) -> pd.Series:
    """Score per (task, seed) of one method (at one d when given); a seed run twice keeps the latest."""
    mine = records[records["method"] == method]
    if d is not None:
        mine = mine[mine["budget"] == d]
    mine = mine.sort_values("finished_at").drop_duplicates(["task", "seed"], keep="last")
    return mine.set_index(["task", "seed"])["score"]


def paired(a: pd.Series, b: pd.Series, task: str | None = None) -> pd.Series:
    both = pd.concat([a, b], axis=1, join="inner").dropna()
    differences = both.iloc[:, 0] - both.iloc[:, 1]
    return differences[differences.index.get_level_values("task") == task] if task else differences


def _ge_claim(name: str, scope: str, comparison: str, differences: pd.Series, note: str = "") -> Claim:
    mean, low, high = interval(differences)
    return Claim(name, scope, comparison, len(differences), mean, low, high, "> 0", at_least(low, high), note)


def main_d(records: pd.DataFrame) -> int | None:
    """GPart's d with the most (task, seed) runs: the table's main budget (ties: the smaller d)."""
    gpart = records[records["method"] == GPART]
    if gpart.empty:
        return None
    counts = gpart.groupby("budget").size()
    return int(counts[counts == counts.max()].index.min())


def c1(records: pd.DataFrame, d: int) -> list[Claim]:
    claims = []
    differences = paired(_scores(records, GPART, d), _scores(records, UNILORA, d))
    if differences.empty:
        return claims
    claims.append(_ge_claim("C1", "all tasks", f"GPart − Uni-LoRA at d = {d:,}", differences))
    for task in dict.fromkeys(differences.index.get_level_values("task")):
        claims.append(
            _ge_claim(
                "C1",
                task,
                f"GPart − Uni-LoRA at d = {d:,}",
                paired(_scores(records, GPART, d), _scores(records, UNILORA, d), task),
            )
        )
    other = sorted(
        set(records.loc[records["method"] == GPART, "budget"])
        & set(records.loc[records["method"] == UNILORA, "budget"]) - {d}
    )
    for other_d in other:
        differences = paired(_scores(records, GPART, other_d), _scores(records, UNILORA, other_d))
        tasks = ", ".join(dict.fromkeys(differences.index.get_level_values("task")))
        claims.append(_ge_claim("C1", f"{tasks} (d sweep)", f"GPart − Uni-LoRA at d = {other_d:,}", differences))
    return claims


def c2(records: pd.DataFrame, d: int) -> list[Claim]:
    differences = paired(_scores(records, GPART, d), _scores(records, LORA))
    if differences.empty:
        return []
    lora_params = records.loc[records["method"] == LORA, "trainable_params"].median()
    gpart_params = records.loc[(records["method"] == GPART) & (records["budget"] == d), "trainable_params"].median()
    ratio = lora_params / gpart_params if gpart_params else math.inf
    mean, low, high = interval(differences)
    if ratio < PARAM_RATIO or (not math.isnan(high) and high < -LORA_MARGIN):
        outcome = "contradicted"
    elif not math.isnan(low) and low >= -LORA_MARGIN:
        outcome = "supported"
    else:
        outcome = "inconclusive"
    note = f"LoRA {int(lora_params):,} vs GPart {int(gpart_params):,} trainable parameters: {ratio:.1f}× fewer"
    return [
        Claim(
            "C2",
            "all tasks",
            f"GPart (d = {d:,}) − LoRA",
            len(differences),
            mean,
            low,
            high,
            f"≥ −{LORA_MARGIN:g} and ≥ {PARAM_RATIO:g}× fewer params",
            outcome,
            note,
        )
    ]


def c3(records: pd.DataFrame, d: int) -> list[Claim]:
    differences = paired(_scores(records, GPART, d), _scores(records, NON_ISOMETRIC, d))
    return [_ge_claim("C3", "all tasks", "GPart − GPart (non-isometric)", differences)] if len(differences) else []


def c4(records: pd.DataFrame) -> list[Claim]:
    budgets = sorted(set(records.loc[records["method"] == GPART, "budget"]))
    if len(budgets) < 2:
        return []
    low_d, high_d = budgets[0], budgets[-1]
    differences = paired(_scores(records, GPART, high_d), _scores(records, GPART, low_d))
    if differences.empty:
        return []
    tasks = ", ".join(dict.fromkeys(differences.index.get_level_values("task")))
    gap = paired(_scores(records, FT), _scores(records, GPART, high_d))
    gap = gap[gap.index.isin(differences.index)]
    note = (
        f"gap to FT at d = {high_d:,}: {gap.mean():.2f} points (n = {len(gap)})"
        if len(gap)
        else "no FT runs paired with the sweep"
    )
    return [_ge_claim("C4", tasks, f"GPart d = {high_d:,} − GPart d = {low_d:,}", differences, note)]


def seed_spread(records: pd.DataFrame, d: int) -> float:
    """GPart's std over seeds pooled over tasks: sqrt(mean of the per-task sample variances)."""
    scores = _scores(records, GPART, d)
    variances = scores.groupby(level="task").var(ddof=1).dropna()
    return float(math.sqrt(variances.mean())) if len(variances) else math.nan


def c5(records: pd.DataFrame, d: int) -> list[Claim]:
    differences = paired(_scores(records, GPART, d), _scores(records, BALANCED, d))
    if differences.empty:
        return []
    spread = seed_spread(records, d)
    mean, low, high = interval(differences)
    if math.isnan(low) or math.isnan(spread):
        outcome = "inconclusive"
    elif -spread < low and high < spread:
        outcome = "supported"
    elif low >= spread or high <= -spread:
        outcome = "contradicted"
    else:
        outcome = "inconclusive"
    return [
        Claim(
            "C5",
            "all tasks",
            "GPart (stateless) − GPart (balanced)",
            len(differences),
            mean,
            low,
            high,
            f"inside ±{spread:.2f} (seed spread)",
            outcome,
        )
    ]


def claims_for(records: pd.DataFrame) -> list[Claim]:
    """Every claim the records of one (table, model) can test."""
    records = records.assign(budget=d_of(records))
    d = main_d(records)
    if d is None:
        return []
    return [*c1(records, d), *c2(records, d), *c3(records, d), *c4(records), *c5(records, d)]


def claims_frame(claims: list[Claim]) -> pd.DataFrame:
    frame = pd.DataFrame([vars(c) for c in claims])
    numeric = ["mean", "low", "high"]
    frame[numeric] = frame[numeric].astype(float).round(4)
    return frame


def _points(value: float) -> str:
    return "—" if math.isnan(value) else f"{value:+.2f}".replace("-", "−")


def render(claims: list[Claim], table: str, model: str, runs_label: str) -> str:
    lines = [
        f"# Claims of the GPart paper tested on {table} — {model}",
        "",
        f"Generated by `make tables` (experiments/report/claims.py) from the finished run records under `{runs_label}`. "
        "Do not edit by hand. Differences are in points (test metric × 100), paired by (task, seed).",
        "",
    ]
    if model not in {"roberta-base", "roberta-large"}:
        lines += [
            f"These runs use {model}, not the paper's models: a small-scale replication of the claims, not the "
            "paper's numbers.",
            "",
        ]
    lines += [f"- {rule}" for rule in RULES] + [""]
    lines += [
        "| claim | scope | difference | pairs | mean | 95% interval | threshold | verdict | note |",
        "|---|---|---|---:|---:|---|---|---|---|",
    ]
    for c in claims:
        spread = "—" if math.isnan(c.low) else f"[{_points(c.low)}, {_points(c.high)}]"
        lines.append(
            f"| {c.claim} | {c.scope} | {c.comparison} | {c.n} | {_points(c.mean)} | {spread} | "
            f"{c.threshold} | **{c.verdict}** | {c.note} |"
        )
    return "\n".join(lines) + "\n"


def claims_tables(records: pd.DataFrame, runs_label: str) -> dict[str, str]:
    """{file name: text} of `claims-<table>-<model>.md` and `.csv` for each (table, model) with testable claims."""
    files = {}
    for (table, model), group in records.groupby(["table", "model"], sort=False):
        claims = claims_for(group)
        if claims:
            files[f"claims-{table}-{model}.md"] = render(claims, table, model, runs_label)
            files[f"claims-{table}-{model}.csv"] = claims_frame(claims).to_csv(index=False)
    return files
