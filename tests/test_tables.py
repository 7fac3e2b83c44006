"""experiments/report/ (make tables): fixture run records in, paper-table Markdown/CSV out, with its safety rules (unfinished runs skipped, mixed cells refused)."""

from __future__ import annotations

import filecmp
import os
from pathlib import Path

import pandas as pd
import pytest
from test_tables_fixtures import make_record, write_record

from experiments.report import cells, loading, rendering, table_data, tables

REPO = Path(__file__).resolve().parents[1]
SHARED_REFERENCE = Path(os.environ.get("GPART_SHARED_DIR", REPO.parent / "shared")) / "reference"


def glue_fixture(runs: Path) -> None:
    """A small GLUE roberta-base table whose expected numbers are worked out by hand in the tests below."""
    for seed, score in enumerate([0.950, 0.952, 0.960]):  # median 95.2, sample std sqrt(0.28) = 0.52915
        write_record(runs, make_record("LoRA", "sst2", seed, score))
    for task, score in [("mrpc", 0.897), ("cola", 0.634), ("qnli", 0.933), ("rte", 0.866), ("stsb", 0.915)]:
        write_record(runs, make_record("LoRA", task, 0, score))  # equal to the paper's LoRA cells
    for seed, score in enumerate([0.60, 0.64, 0.68]):  # median 64, std 4: Δ −1.6 is inside 2·std
        write_record(runs, make_record("VeRA", "cola", seed, score, trainable_params=43_008))
    for seed, score in enumerate([0.85, 0.87]):  # median 86, std sqrt(2): Δ −3.7 is outside 2·std = 2.83
        write_record(runs, make_record("Uni-LoRA", "mrpc", seed, score, trainable_params=23_040))
    write_record(runs, make_record("Uni-LoRA", "sst2", 0, 0.960, trainable_params=23_040))  # n=1: Δ +1.5 > 1 point
    for seed, score in enumerate([0.93, 0.94, 0.935]):
        write_record(runs, make_record("GPart", "sst2", seed, score, trainable_params=23_040))
    write_record(runs, make_record("BitFit", "sst2", 0, 0.93, trainable_params=102_000))


def build(runs: Path, merge_mixed: bool = False):
    loaded = loading.load_records(runs)
    built, warnings = cells.build_tables(loaded.records, loading.load_paper(), merge_mixed)
    return {data.name: data for data in built}, warnings, loaded


def cell(data, label: str, task: str):
    return data.cells.set_index(["label", "task"]).loc[(label, task)]


def run_main(runs: Path, out: Path, *extra: str) -> int:
    return tables.main(["--runs", str(runs), "--out", str(out), "--no-figures", *extra])


def test_paper_copies_equal_the_shared_reference():
    for name in loading.PAPER_FILES:
        assert (REPO / "results" / "paper" / name).is_file(), name
    if not SHARED_REFERENCE.is_dir():
        pytest.skip(f"{SHARED_REFERENCE} not present")
    for name in loading.PAPER_FILES:
        assert filecmp.cmp(REPO / "results" / "paper" / name, SHARED_REFERENCE / name, shallow=False), name


def test_paper_param_text_is_parsed():
    assert [table_data.parse_param_count(t) for t in ["0.295M", "72K", "125M", "1.90M", "303.3M", "-", ""]] == [
        295_000,
        72_000,
        125_000_000,
        1_900_000,
        303_300_000,
        0,
        None,
    ]
    with pytest.raises(ValueError, match="'abc'"):
        table_data.parse_param_count("abc")


