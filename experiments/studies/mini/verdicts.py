"""docs/mini.md's analysis plan, applied to the CPU study's records: per-task tests with Holm, pooled normalised
score, C4, convergence — and what each verdict can and cannot mean at this scale.

Pure functions on two DataFrames that experiments/studies/mini/collect.py builds from the records:

- `report`: one row per finished report or d-sweep run: `arm` (the record's `method`, an arm label of
  experiments/studies/mini/design.py), `task`, `seed`, `sweep` (True for the d sweep's runs), `d` (the d sweep's d; the main d
  otherwise for GPart and Uni-LoRA arms), `score` (test metric × 100), `trainable_params`, `best_epoch`,
  `last_epoch`.
- `admission`: one row per task: `ft` and `lp` (seed 0's best validation score × 100 at each arm's chosen lr, from
  the selection records), or NaN while the choice is pending.

The plan (committed before any record; nothing here changes it):

- **Primary, per task**, on the 5 paired differences Δ (seeds 1-5), one-sided Student t with n − 1 degrees of
  freedom, α = 0.05, margin m = 1 point: C1 (GPart − Uni-LoRA) and C2 (GPart − LoRA, plus LoRA/GPart parameters ≥ 10)
  non-inferiority, C3 (GPart − GPart (non-isometric)) superiority, C5 (GPart − GPart (balanced)) equivalence by two
  one-sided tests (90% interval inside ±m). The "supported" tests form one Holm family, the "contradicted" tests
  another; a verdict needs its test to survive Holm in its family, otherwise it is *inconclusive*.
- **Admission**: a task carries claims only if FT − LP ≥ 3 points on seed 0's validation split, each at its chosen
  lr; otherwise its rows read *no claim* and enter no test (no Holm family either).
- **Secondary** (no Holm, verdict "consistent with" / "not"): the same four tests on the per-seed mean over admitted
  tasks of the normalised score (score − LP) / (FT − LP) (same seed's LP and FT), margin 0.1; C4: GPart at the
  largest d − GPart at the smallest d of the sweep, per task and pooled on the normalised score, *supported* if the
  95% interval lies above 0, with the gap to FT at the largest d beside it (and the same for Uni-LoRA); convergence:
  the share of report runs whose best validation epoch is the last.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

ALPHA = 0.05
MARGIN = 1.0  # points: C1, C2 non-inferiority and C5 equivalence margin
NORMALISED_MARGIN = 0.1  # the same on the normalised scale (a tenth of the FT − LP gap)
ADMISSION_GAP = 3.0  # points: FT − LP on seed 0's validation split
PARAM_RATIO = 10.0  # C2: LoRA has at least this many times GPart's trainable parameters
GPART, UNILORA, LORA, FT, LP = "GPart", "Uni-LoRA", "LoRA", "FT", "LP"
NON_ISOMETRIC, BALANCED = "GPart (non-isometric)", "GPart (balanced)"


@dataclass(frozen=True)
class Claim:
    name: str
    statement: str
    arm: str
    peer: str
    kind: str  # "non-inferiority", "superiority" or "equivalence"
    can: str  # what this study can decide about it
    cannot: str  # what it cannot

    @property
    def comparison(self) -> str:
        return f"{self.arm} − {self.peer}"


SCALE_LIMITS = (
    "not RoBERTa-base/-large, full training sets or 25–160 epochs; not GLUE tasks beyond SST-2 and "
    "STS-B, nor math or vision; not differences under about 1–2 points (5 seeds)"
)
PRIMARY = (
    Claim(
        "C1",
        "GPart ≥ Uni-LoRA at equal d",
        GPART,
        UNILORA,
        "non-inferiority",
        "whether GPart is within 1 point of Uni-LoRA (or worse by more) at d = 2,880, each at its own tuned lr, "
        "for MiniLM-L6 after a few hundred steps",
        "whether GPart is *better* (only non-inferiority is tested); " + SCALE_LIMITS,
    ),
    Claim(
        "C2",
        "GPart ≈ LoRA with ≥ 10× fewer parameters",
        GPART,
        LORA,
        "non-inferiority",
        "whether GPart with 25.6× fewer parameters than LoRA r = 8 is within 1 point of it at tuned lrs, at this scale",
        "LoRA at other ranks, or the paper's larger models where the parameter ratio is set differently; "
        + SCALE_LIMITS,
    ),
    Claim(
        "C3",
        "isometric ≥ non-isometric",
        GPART,
        NON_ISOMETRIC,
        "superiority",
        "whether isometry helps when each map has its own tuned lr (under AdamW a lr rescaling absorbs most of "
        "the √g step-size difference)",
        "whether isometry helps at one shared lr, the paper's comparison; "
        "a benefit smaller than the seed noise; " + SCALE_LIMITS,
    ),
    Claim(
        "C5",
        "the assignment does not matter",
        GPART,
        BALANCED,
        "equivalence",
        "whether stateless and balanced assignment agree within ±1 point at GPart's lr and d = 2,880",
        "differences under 1 point; other d or tasks; " + SCALE_LIMITS,
    ),
)
C4_CAN = (
    "whether score rises from d = 288 to d = 28,800 (lr rescaled by √(2,880/d)) and how far from FT "
    "d = 28,800 stays, at this scale (3 seeds)"
)
C4_CANNOT = "the shape of the curve between the three d; the paper's d range and models; " + SCALE_LIMITS


# ---------------------------------------------------------------- tests


def _moments(differences) -> tuple[int, float, float]:
    values = np.asarray(differences, dtype=float)
    n = len(values)
    if n == 0:
        return 0, math.nan, math.nan
    return n, float(values.mean()), (float(values.std(ddof=1)) / math.sqrt(n) if n > 1 else math.nan)


def p_greater(differences, null: float) -> float:
    """One-sided Student-t p-value of H0: Δ ≤ null (alternative Δ > null); NaN with fewer than 2 pairs."""
    n, mean, se = _moments(differences)
    if n < 2:
        return math.nan
    if se == 0:
        return 0.0 if mean > null else 1.0
    return float(stats.t.sf((mean - null) / se, n - 1))


def p_less(differences, null: float) -> float:
    """One-sided Student-t p-value of H0: Δ ≥ null (alternative Δ < null)."""
    n, mean, se = _moments(differences)
    if n < 2:
        return math.nan
    if se == 0:
        return 0.0 if mean < null else 1.0
    return float(stats.t.cdf((mean - null) / se, n - 1))


def interval(differences, confidence: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): the two-sided Student-t interval of the mean; NaN bounds with fewer than 2 pairs."""
    n, mean, se = _moments(differences)
    if n < 2:
        return mean, math.nan, math.nan
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * se
    return mean, mean - half, mean + half


