"""The tables read what the real runner writes: tiny RoBERTa runs on a few hundred SST-2 rows (../shared/data/glue)
through experiments.run, then `experiments.report.tables` on their records (slow: several short training runs)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from experiments.report import tables
from experiments.tasks.vision.data import shared_data_dir

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
GLUE_DIR = shared_data_dir() / "glue"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (GLUE_DIR / "SST-2" / "train.tsv").exists(), reason=f"{GLUE_DIR} not found"),
]


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("WANDB_MODE", "disabled")


def run(root: Path, *overrides: str) -> dict:
    from hydra import compose, initialize_config_dir

    import experiments  # noqa: F401  (OmegaConf resolvers)
    from experiments.run import run as run_config

    tiny = [
        "model=tiny-roberta",
        "task=glue/sst2",
        "task.train_subset=400",
        "task.test_subset=100",
        "task.max_length=32",
        "trainer.epochs=1",
        "trainer.max_steps=2",
        "trainer.save_checkpoints=false",
        f"paths.root={root}",
        f"paths.glue_dir={GLUE_DIR}",
    ]
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return run_config(compose("config", overrides=tiny + list(overrides)))


def test_tables_from_real_runner_records(tmp_path, capsys):
    for d in (256, 512):
        for seed in (0, 1):
            run(tmp_path, "method=gpart", f"method.config.d={d}", f"seed={seed}")
    run(tmp_path, "method=gpart", "method.config.d=512", "method.lr=1e-3", "seed=2")  # another setting, same cell
    killed = run(tmp_path, "method=lora", "seed=0")
    record_path = tmp_path / "runs" / killed["run_id"] / "record.json"
    record = json.loads(record_path.read_text())
    record["status"] = "running"  # what a killed run leaves behind
    record_path.write_text(json.dumps(record))

    out = tmp_path / "out"
    assert tables.main(["--runs", str(tmp_path / "runs"), "--out", str(out), "--only-with-runs"]) == 0
    err = capsys.readouterr().err
    assert f"skipped {record_path}" in err
    assert "refused cell glue/tiny-roberta/GPart (512)/sst2" in err and "method.lr: 0.005 vs 0.001" in err
    frame = pd.read_csv(out / "tables" / "glue-tiny-roberta.csv").set_index("method")
    assert list(frame.index) == ["GPart (256)", "GPart (512)"]
    assert frame.loc["GPart (256)", "sst2.n"] == 2 and frame.loc["GPart (256)", "sst2.status"] == "ok"
    assert frame.loc["GPart (512)", "sst2.status"] == "refused"
    assert frame.loc["GPart (256)", "adapter_bytes"] > 0 and frame.loc["GPart (256)", "median_step_s"] > 0
    assert (out / "figures" / "glue-tiny-roberta_score_vs_params.png").stat().st_size > 0
