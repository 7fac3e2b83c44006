"""`make demo`: SST-2 when GLUE data is reachable (its synthetic task when not); each row is the study's SST-2 seed-0
cell at its tuned lrs, reused from the study's selection records when they exist, else run; before any tuning, the
documented fallback."""

from __future__ import annotations

import json

import pytest
from mini_fakes import finish, write_fake

from experiments.studies.mini import demo, design, driver


def test_demo_uses_glue_dir_when_it_holds_sst2(glue_dir, monkeypatch):
    monkeypatch.setenv("GLUE_DIR", str(glue_dir))
    reachable, why = demo.glue_reachable()
    assert reachable and "872 test rows" in why


def test_demo_falls_back_when_neither_glue_dir_nor_the_hub_answers(monkeypatch):
    import datasets

    monkeypatch.delenv("GLUE_DIR", raising=False)
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: (_ for _ in ()).throw(ConnectionError("offline")))
    reachable, why = demo.glue_reachable()
    assert not reachable and "GLUE_DIR" in why


def best_second(run):
    grid = run.arm.grid
    return 0.8 - 0.01 * abs((grid.index(run.lr) if run.lr in grid else 9) - 1)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """A study whose SST-2 selection has finished (second grid point chosen everywhere)."""
    results = tmp_path_factory.mktemp("study")
    finish(results, ("sst2",), design.STUDY, best_second, stages=("selection",))
    return results


def test_before_any_tuning_every_row_is_the_stated_fallback(compose, tmp_path):
    cells = demo.plan_cells(demo.METHODS, True, tmp_path / "demo", study=tmp_path / "no-study")
    assert {cell.source for cell in cells} == {"fallback"}
    for cell in cells:
        cfg = compose(cell.run.overrides(tmp_path / "demo"))
        arm = cell.run.arm
        assert cfg.model.key == "minilm-l6" and cfg.task.key == "sst2" and cfg.seed == 0
        assert cfg.task.train_subset == 2000 and cfg.trainer.epochs == 3 and cfg.task.test_subset is None
        assert cfg.trainer.head_lr == demo.FALLBACK_HEAD_LR
        if not arm.is_probe:
            assert cfg.trainer.lr == demo.FALLBACK_LRS[arm.label] and demo.FALLBACK_LRS[arm.label] in arm.grid
        assert cell.record.parent.parent.parent == tmp_path / "demo" / "selection"
    assert demo.FALLBACK_HEAD_LR in design.PROBE.grid


def test_with_the_study_tuned_each_row_is_its_selection_cell_reused_from_the_study(study, tmp_path, compose):
    chosen = demo.study_choices(study)
    cells = demo.plan_cells(demo.METHODS, True, tmp_path / "demo", study=study)
    assert {cell.source for cell in cells} == {"reused"}
    for cell in cells:
        arm = cell.run.arm
        assert cell.run.lr == chosen[arm.label] == arm.grid[1] and cell.run.head_lr == chosen["LP"]
        assert cell.run in driver.state(study, ("sst2",)).ready  # exactly one of the study's runs
        assert cell.record == driver.record_path(cell.run, study) and cell.record.is_file()
        cfg = compose(cell.run.overrides(tmp_path))
        assert cfg.task.train_subset == design.TRAIN_ROWS["sst2"] and cfg.trainer.epochs == 5


def test_a_tuned_cell_whose_record_is_missing_is_run_as_the_study_cell(study, tmp_path):
    chosen = demo.study_choices(study)
    cells = demo.plan_cells(["lora"], True, tmp_path / "demo", study=tmp_path / "elsewhere", chosen=chosen)
    (cell,) = cells
    assert cell.source == "study cell" and not cell.run.extra and cell.run.lr == chosen["LoRA"]
    assert cell.record == driver.record_path(cell.run, tmp_path / "demo")


def test_a_partly_tuned_study_runs_the_fallback_only_where_no_choice_exists(tmp_path):
    chosen = {"LP": 3.16e-3, "GPart": 1.58e-2}
    cells = {c.method: c for c in demo.plan_cells(demo.METHODS, True, tmp_path, study=tmp_path, chosen=chosen)}
    assert cells["gpart"].source == "study cell" and cells["lora"].source == "fallback"
    assert cells["lora"].run.head_lr == 3.16e-3 and cells["lora"].run.lr == demo.FALLBACK_LRS["LoRA"]


def test_the_synthetic_task_replaces_glue(compose, tmp_path):
    for cell in demo.plan_cells(demo.METHODS, False, tmp_path, study=tmp_path / "none"):
        cfg = compose(cell.run.overrides(tmp_path))
        assert cfg.task.key == "synthetic-sentiment" and "train_subset" not in cfg.task


def test_demo_reusing_the_study_trains_nothing_and_writes_its_table(study, tmp_path, glue_dir, monkeypatch, capsys):
    monkeypatch.setenv("GLUE_DIR", str(glue_dir))
    for run in driver.state(study, ("sst2",)).ready:  # the fake records lack what the table prints: add it
        if run.stage == "selection":
            path = write_fake(run, study, best_second(run))
            record = driver.records.read(path)
            record.update(
                {"head_params": 770, "timing": {"median_step_s": 0.2, "wall_s": 100.0}, "memory": {"peak_bytes": 2**28}}
            )
            path.write_text(json.dumps(record))
    assert demo.main(["--results", str(tmp_path / "demo"), "--study", str(study)]) == 0
    out = capsys.readouterr().out
    assert "5 rows, 0 to train" in out and "the study's selection record, reused" in out
    assert (tmp_path / "demo" / "table-sst2.md").is_file() and not (tmp_path / "demo" / "selection").exists()