def tests(kind: str, differences, margin: float) -> tuple[float, float]:
    """(p of the "supported" test, p of the "contradicted" test) for one claim, as docs/mini.md states them."""
    if kind == "non-inferiority":
        return p_greater(differences, -margin), p_less(differences, -margin)
    if kind == "superiority":
        return p_greater(differences, 0.0), p_less(differences, 0.0)
    if kind == "equivalence":  # TOST: both one-sided tests reject; contradicted: the 90% interval wholly outside ±m
        supported = max(p_greater(differences, -margin), p_less(differences, margin))
        contradicted = min(p_greater(differences, margin), p_less(differences, -margin))
        return supported, contradicted
    raise ValueError(f"unknown test kind {kind!r}")


def holm(p_values) -> list[float]:
    """Holm-adjusted p-values (step-down, monotone, capped at 1); NaN entries are not in the family and stay NaN."""
    values = [float(p) for p in p_values]
    present = sorted((p, i) for i, p in enumerate(values) if not math.isnan(p))
    adjusted = [math.nan] * len(values)
    running = 0.0
    for rank, (p, i) in enumerate(present):
        running = max(running, min(1.0, (len(present) - rank) * p))
        adjusted[i] = running
    return adjusted


# ---------------------------------------------------------------- the data


def main_cells(report: pd.DataFrame) -> pd.DataFrame:
    return report[~report["sweep"].astype(bool)]


