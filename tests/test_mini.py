"""`make reproduce-mini` (experiments/studies/mini/design.py and driver.py): the plan docs/mini.md states (grids, choices on seed 0, shared head lr,
report seeds, d sweep), with fake finished records at the driver's own record paths; `--status` writes nothing;
(slow) a committed report cell reruns to its committed metric, and the smoke runs the pipeline end to end."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from mini_fakes import finish, write_fake

from experiments.studies.mini import design, driver

REPO = Path(__file__).resolve().parents[1]
COMMITTED = REPO / "results" / "mini"


def grid_winner(position: int):
    """Validation scores with the grid's `position`-th point best (an edge extension, if any, scores `extension`)."""

    def validation(run, extension: float = 0.0):
        grid = run.arm.grid
        if run.lr not in grid:
            return 0.80 + extension
        return 0.80 - 0.01 * abs(grid.index(run.lr) - position % len(grid))

    return validation


# ---------------------------------------------------------------- the plan's constants


def test_every_grid_has_four_points_a_factor_sqrt10_apart():
    for arm in (design.PROBE, *design.TUNED_ARMS):
        assert len(arm.grid) == 4, arm.label
        for low, high in zip(arm.grid, arm.grid[1:]):
            assert high / low == pytest.approx(math.sqrt(10), rel=2e-3), arm.label  # three significant digits
    assert design.BALANCED.grid == () and design.BALANCED.lr_from == "GPart"
    assert design.ARMS["GPart"].grid == (5e-3, 1.58e-2, 5e-2, 1.58e-1)
    assert design.ARMS["FT"].grid == (5e-6, 1.58e-5, 5e-5, 1.58e-4)
    assert design.PROBE.grid == (1e-3, 3.16e-3, 1e-2, 3.16e-2)
    non_isometric = design.ARMS["GPart (non-isometric)"].grid
    assert non_isometric[0] == pytest.approx(5e-3 / math.sqrt(design.GROUP_SIZE), rel=2e-3)


def test_report_seeds_exclude_the_selection_seed_and_the_sweep_seeds_are_report_seeds():
    assert design.SELECTION_SEED not in design.REPORT_SEEDS and len(design.REPORT_SEEDS) == 5
    assert set(design.D_SWEEP_SEEDS) <= set(design.REPORT_SEEDS)


def test_d_sweep_lr_keeps_the_step_size_of_the_main_d():
    assert design.D_SWEEP == (288, 28800) and design.MAIN_D == 2880
    assert design.scaled_lr(1.58e-2, 288) == pytest.approx(5e-2, rel=2e-3)
    assert design.scaled_lr(1.58e-2, 28800) == pytest.approx(5e-3, rel=2e-3)
    assert design.scaled_lr(1.58e-2, design.MAIN_D) == 1.58e-2


def test_main_d_keeps_the_papers_ratio_for_minilm_q_v(compose):
    cfg = compose(["experiment=glue/base/gpart-sst2", "+experiment/mini=gpart"])
    adapted = 6 * 2 * 384 * 384
    assert cfg.method.config.d == design.MAIN_D == adapted * 23_040 // 14_155_776 and design.ADAPTED_SIZE == adapted
    unilora = compose(["experiment=glue/base/unilora-sst2", "+experiment/mini=unilora"])
    assert unilora.method.config.theta_d_length == design.MAIN_D and unilora.method.config.unilora_dropout == 0.1


def test_a_run_composes_the_protocol_with_its_own_lrs(compose, tmp_path):
    run = design.Run(design.ARMS["GPart (non-isometric)"], "stsb", 3, 2.02e-4, 3.16e-3)
    cfg = compose(run.overrides(tmp_path))
    assert cfg.model.key == "minilm-l6" and cfg.task.key == "stsb" and cfg.task.train_subset == 2500
    assert cfg.trainer.lr == 2.02e-4 and cfg.trainer.head_lr == 3.16e-3 and cfg.seed == 3
    assert cfg.method.config.isometric is False and cfg.method.key == "GPart (non-isometric)"
    assert cfg.trainer.epochs == 5 and cfg.trainer.test_at == "best_epoch" and cfg.task.test_subset is None
    probe = compose(design.Run(design.PROBE, "sst2", 0, 1e-2, 1e-2, stage="selection").overrides(tmp_path))
    assert probe.trainer.head_lr == 1e-2 and probe.method.kind == "head_only"
    swept = compose(design.Run(design.ARMS["Uni-LoRA"], "sst2", 1, 5e-3, 1e-3, d=288).overrides(tmp_path))
    assert swept.method.config.theta_d_length == 288


