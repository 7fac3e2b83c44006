"""`make demo` picks SST-2 when GLUE data is reachable and its own synthetic task when not, and runs each method's
paper SST-2 experiment through the runner with only the CPU cuts changed."""
from __future__ import annotations

import pytest

from experiments import demo


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


@pytest.mark.parametrize("use_glue", [True, False])
def test_demo_runs_the_sweeps_sst2_cell_of_each_method(compose, tmp_path, use_glue):
    from experiments import mini

    for method in demo.METHODS:
        overrides = demo.overrides_for(method, use_glue, tmp_path, head_lr=3e-3)
        cfg = compose(overrides)
        paper = compose([f"experiment=glue/base/{method}-sst2"])
        assert cfg.method.key == paper.method.key and cfg.trainer.lr == paper.trainer.lr  # paper adapter lr
        assert cfg.model.key == "minilm-l6" and cfg.trainer.epochs == mini.protocol()[2] and cfg.trainer.head_lr == 3e-3
        assert cfg.task.key == ("sst2" if use_glue else "synthetic-sentiment")
        if use_glue:
            assert cfg.task.train_subset == 2000 and cfg.task.test_subset is None  # all 872 test sentences
            sweep = [r for r in mini.plan(("sst2",), (0,)) if not r.extra and r.variant.method == method][0]
            sweep = mini.with_head_lrs([sweep], {method: 3e-3})[0]
            assert compose(sweep.overrides(tmp_path)) == cfg  # the demo's run is the sweep's SST-2 seed-0 cell
        else:
            assert "train_subset" not in cfg.task
        if method == "gpart":
            assert cfg.method.config.d == mini.MAIN_D == compose(demo.overrides_for("unilora", use_glue, tmp_path)).method.config.theta_d_length
        assert demo.record_path(overrides).parent.parent == tmp_path / "runs"
