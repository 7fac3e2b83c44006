"""`make reproduce-mini-base` (experiments/studies/mini/paper_shape.py): C1 at the paper's shape, lrs carried over from the MiniLM
study by the N/d rule and checked on seed 0's validation split."""

from __future__ import annotations

from pathlib import Path

from experiments.studies.mini import design, driver, paper_shape

MINILM = {("LP", "sst2"): 1e-2, ("GPart", "sst2"): 5e-2, ("Uni-LoRA", "sst2"): 1.58e-2, ("FT", "sst2"): 5e-5}


def test_the_mpnet_study_keeps_the_minilm_ratio_of_adapted_coordinates_per_theta_entry():
    assert 14_155_776 / paper_shape.D == design.ADAPTED_SIZE / design.MAIN_D


def test_each_method_checks_three_lrs_around_the_minilm_choice_before_reporting(monkeypatch):
    scores = {}
    monkeypatch.setattr(driver, "validation_score", lambda run, results: scores.get((run.arm.label, run.lr)))
    now = paper_shape.state(Path("/tmp/unused"), MINILM, tasks=("sst2",))
    checks = [r for r in now.ready if r.stage == "selection"]
    assert sorted(r.lr for r in checks if r.arm.label == "GPart") == [0.0158, 0.05, 0.158]
    assert {r.head_lr for r in now.ready} == {1e-2} and {r.d for r in checks} == {paper_shape.D}
    assert not [r for r in now.ready if r.stage == "report" and r.arm.label in paper_shape.CHECKED]
    scores.update({("GPart", 0.0158): 0.80, ("GPart", 0.05): 0.82, ("GPart", 0.158): 0.81})
    now = paper_shape.state(Path("/tmp/unused"), MINILM, tasks=("sst2",))
    gpart = [r for r in now.ready if r.stage == "report" and r.arm.label == "GPart"]
    assert {(r.seed, r.lr) for r in gpart} == {(s, 0.05) for s in paper_shape.REPORT_SEEDS}
    levels = [r for r in now.ready if r.arm.label in paper_shape.LEVEL_LINES]
    assert {(r.arm.label, r.lr, r.d) for r in levels} == {("FT", 5e-5, None), ("LP", 1e-2, None)}


def test_the_runs_compose_to_mpnet_at_d_23040(compose):
    run = design.Run(design.ARMS["Uni-LoRA"], "sst2", 1, 0.0158, 0.01, paper_shape.D, "report", paper_shape.MODEL)
    cfg = compose(run.overrides(Path("/tmp/base")))
    assert cfg.model.key == "mpnet-base" and cfg.method.config.theta_d_length == 23_040
    assert cfg.trainer.test_at == "best_epoch" and cfg.task.train_subset == design.TRAIN_ROWS["sst2"]


def test_nothing_runs_before_the_minilm_study_chose(monkeypatch):
    monkeypatch.setattr(driver, "validation_score", lambda run, results: None)
    now = paper_shape.state(Path("/tmp/unused"), {}, tasks=("sst2", "stsb"))
    assert now.ready == [] and len(now.waiting) == 2


def _extended(scores_by_lr: dict) -> tuple[list[float], float | None]:
    runs = paper_shape.check_runs(design.ARMS["Uni-LoRA"], "sst2", 0.158, 0.01)
    runs, chosen, _ = paper_shape.checked_lr(runs, Path("/unused"), lambda run, _: scores_by_lr.get(run.lr))
    return sorted(r.lr for r in runs), chosen


def test_a_check_whose_points_all_collapse_extends_downward_at_most_three_times():
    collapsed = dict.fromkeys([0.05, 0.158, 0.5], 0.5581)
    assert _extended(collapsed) == ([0.0158, 0.05, 0.158, 0.5], None)  # the new point is pending
    assert _extended({**collapsed, 0.0158: 0.90}) == ([0.005, 0.0158, 0.05, 0.158, 0.5], None)
    learning = {**collapsed, 0.0158: 0.90, 0.005: 0.88}
    assert _extended(learning) == ([0.005, 0.0158, 0.05, 0.158, 0.5], 0.0158)
    still_collapsed = {**collapsed, 0.0158: 0.5581, 0.005: 0.5581, 0.00158: 0.5581}
    assert _extended(still_collapsed) == ([0.00158, 0.005, 0.0158, 0.05, 0.158, 0.5], 0.00158)


def test_a_check_extends_past_the_upper_edge_and_not_from_the_middle():
    assert _extended({0.05: 0.80, 0.158: 0.85, 0.5: 0.82}) == ([0.05, 0.158, 0.5], 0.158)
    assert _extended({0.05: 0.80, 0.158: 0.85, 0.5: 0.88, 1.58: 0.70}) == ([0.05, 0.158, 0.5, 1.58], 0.5)
