"""`make reproduce-mini` (experiments/mini.py): the sweep it defines, the head-lr choice, skipping variants the
library lacks, and (slow) the committed records rerun to the same metric."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from experiments import mini

REPO = Path(__file__).resolve().parents[1]
COMMITTED = REPO / "results" / "mini"


def test_main_d_keeps_the_papers_ratio_for_minilm_q_v(compose):
    cfg = compose(["experiment=glue/base/gpart-sst2", "+experiment/mini=gpart"])
    adapted = 6 * 2 * 384 * 384  # MiniLM-L6: 6 layers, query and value, 384 x 384
    assert cfg.method.config.d == mini.MAIN_D == adapted * 23_040 // 14_155_776
    assert adapted * 23_040 % 14_155_776 == 0  # exactly the ratio, no rounding
    unilora = compose(["experiment=glue/base/unilora-sst2", "+experiment/mini=unilora"])
    assert unilora.method.config.theta_d_length == mini.MAIN_D


def test_every_method_runs_every_task_on_the_same_seeds():
    runs = mini.plan()
    cells = {}
    for run in runs:
        if not run.extra:
            cells.setdefault(run.variant.label, set()).add((run.task, run.seed))
    expected = {(t, s) for t in mini.TASKS for s in mini.SEEDS}
    for variant in mini.MAIN_METHODS:
        assert cells[variant.label] == expected, variant.label
    assert len(mini.SEEDS) >= 3 and len(set(runs)) == len(runs)


def test_d_sweep_spans_100x_with_at_least_four_values_on_two_tasks_for_both_methods():
    assert len(mini.D_SWEEP) >= 4 and max(mini.D_SWEEP) / min(mini.D_SWEEP) >= 100 and mini.MAIN_D in mini.D_SWEEP
    assert len(mini.SWEEP_TASKS) >= 2
    for method, key in (("gpart", "method.config.d"), ("unilora", "method.config.theta_d_length")):
        for task in mini.SWEEP_TASKS:
            ds = {mini.MAIN_D} | {int(r.extra[0].split("=")[1]) for r in mini.plan()
                                  if r.extra and r.variant.method == method and r.task == task and r.seed == 0
                                  and r.extra[0].startswith(key)}
            assert ds == set(mini.D_SWEEP), (method, task)


def test_protocol_keeps_the_papers_adapter_lrs_and_changes_only_the_small_model_values(compose):
    for variant in mini.MAIN_METHODS[:5]:
        for task in mini.TASKS:
            paper = compose([f"experiment=glue/base/{variant.method}-{task}"])
            ours = compose(mini.Run(variant, task, 0).overrides(Path("/tmp/x")))
            assert ours.trainer.lr == paper.trainer.lr and ours.method.key == paper.method.key
            assert ours.model.key == "minilm-l6" and ours.task.key == paper.task.key
            assert ours.task.test_subset is None  # test = the whole GLUE dev set


def test_variants_the_library_lacks_are_skipped_with_one_line(monkeypatch, capsys):
    monkeypatch.setattr(mini, "gpart_fields", lambda: {"d", "seed", "projection"})
    kept = mini.available(mini.plan(("sst2",), (0,)))
    out = capsys.readouterr().out
    assert "GPart (Fastfood)" in {r.variant.label for r in kept}
    assert "GPart (block scope)" not in {r.variant.label for r in kept}
    assert "GPartConfig has no field 'partition_scope'" in out and out.count("\n") == 3  # one line per field


def test_head_lr_is_chosen_only_once_every_trial_finished():
    rows = [{"method": m, "head_lr": lr, "score": 0.8 + (lr == 1e-2) * 0.01 * (m == "gpart")}
            for lr in mini.TUNING_HEAD_LRS for m in ("gpart", "lora")]
    chosen = mini.choose_head_lrs(rows)
    assert chosen == {"gpart": 1e-2, "lora": mini.TUNING_HEAD_LRS[0]}  # ties keep the earlier trial
    rows[-1]["score"] = None
    assert mini.choose_head_lrs(rows) is None


def test_tuned_head_lr_reaches_every_run_of_its_method():
    runs = mini.with_head_lrs(mini.plan(("cola",), (1,)), {m: i * 1e-3 for i, m in enumerate(mini.TRAIN_S_PER_TOKEN, 1)})
    for run in runs:
        assert run.extra[-1] == f"trainer.head_lr={(list(mini.TRAIN_S_PER_TOKEN).index(run.variant.method) + 1) * 1e-3:g}"


def test_cost_model_matches_the_committed_sweeps_run_walls():
    """The ETA and --dry-run are only as good as the cost model: within 10% of the committed records in total, and
    within a factor 1.5 for every method and task (the model knows tokens and methods, not the machine's moods)."""
    pairs = {}
    for path in sorted((COMMITTED / "runs").glob("*/record.json")):
        record = mini.records.read(path) or {}
        if record.get("status") != "finished":
            continue
        method = record["command"].split("experiment=glue/base/")[1].split("-")[0]   # configs/method/<method>.yaml
        cell = pairs.setdefault((method, record["task"]), [0.0, 0.0])
        cell[0] += record["timing"]["wall_s"]
        cell[1] += mini.estimated_seconds(mini.Run(mini.Variant(method, method), record["task"], 0))
    if len(pairs) < 10:
        pytest.skip("fewer than 10 committed method x task cells under results/mini/runs")
    measured, estimated = (sum(cell[i] for cell in pairs.values()) for i in (0, 1))
    assert measured / estimated == pytest.approx(1.0, abs=0.10)
    assert all(2 / 3 < m / e < 1.5 for m, e in pairs.values()), {k: round(m / e, 2) for k, (m, e) in pairs.items()}


# ---------------------------------------------------------------- slow: the committed records


def committed_cells() -> dict[str, mini.Run]:
    """Committed run id -> the sweep run that wrote it (head lrs from the committed trials)."""
    chosen = mini.choose_head_lrs(mini.trial_scores(mini.tuning_plan(), COMMITTED))
    if chosen is None:
        return {}
    cells = {}
    for run in mini.with_head_lrs(mini.available(mini.plan()), chosen):
        path = mini.record_path(run, COMMITTED)
        if mini.status_of(path) == "finished":
            cells[path.parent.name] = run
    return cells


@pytest.mark.slow
def test_a_committed_cell_reruns_to_the_committed_metric(tmp_path, glue_dir):
    cells = committed_cells()
    if not cells:
        pytest.skip(f"no finished record committed under {COMMITTED / 'runs'} yet: run `make reproduce-mini` and "
                    "commit results/mini, then this test reruns one of its cells")
    run_id, run = min(cells.items(), key=lambda item: (mini.estimated_seconds(item[1]), item[0]))
    committed = json.loads((COMMITTED / "runs" / run_id / "record.json").read_text())
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", GLUE_DIR=str(glue_dir), HF_HUB_OFFLINE="1",
               WANDB_MODE="disabled")
    subprocess.run([sys.executable, "-m", "experiments.run", *run.overrides(tmp_path)], cwd=REPO, env=env, check=True,
                   capture_output=True)
    rerun = json.loads((tmp_path / "runs" / run_id / "record.json").read_text())
    assert rerun["config_hash"] == committed["config_hash"]
    assert rerun["test_metric"] == committed["test_metric"], f"{run.name}: rerun differs from the committed record"
    assert [e["validation"] for e in rerun["epochs"]] == [e["validation"] for e in committed["epochs"]]


@pytest.mark.slow
def test_smoke_sweep_skips_finished_runs_and_writes_tables_and_claims(tmp_path, glue_dir, monkeypatch):
    monkeypatch.setenv("GLUE_DIR", str(glue_dir))
    command = [sys.executable, "-m", "experiments.mini", "--smoke", "--jobs", "1", "--results", str(tmp_path)]
    first = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
    assert (tmp_path / "tables" / "claims-glue-minilm-l6.md").exists()
    assert (tmp_path / "tables" / "glue-minilm-l6.md").exists() and (tmp_path / "tuning" / "README.md").exists()
    again = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    assert again.returncode == 0 and "2 head-lr trials (2 finished) + 2 sweep runs (2 finished)" in again.stdout