def test_fixture_glue_table_medians_stds_deltas_and_verdicts(tmp_path):
    glue_fixture(tmp_path / "runs")
    built, _, _ = build(tmp_path / "runs")
    data = built["glue-roberta-base"]
    lora = cell(data, "LoRA", "sst2")
    assert (lora["n"], lora["median"], lora["paper"]) == (3, pytest.approx(95.2), 95.1)
    assert lora["std"] == pytest.approx(0.28**0.5)
    assert lora["delta"] == pytest.approx(0.1) and lora["tolerance"] == pytest.approx(2 * 0.28**0.5)
    assert lora["verdict"] == "reproduced"
    vera = cell(data, "VeRA", "cola")
    assert (vera["median"], vera["std"], vera["delta"], vera["verdict"]) == (
        pytest.approx(64.0),
        pytest.approx(4.0),
        pytest.approx(-1.6),
        "reproduced",
    )
    uni_mrpc, uni_sst2 = cell(data, "Uni-LoRA", "mrpc"), cell(data, "Uni-LoRA", "sst2")
    assert (uni_mrpc["delta"], uni_mrpc["verdict"]) == (pytest.approx(-3.7), "below")
    assert (uni_sst2["n"], uni_sst2["delta"], uni_sst2["tolerance"], uni_sst2["verdict"]) == (
        1,
        pytest.approx(1.5),
        1.0,
        "above",
    )
    assert pd.isna(uni_sst2["std"])
    gpart, bitfit = cell(data, "GPart", "sst2"), cell(data, "BitFit", "sst2")
    assert gpart["median"] == pytest.approx(93.5) and gpart["verdict"] == ""
    assert gpart["paper_text"] == cells.NOT_IN_SOURCES and bitfit["paper_text"] == cells.NOT_IN_PAPER
    averages = table_data.row_averages(data).set_index("label")
    assert averages.loc["LoRA", "avg_median"] == pytest.approx((95.2 + 89.7 + 63.4 + 93.3 + 86.6 + 91.5) / 6)
    assert averages.loc["LoRA", "avg_paper"] == pytest.approx((95.1 + 89.7 + 63.4 + 93.3 + 86.6 + 91.5) / 6)
    assert averages.loc["LoRA", "avg_verdict"] == "reproduced" and pd.isna(averages.loc["VeRA", "avg_median"])
    # Rows follow the paper's order; the paper-only rows are kept; our extra method comes last.
    assert list(data.rows["label"]) == [
        "FT",
        "LoRA",
        "VeRA",
        "Tied-LoRA",
        "VB-LoRA",
        "FourierFT",
        "Uni-LoRA",
        "GPart",
        "BitFit",
    ]


def test_markdown_states_the_rule_and_shows_every_part_of_a_cell(tmp_path):
    glue_fixture(tmp_path / "runs")
    assert run_main(tmp_path / "runs", tmp_path / "out") == 0
    text = (tmp_path / "out" / "tables" / "glue-roberta-base.md").read_text()
    assert "max(1 point, 2·std)" in text and "ddof=1" in text
    assert "95.20 ± 0.53 (n=3)<br>paper 95.1 ± 0.2<br>Δ +0.10 · reproduced" in text
    assert "96.00 (n=1)<br>paper 94.5 ± 0.2<br>Δ +1.50 · above" in text
    assert "93.50 ± 0.50 (n=3)<br>n/a (not in our sources)" in text


def test_markdown_and_csv_round_trip_through_pandas(tmp_path):
    glue_fixture(tmp_path / "runs")
    assert run_main(tmp_path / "runs", tmp_path / "out") == 0
    data = build(tmp_path / "runs")[0]["glue-roberta-base"]
    from_csv = pd.read_csv(tmp_path / "out" / "tables" / "glue-roberta-base.csv", keep_default_na=True)
    expected = rendering.csv_frame(data)
    pd.testing.assert_frame_equal(
        from_csv.fillna(""), expected.astype(object).fillna("").infer_objects(), check_dtype=False
    )
    assert from_csv.set_index("method").loc["LoRA", "sst2.median"] == pytest.approx(95.2)
    assert from_csv.set_index("method").loc["Uni-LoRA", "mrpc.verdict"] == "below"
    from_markdown = rendering.read_markdown_table(tmp_path / "out" / "tables" / "glue-roberta-base.md")
    pd.testing.assert_frame_equal(from_markdown, rendering.markdown_frame(data))
    assert list(from_markdown["Method"]) == list(from_csv["method"])


def test_mixed_config_cell_is_refused_and_merged_only_when_asked(tmp_path, capsys):
    runs = tmp_path / "runs"
    for seed, lr in [(0, 4e-4), (1, 4e-4), (2, 5e-4)]:
        write_record(runs, make_record("LoRA", "rte", seed, 0.80 + seed / 100, config={"optim.lr": lr}))
    built, warnings, _ = build(runs)
    refused = cell(built["glue-roberta-base"], "LoRA", "rte")
    assert refused["status"] == "refused" and refused["n"] == 0 and pd.isna(refused["median"])
    (message,) = warnings["glue-roberta-base"]
    assert "optim.lr: 0.0004 vs 0.0005" in message and "--merge-mixed" in message
    assert run_main(runs, tmp_path / "out") == 0
    assert "refused cell glue/roberta-base/LoRA/rte" in capsys.readouterr().err
    assert "refused: mixed configs (optim.lr)" in (tmp_path / "out" / "tables" / "glue-roberta-base.md").read_text()
    merged = cell(build(runs, merge_mixed=True)[0]["glue-roberta-base"], "LoRA", "rte")
    assert (merged["status"], merged["n"], merged["median"]) == ("merged-mixed", 3, pytest.approx(81.0))


