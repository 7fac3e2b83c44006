"""No record holds a number that is not one: regression labels are checked where they are read (finite, on the
task's scale), a NaN never wins the best epoch, records are strict JSON, a run whose scores are all NaN is not
`finished`; and bad files name themselves (invalid UTF-8, a corrupt record, a subset too small to stratify)."""

from __future__ import annotations

import json
import math

import pytest
from test_bad_data import glue_folder
from test_runner import record_of, tiny

from experiments import run as runner
from experiments.runner import records
from experiments.tasks.glue import GlueTask

STSB_HEADER = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"


def stsb_rows(*scores) -> str:
    return STSB_HEADER + "".join(f"{i}\tg\tf\ty\t{i}\tn\tn\ta {i}\tb {i}\t{s}\n" for i, s in enumerate(scores))


@pytest.mark.parametrize("score", ["nan", "inf", "-inf", "-40", "5.5"])
def test_a_regression_label_off_the_scale_names_its_file_and_line(tmp_path, score):
    root = glue_folder(tmp_path, stsb_rows("1.0", score, "4.2"), dev=stsb_rows("2.0", "3.0"), key_folder="STS-B")
    with pytest.raises(
        ValueError,
        match=rf"train.tsv: line 3 has score='{score}'; expected a finite number in "
        r"\[0, 5\] \(the similarity score\)",
    ):
        GlueTask(key="stsb", metric="pearson", data_dir=str(root)).load_raw()


def test_off_scale_labels_can_be_skipped_and_counted(tmp_path):
    root = glue_folder(tmp_path, stsb_rows("1.0", "nan", "-40", "4.2"), dev=stsb_rows("2.0", "3.0"), key_folder="STS-B")
    task = GlueTask(key="stsb", metric="pearson", data_dir=str(root), skip_bad_rows=True)
    assert task.load_raw()["train"]["label"] == [1.0, 4.2]
    assert task.skipped_rows == {str(root / "STS-B" / "train.tsv"): 2}


def test_a_nan_epoch_never_wins_the_best_epoch():
    epochs = [
        {"epoch": 1, "validation": {"pearson": float("nan")}},
        {"epoch": 2, "validation": {"pearson": 0.3}},
        {"epoch": 3, "validation": {"pearson": float("inf")}},
    ]
    assert records.best_epoch(epochs, "pearson")["epoch"] == 2


def test_records_are_strict_json_and_a_nan_is_refused_naming_its_key(tmp_path):
    path = tmp_path / "record.json"
    records.write_atomic(path, {"status": "running"})
    with pytest.raises(
        ValueError,
        match=r"refusing to write .*record.json: non-finite numbers at "
        r"\['epochs\[0\].validation.pearson'\]; records are strict JSON",
    ):
        records.write_atomic(path, {"status": "finished", "epochs": [{"validation": {"pearson": float("nan")}}]})
    assert json.loads(path.read_text()) == {"status": "running"}  # the previous record is untouched


def test_an_epoch_entry_keeps_no_nan_and_says_which_were_dropped():
    entry = records.without_nonfinite(
        {"epoch": 1, "train_loss": float("nan"), "validation": {"pearson": float("nan"), "spearman": 0.5}}
    )
    assert entry == {
        "epoch": 1,
        "train_loss": None,
        "validation": {"pearson": None, "spearman": 0.5},
        "nonfinite": ["train_loss", "validation.pearson"],
    }


def strict(text: str) -> dict:
    def refuse(constant):
        raise AssertionError(f"the record holds {constant}")

    return json.loads(text, parse_constant=refuse)


def test_a_run_whose_scores_are_all_nan_fails_and_its_record_is_strict_json(compose, glue_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(
        GlueTask, "evaluate", lambda self, trainer, dataset, split: {"accuracy": math.nan, "loss": math.inf}
    )
    cfg = compose(tiny(glue_dir, tmp_path, "head_only", "trainer.epochs=2", "trainer.max_steps=2"))
    with pytest.raises(ValueError, match=r"no epoch has a finite validation and test accuracy"):
        runner.run(cfg)
    record = record_of(cfg)
    assert record["status"] == "failed" and record["test_metric"] is None
    path = runner.run_dir_of(cfg) / "record.json"
    strict(path.read_text())
    assert record["epochs"][0]["nonfinite"] == ["validation.accuracy", "validation.loss", "test.accuracy", "test.loss"]


def test_invalid_utf8_names_the_file_and_line(tmp_path):
    root = glue_folder(tmp_path, "")
    (root / "SST-2" / "train.tsv").write_bytes(b"sentence\tlabel\ngood\t1\nbad \xff\xfe\t0\n")
    with pytest.raises(ValueError, match=r"SST-2/train.tsv: line 3 is not valid UTF-8 \(byte 0xff at offset 26\)"):
        GlueTask(key="sst2", metric="accuracy", data_dir=str(root)).load_raw()


def test_a_corrupt_record_names_its_file(tmp_path):
    (tmp_path / "record.json").write_text('{"status": "runn')
    with pytest.raises(ValueError, match=rf"{tmp_path / 'record.json'} is not valid JSON .*move it aside"):
        records.read(tmp_path / "record.json")


@pytest.mark.parametrize("size", [1])
def test_a_train_subset_too_small_to_stratify_is_a_clear_error(glue_dir, size):
    task = GlueTask(key="sst2", metric="accuracy", data_dir=str(glue_dir), train_subset=size)
    with pytest.raises(
        ValueError,
        match=rf"task.train_subset={size} is too small for task 'sst2': a seeded subset "
        r"needs at least 2 rows \(2 classes\); allowed: null or an integer >= 2",
    ):
        task.build_splits(processor=None, seed=0)
