"""experiments/studies/mini/verdicts.py: each rule of docs/mini.md's analysis plan on synthetic DataFrames, with cases that
could fail (a clear non-inferior difference is supported, a clear inferior one contradicted, Holm turns a marginal
p into inconclusive, a task under the admission gap carries no claim)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from experiments.studies.mini import verdicts as plan

TASKS = ["sst2", "stsb"]
SEEDS = (1, 2, 3, 4, 5)
SEED_EFFECT = {1: -2.0, 2: 1.0, 3: 0.0, 4: 2.0, 5: -1.0}  # shared by every arm of a seed: what pairing removes
WOBBLE = {1: 0.1, 2: -0.2, 3: 0.05, 4: 0.15, 5: -0.1}  # small, zero-mean per-seed noise of a difference
PARAMS = {
    "GPart": 2880,
    "GPart (non-isometric)": 2880,
    "GPart (balanced)": 2880,
    "Uni-LoRA": 2880,
    "LoRA": 73_728,
    "FT": 22_565_376,
    "LP": 0,
}


def frame(offsets: dict, tasks=TASKS, seeds=SEEDS, sweep: dict | None = None, wobble: float = 1.0) -> pd.DataFrame:
    """Report rows: GPart at 80 (+ the seed effect); every other arm at GPart + its offset (+ wobble); FT 90, LP 70.
    `offsets` values may be a number or {task: number}; `sweep` {(arm, d): offset} adds d-sweep rows (seeds 1-3)."""
    rows = []
    base = {"GPart": 0.0, "FT": 10.0, "LP": -10.0, **offsets}
    for task in tasks:
        for seed in seeds:
            for arm, offset in base.items():
                shift = offset[task] if isinstance(offset, dict) else offset
                noise = 0.0 if arm in ("GPart", "FT", "LP") else wobble * WOBBLE[seed]
                rows.append(_row(arm, task, seed, 80.0 + SEED_EFFECT[seed] + shift + noise))
            for (arm, d), offset in (sweep or {}).items():
                if seed <= 3:
                    rows.append(_row(arm, task, seed, 80.0 + SEED_EFFECT[seed] + offset + WOBBLE[seed], d))
    return pd.DataFrame(rows)


def _row(arm, task, seed, score, d=None):
    return {
        "arm": arm,
        "task": task,
        "seed": seed,
        "sweep": d is not None,
        "d": d if d is not None else (2880 if arm.startswith(("GPart", "Uni")) else math.nan),
        "score": score,
        "trainable_params": d if d is not None else PARAMS[arm],
        "best_epoch": 5 if seed % 2 else 3,
        "last_epoch": 5,
    }


def admission(gaps=None) -> pd.DataFrame:
    gaps = gaps or {t: 10.0 for t in TASKS}
    return pd.DataFrame([{"task": t, "ft": 70.0 + g, "lp": 70.0} for t, g in gaps.items()])


def verdicts(report, admit=None) -> dict:
    table = plan.primary(report, admit if admit is not None else admission(), TASKS)
    return {(r.claim, r.task): r.verdict for r in table.itertuples()}


# ---------------------------------------------------------------- the tests themselves


def test_one_sided_p_values_are_student_t_with_n_minus_1_degrees_of_freedom():
    d = np.array([0.5, -0.2, 0.9, 0.1, 0.4])
    t = (d.mean() + 1.0) / (d.std(ddof=1) / math.sqrt(5))
    assert plan.p_greater(d, -1.0) == pytest.approx(stats.t.sf(t, 4))
    assert plan.p_less(d, -1.0) == pytest.approx(stats.t.cdf(t, 4))
    assert plan.p_greater(d, -1.0) + plan.p_less(d, -1.0) == pytest.approx(1.0)
    mean, low, high = plan.interval(d)
    assert high - mean == pytest.approx(stats.t.ppf(0.975, 4) * d.std(ddof=1) / math.sqrt(5))
    assert math.isnan(plan.p_greater([1.0], 0.0)) and math.isnan(plan.interval([1.0])[1])


def test_tost_is_the_larger_of_the_two_one_sided_p_and_matches_the_90_percent_interval():
    inside = np.array([0.1, -0.2, 0.15, 0.05, -0.1])
    p_sup, p_con = plan.tests("equivalence", inside, 1.0)
    assert p_sup == pytest.approx(max(plan.p_greater(inside, -1.0), plan.p_less(inside, 1.0)))
    _, low90, high90 = plan.interval(inside, 0.90)
    assert (p_sup < 0.05) == (-1.0 < low90 and high90 < 1.0) and p_sup < 0.05 and p_con > 0.5
    outside = inside + 3.0
    p_sup, p_con = plan.tests("equivalence", outside, 1.0)
    assert p_sup > 0.5 and p_con < 0.05 and plan.interval(outside, 0.90)[1] > 1.0


def test_holm_adjusts_step_down_and_keeps_nan_out_of_the_family():
    adjusted = plan.holm([0.01, 0.04, math.nan, 0.03])
    # sorted 0.01, 0.03, 0.04 in a family of 3: 0.03, max(0.03, 0.06), max(0.06, 0.04)
    assert adjusted[0] == pytest.approx(0.03) and adjusted[3] == pytest.approx(0.06)
    assert adjusted[1] == pytest.approx(0.06) and math.isnan(adjusted[2])
    assert plan.holm([0.5, 0.9]) == [1.0, 1.0]  # 2 × 0.5 capped at 1, and monotone


# ---------------------------------------------------------------- primary verdicts


def test_a_clearly_non_inferior_difference_is_supported_and_a_clearly_inferior_one_contradicted():
    report = frame({"Uni-LoRA": 0.3, "LoRA": 3.0, "GPart (non-isometric)": -2.0, "GPart (balanced)": 0.0})
    result = verdicts(report)
    assert result[("C1", "sst2")] == result[("C1", "stsb")] == "supported"  # GPart − Uni-LoRA = −0.3 > −1
    assert result[("C2", "sst2")] == result[("C2", "stsb")] == "contradicted"  # GPart − LoRA = −3 < −1
    assert result[("C3", "sst2")] == "supported" and result[("C5", "stsb")] == "supported"


def test_superiority_of_the_other_map_contradicts_c3_and_a_shifted_balanced_arm_contradicts_c5():
    report = frame({"Uni-LoRA": 0.0, "LoRA": 0.0, "GPart (non-isometric)": 2.0, "GPart (balanced)": 3.0})
    result = verdicts(report)
    assert result[("C3", "sst2")] == "contradicted" and result[("C5", "sst2")] == "contradicted"


def test_noise_larger_than_the_margin_is_inconclusive():
    report = frame({"Uni-LoRA": 1.0, "LoRA": 0.0, "GPart (non-isometric)": 0.0, "GPart (balanced)": 0.0}, wobble=20.0)
    result = verdicts(report)
    assert result[("C1", "sst2")] == "inconclusive" and result[("C5", "sst2")] == "inconclusive"


def test_holm_turns_a_marginal_p_into_inconclusive():
    # GPart − Uni-LoRA on SST-2: mean −0.3, noisy, raw p ≈ 0.02 against the margin −1. Every other supported test
    # fails clearly (Uni-LoRA far better on STS-B, LoRA better, no isometry gain, balanced shifted), so the marginal
    # p is the family's smallest and Holm multiplies it by the 8 tests.
    wobble = {1: 0.5, 2: -0.6, 3: 0.2, 4: 0.45, 5: -0.55}
    report = frame(
        {"Uni-LoRA": {"sst2": 0.3, "stsb": 3.0}, "LoRA": 3.0, "GPart (non-isometric)": 0.0, "GPart (balanced)": 3.0},
        wobble=5.0,
    )
    sst2 = (report["arm"] == "Uni-LoRA") & (report["task"] == "sst2")
    report.loc[sst2, "score"] = report.loc[sst2, "score"] - [
        5.0 * WOBBLE[s] + wobble[s] for s in report.loc[sst2, "seed"]
    ]
    table = plan.primary(report, admission(), TASKS).set_index(["claim", "task"])
    row = table.loc[("C1", "sst2")]
    assert row["p_supported"] == pytest.approx(0.0218, abs=1e-3)
    assert row["p_supported"] < 0.05 <= row["holm_supported"] == pytest.approx(8 * row["p_supported"]), row
    assert row["verdict"] == "inconclusive"
    # the same difference alone in its family (the other task not admitted, the other claims not run) is supported
    alone = report[report["arm"].isin(["GPart", "Uni-LoRA", "FT", "LP"])]
    table = plan.primary(alone, admission({"sst2": 10.0, "stsb": 1.0}), TASKS).set_index(["claim", "task"])
    assert table.loc[("C1", "sst2"), "verdict"] == "supported"
    assert table.loc[("C1", "sst2"), "holm_supported"] == pytest.approx(row["p_supported"])


def test_c2_needs_ten_times_fewer_parameters():
    report = frame({"Uni-LoRA": 0.0, "LoRA": 0.0, "GPart (non-isometric)": 0.0, "GPart (balanced)": 0.0})
    assert verdicts(report)[("C2", "sst2")] == "supported"
    report.loc[report["arm"] == "LoRA", "trainable_params"] = 2 * 2880
    assert verdicts(report)[("C2", "sst2")] == "contradicted"


def test_a_task_under_the_admission_gap_reads_no_claim_and_leaves_the_holm_families():
    report = frame({"Uni-LoRA": 0.3, "LoRA": 3.0, "GPart (non-isometric)": -2.0, "GPart (balanced)": 0.0})
    gate = admission({"sst2": 10.0, "stsb": 2.9})
    table = plan.primary(report, gate, TASKS)
    stsb = table[table["task"] == "stsb"]
    assert (stsb["verdict"] == "no claim").all() and stsb["p_supported"].isna().all()
    assert stsb["mean"].notna().all()  # reported, not tested
    full = plan.primary(report, admission(), TASKS).set_index(["claim", "task"])
    half = table.set_index(["claim", "task"])
    # four tests in the family instead of eight: Holm multiplies the smallest p by 4, not 8
    smallest = half["p_supported"].min()
    assert half["holm_supported"].min() == pytest.approx(min(1.0, 4 * smallest))
    assert full["holm_supported"].min() == pytest.approx(min(1.0, 8 * full["p_supported"].min()))
    assert plan.admitted(admission({"sst2": 3.0, "stsb": math.nan})) == {"sst2": True, "stsb": None}
    assert (plan.primary(report, admission({"sst2": math.nan, "stsb": math.nan}), TASKS)["verdict"] == "pending").all()


def test_missing_arms_read_not_run_and_fewer_seeds_than_planned_are_marked_incomplete():
    report = frame({"Uni-LoRA": 0.3}, seeds=(1, 2, 3))
    table = plan.primary(report, admission(), TASKS).set_index(["claim", "task"])
    assert table.loc[("C2", "sst2"), "verdict"] == "not run"
    assert table.loc[("C1", "sst2"), "n"] == 3 and not table.loc[("C1", "sst2"), "complete"]


# ---------------------------------------------------------------- secondary


def test_normalised_score_uses_the_same_seeds_lp_and_ft():
    report = frame({"Uni-LoRA": 5.0})
    normal = plan.normalised(report, TASKS)
    gpart = normal[(normal["arm"] == "GPart") & ~normal["sweep"]]["normalised"]
    uni = normal[(normal["arm"] == "Uni-LoRA")]
    assert np.allclose(gpart, 0.5)  # GPart is halfway between LP (−10) and FT (+10)
    expected = (5.0 + 10.0 + uni["seed"].map(WOBBLE)) / 20.0
    assert np.allclose(uni["normalised"], expected)
    pooled = plan.pooled(normal, "GPart", TASKS)
    assert list(pooled.index) == list(SEEDS) and np.allclose(pooled, 0.5)


def test_pooled_tests_use_margin_0_1_and_only_admitted_tasks():
    # On STS-B Uni-LoRA is 5 points (0.25 normalised) better; on SST-2 equal. Pooled over both: GPart − Uni-LoRA
    # is −0.125 < −0.1, not shown non-inferior; over SST-2 alone (STS-B not admitted): consistent with.
    report = frame(
        {"Uni-LoRA": {"sst2": 0.0, "stsb": 5.0}, "LoRA": 0.0, "GPart (non-isometric)": -1.0, "GPart (balanced)": 0.0}
    )
    both = plan.secondary(report, admission(), TASKS).set_index("claim")
    assert both.loc["C1", "outcome"] == "not" and both.loc["C1", "mean"] == pytest.approx(-0.125, abs=0.01)
    one = plan.secondary(report, admission({"sst2": 10.0, "stsb": 1.0}), TASKS).set_index("claim")
    assert one.loc["C1", "outcome"] == "consistent with" and one.loc["C1", "tasks"] == "sst2"
    assert both.loc["C5", "outcome"] == "consistent with" and both.loc["C3", "outcome"] == "consistent with"


def test_c4_is_supported_when_the_95_percent_interval_lies_above_zero_and_reports_the_gap_to_ft():
    sweep = {("GPart", 288): -4.0, ("GPart", 28800): 1.0, ("Uni-LoRA", 288): 0.0, ("Uni-LoRA", 28800): 0.1}
    report = frame({"Uni-LoRA": 0.0}, sweep=sweep)
    noisy = (report["arm"] == "Uni-LoRA") & (report["d"] == 28800)
    report.loc[noisy, "score"] += [{1: 0.5, 2: -0.6, 3: 0.2}[s] for s in report.loc[noisy, "seed"]]
    table = plan.c4(report, admission(), TASKS).set_index(["arm", "scope"])
    gpart = table.loc[("GPart", "sst2")]
    assert gpart["outcome"] == "supported" and gpart["n"] == 3 and gpart["mean"] == pytest.approx(5.0)
    assert gpart["gap_to_ft"] == pytest.approx(10.0 - 1.0 - np.mean([WOBBLE[s] for s in (1, 2, 3)]))
    assert table.loc[("Uni-LoRA", "sst2"), "outcome"] == "not supported"  # +0.1 ± noise: not above 0
    pooled = table.loc[("GPart", "pooled, normalised (sst2, stsb)")]
    assert pooled["outcome"] == "supported" and pooled["mean"] == pytest.approx(0.25)
    gated = plan.c4(report, admission({"sst2": 10.0, "stsb": 0.0}), TASKS).set_index(["arm", "scope"])
    assert gated.loc[("GPart", "stsb"), "outcome"] == "no claim"
    assert plan.c4(frame({}), admission(), TASKS).empty  # no sweep yet


def test_convergence_share_per_arm_and_the_sentence():
    report = frame({"Uni-LoRA": 0.0}, sweep={("GPart", 288): 0.0})
    table = plan.convergence(report).set_index("row")
    assert table.loc["GPart", "runs"] == 10 and table.loc["GPart", "share"] == pytest.approx(0.6)  # odd seeds
    assert table.loc["GPart (d = 288)", "runs"] == 6
    assert "short of convergence" in plan.convergence_sentence(plan.convergence(report))
    report["best_epoch"] = 2
    assert "before the last epoch" in plan.convergence_sentence(plan.convergence(report))


def test_convergence_reads_no_report_run_yet_instead_of_failing():
    """Before the first report record (selection records only), the tables still write."""
    empty = frame({}).iloc[0:0]
    assert plan.convergence_sentence(plan.convergence(empty)) == "No report run has finished yet."
