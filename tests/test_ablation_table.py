"""The ablation table on fixture records: variants come from the records' configs, each GPart row is compared with
the reference and with Uni-LoRA at the same d, and `make reproduce-ablations DRY=1` lists the runs behind it."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pandas as pd
import pytest
from conftest import CONFIGS, REPO

from experiments.report.ablation_table import build_ablation_table, load_ablation_records, write_ablation_table


def record(tmp_path, name, method, task, seed, score, config, status="finished"):
    folder = tmp_path / "runs" / name
    folder.mkdir(parents=True)
    data = {
        "schema_version": 1,
        "run_id": name,
        "status": status,
        "table": "glue",
        "model": "roberta-base",
        "method": method,
        "task": task,
        "seed": seed,
        "metric": "accuracy",
        "test_metric": score,
        "trainable_params": config.get("d") or config.get("theta_d_length") or 0,
        "config_hash": name,
        "config": {"method": {"config": config}},
    }
    (folder / "record.json").write_text(json.dumps(data))


@pytest.fixture
def runs(tmp_path):
    reference = {"d": 23040, "isometric": True, "assignment": "stateless"}  # an older record: no variant fields
    for task, base in (("rte", 0.80), ("mrpc", 0.90)):
        for seed, noise in enumerate((0.00, 0.01, 0.02)):
            record(tmp_path, f"ref-{task}-{seed}", "GPart", task, seed, base + noise, reference)
            record(
                tmp_path,
                f"iso-{task}-{seed}",
                "GPart",
                task,
                seed,
                base - 0.05 + noise,
                {**reference, "isometric": False},
            )
            record(tmp_path, f"d-{task}-{seed}", "GPart", task, seed, base - 0.02 + noise, {**reference, "d": 5760})
            record(
                tmp_path, f"uni-{task}-{seed}", "Uni-LoRA", task, seed, base - 0.01 + noise, {"theta_d_length": 23040}
            )
            record(
                tmp_path,
                f"uni5760-{task}-{seed}",
                "Uni-LoRA",
                task,
                seed,
                base - 0.04 + noise,
                {"theta_d_length": 5760},
            )
    record(tmp_path, "fastfood-rte", "GPart", "rte", 0, 0.70, {**reference, "projection": "fastfood"})
    record(tmp_path, "running", "GPart", "rte", 5, 0.10, reference, status="running")
    record(tmp_path, "lora", "LoRA", "rte", 0, 0.99, {"r": 8})
    return tmp_path / "runs"


def test_rows_are_variants_of_the_reference_with_their_deltas(runs):
    table = build_ablation_table(load_ablation_records(runs)).set_index("variant")
    assert list(table.index) == [
        "GPart d=23,040 (setup.md)",
        "Uni-LoRA d=23,040",
        "GPart isometric=False",
        "GPart projection=fastfood",
        "GPart d=5,760",
        "Uni-LoRA d=5,760",
    ]
    ref = table.loc["GPart d=23,040 (setup.md)"]
    assert ref["rte"] == "81.00 ± 1.00 (n=3)" and ref["avg"] == pytest.approx(86.0)  # running/LoRA records left out
    assert table.loc["GPart isometric=False", "axis"] == "isometry"
    assert table.loc["GPart isometric=False", "Δ vs reference"] == pytest.approx(-5.0)
    assert table.loc["GPart isometric=False", "Δ vs Uni-LoRA same d"] == pytest.approx(-4.0)
    assert table.loc["GPart d=5,760", "Δ vs Uni-LoRA same d"] == pytest.approx(2.0)  # 84 vs Uni-LoRA's 82 at d=5,760
    fastfood = table.loc["GPart projection=fastfood"]
    assert fastfood["rte"] == "70.00 (n=1)" and fastfood["mrpc"] == "" and pd.isna(fastfood["avg"])  # incomplete row
    assert fastfood["axis"] == "partition vs Fastfood (DID)"


def test_the_table_is_written_as_markdown_and_csv(runs, tmp_path):
    written = write_ablation_table(runs, tmp_path / "tables")
    assert [p.name for p in written] == ["glue_roberta-base_ablations.md", "glue_roberta-base_ablations.csv"]
    text = written[0].read_text()
    assert "| reference | GPart d=23,040 (setup.md) | 23,040 | 91.00 ± 1.00 (n=3) | 81.00 ± 1.00 (n=3) | 86.0 |" in text
    assert "our runs only" in text


def test_no_runs_writes_nothing(tmp_path, capsys):
    assert write_ablation_table(tmp_path / "missing", tmp_path / "tables") == []
    assert "no ablation table" in capsys.readouterr().out and not (tmp_path / "tables").exists()


def test_make_tables_writes_the_ablation_table_beside_the_paper_tables(runs, tmp_path):
    from experiments.report import tables

    assert (
        tables.main(["--runs", str(runs), "--out", str(tmp_path / "out"), "--no-figures", "--ablation-runs", str(runs)])
        == 0
    )
    written = sorted(p.name for p in (tmp_path / "out" / "tables").iterdir())
    assert "glue_roberta-base_ablations.md" in written and "glue_roberta-base_ablations.csv" in written


def test_dry_run_lists_every_ablation_beside_uni_lora_at_the_same_d():
    out = subprocess.run(
        [
            "make",
            "-s",
            "-o",
            ".venv/.installed-stamp",
            "reproduce-ablations",
            "DRY=1",
            "TASKS=rte",
            f"PY={sys.executable}",
        ],
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.splitlines()
    experiments = [line.split("experiment=")[1].split()[0] for line in out]
    assert experiments[:2] == ["glue/base/gpart-rte", "glue/base/unilora-rte"]
    for variant in ("isometric-off", "balanced", "fastfood", "block-scope", "signed-magnitude"):
        assert f"[glue/base/gpart-rte,ablation/{variant}]" in experiments
    for d in (5760, 11520, 46080, 92160):
        assert f"[glue/base/gpart-rte,ablation/d-sweep/gpart-{d}]" in experiments
        assert f"[glue/base/unilora-rte,ablation/d-sweep/unilora-{d}]" in experiments
    assert all("paths.runs_dir=results/ablation-runs" in line and "seed=0,1,2" in line for line in out)


ABLATION_FILES = sorted(
    p.relative_to(CONFIGS / "experiment").with_suffix("").as_posix()
    for p in (CONFIGS / "experiment" / "ablation").rglob("*.yaml")
)


REFERENCE_METHOD_CONFIG: dict = {}


@pytest.mark.parametrize("ablation", ABLATION_FILES)
def test_each_ablation_composes_on_its_glue_experiment(compose, ablation):
    method = "unilora" if "unilora" in ablation else "gpart"
    cfg = compose([f"experiment=[glue/base/{method}-rte,{ablation}]"])
    assert cfg.task.key == "rte" and cfg.model.key == "roberta-base" and cfg.trainer.epochs == 160  # setup.md §2
    reference = REFERENCE_METHOD_CONFIG.setdefault(
        method, compose([f"experiment=glue/base/{method}-rte"]).method.config
    )
    changed = {k: v for k, v in cfg.method.config.items() if v != reference.get(k)}
    assert len(changed) == 1, changed  # each ablation moves exactly one knob


def _gpart_fields() -> set[str]:
    from gpart import GPartConfig

    return {f.name for f in dataclasses.fields(GPartConfig)}


@pytest.mark.skipif(
    not {"projection", "partition_scope", "grouping"} <= _gpart_fields(),
    reason="GPartConfig has no projection/partition_scope/grouping yet (the authors' variants)",
)
@pytest.mark.parametrize("ablation", [a for a in ABLATION_FILES if "unilora" not in a])
def test_each_gpart_ablation_builds_on_a_tiny_model(compose, ablation):
    from hydra.utils import instantiate

    from experiments.methods import build_method

    cfg = compose([f"experiment=[glue/base/gpart-rte,{ablation}]", "model=tiny-roberta", "method.config.d=64"])
    task = instantiate(cfg.task, _convert_="all")
    model, _ = task.build_model(cfg.model)
    build_method(cfg.method, cfg.model).apply(model)
