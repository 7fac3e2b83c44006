"""experiments/studies/mini/report.py through `make tables`: the study's tables, claims and figures from fake records written
at the plan's own record paths; only planned report runs enter the cells, and the output depends on nothing but the
records."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
from mini_fakes import finish, write_fake
from test_tables_figures import assert_real_png

from experiments.report import tables
from experiments.studies.mini import collect, design, driver, formatting, report

SCORE = {
    "LP": 0.70,
    "FT": 0.85,
    "LoRA": 0.82,
    "Uni-LoRA": 0.805,
    "GPart": 0.80,
    "GPart (non-isometric)": 0.78,
    "GPart (balanced)": 0.80,
}


def validation(run):
    """Seed 0's validation: every grid's second point wins (no edge extension), the arms ranked as SCORE."""
    grid = run.arm.grid
    position = grid.index(run.lr) if run.lr in grid else 9
    return SCORE[run.arm.label] - 0.01 * abs(position - 1)


def test_score(run):
    d = {None: 0.0, 288: -0.03, 28800: 0.01}[run.d]
    return SCORE[run.arm.label] + d + 0.002 * ((run.seed * 3 + len(run.arm.label)) % 5)


test_score.__test__ = False


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """The smoke design's runs on both tasks, all finished, plus a stray record not in the plan."""
    results = tmp_path_factory.mktemp("smoke")
    (results / driver.SMOKE_MARKER).write_text("smoke\n")
    finish(results, design.TASKS, design.SMOKE, validation, test_score)
    stray = design.Run(design.ARMS["GPart"], "sst2", 1, 0.123, 0.00316)  # an lr no choice made
    write_fake(stray, results, 0.99, 0.99)
    return results


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """The study's design on SST-2 only: 24 selection, 35 report and 12 d-sweep records."""
    results = tmp_path_factory.mktemp("study")
    finish(results, ("sst2",), design.STUDY, validation, test_score)
    return results


def make_tables(results, out=None):
    out = out or results
    assert tables.main(["--runs", str(results / "runs"), "--out", str(out)]) == 0
    return out / "tables"


def test_make_tables_hands_a_study_folder_to_the_study_report(smoke):
    assert collect.is_study(smoke / "runs") and not collect.is_study(smoke / "selection" / "runs")
    folder = make_tables(smoke)
    names = sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))
    assert names == [
        "README.md",
        "claims.csv",
        "claims.md",
        "d-sweep.csv",
        "d-sweep.md",
        "main.csv",
        "main.md",
        "selection.csv",
        "selection.md",
    ]
    for name in ("score-vs-d.png", "validation-curves.png"):
        assert_real_png(smoke / "figures" / name)
    assert "SMOKE" in (folder / "main.md").read_text()


def test_report_cells_hold_the_planned_report_runs_only(smoke):
    study = collect.collect(smoke)
    assert set(study.report["seed"]) == set(design.SMOKE.report_seeds)  # no selection seed 0 in the cells
    assert len(study.report) == study.planned == 2 * (4 + 1)  # 4 report arms + 1 sweep run per task
    gpart = study.report[(study.report["arm"] == "GPart") & ~study.report["sweep"]]
    assert (gpart["lr"] == study.chosen("GPart", "sst2")).all() and (gpart["score"] < 99).all()
    assert len(study.left_out) == 1  # the stray record, listed, not used
    index = (make_tables(smoke) / "README.md").read_text()
    assert study.left_out[0] in index and "not in the plan" in index


def test_a_running_record_is_not_a_result(tmp_path, smoke):
    results = tmp_path / "copy"
    shutil.copytree(smoke, results)
    run = next(r for r in driver.state(results, ("sst2",), design=design.SMOKE).ready if r.stage == "report")
    path = driver.record_path(run, results)
    record = json.loads(path.read_text())
    path.write_text(json.dumps({**record, "status": "running", "test_metric": None}))
    assert len(collect.collect(results).report) == 2 * (4 + 1) - 1


