"""The paper-shape study's report (experiments/studies/mini/paper_shape_report.py): records matched to the plan by what
they ran (no model needed), C1 per task with Holm beside the CPU study's committed C1 rows, deterministic files."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from experiments.report import tables
from experiments.studies.mini import design, driver, paper_shape, paper_shape_report

MINILM_RESULTS = driver.DEFAULT_RESULTS
# GPart − Uni-LoRA per report seed: clearly within the margin on SST-2, clearly beyond it on STS-B.
DIFFERENCES = {"sst2": (2.0, 2.4, 1.8), "stsb": (-5.0, -5.6, -4.7)}
BASE_SCORE = {"sst2": 0.85, "stsb": 0.80}
PARAMS = {"GPart": 23_040, "Uni-LoRA": 23_040, "FT": 109_486_464, "LP": 0}


def _record(run: design.Run, validation: float, test: float | None, model: str = "mpnet-base", status="finished"):
    method = {} if run.d is None else {"config": {"d" if run.arm.method == "gpart" else "theta_d_length": run.d}}
    metric = "accuracy" if run.task == "sst2" else "pearson"
    lr = run.head_lr if run.arm.is_probe else run.lr
    return {
        "run_id": f"glue-{model}-{run.arm.method}-{run.task}-s{run.seed}-{lr:g}",
        "status": status,
        "model": model,
        "method": run.arm.label,
        "task": run.task,
        "seed": run.seed,
        "metric": metric,
        "config": {"trainer": {"lr": lr, "head_lr": run.head_lr}, "method": method},
        "validation_metric": validation,
        "test_metric": test,
        "trainable_params": PARAMS[run.arm.label],
        "best_epoch": 4,
        "epochs": [{"epoch": e, "validation": {metric: validation - 0.01 * (4 - e)}} for e in range(1, 6)],
        "attempts": [{"wall_s": 60.0}],
    }


def _write(folder: Path, record: dict) -> None:
    path = folder / record["run_id"] / "record.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(record))


SENSITIVITY_GAIN = 2.0  # GPart at its runner-up lr scores this many points more than at its chosen one


def _test_score(run: design.Run) -> float:
    base = BASE_SCORE[run.task] + 0.002 * run.seed
    if run.arm.label == "GPart":
        runner_up = SENSITIVITY_GAIN / 100 if run.stage == paper_shape.SENSITIVITY else 0.0
        return base + DIFFERENCES[run.task][run.seed - 1] / 100 + runner_up
    return {"Uni-LoRA": base, "FT": base + 0.05, "LP": base - 0.10}[run.arm.label]


@pytest.fixture(scope="module")
def study_folder(tmp_path_factory) -> Path:
    """A finished paper-shape study of synthetic records, planned from the committed MiniLM choices."""
    results = tmp_path_factory.mktemp("mini-base")
    (results / paper_shape.MARKER).write_text("paper-shape study\n")
    choices = paper_shape.minilm_choices(MINILM_RESULTS)
    for round_ in range(2):  # the checks first, then the report runs the choices make ready
        found = paper_shape.FinishedRecords(results)
        now = paper_shape.state(results, choices, validation=found.validation)
        for run in now.ready:
            if found.get(run) is not None:
                continue
            if run.stage == "selection":  # the middle lr of each check wins
                middle = sorted(
                    r.lr for r in now.ready if r.stage == "selection" and r.arm == run.arm and r.task == run.task
                )[1]
                _write(results / "selection" / "runs", _record(run, 0.80 if run.lr == middle else 0.78, None))
            elif round_ == 1 or run.arm.label in paper_shape.LEVEL_LINES:
                validation = {"FT": 0.90, "LP": 0.70}.get(run.arm.label, 0.80)
                _write(results / "runs", _record(run, validation, _test_score(run)))
    some_report_run = next(r for r in now.ready if r.stage == "report")
    _write(results / "runs", _record(some_report_run, 0.9, 0.9, model="minilm-l6"))  # another model: not this study
    return results


def test_the_report_reads_the_checks_the_report_runs_and_c1_per_task(study_folder):
    assert tables.main(["--runs", str(study_folder / "runs"), "--out", str(study_folder)]) == 0
    folder = study_folder / "tables"
    assert sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) == [
        "README.md",
        "checks.csv",
        "checks.md",
        "claims.csv",
        "claims.md",
        "main.csv",
        "main.md",
        "sensitivity-pairs.csv",
        "sensitivity.csv",
        "sensitivity.md",
    ]
    assert (study_folder / "figures" / "c1-by-model.png").stat().st_size > 10_000
    assert "16 of 16 report runs known so far have finished (complete)" in (folder / "README.md").read_text()
    checks = pd.read_csv(folder / "checks.csv")
    assert len(checks) == 12 and checks["chosen"].sum() == 4
    claims = pd.read_csv(folder / "claims.csv").set_index(["model", "task"])
    base = paper_shape_report.BASE_LABEL
    assert claims.loc[(base, "sst2"), "verdict"] == "supported"
    assert claims.loc[(base, "stsb"), "verdict"] == "contradicted"
    assert claims.loc[(base, "sst2"), "mean"] == pytest.approx(sum(DIFFERENCES["sst2"]) / 3, abs=1e-3)
    assert claims.loc[(base, "stsb"), "n"] == 3
    minilm = claims.xs(paper_shape_report.MINILM_LABEL)
    assert list(minilm["n"]) == [5, 5]  # the CPU study's committed C1 rows, read from its records
    main = pd.read_csv(folder / "main.csv").set_index(["arm", "task"])
    assert main.loc[("GPart", "sst2"), "n"] == 3 and main.loc[("FT", "stsb"), "n"] == 1


def test_the_files_are_a_function_of_the_records(study_folder, tmp_path):
    tables.main(["--runs", str(study_folder / "runs"), "--out", str(study_folder), "--no-figures"])
    first = {p.name: p.read_bytes() for p in (study_folder / "tables").iterdir()}
    tables.main(["--runs", str(study_folder / "runs"), "--out", str(study_folder), "--no-figures"])
    assert {p.name: p.read_bytes() for p in (study_folder / "tables").iterdir()} == first


def test_a_record_is_matched_by_what_it_ran_not_by_its_folder():
    run = design.Run(design.ARMS["GPart"], "sst2", 2, 0.158, 0.01, paper_shape.D, "report", paper_shape.MODEL)
    record = _record(run, 0.8, 0.8)
    assert paper_shape.record_key(record) == paper_shape.run_key(run)
    other_lr = design.Run(design.ARMS["GPart"], "sst2", 2, 0.05, 0.01, paper_shape.D, "report", paper_shape.MODEL)
    assert paper_shape.record_key(record) != paper_shape.run_key(other_lr)
    probe = design.Run(design.ARMS["LP"], "stsb", 1, 0.0999, 0.0999, None, "report", paper_shape.MODEL)
    assert paper_shape.record_key(_record(probe, 0.5, 0.4)) == paper_shape.run_key(probe)


def test_status_reads_the_records_without_the_model(study_folder, monkeypatch, capsys):
    from experiments.runner import model_store

    def no_model(*_):
        raise AssertionError("--status must not fetch or hash the model")

    monkeypatch.setattr(model_store, "ensure", no_model)
    assert paper_shape.main(["--status", "--results", str(study_folder)]) == 0
    out = capsys.readouterr().out
    assert "choice  stsb Uni-LoRA: lr 0.05" in out
    assert "34/34 runs finished of those known now" in out


def test_the_sensitivity_runs_sit_beside_c1_and_never_in_it(study_folder):
    tables.main(["--runs", str(study_folder / "runs"), "--out", str(study_folder), "--no-figures"])
    folder = study_folder / "tables"
    assert "6 of 6 lr-sensitivity runs finished" in (folder / "README.md").read_text()
    scores = pd.read_csv(folder / "sensitivity.csv").set_index(["arm", "role"])
    chosen, second = scores.loc[("GPart", "chosen"), "lr"], scores.loc[("GPart", "runner-up"), "lr"]
    assert second == pytest.approx(chosen / design.GRID_STEP, rel=1e-2)  # the tie among the other points: smaller lr
    assert scores.loc[("GPart", "runner-up"), "median"] == pytest.approx(
        scores.loc[("GPart", "chosen"), "median"] + SENSITIVITY_GAIN, abs=1e-3
    )
    pairs = pd.read_csv(folder / "sensitivity-pairs.csv").set_index(["gpart_role", "unilora_role"])
    primary = sum(DIFFERENCES["sst2"]) / 3
    assert pairs.loc[("chosen", "chosen"), "mean"] == pytest.approx(primary, abs=1e-3)
    assert pairs.loc[("runner-up", "chosen"), "mean"] == pytest.approx(primary + SENSITIVITY_GAIN, abs=1e-3)
    assert set(pairs["n"]) == {3}
    claims = pd.read_csv(folder / "claims.csv").set_index(["model", "task"])
    assert claims.loc[(paper_shape_report.BASE_LABEL, "sst2"), "mean"] == pytest.approx(primary, abs=1e-3)
    main = pd.read_csv(folder / "main.csv").set_index(["arm", "task"])
    assert main.loc[("GPart", "sst2"), "n"] == 3
