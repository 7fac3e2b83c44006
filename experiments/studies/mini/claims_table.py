"""The claims C1-C5 of the CPU study as tables: the verdicts of experiments/studies/mini/verdicts.py on a `Study`,
written as `claims.csv` and `claims.md`, and the admission rule's table (shown again in `selection.md`)."""

from __future__ import annotations

import math

import pandas as pd

from experiments.studies.mini import formatting as fmt
from experiments.studies.mini import verdicts as plan
from experiments.studies.mini.collect import Study


def admission_rows(study: Study) -> list[list[str]]:
    rows = []
    entry = plan.admitted(study.admission)
    for row in study.admission.itertuples():
        status = {True: "yes", False: "no: its rows read *no claim*", None: "pending"}[entry[row.task]]
        rows.append(
            [
                fmt.TASK_NAMES.get(row.task, row.task),
                fmt.num(row.ft),
                fmt.num(row.lp),
                fmt.num(row.ft - row.lp, sign=True),
                status,
            ]
        )
    return rows


ADMISSION_HEADER = ["task", "FT (validation)", "LP (validation)", "FT − LP", f"admitted (≥ {plan.ADMISSION_GAP:g})"]


def claims_frames(study: Study) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    seeds = len(study.design.report_seeds)
    return (
        plan.primary(study.report, study.admission, study.tasks, seeds),
        plan.secondary(study.report, study.admission, study.tasks),
        plan.c4(study.report, study.admission, study.tasks, study.design.d_sweep_arms),
        plan.convergence(study.report),
    )


def claims_csv(primary: pd.DataFrame, secondary: pd.DataFrame, c4: pd.DataFrame) -> pd.DataFrame:
    claims = {c.name: c for c in plan.PRIMARY}
    rows = []
    for row in primary.itertuples():
        rows.append(
            {
                "claim": row.claim,
                "analysis": "primary",
                "scope": row.task,
                "comparison": row.comparison,
                "test": row.test,
                "margin": row.margin,
                "n": row.n,
                "mean": row.mean,
                "low95": row.low95,
                "high95": row.high95,
                "low90": row.low90,
                "high90": row.high90,
                "p_supported": row.p_supported,
                "holm_supported": row.holm_supported,
                "p_contradicted": row.p_contradicted,
                "holm_contradicted": row.holm_contradicted,
                "parameter_ratio": row.parameter_ratio,
                "verdict": row.verdict,
                "can_decide": claims[row.claim].can,
                "cannot_decide": claims[row.claim].cannot,
            }
        )
    for row in secondary.itertuples():
        rows.append(
            {
                "claim": row.claim,
                "analysis": "secondary (normalised, pooled)",
                "scope": row.tasks,
                "comparison": row.comparison,
                "test": row.test,
                "margin": row.margin,
                "n": row.n,
                "mean": row.mean,
                "low95": row.low95,
                "high95": row.high95,
                "p_supported": row.p_supported,
                "p_contradicted": row.p_contradicted,
                "verdict": row.outcome,
                "can_decide": claims[row.claim].can,
                "cannot_decide": claims[row.claim].cannot,
            }
        )
    for row in c4.itertuples():
        rows.append(
            {
                "claim": "C4",
                "analysis": "secondary (d sweep)",
                "scope": row.scope,
                "comparison": row.comparison,
                "test": "95% interval above 0",
                "n": row.n,
                "mean": row.mean,
                "low95": row.low95,
                "high95": row.high95,
                "gap_to_ft": row.gap_to_ft,
                "gap_low95": row.gap_low95,
                "gap_high95": row.gap_high95,
                "verdict": row.outcome,
                "can_decide": plan.C4_CAN,
                "cannot_decide": plan.C4_CANNOT,
            }
        )
    columns = [
        "claim",
        "analysis",
        "scope",
        "comparison",
        "test",
        "margin",
        "n",
        "mean",
        "low95",
        "high95",
        "low90",
        "high90",
        "p_supported",
        "holm_supported",
        "p_contradicted",
        "holm_contradicted",
        "parameter_ratio",
        "gap_to_ft",
        "gap_low95",
        "gap_high95",
        "verdict",
        "can_decide",
        "cannot_decide",
    ]
    return fmt.rounded(pd.DataFrame(rows, columns=columns), 4)