def scores(report: pd.DataFrame, arm: str, task: str | None = None) -> pd.Series:
    """Main-cell score per seed (task given) or per (task, seed)."""
    mine = main_cells(report)
    mine = mine[mine["arm"] == arm]
    if task is not None:
        return mine[mine["task"] == task].set_index("seed")["score"].sort_index()
    return mine.set_index(["task", "seed"])["score"].sort_index()


def sweep_scores(report: pd.DataFrame, arm: str, d: int, task: str | None = None) -> pd.Series:
    mine = report[report["sweep"].astype(bool) & (report["arm"] == arm) & (report["d"] == d)]
    if task is not None:
        return mine[mine["task"] == task].set_index("seed")["score"].sort_index()
    return mine.set_index(["task", "seed"])["score"].sort_index()


def paired(a: pd.Series, b: pd.Series) -> pd.Series:
    """a − b on the index both have (seeds, or (task, seed))."""
    both = pd.concat([a.rename("a"), b.rename("b")], axis=1, join="inner").dropna()
    return (both["a"] - both["b"]).sort_index()


def admitted(admission: pd.DataFrame) -> dict[str, bool | None]:
    """task -> True (FT − LP ≥ 3 validation points), False, or None while FT's or LP's choice is pending."""
    out = {}
    for row in admission.itertuples():
        gap = row.ft - row.lp
        out[row.task] = None if math.isnan(gap) else bool(gap >= ADMISSION_GAP - 1e-9)
    return out


def parameter_ratio(report: pd.DataFrame) -> float:
    """LoRA's trainable parameters over GPart's at the main d (NaN until both have a run)."""
    cells = main_cells(report)
    lora = cells.loc[cells["arm"] == LORA, "trainable_params"]
    gpart = cells.loc[cells["arm"] == GPART, "trainable_params"]
    if lora.empty or gpart.empty or not gpart.median():
        return math.nan
    return float(lora.median() / gpart.median())


# ---------------------------------------------------------------- primary


def _verdict(claim: Claim, p_supported: float, p_contradicted: float, ratio: float) -> str:
    if claim.name == "C2" and ratio < PARAM_RATIO:
        return "contradicted"
    if p_supported < ALPHA and (claim.name != "C2" or ratio >= PARAM_RATIO):
        return "supported"
    if p_contradicted < ALPHA:
        return "contradicted"
    return "inconclusive"


def primary(report: pd.DataFrame, admission: pd.DataFrame, tasks: list[str], seeds: int = 5) -> pd.DataFrame:
    """One row per (claim, task): Δ's mean and intervals, raw and Holm-adjusted p of both tests, the verdict."""
    entry = admitted(admission)
    ratio = parameter_ratio(report)
    rows = []
    for claim in PRIMARY:
        for task in tasks:
            differences = paired(scores(report, claim.arm, task), scores(report, claim.peer, task))
            mean, low, high = interval(differences)
            _, low90, high90 = interval(differences, 0.90)
            tested = entry.get(task) is True and len(differences) >= 2
            p_sup, p_con = tests(claim.kind, differences, MARGIN) if tested else (math.nan, math.nan)
            rows.append(
                {
                    "claim": claim.name,
                    "task": task,
                    "comparison": claim.comparison,
                    "test": claim.kind,
                    "margin": 0.0 if claim.kind == "superiority" else MARGIN,
                    "n": len(differences),
                    "mean": mean,
                    "low95": low,
                    "high95": high,
                    "low90": low90,
                    "high90": high90,
                    "p_supported": p_sup,
                    "p_contradicted": p_con,
                    "admitted": entry.get(task),
                    "parameter_ratio": ratio if claim.name == "C2" else math.nan,
                    "complete": len(differences) >= seeds,
                }
            )
    frame = pd.DataFrame(rows)
    frame["holm_supported"] = holm(frame["p_supported"])
    frame["holm_contradicted"] = holm(frame["p_contradicted"])
    claims = {c.name: c for c in PRIMARY}
    verdicts = []
    for row in frame.itertuples():
        if row.admitted is None:
            verdicts.append("pending")
        elif row.admitted is False:
            verdicts.append("no claim")
        elif row.n == 0:
            verdicts.append("not run")
        else:
            verdicts.append(_verdict(claims[row.claim], row.holm_supported, row.holm_contradicted, row.parameter_ratio))
    frame["verdict"] = verdicts
    return frame


