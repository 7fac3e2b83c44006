"""experiments/report/claims.py through `make tables`: fixture records built so that every claim gets each verdict."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from test_tables_fixtures import make_record, write_record

from experiments.report import claims, loading, rendering, tables

TASKS = ("sst2", "mrpc", "rte")
SEEDS = (0, 1, 2)
D, SMALL_D, LORA_PARAMS = 2_880, 288, 73_728
# Seed effects shared by every method (what pairing removes), a few points apart so the seed spread is large.
SEED_EFFECT = {0: -3.0, 1: 0.0, 2: 3.0}
JITTER = {(t, s): 0.1 * ((3 * i + s) % 5 - 2) for i, t in enumerate(TASKS) for s in SEEDS}  # small, fixed noise

# Each arm's score minus GPart's (at d = 2,880), per scenario: each scenario forces one verdict on every claim.
SCENARIOS = {
    "supported": {
        "Uni-LoRA": -2.0,
        "LoRA": 0.3,
        "GPart (non-isometric)": -3.0,
        "small_d": -4.0,
        "GPart (balanced)": 0.0,
    },
    "contradicted": {
        "Uni-LoRA": 2.0,
        "LoRA": 5.0,
        "GPart (non-isometric)": 3.0,
        "small_d": 4.0,
        "GPart (balanced)": 8.0,
    },
    "inconclusive": {
        "Uni-LoRA": "noise",
        "LoRA": "noise+1",
        "GPart (non-isometric)": "noise",
        "small_d": "noise",
        "GPart (balanced)": "spread",
    },
}


def offset(rule, task: str, seed: int) -> float:
    """A fixed shift, or zero-mean noise around a shift whose interval must straddle the threshold."""
    if isinstance(rule, float):
        return rule + JITTER[(task, seed)]
    sign = 1 if (TASKS.index(task) + seed) % 2 else -1
    if rule == "noise":
        return sign * 2.0 + 0.2
    if rule == "noise+1":
        return 1.0 + sign * 2.0
    return sign * 6.0 + 0.1  # "spread": twice the seed spread


def write_scenario(runs, name: str) -> None:
    rules = SCENARIOS[name]
    for i, task in enumerate(TASKS):
        for seed in SEEDS:
            gpart = 70.0 + 5 * i + SEED_EFFECT[seed] + JITTER[(task, seed)]

            def add(method, points, params, model="minilm-l6", task=task, seed=seed):
                write_record(
                    runs,
                    make_record(
                        method,
                        task,
                        seed,
                        points / 100,
                        model=model,
                        trainable_params=params,
                        config={"method.d": params},
                    ),
                )  # one run id per budget

            add("GPart", gpart, D)
            add("Uni-LoRA", gpart + offset(rules["Uni-LoRA"], task, seed), D)
            add("LoRA", gpart + offset(rules["LoRA"], task, seed), LORA_PARAMS)
            add("GPart (non-isometric)", gpart + offset(rules["GPart (non-isometric)"], task, seed), D)
            add("GPart (balanced)", gpart + offset(rules["GPart (balanced)"], task, seed), D)
            add("FT", gpart + 6.0, 22_713_216)
            if task in TASKS[:2]:  # the d sweep runs on two tasks only
                add("GPart", gpart + offset(rules["small_d"], task, seed), SMALL_D)
                add("Uni-LoRA", gpart + offset(rules["small_d"], task, seed) - 1.0, SMALL_D)


def run_claims(tmp_path, name: str) -> pd.DataFrame:
    write_scenario(tmp_path / name / "runs", name)
    assert (
        tables.main(
            ["--runs", str(tmp_path / name / "runs"), "--out", str(tmp_path / name), "--only-with-runs", "--no-figures"]
        )
        == 0
    )
    return pd.read_csv(tmp_path / name / "tables" / "claims-glue-minilm-l6.csv")


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_each_claim_gets_the_verdict_its_fixture_forces(tmp_path, name):
    frame = run_claims(tmp_path, name)
    overall = frame[frame["scope"] == "all tasks"].set_index("claim")["verdict"].to_dict()
    sweep = frame[frame["claim"] == "C4"]["verdict"].tolist()
    assert overall == {"C1": name, "C2": name, "C3": name, "C5": name}, frame.to_string()
    assert sweep == [name]
    per_task = frame[(frame["claim"] == "C1") & frame["scope"].isin(TASKS)]
    assert sorted(per_task["scope"]) == sorted(TASKS) and (per_task["n"] == len(SEEDS)).all()
    assert frame.loc[frame["scope"] == "all tasks", "n"].eq(len(TASKS) * len(SEEDS)).all()


def test_claims_markdown_states_the_rules_and_the_scale(tmp_path):
    run_claims(tmp_path, "supported")
    text = (tmp_path / "supported" / "tables" / "claims-glue-minilm-l6.md").read_text()
    assert "small-scale replication" in text and "t(0.975, n−1)" in text and "seed spread" in text
    assert "claims-glue-minilm-l6.md" in (tmp_path / "supported" / "tables" / "README.md").read_text()
    c1 = rendering.read_markdown_table(tmp_path / "supported" / "tables" / "claims-glue-minilm-l6.md")
    assert {"C1", "C2", "C3", "C4", "C5"} <= set(c1["claim"])
    assert c1.loc[c1["scope"].str.contains("d sweep"), "difference"].str.contains("d = 288").all()


def test_c2_is_contradicted_when_gpart_does_not_have_ten_times_fewer_parameters(tmp_path):
    runs = tmp_path / "runs"
    for task in TASKS:
        for seed in SEEDS:
            score = 0.8 + 0.01 * seed
            write_record(runs, make_record("GPart", task, seed, score, model="minilm-l6", trainable_params=D))
            write_record(runs, make_record("LoRA", task, seed, score, model="minilm-l6", trainable_params=2 * D))
    loaded = loading.load_records(runs)
    (c2,) = [c for c in claims.claims_for(loaded.records) if c.claim == "C2"]
    assert c2.verdict == "contradicted" and "2.0× fewer" in c2.note and c2.mean == pytest.approx(0.0)


def test_interval_is_the_student_t_interval_of_the_pairs():
    mean, low, high = claims.interval([1.0, 2.0, 3.0])
    assert mean == 2.0 and low == pytest.approx(2.0 - 4.302653 / math.sqrt(3), abs=1e-5)
    assert high == pytest.approx(2.0 + 4.302653 / math.sqrt(3), abs=1e-5)
    assert math.isnan(claims.interval([1.0])[1]) and claims.at_least(math.nan, math.nan) == "inconclusive"


def test_no_claims_file_without_gpart_runs(tmp_path):
    write_record(tmp_path / "runs", make_record("LoRA", "sst2", 0, 0.9))
    assert (
        tables.main(["--runs", str(tmp_path / "runs"), "--out", str(tmp_path), "--only-with-runs", "--no-figures"]) == 0
    )
    assert not list((tmp_path / "tables").glob("claims-*"))


def test_c4_figure_draws_both_methods_against_d_with_ft_as_a_level_line(tmp_path):
    from test_tables_figures import assert_real_png

    write_scenario(tmp_path / "runs", "supported")
    for task in TASKS:
        for seed in SEEDS:
            write_record(tmp_path / "runs", make_record("LP", task, seed, 0.6, model="minilm-l6", trainable_params=0))
    assert tables.main(["--runs", str(tmp_path / "runs"), "--out", str(tmp_path), "--only-with-runs"]) == 0
    figure = tmp_path / "figures" / "glue-minilm-l6_gpart_score_vs_d.png"
    assert_real_png(figure)
