"""experiments/studies/mini/summary.py: the README block is generated from the study's tables (pending until a report record
exists), and only that block changes."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from mini_fakes import finish
from test_mini_report import test_score, validation

from experiments.report import tables
from experiments.studies.mini import design, driver, summary

README = "# Title\n\nabove\n\n{begin}\nold block\n{end}\n\nbelow\n"


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """`make tables` output for the smoke design's fake records on both tasks."""
    root = tmp_path_factory.mktemp("mini")
    (root / driver.SMOKE_MARKER).write_text("smoke\n")
    finish(root, design.TASKS, design.SMOKE, validation, test_score)
    assert tables.main(["--runs", str(root / "runs"), "--out", str(root), "--no-figures"]) == 0
    return root


def readme(tmp_path, begin=summary.BEGIN, end=summary.END):
    path = tmp_path / "README.md"
    path.write_text(README.format(begin=begin, end=end))
    return path


def test_block_replaces_only_the_marked_lines_and_shows_every_arm_and_the_claims(results, tmp_path):
    path = readme(tmp_path)
    assert summary.main(["--results", str(results), "--readme", str(path)]) == 0
    text = path.read_text()
    assert text.startswith("# Title\n\nabove\n\n" + summary.BEGIN)
    assert text.endswith(summary.END + "\n\nbelow\n") and "old block" not in text
    rows = {line.split(" | ")[0].lstrip("| ") for line in text.splitlines() if line.startswith("| ")}
    assert {"FT", "GPart", "GPart (balanced)", "LP"} <= rows
    assert {"C1", "C2", "C3", "C4", "C5"} <= rows and "this study can decide" in text
    assert "not the paper's numbers" in text and "make reproduce-mini" in text and "pending" not in text.lower()


def test_block_cells_are_median_and_std_over_the_report_seeds(results, tmp_path):
    path = readme(tmp_path)
    summary.main(["--results", str(results), "--readme", str(path)])
    frame = pd.read_csv(results / "tables" / "main.csv").set_index(["arm", "task"])
    gpart = frame.loc[("GPart", "sst2")]
    assert gpart["n"] == 1 and f"| GPart | 2,880 | {gpart['median']:.2f} |" in path.read_text()


def test_without_records_the_block_says_pending(tmp_path):
    path = readme(tmp_path)
    assert summary.main(["--results", str(tmp_path / "empty"), "--readme", str(path)]) == 0
    text = path.read_text()
    assert "Results pending" in text and "MINI_ARGS=--status" in text and "| " not in text


def test_rerun_gives_the_same_readme(results, tmp_path):
    path = readme(tmp_path)
    summary.main(["--results", str(results), "--readme", str(path)])
    first = path.read_text()
    summary.main(["--results", str(results), "--readme", str(path)])
    assert path.read_text() == first


@pytest.mark.parametrize("begin, end", [("", summary.END), (summary.BEGIN, ""), (summary.END, summary.BEGIN)])
def test_missing_or_misordered_markers_are_refused_and_the_readme_is_untouched(results, tmp_path, capsys, begin, end):
    path = readme(tmp_path, begin, end)
    before = path.read_text()
    with pytest.raises(SystemExit):
        summary.main(["--results", str(results), "--readme", str(path)])
    assert "needs exactly one line" in capsys.readouterr().err
    assert path.read_text() == before


def test_constant_prediction_row_gives_the_dev_share_of_the_training_majority(results, tmp_path, glue_dir):
    path = readme(tmp_path)
    summary.main(["--results", str(results), "--readme", str(path), "--glue-dir", str(glue_dir)])
    row = next(line for line in path.read_text().splitlines() if line.startswith("| *constant prediction"))
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    train = pd.read_csv(glue_dir / "SST-2" / "train.tsv", sep="\t", quoting=3)
    dev = pd.read_csv(glue_dir / "SST-2" / "dev.tsv", sep="\t", quoting=3)
    majority = train["label"].mode()[0]
    assert float(cells[2]) == pytest.approx(100 * (dev["label"] == majority).mean(), abs=0.005)
    assert cells[3] == "n/a"  # Pearson of a constant is undefined


def test_constant_prediction_row_reads_na_when_the_data_is_missing_and_says_why(results, tmp_path, capsys):
    path = readme(tmp_path)
    summary.main(["--results", str(results), "--readme", str(path), "--glue-dir", str(tmp_path / "absent")])
    row = next(line for line in path.read_text().splitlines() if line.startswith("| *constant prediction"))
    assert row.count("n/a") == 2
    warnings = capsys.readouterr().err
    assert "cannot read GLUE sst2" in warnings and "GLUE_DIR" in warnings


def test_the_committed_readme_block_is_what_the_generator_writes(tmp_path, glue_dir):
    """README.md's block is generated, never typed: regenerating it from the committed results changes nothing."""
    copy = tmp_path / "README.md"
    copy.write_text((summary.experiments.REPO / "README.md").read_text())
    summary.main(
        [
            "--results",
            str(summary.experiments.REPO / "results" / "mini"),
            "--readme",
            str(copy),
            "--glue-dir",
            str(glue_dir),
        ]
    )
    assert copy.read_text() == (summary.experiments.REPO / "README.md").read_text()


def _attempts_record(folder, name, attempts):
    path = folder / "runs" / name / "record.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"run_id": name, "status": "finished", "attempts": attempts}))


def test_in_flight_wall_is_the_union_of_attempts_not_their_sum(tmp_path):
    hour = 3600.0
    _attempts_record(tmp_path, "a", [{"started_at": "2026-12-05T10:00:00+00:00", "wall_s": 2 * hour}])
    _attempts_record(tmp_path, "b", [{"started_at": "2026-12-05T11:00:00+00:00", "wall_s": 2 * hour}])
    _attempts_record(
        tmp_path,
        "c",  # killed at 16:30 and resumed at 18:00: the gap between attempts is not in flight
        [
            {"started_at": "2026-12-05T16:00:00+00:00", "wall_s": 0.5 * hour},
            {"started_at": "2026-12-05T18:00:00+00:00", "wall_s": 1 * hour},
        ],
    )
    _attempts_record(tmp_path, "no-start", [{"wall_s": 5 * hour}])
    hours, first, last = summary.in_flight_span(tmp_path)
    assert hours == pytest.approx(3 + 0.5 + 1)
    assert (first, last) == ("2026-12-05 10:00", "2026-12-05 19:00")
    assert "4 finished runs, 10.5 h of run wall time" in summary.compute_line(tmp_path)


def test_no_started_attempt_gives_no_span(tmp_path):
    _attempts_record(tmp_path, "a", [{"wall_s": 60.0}])
    assert summary.in_flight_span(tmp_path) is None