def test_run_ids_of_the_study_in_flight_are_unchanged(tmp_path):
    """The first record of the running study (e25df69): any change to a run's config or hash moves it."""
    run = design.selection_runs(design.PROBE, "sst2", None)[0]
    path = driver.record_path(run, tmp_path)
    assert path == tmp_path / "selection" / "runs" / "glue-minilm-l6-lp-sst2-s0-d3a8022c" / "record.json"


# ---------------------------------------------------------------- choices with fake records


def test_choose_waits_for_every_grid_point_then_picks_the_best_inside_the_grid(tmp_path):
    runs = design.selection_runs(design.ARMS["GPart"], "sst2", 3.16e-3)
    for run in runs[:3]:
        write_fake(run, tmp_path, grid_winner(1)(run))
    choice, extension = driver.choose(runs, tmp_path)
    assert choice.lr is None and extension is None and choice.scores[runs[3].lr] is None
    write_fake(runs[3], tmp_path, grid_winner(1)(runs[3]))
    choice, extension = driver.choose(runs, tmp_path)
    assert choice.lr == runs[1].lr and extension is None and not choice.at_edge


@pytest.mark.parametrize("edge", ["top", "bottom"])
def test_a_winner_on_the_edge_adds_one_point_beyond_it_then_chooses_among_five(tmp_path, edge):
    runs = design.selection_runs(design.ARMS["LoRA"], "stsb", 1e-2)
    position = 3 if edge == "top" else 0
    for run in runs:
        write_fake(run, tmp_path, grid_winner(position)(run))
    choice, extension = driver.choose(runs, tmp_path)
    expected = runs[position].lr * (math.sqrt(10) if edge == "top" else 1 / math.sqrt(10))
    assert choice.lr is None and extension.lr == pytest.approx(expected, rel=2e-3)
    assert extension.head_lr == 1e-2 and extension.seed == design.SELECTION_SEED and extension.stage == "selection"
    write_fake(extension, tmp_path, 0.81)  # better still: chosen, and no second extension
    choice, again = driver.choose([*runs, extension], tmp_path)
    assert choice.lr == extension.lr and choice.extended == extension.lr and again is None and choice.at_edge
    write_fake(extension, tmp_path, 0.70)  # worse: the edge point stays chosen
    choice, _ = driver.choose([*runs, extension], tmp_path)
    assert choice.lr == runs[position].lr


def test_probe_extension_moves_the_head_lr_and_ties_go_to_the_smaller_lr(tmp_path):
    runs = design.selection_runs(design.PROBE, "sst2", None)
    assert all(run.head_lr == run.lr for run in runs)
    for run in runs:  # points 3 and 4 tie: the smaller lr wins, inside the grid, so no extension
        write_fake(run, tmp_path, 0.80 if run.lr in (runs[2].lr, runs[3].lr) else 0.75)
    choice, extension = driver.choose(runs, tmp_path)
    assert choice.lr == runs[2].lr and extension is None
    write_fake(runs[3], tmp_path, 0.81)  # the top point alone best: the extension is a probe run at a higher head lr
    choice, extension = driver.choose(runs, tmp_path)
    assert choice.lr is None and extension.lr == extension.head_lr == pytest.approx(0.1, rel=2e-3)  # 0.0999
    assert design.best_lr({1e-3: 0.8, 3e-3: 0.8, 1e-2: 0.7}) == 1e-3


@pytest.fixture(scope="module")
def chosen(tmp_path_factory):
    """SST-2's whole selection finished with the second grid point best everywhere: (results, state)."""
    results = tmp_path_factory.mktemp("selection")
    finish(results, ("sst2",), design.STUDY, grid_winner(1), stages=("selection",))
    return results, driver.state(results, ("sst2",))