def _verdict_text(verdict: str, complete: bool = True, n: int = 0) -> str:
    text = f"**{verdict}**"
    if verdict in ("supported", "contradicted", "inconclusive") and not complete:
        text += f" (interim, n = {n})"
    return text


def summary_rows(study: Study, primary: pd.DataFrame, secondary: pd.DataFrame, c4: pd.DataFrame) -> list[list[str]]:
    rows = []
    for claim in plan.PRIMARY:
        mine = primary[primary["claim"] == claim.name].set_index("task")
        per_task = "; ".join(f"{fmt.TASK_NAMES.get(t, t)}: {mine.loc[t, 'verdict']}" for t in study.tasks)
        pooled = secondary.set_index("claim").loc[claim.name, "outcome"]
        rows.append([claim.name, claim.statement, per_task, pooled, claim.can, claim.cannot])
    c4_rows = c4[c4["arm"] == plan.GPART]
    per_task = (
        "; ".join(
            f"{fmt.TASK_NAMES.get(r.scope, r.scope) if r.scope in study.tasks else 'pooled'}: {r.outcome}"
            for r in c4_rows.itertuples()
        )
        or "not run"
    )
    rows.insert(
        3,
        [
            "C4",
            "GPart's score rises with d toward FT",
            "— (a secondary claim: no Holm family)",
            f"d = 28,800 − d = 288: {per_task}",
            plan.C4_CAN,
            plan.C4_CANNOT,
        ],
    )
    return rows