def test_unfinished_failed_and_unreadable_records_are_skipped_with_reasons(tmp_path, capsys):
    runs = tmp_path / "runs"
    write_record(runs, make_record("LoRA", "sst2", 0, 0.95))
    running = write_record(runs, make_record("LoRA", "sst2", 1, 0.10, status="running"))
    failed = write_record(runs, make_record("LoRA", "sst2", 2, 0.10, status="failed"))
    broken = runs / "broken" / "record.json"
    broken.parent.mkdir()
    broken.write_text('{"schema_version": 1,')
    _, _, loaded = build(runs)
    reasons = dict(loaded.skipped)
    assert set(reasons) == {str(running), str(failed), str(broken)}
    assert (
        "running" in reasons[str(running)] and "failed" in reasons[str(failed)] and "unreadable" in reasons[str(broken)]
    )
    built, _, _ = build(runs)
    assert cell(built["glue-roberta-base"], "LoRA", "sst2")["n"] == 1
    assert run_main(runs, tmp_path / "out") == 0
    err = capsys.readouterr().err
    assert all(f"skipped {path}" in err for path in (running, failed, broken))
    assert str(broken) in (tmp_path / "out" / "tables" / "README.md").read_text()


@pytest.mark.parametrize(
    "layout, expected",
    [
        ("missing", "does not exist"),
        ("empty", "no record.json found"),
        ("unusable", "none of the 1 records"),
    ],
)
def test_empty_or_unreadable_record_folder_gives_a_clear_message(tmp_path, capsys, layout, expected):
    runs = tmp_path / "runs"
    if layout != "missing":
        runs.mkdir()
    if layout == "unusable":
        write_record(runs, make_record(status="running"))
    assert run_main(runs, tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert expected in err and str(runs) in err and "Traceback" not in err
    assert not (tmp_path / "out" / "tables").exists()


def test_regenerating_replaces_the_previous_tables_and_never_a_foreign_folder(tmp_path, capsys):
    runs, out = tmp_path / "runs", tmp_path / "out"
    write_record(runs, make_record("GPart", "sst2", 0, 0.9, model="tiny-roberta", trainable_params=512))
    assert run_main(runs, out, "--only-with-runs") == 0
    assert (out / "tables" / "glue-tiny-roberta.md").exists()
    (runs / next(p.name for p in runs.iterdir()) / "record.json").unlink()
    write_record(runs, make_record("GPart", "sst2", 0, 0.9, model="minilm-l6", trainable_params=4_608))
    assert run_main(runs, out, "--only-with-runs") == 0
    assert "replaced" in capsys.readouterr().out
    assert sorted(p.name for p in (out / "tables").iterdir() if not p.name.startswith(".")) == [
        "README.md",
        "glue-minilm-l6.csv",
        "glue-minilm-l6.md",
    ]
    assert not list(out.glob(".tables*")), "staging folders are cleaned up"
    foreign = tmp_path / "foreign"
    (foreign / "tables").mkdir(parents=True)
    (foreign / "tables" / "mine.md").write_text("hand-written")
    assert run_main(runs, foreign) == 2
    assert "refusing to replace" in capsys.readouterr().err
    assert (foreign / "tables" / "mine.md").read_text() == "hand-written"
    assert run_main(runs, foreign, "--force") == 0 and not (foreign / "tables" / "mine.md").exists()


def test_models_outside_the_paper_get_their_own_table(tmp_path):
    runs = tmp_path / "runs"
    for seed, score in enumerate([0.80, 0.84]):
        write_record(runs, make_record("GPart", "sst2", seed, score, model="minilm-l6", trainable_params=4_608))
    data = build(runs)[0]["glue-minilm-l6"]
    assert not data.in_paper and data.tasks == ["sst2"]
    row = cell(data, "GPart", "sst2")
    assert (row["n"], row["median"], row["paper_text"], row["verdict"]) == (
        2,
        pytest.approx(82.0),
        cells.NOT_IN_PAPER,
        "",
    )


def test_budgets_match_the_nearest_paper_row_of_the_method(tmp_path):
    runs = tmp_path / "runs"
    vision = dict(table="vision", model="vit-base-patch16-224-in21k", task="cifar10")
    write_record(runs, make_record("FourierFT", seed=0, score=0.986, trainable_params=239_616, **vision))
    for d in (23_040, 46_080, 72_000):
        write_record(runs, make_record("GPart", seed=0, score=0.98, trainable_params=d, **vision))
    data = build(runs)[0]["vision-vit-base-patch16-224-in21k"]
    keys = dict(zip(data.rows["label"], data.rows["paper_key"]))
    assert keys["FourierFT (239.6K)"] == "239K" and keys["FourierFT (72K)"] == "72K"
    assert cell(data, "FourierFT (239.6K)", "cifar10")["delta"] == pytest.approx(98.6 - 98.69)
    assert keys["GPart (72K)"] == "72K" and pd.isna(keys["GPart (46.08K)"]) and pd.isna(keys["GPart (23.04K)"])
    assert cell(data, "GPart (72K)", "cifar10")["paper_text"] == cells.NOT_IN_SOURCES


def test_repeated_seed_keeps_the_latest_run_and_says_so(tmp_path):
    runs = tmp_path / "runs"
    write_record(runs, make_record("LoRA", "sst2", 0, 0.50, finished_at="2026-11-28T01:00:00Z"), name="old")
    write_record(runs, make_record("LoRA", "sst2", 0, 0.95, finished_at="2026-11-28T02:00:00Z"), name="new")
    built, warnings, _ = build(runs)
    assert cell(built["glue-roberta-base"], "LoRA", "sst2")[["n", "median"]].tolist() == [1, pytest.approx(95.0)]
    assert any("more than once" in w and "old" in w for w in warnings["glue-roberta-base"])


def test_a_metric_other_than_the_papers_is_not_compared(tmp_path):
    runs = tmp_path / "runs"
    write_record(runs, make_record("LoRA", "cola", 0, 0.80, metric="accuracy"))
    built, warnings, _ = build(runs)
    row = cell(built["glue-roberta-base"], "LoRA", "cola")
    assert row["verdict"] == "" and "matthews_correlation" in row["paper_text"]
    assert any("not the paper's" in w for w in warnings["glue-roberta-base"])


def test_gpart_has_a_row_in_every_table_even_without_runs(tmp_path):
    write_record(tmp_path / "runs", make_record("LoRA", "sst2", 0, 0.9))
    write_record(tmp_path / "runs", make_record("LoRA", "sst2", 0, 0.8, model="minilm-l6"))
    assert run_main(tmp_path / "runs", tmp_path) == 0
    names = sorted(p.name for p in (tmp_path / "tables").glob("*.md") if p.name != "README.md")
    assert {"glue-roberta-base.md", "glue-roberta-large.md", "glue-minilm-l6.md"} <= set(names)
    assert any(n.startswith("vision-") for n in names) and any(n.startswith("math-") for n in names)
    for name in names:
        frame = rendering.read_markdown_table(tmp_path / "tables" / name)
        gpart = frame[frame["Method"] == "GPart"]
        assert len(gpart) == 1, f"{name}: rows {list(frame['Method'])}"
        assert gpart.iloc[0].str.contains("no runs").any(), name


@pytest.mark.parametrize(
    "change,reason",
    [
        ({"seed": "7"}, "seed='7' is not an integer"),
        ({"seed": None}, "seed=None is not an integer"),
        ({"seed": True}, "seed=True is not an integer"),
        (
            {"test_metric": 51.0},
            r"test_metric=51.0 is outside [-1, 1]; records hold fractions (a value given in percent?)",
        ),
    ],
)
def test_records_with_a_string_seed_or_a_percent_metric_are_skipped_with_a_reason(tmp_path, change, reason):
    runs = tmp_path / "runs"
    write_record(runs, make_record("LoRA", "sst2", 0, 0.95))
    write_record(runs, make_record("LoRA", "sst2", 1, 0.93))
    bad = make_record("LoRA", "sst2", 2, 0.94)
    bad.update(change)
    bad["run_id"] += "-bad"
    path = write_record(runs, bad)
    built, _, loaded = build(runs)
    assert dict(loaded.skipped) == {str(path): reason}
    assert cell(built["glue-roberta-base"], "LoRA", "sst2")["n"] == 2