def test_the_head_lr_is_the_probes_choice_for_every_arm(chosen):
    results, now = chosen
    head = now.choices[("LP", "sst2")].lr
    assert head == design.PROBE.grid[1]
    tuned = [run for run in now.ready if run.stage == "selection" and not run.arm.is_probe]
    assert len(tuned) == 4 * len(design.TUNED_ARMS) and {run.head_lr for run in tuned} == {head}
    report = [run for run in now.ready if run.stage == "report"]
    assert {run.head_lr for run in report} == {head}
    assert {run.arm.label for run in report} == set(design.ARMS)


def test_every_tuned_arm_reports_at_its_choice_and_balanced_at_gparts(chosen):
    results, now = chosen
    report = [run for run in now.ready if run.stage == "report" and run.d is None]
    for label, arm in design.ARMS.items():
        mine = [run for run in report if run.arm.label == label]
        expected = now.choices[(arm.lr_from or label, "sst2")].lr
        assert {run.lr for run in mine} == {expected} and expected is not None, label
        assert sorted(run.seed for run in mine) == list(design.REPORT_SEEDS), label
    balanced = {run.lr for run in report if run.arm is design.BALANCED}
    assert balanced == {now.choices[("GPart", "sst2")].lr}
    assert ("GPart (balanced)", "sst2") not in now.choices  # no grid of its own


def test_the_d_sweep_scales_the_chosen_lr(chosen):
    results, now = chosen
    sweep = [run for run in now.ready if run.d is not None]
    assert len(sweep) == len(design.D_SWEEP_ARMS) * len(design.D_SWEEP) * len(design.D_SWEEP_SEEDS)
    for run in sweep:
        assert run.lr == design.scaled_lr(now.choices[(run.arm.label, "sst2")].lr, run.d)
        assert run.seed in design.D_SWEEP_SEEDS and run.stage == "report"


def test_the_real_plan_counts_match_docs_mini(chosen):
    results, now = chosen
    by_stage = {}
    for run in now.ready:
        key = "sweep" if run.d is not None else run.stage
        by_stage[key] = by_stage.get(key, 0) + 1
    assert by_stage == {"selection": 4 + 4 * 5, "report": 7 * 5, "sweep": 2 * 2 * 3}
    assert len(design.nominal_plan()) == 2 * (24 + 35 + 12)
    assert all(not run.extra for run in now.ready)  # the study's runs carry no smoke cut


def test_the_smoke_design_is_small_and_leaves_the_studys_runs_alone(tmp_path):
    assert len(design.nominal_plan(("sst2",), design.SMOKE)) <= 8
    smoke = driver.state(tmp_path, ("sst2",), design=design.SMOKE).ready
    assert len(smoke) == 1 and smoke[0].extra == design.SMOKE_CUTS and smoke[0].arm.grid == (1e-3,)
    assert design.TRAIN_ROWS == {"sst2": 3500, "stsb": 2500}
    study = driver.state(tmp_path, ("sst2",)).ready
    assert [run.lr for run in study] == list(design.PROBE.grid) and not study[0].extra


# ---------------------------------------------------------------- the command line


def snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.rglob("*"))}


def test_status_writes_nothing(chosen, tmp_path, monkeypatch, capsys):
    results, _ = chosen
    monkeypatch.chdir(tmp_path)
    before, cwd_before = snapshot(results), snapshot(tmp_path)
    assert driver.main(["--status", "--tasks", "sst2", "--results", str(results)]) == 0
    out = capsys.readouterr().out
    assert snapshot(results) == before and snapshot(tmp_path) == cwd_before
    assert "selection  24/24 runs finished" in out and "report     0/35 runs finished" in out
    assert "choice     sst2 GPart: lr 0.0158" in out and "study is complete" not in out
    empty = tmp_path / "nothing"
    assert driver.main(["--status", "--results", str(empty)]) == 0 and not empty.exists()


def test_a_smoke_folder_and_a_study_folder_are_not_mixed(tmp_path, chosen):
    results, _ = chosen
    with pytest.raises(SystemExit):
        driver.main(["--smoke", "--results", str(results)])
    (tmp_path / driver.SMOKE_MARKER).write_text("smoke\n")
    assert driver.design_of(tmp_path) is design.SMOKE
    with pytest.raises(SystemExit):
        driver.main(["--results", str(tmp_path)])