def test_tables_depend_on_the_records_only_byte_for_byte(tmp_path, smoke):
    """Two copies of the study in different folders, written in different orders, give identical table bytes when
    the runs folder is named alike (make tables names it relative to the repository)."""
    first, second = tmp_path / "a" / "mini", tmp_path / "b" / "elsewhere" / "mini"
    shutil.copytree(smoke, first)
    shutil.copytree(smoke, second)
    report.write(first, label="results/mini/runs")
    report.write(second, label="results/mini/runs")
    report.write(second, label="results/mini/runs")  # rewriting changes nothing
    names = sorted(p.name for p in (first / "tables").iterdir())
    assert names == sorted(p.name for p in (second / "tables").iterdir())
    for name in names:
        text = (first / "tables" / name).read_bytes()
        assert text == (second / "tables" / name).read_bytes(), name
        assert str(tmp_path).encode() not in text, name


def test_repo_relative_label(smoke):
    assert tables._shown(driver.REPO / "results" / "mini" / "runs") == "results/mini/runs"
    assert driver.shown(driver.REPO / "results" / "mini") == "results/mini"


def test_study_tables_show_every_arm_with_its_lr_and_the_claims(study):
    folder = make_tables(study)
    main = pd.read_csv(folder / "main.csv")
    sst2 = main[main["task"] == "sst2"].set_index("arm")
    assert list(sst2.index) == list(formatting.ARM_ORDER)
    assert (sst2["n"] == len(design.REPORT_SEEDS)).all()
    assert (
        sst2.loc["GPart", "lr"] == design.ARMS["GPart"].grid[1]
        and sst2.loc["GPart (balanced)", "lr"] == sst2.loc["GPart", "lr"]
    )
    assert sst2.loc["LP", "head_lr"] == design.PROBE.grid[1] and sst2.loc["LoRA", "trainable_params"] == 73_728
    assert (main[main["task"] == "stsb"]["n"] == 0).all()  # a task with no run is pending
    claims = pd.read_csv(folder / "claims.csv")
    primary = claims[(claims["analysis"] == "primary")].set_index(["claim", "scope"])
    assert primary.loc[("C2", "sst2"), "verdict"] == "contradicted"  # LoRA 2 points above GPart
    assert primary.loc[("C5", "sst2"), "verdict"] == "supported"
    assert primary.loc[("C1", "stsb"), "verdict"] == "pending"
    assert claims["can_decide"].notna().all() and claims["cannot_decide"].notna().all()
    c4 = claims[(claims["claim"] == "C4") & (claims["scope"] == "sst2")].set_index("comparison")
    assert c4.loc["GPart d = 28,800 − d = 288", "verdict"] == "supported"
    sweep = pd.read_csv(folder / "d-sweep.csv")
    row = sweep[(sweep["arm"] == "GPart") & (sweep["task"] == "sst2") & (sweep["d"] == 288)].iloc[0]
    assert row["n"] == 3 and row["lr"] == design.scaled_lr(design.ARMS["GPart"].grid[1], 288)
    text = (folder / "claims.md").read_text()
    assert "Holm" in text and "can decide" in text and "never the paper's" in text
    assert "SMOKE" not in text
    selection = (folder / "selection.md").read_text()
    assert "| SST-2 | 85.00 | 70.00 | +15.00 | yes |" in selection  # FT − LP = 15 validation points


def test_the_zero_shot_reference_is_a_row_and_a_level_line_once_computed(tmp_path, smoke):
    results = tmp_path / "copy"
    shutil.copytree(smoke, results)
    assert "zero-shot" not in (make_tables(results) / "main.md").read_text()
    (results / "zero-shot.json").write_text(json.dumps({"stsb": {"pearson": 87.01, "pairs": 1500}}))
    main = (make_tables(results) / "main.md").read_text()
    assert "| *zero-shot cosine, mean-pooled (no training)* | 0 | — | 87.01 |" in main


def test_zero_shot_cosine_of_mean_pooled_embeddings_tracks_the_gold_similarity(glue_dir):
    from experiments.studies.mini import zero_shot

    result = zero_shot.zero_shot_stsb(str(glue_dir), limit=48)
    assert result["pairs"] == 48 and 50 < result["pearson"] < 100  # no training: the checkpoint's own similarity