def claims_markdown(
    study: Study,
    primary: pd.DataFrame,
    secondary: pd.DataFrame,
    c4: pd.DataFrame,
    convergence: pd.DataFrame,
    label: str,
) -> str:
    lines = fmt.file_header(study, "Claims C1–C5 at CPU scale, tested as docs/mini.md's analysis plan states", label)
    lines += [
        f"Differences Δ in points (test metric × 100), paired by (task, seed) over seeds "
        f"{', '.join(map(str, study.design.report_seeds))}; each arm at its own chosen lr. Verdicts are this "
        "study's, for MiniLM-L6 after a few hundred steps, never the paper's.",
        "",
        "## Summary",
        "",
    ]
    lines += fmt.table(
        [
            "claim",
            "paper's statement",
            "primary verdict per task (Holm)",
            "pooled, normalised (secondary)",
            "this study can decide",
            "it cannot decide",
        ],
        summary_rows(study, primary, secondary, c4),
    )
    lines += [
        "",
        "## Admission",
        "",
        f"A task carries claims only if FT − LP ≥ {plan.ADMISSION_GAP:g} points on seed 0's validation split, "
        "each at its chosen lr (selection records).",
        "",
    ]
    lines += fmt.table(ADMISSION_HEADER, admission_rows(study))
    lines += [
        "",
        "## Primary tests, per task",
        "",
        f"One-sided Student t on the paired differences (n − 1 degrees of freedom), α = {plan.ALPHA:g}, margin "
        f"m = {plan.MARGIN:g} point. Non-inferiority (C1, C2): *supported* if H0: Δ ≤ −m is rejected, "
        "*contradicted* if H0: Δ ≥ −m is rejected; C2 also needs LoRA/GPart trainable parameters ≥ "
        f"{plan.PARAM_RATIO:g} (else *contradicted*). Superiority (C3): H0: Δ ≤ 0 / H0: Δ ≥ 0. Equivalence "
        "(C5, two one-sided tests): *supported* if both H0: Δ ≤ −m and H0: Δ ≥ m are rejected (90% interval "
        "inside ±m), *contradicted* if the 90% interval lies wholly outside ±m. **Holm**: the supported tests of "
        "all claims and admitted tasks form one family, the contradicted tests another; a verdict needs its "
        "test's Holm-adjusted p < α, otherwise *inconclusive*. *interim*: fewer pairs than seeds planned.",
        "",
    ]
    rows = []
    for row in primary.itertuples():
        interval90 = f" (90%: {fmt.interval(row.low90, row.high90)})" if row.test == "equivalence" else ""
        note = (
            f"LoRA/GPart parameters {row.parameter_ratio:.1f}×"
            if row.claim == "C2" and not math.isnan(row.parameter_ratio)
            else ""
        )
        rows.append(
            [
                row.claim,
                fmt.TASK_NAMES.get(row.task, row.task),
                row.comparison,
                row.test,
                str(row.n),
                fmt.num(row.mean, sign=True),
                fmt.interval(row.low95, row.high95) + interval90,
                f"{fmt.p_value(row.p_supported)} / {fmt.p_value(row.holm_supported)}",
                f"{fmt.p_value(row.p_contradicted)} / {fmt.p_value(row.holm_contradicted)}",
                _verdict_text(row.verdict, row.complete, row.n),
                note,
            ]
        )
    lines += fmt.table(
        [
            "claim",
            "task",
            "Δ",
            "test",
            "pairs",
            "mean",
            "95% interval",
            "p supported (raw / Holm)",
            "p contradicted (raw / Holm)",
            "verdict",
            "note",
        ],
        rows,
    )
    lines += [
        "",
        "## Secondary: pooled over admitted tasks on the normalised score",
        "",
        "Per task and seed, (score − LP) / (FT − LP) with the same seed's LP and FT; averaged over the admitted "
        "tasks per seed (a seed missing on any of them is left out); the same four tests on the per-seed "
        f"averages with margin {plan.NORMALISED_MARGIN:g} on this scale. Not Holm-corrected; *consistent with* "
        "the claim if its supported test has p < α, else *not*.",
        "",
    ]
    rows = [
        [
            row.claim,
            row.comparison,
            row.tasks or "—",
            row.test,
            str(row.n),
            fmt.num(row.mean, 3, sign=True),
            "—"
            if math.isnan(row.low95)
            else f"[{fmt.num(row.low95, 3, sign=True)}, {fmt.num(row.high95, 3, sign=True)}]",
            fmt.p_value(row.p_supported),
            f"**{row.outcome}**",
        ]
        for row in secondary.itertuples()
    ]
    lines += fmt.table(
        ["claim", "Δ (normalised)", "tasks", "test", "seeds", "mean", "95% interval", "p supported", "outcome"], rows
    )
    lines += [
        "",
        "## Secondary: C4, the d sweep",
        "",
        "Largest − smallest d of the sweep, per task (paired by seed) and pooled on the normalised score; "
        "*supported* if the 95% interval lies above 0. Beside it, the gap to FT at the largest d: FT − the arm, "
        "in points per task and 1 − the normalised score pooled.",
        "",
    ]
    rows = [
        [
            row.comparison,
            fmt.TASK_NAMES.get(row.scope, row.scope),
            str(row.n),
            fmt.num(row.mean, 3 if row.scope not in study.tasks else 2, sign=True),
            fmt.interval(row.low95, row.high95)
            if row.scope in study.tasks
            else (
                "—"
                if math.isnan(row.low95)
                else f"[{fmt.num(row.low95, 3, sign=True)}, {fmt.num(row.high95, 3, sign=True)}]"
            ),
            f"**{row.outcome}**",
            fmt.num(row.gap_to_ft, 3 if row.scope not in study.tasks else 2, sign=True),
        ]
        for row in c4.itertuples()
    ]
    lines += (
        fmt.table(
            ["difference", "scope", "pairs", "mean", "95% interval", "outcome", "gap to FT at the largest d"], rows
        )
        if rows
        else ["Pending: the sweep has no runs at two d yet."]
    )
    lines += [
        "",
        "## Secondary: convergence",
        "",
        "Report runs whose best validation epoch is the last of their epochs, per arm (all tasks).",
        "",
    ]
    rows = [[r.row, str(r.runs), str(r.at_last), f"{100 * r.share:.0f}%"] for r in convergence.itertuples()]
    lines += (fmt.table(["arm", "runs", "best epoch = last", "share"], rows) if rows else []) + [
        "",
        plan.convergence_sentence(convergence),
        "",
    ]
    lines += [
        "## What this study can and cannot decide",
        "",
        "It can say whether, for a small sentence encoder, a few hundred steps and each arm at its own tuned lr, "
        "GPart is non-inferior to Uni-LoRA and LoRA on two tasks, whether isometry helps at tuned lrs, and "
        "whether the assignment matters. It cannot speak for RoBERTa-base/-large, for full training sets and "
        "25–160 epochs, for GLUE tasks it does not run, for the paper's other domains (math, vision), or for "
        "differences smaller than about 1–2 points (5 seeds). (docs/mini.md)",
        "",
    ]
    return "\n".join(lines)