def test_cost_check_reports_measured_over_estimated_per_method_and_task(tmp_path, capsys):
    """--dry-run reports how far the ETA's weights are off: finished records only, grouped by method and task."""
    estimate = design.estimated_seconds(design.Run(design.Arm("lora", "lora"), "sst2", 0, 0.0, 0.0))
    walls = {"a": ("finished", 2 * estimate), "b": ("finished", 4 * estimate), "c": ("failed", 100 * estimate)}
    for name, (status, wall) in walls.items():
        folder = tmp_path / "runs" / name
        folder.mkdir(parents=True)
        record = {
            "status": status,
            "task": "sst2",
            "timing": {"wall_s": wall},
            "command": "LoRA experiments/run.py experiment=glue/base/lora-sst2 seed=1",
        }
        (folder / "record.json").write_text(json.dumps(record))
    assert driver.cost_check(tmp_path) == {("lora", "sst2"): (2, pytest.approx(3.0))}
    assert driver.dry_run(tmp_path, ("sst2",), design.STUDY, jobs=2) == 0
    assert "lora      sst2  measured/estimated 3.00 over 2 finished runs" in capsys.readouterr().out


# ---------------------------------------------------------------- slow: committed records, the smoke


def committed_report_runs() -> list[design.Run]:
    """The planned report runs whose records are committed under results/mini/runs, cheapest first."""
    now = driver.state(COMMITTED)
    finished = [
        run
        for run in now.ready
        if run.stage == "report" and driver.status_of(driver.record_path(run, COMMITTED)) == "finished"
    ]
    return sorted(finished, key=lambda run: (design.estimated_seconds(run), run.name))


@pytest.mark.slow
def test_a_committed_report_cell_reruns_to_the_committed_metric(tmp_path, glue_dir):
    runs = committed_report_runs()
    if not runs:
        pytest.fail(
            f"no finished report record committed under {COMMITTED / 'runs'}: the study's records must be "
            "committed (make reproduce-mini, then git add results/mini) before this check can pass"
        )
    run = runs[0]
    committed = json.loads(driver.record_path(run, COMMITTED).read_text())
    env = dict(
        os.environ,
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        GLUE_DIR=str(glue_dir),
        HF_HUB_OFFLINE="1",
        WANDB_MODE="disabled",
    )
    subprocess.run(
        [sys.executable, "-m", "experiments.run", *run.overrides(tmp_path)],
        cwd=REPO,
        env=env,
        check=True,
        capture_output=True,
    )
    rerun = json.loads(driver.record_path(run, tmp_path).read_text())
    assert rerun["config_hash"] == committed["config_hash"]
    assert rerun["test_metric"] == committed["test_metric"], f"{run.name}: rerun differs from the committed record"
    assert [e["validation"] for e in rerun["epochs"]] == [e["validation"] for e in committed["epochs"]]


@pytest.mark.slow
def test_smoke_runs_the_pipeline_end_to_end_and_skips_finished_runs(tmp_path, glue_dir):
    env = dict(os.environ, GLUE_DIR=str(glue_dir), HF_HUB_OFFLINE="1", WANDB_MODE="disabled")
    command = [
        sys.executable,
        "-m",
        "experiments.studies.mini.driver",
        "--smoke",
        "--tasks",
        "sst2",
        "--jobs",
        "1",
        "--results",
        str(tmp_path),
    ]
    first = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    tables = tmp_path / "tables"
    for name in ("main.md", "claims.md", "claims.csv", "selection.md", "d-sweep.md", "README.md"):
        assert (tables / name).is_file(), name
    assert (tmp_path / "figures" / "validation-curves.png").is_file()
    assert "SMOKE" in (tables / "claims.md").read_text() and (tmp_path / "selection" / "README.md").is_file()
    main = (tables / "main.md").read_text()
    assert "| GPart | 2,880 |" in main and "(n=1)" in main
    again = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    assert again.returncode == 0 and "reproduce-mini: 11 runs finished, 0 ready" in again.stdout, again.stdout[-2000:]
    status = subprocess.run([*command, "--status"], cwd=REPO, env=env, capture_output=True, text=True)
    assert "11 of 11 known runs finished" in status.stdout and "the study is complete" in status.stdout
