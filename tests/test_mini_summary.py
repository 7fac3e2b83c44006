"""experiments/mini_summary.py: the README block is rebuilt from the generated tables, and only that block changes."""
from __future__ import annotations

import pytest

from experiments import mini_summary, tables
from test_claims import write_scenario

README = "# Title\n\nabove\n\n{begin}\nold block\n{end}\n\nbelow\n"


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """`make tables` output for fixture records: GPart, Uni-LoRA, LoRA, FT on three tasks + a d sweep on two."""
    root = tmp_path_factory.mktemp("mini")
    write_scenario(root / "runs", "supported")
    assert tables.main(["--runs", str(root / "runs"), "--out", str(root), "--only-with-runs", "--no-figures"]) == 0
    return root


def readme(tmp_path, begin=mini_summary.BEGIN, end=mini_summary.END):
    path = tmp_path / "README.md"
    path.write_text(README.format(begin=begin, end=end))
    return path


def test_block_replaces_only_the_marked_lines_and_shows_main_rows_and_claims(results, tmp_path):
    path = readme(tmp_path)
    assert mini_summary.main(["--results", str(results), "--readme", str(path)]) == 0
    text = path.read_text()
    assert text.startswith("# Title\n\nabove\n\n" + mini_summary.BEGIN)
    assert text.endswith(mini_summary.END + "\n\nbelow\n") and "old block" not in text
    rows = {line.split(" | ")[0].lstrip("| ") for line in text.splitlines() if line.startswith("| ")}
    # Every method with runs on all three tasks; the d-sweep rows (two tasks only) stay in the full table.
    assert {"GPart (2.88K)", "Uni-LoRA (2.88K)", "LoRA", "FT", "GPart (balanced)", "GPart (non-isometric)"} <= rows
    assert "GPart (288)" not in rows and "Uni-LoRA (288)" not in rows
    assert "**supported**" in text and "C1" in rows and "C5" in rows
    assert "not the paper's numbers" in text and "make reproduce-mini" in text


def test_block_cells_are_median_and_std_over_seeds(results, tmp_path):
    path = readme(tmp_path)
    mini_summary.main(["--results", str(results), "--readme", str(path)])
    frame = mini_summary.pd.read_csv(results / "tables" / "glue-minilm-l6.csv")
    gpart = frame[(frame["method_key"] == "GPart") & (frame["trainable_params"] == 2880)].iloc[0]
    expected = f"| GPart (2.88K) | 2,880 | {gpart['sst2.median']:.2f} ± {gpart['sst2.std']:.2f} |"
    assert expected in path.read_text()


def test_rerun_gives_the_same_readme(results, tmp_path):
    path = readme(tmp_path)
    mini_summary.main(["--results", str(results), "--readme", str(path)])
    first = path.read_text()
    mini_summary.main(["--results", str(results), "--readme", str(path)])
    assert path.read_text() == first


@pytest.mark.parametrize("begin, end", [("", mini_summary.END), (mini_summary.BEGIN, ""),
                                        (mini_summary.END, mini_summary.BEGIN)])
def test_missing_or_misordered_markers_are_refused_and_the_readme_is_untouched(results, tmp_path, capsys, begin, end):
    path = readme(tmp_path, begin, end)
    before = path.read_text()
    with pytest.raises(SystemExit):
        mini_summary.main(["--results", str(results), "--readme", str(path)])
    assert "needs exactly one line" in capsys.readouterr().err
    assert path.read_text() == before


def test_results_without_tables_name_the_folder_and_the_command(tmp_path, capsys):
    with pytest.raises(SystemExit):
        mini_summary.main(["--results", str(tmp_path), "--readme", str(readme(tmp_path))])
    err = capsys.readouterr().err
    assert f"--results={tmp_path}" in err and "make reproduce-mini" in err


def test_constant_prediction_row_gives_the_dev_share_of_the_training_majority(results, tmp_path, glue_dir):
    path = readme(tmp_path)
    mini_summary.main(["--results", str(results), "--readme", str(path), "--glue-dir", str(glue_dir)])
    row = next(line for line in path.read_text().splitlines() if line.startswith("| *constant prediction"))
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    for task, cell in zip(("SST-2", "MRPC", "RTE"), cells[2:5]):
        train = mini_summary.pd.read_csv(glue_dir / task / "train.tsv", sep="\t", quoting=3)
        dev = mini_summary.pd.read_csv(glue_dir / task / "dev.tsv", sep="\t", quoting=3)
        label = {"SST-2": "label", "MRPC": "Quality", "RTE": "label"}[task]
        majority = train[label].mode()[0]
        assert float(cell) == pytest.approx(100 * (dev[label] == majority).mean(), abs=0.005), task


def test_constant_prediction_row_reads_na_when_the_data_is_missing_and_says_why(results, tmp_path, capsys):
    path = readme(tmp_path)
    mini_summary.main(["--results", str(results), "--readme", str(path), "--glue-dir", str(tmp_path / "absent")])
    row = next(line for line in path.read_text().splitlines() if line.startswith("| *constant prediction"))
    assert row.count("n/a") == 3
    warnings = capsys.readouterr().err
    assert "cannot read GLUE sst2" in warnings and "GLUE_DIR" in warnings


def test_the_lr_scan_is_linked_once_its_report_exists_and_not_before(results, tmp_path):
    path = readme(tmp_path)
    mini_summary.main(["--results", str(results), "--readme", str(path)])
    assert "lr-scan" not in path.read_text()
    report = results / "lr-scan" / "README.md"
    report.parent.mkdir()
    report.write_text("# scan\n")
    try:
        mini_summary.main(["--results", str(results), "--readme", str(path)])
        text = path.read_text()
        assert "lr-scan/README.md" in text and "one seed" in text
        assert text.index("lr-scan/README.md") < text.index(mini_summary.END)
    finally:
        report.unlink()
        report.parent.rmdir()