# ---------------------------------------------------------------- secondary


def normalised(report: pd.DataFrame, tasks: list[str]) -> pd.DataFrame:
    """(score − LP) / (FT − LP) per run of the given tasks, with the same seed's main-cell LP and FT."""
    lp, ft = scores(report, LP), scores(report, FT)
    frame = report[report["task"].isin(tasks)].copy()
    keys = list(zip(frame["task"], frame["seed"]))
    low = np.array([lp.get(key, math.nan) for key in keys], dtype=float)
    high = np.array([ft.get(key, math.nan) for key in keys], dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        frame["normalised"] = (frame["score"].to_numpy(dtype=float) - low) / (high - low)
    frame.loc[~np.isfinite(frame["normalised"]), "normalised"] = math.nan
    return frame


def pooled(normal: pd.DataFrame, arm: str, tasks: list[str], d: int | None = None) -> pd.Series:
    """Per seed: the mean over `tasks` of the arm's normalised score (main cell, or the sweep's run at d); a seed
    missing on any task is left out."""
    mine = normal[(normal["arm"] == arm) & (normal["sweep"].astype(bool) == (d is not None))]
    if d is not None:
        mine = mine[mine["d"] == d]
    table = mine.pivot_table(index="seed", columns="task", values="normalised", aggfunc="first")
    if table.empty or any(task not in table.columns for task in tasks):
        return pd.Series(dtype=float)
    return table[tasks].dropna().mean(axis=1).sort_index()


def secondary(report: pd.DataFrame, admission: pd.DataFrame, tasks: list[str]) -> pd.DataFrame:
    """The four claims on the per-seed mean normalised score over admitted tasks, margin 0.1, no Holm."""
    entry = admitted(admission)
    chosen = [t for t in tasks if entry.get(t) is True]
    normal = normalised(report, chosen)
    ratio = parameter_ratio(report)
    rows = []
    for claim in PRIMARY:
        differences = (
            paired(pooled(normal, claim.arm, chosen), pooled(normal, claim.peer, chosen))
            if chosen
            else pd.Series(dtype=float)
        )
        mean, low, high = interval(differences)
        p_sup, p_con = tests(claim.kind, differences, NORMALISED_MARGIN)
        if not chosen:
            outcome = "no claim" if any(v is False for v in entry.values()) else "pending"
        elif len(differences) < 2:
            outcome = "not run" if differences.empty else "not"
        else:
            ok = p_sup < ALPHA and (claim.name != "C2" or ratio >= PARAM_RATIO)
            outcome = "consistent with" if ok else "not"
        rows.append(
            {
                "claim": claim.name,
                "tasks": ", ".join(chosen),
                "comparison": claim.comparison,
                "test": claim.kind,
                "margin": 0.0 if claim.kind == "superiority" else NORMALISED_MARGIN,
                "n": len(differences),
                "mean": mean,
                "low95": low,
                "high95": high,
                "p_supported": p_sup,
                "p_contradicted": p_con,
                "outcome": outcome,
            }
        )
    return pd.DataFrame(rows)


def sweep_ds(report: pd.DataFrame) -> tuple[int, int] | None:
    ds = sorted(int(d) for d in report.loc[report["sweep"].astype(bool), "d"].dropna().unique())
    return (ds[0], ds[-1]) if len(ds) >= 2 else None


def c4(report: pd.DataFrame, admission: pd.DataFrame, tasks: list[str], arms=(GPART, UNILORA)) -> pd.DataFrame:
    """Largest d − smallest d of the sweep per task and pooled (normalised), with the gap to FT at the largest d."""
    entry = admitted(admission)
    chosen = [t for t in tasks if entry.get(t) is True]
    ds = sweep_ds(report)
    rows = []
    if ds is None:
        return pd.DataFrame(
            rows,
            columns=[
                "arm",
                "scope",
                "comparison",
                "n",
                "mean",
                "low95",
                "high95",
                "gap_to_ft",
                "gap_low95",
                "gap_high95",
                "outcome",
            ],
        )
    small, large = ds
    normal = normalised(report, chosen)
    for arm in arms:
        comparison = f"{arm} d = {large:,} − d = {small:,}"
        for task in [*tasks, "pooled"]:
            if task == "pooled":
                differences = (
                    paired(pooled(normal, arm, chosen, large), pooled(normal, arm, chosen, small))
                    if chosen
                    else pd.Series(dtype=float)
                )
                gap = (1.0 - pooled(normal, arm, chosen, large)) if chosen else pd.Series(dtype=float)
                scope = "pooled, normalised (" + (", ".join(chosen) or "no admitted task") + ")"
            else:
                differences = paired(sweep_scores(report, arm, large, task), sweep_scores(report, arm, small, task))
                gap = paired(scores(report, FT, task), sweep_scores(report, arm, large, task))
                scope = task
            mean, low, high = interval(differences)
            gap_mean, gap_low, gap_high = interval(gap)
            status = (
                entry.get(task)
                if task != "pooled"
                else (True if chosen else (False if any(v is False for v in entry.values()) else None))
            )
            if status is None:
                outcome = "pending"
            elif status is False:
                outcome = "no claim"
            elif differences.empty:
                outcome = "not run"
            else:
                outcome = "supported" if low > 0 else "not supported"
            rows.append(
                {
                    "arm": arm,
                    "scope": scope,
                    "comparison": comparison,
                    "n": len(differences),
                    "mean": mean,
                    "low95": low,
                    "high95": high,
                    "gap_to_ft": gap_mean,
                    "gap_low95": gap_low,
                    "gap_high95": gap_high,
                    "outcome": outcome,
                }
            )
    return pd.DataFrame(rows)


def convergence(report: pd.DataFrame) -> pd.DataFrame:
    """Per arm (the d sweep's by d): runs, and the share whose best validation epoch is the last one."""
    frame = report.assign(at_last=report["best_epoch"] == report["last_epoch"])
    frame["row"] = [
        arm if not sweep else f"{arm} (d = {int(d):,})"
        for arm, sweep, d in zip(frame["arm"], frame["sweep"].astype(bool), frame["d"])
    ]
    out = frame.groupby("row", sort=False).agg(runs=("at_last", "size"), at_last=("at_last", "sum")).reset_index()
    out["share"] = out["at_last"] / out["runs"]
    return out


def convergence_sentence(table: pd.DataFrame) -> str:
    """The plan's reading of the convergence shares, over the main cells' report runs (the d sweep's rows aside)."""
    if table.empty:
        return "No report run has finished yet."
    main = table[~table["row"].astype(str).str.contains(r"\(d = ", regex=True)]
    runs, last = int(main["runs"].sum()), int(main["at_last"].sum())
    if runs == 0:
        return "No report run has finished yet."
    share = last / runs
    verdict = (
        "most of them peak at the last epoch: the study's step budget is short of convergence"
        if share > 0.5
        else "most of them peak before the last epoch"
    )
    return f"{last} of {runs} report runs ({100 * share:.0f}%) have their best validation epoch last; {verdict}."
