"""experiments/mini_lr_scan.py: which runs the θ-lr scan plans, where their records live, and what its report says."""
from __future__ import annotations

import math

import pytest

from experiments import mini, mini_lr_scan, records

HEAD_LRS = {"gpart": 1e-3, "unilora": 1e-3, "lora": 1e-3, "full": 1e-3, "head_only": 3e-3}


def write_gpart_reference(results, *, size=1000, d=10, lr=0.004, weight_decay=0.2):
    path = mini_lr_scan.reference("GPart", mini_lr_scan.TASKS[0], HEAD_LRS, results).record_path
    records.write_atomic(path, {"status": "finished", "adapted_space_size": size,
                                "config": {"method": {"lr": lr, "config": {"d": d}},
                                           "trainer": {"weight_decay": weight_decay}}})


@pytest.fixture(scope="module")
def planned(tmp_path_factory):
    results = tmp_path_factory.mktemp("mini")
    write_gpart_reference(results, lr=5e-3, weight_decay=0.1, size=1000, d=10)   # g = 100, √g = 10
    return results, mini_lr_scan.plan(results, HEAD_LRS, mini_lr_scan.paper_values(results, HEAD_LRS))


def test_equivalence_run_takes_lr_times_sqrt_group_and_decay_over_it(planned):
    _, cells = planned
    equivalent = [c for c in cells if c.kind == "equivalent"]
    assert [c.task for c in equivalent] == list(mini_lr_scan.TASKS)
    for cell in equivalent:
        assert cell.lr == pytest.approx(0.05) and cell.weight_decay == pytest.approx(0.01)
        assert "method.lr=0.05" in cell.run.extra and "trainer.weight_decay=0.01" in cell.run.extra


def test_paper_lr_cells_are_the_sweeps_records_and_the_rest_go_to_the_scan_folder(planned):
    results, cells = planned
    scan = [c for c in cells if c.kind == "scan"]
    assert len(scan) == len(mini_lr_scan.TASKS) * len(mini_lr_scan.SCANNED) * len(mini_lr_scan.LRS)
    for cell in scan:
        at_paper_lr = math.isclose(cell.lr, 5e-3)
        assert cell.results == (results if at_paper_lr else results / mini_lr_scan.FOLDER)
        assert any(e.startswith("method.lr=") for e in cell.run.extra) != at_paper_lr
        assert f"trainer.head_lr={HEAD_LRS[cell.run.variant.method]:g}" in cell.run.extra
    sweep_run = next(c for c in scan if c.label == "GPart" and math.isclose(c.lr, 5e-3))
    assert sweep_run.record_path == mini.record_path(mini.with_head_lrs(
        [mini.Run(mini.MAIN_METHODS[0], sweep_run.task, 0)], HEAD_LRS)[0], results)
    references = {(c.label, c.task) for c in cells if c.kind == "reference"}
    assert references == {(label, task) for label in ("non-isometric", "FT") for task in mini_lr_scan.TASKS}


def test_scan_cells_of_one_method_differ_only_in_the_lr(planned):
    _, cells = planned
    paths = {c.record_path for c in cells if c.kind == "scan" and c.label == "GPart" and c.task == "sst2"}
    assert len(paths) == len(mini_lr_scan.LRS)


def test_without_the_sweeps_gpart_record_the_scan_says_to_run_the_sweep_first(tmp_path):
    with pytest.raises(SystemExit, match="make reproduce-mini"):
        mini_lr_scan.paper_values(tmp_path, HEAD_LRS)


def row(label, lr, test, validation, kind="scan", task="stsb", weight_decay=None):
    return {"kind": kind, "label": label, "task": task, "lr": lr, "test": test, "validation": validation,
            "weight_decay": weight_decay}


def scan_rows(gpart_validation, unilora_validation):
    rows = [row("GPart", lr, 10.0 * i, v) for i, (lr, v) in enumerate(zip(mini_lr_scan.LRS, gpart_validation))]
    return rows + [row("Uni-LoRA", lr, 50.0 + i, v) for i, (lr, v) in
                   enumerate(zip(mini_lr_scan.LRS, unilora_validation))]


def test_best_lr_is_picked_on_validation_never_on_test():
    rows = scan_rows([1, 5, 3, 2, 0], [9, 1, 1, 1, 1])
    best = mini_lr_scan.best_on_validation(rows, "GPart", "stsb")
    assert best["lr"] == mini_lr_scan.LRS[1] and best["test"] == 10.0   # the test-best (lr 0.15, 40) is not picked


def test_ties_go_to_the_smaller_lr_and_an_unfinished_scan_picks_nothing():
    rows = scan_rows([2, 7, 7, 1, 1], [1] * 5)
    assert mini_lr_scan.best_on_validation(rows, "GPart", "stsb")["lr"] == mini_lr_scan.LRS[1]
    rows[3]["validation"] = rows[3]["test"] = None
    assert mini_lr_scan.best_on_validation(rows, "GPart", "stsb") is None


def test_task_section_bolds_the_validation_pick_and_states_the_gap_at_each_best_lr():
    rows = scan_rows([1, 5, 3, 2, 0], [9, 1, 1, 1, 1])
    rows += [row("GPart", 0.12, 33.0, 34.0, kind="equivalent", weight_decay=0.004),
             row("non-isometric", None, 31.0, 32.0, kind="reference"), row("FT", None, 70.0, 71.0, kind="reference")]
    text = "\n".join(mini_lr_scan.task_section(rows, "stsb", "Pearson", 5e-3))
    assert "| 0.005 | **10.00 (5.00)** | 51.00 (1.00) |" in text
    assert "| 0.0015 | 0.00 (1.00) | **50.00 (9.00)** |" in text
    assert "GPart − Uni-LoRA = **-40.00** Pearson points" in text     # 10.00 (GPart at 5e-3) − 50.00 (Uni-LoRA)
    assert "(at the paper's lr: -41.00)" in text
    assert "**33.00 (34.00)**" in text and "31.00 (32.00)" in text and "weight decay 0.004" in text


@pytest.mark.parametrize("main", [mini_lr_scan.main, mini.main])
def test_rejects_non_positive_jobs_naming_the_argument_and_value(capsys, main):
    with pytest.raises(SystemExit):
        main(["--jobs", "0"])
    assert "argument --jobs: got 0, must be at least 1" in capsys.readouterr().err
