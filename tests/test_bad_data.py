"""Bad data names its source: the file, the line (or image) and what was expected; or, asked to, skips and counts."""

from __future__ import annotations

import json
import re

import pytest
from PIL import Image

from experiments.tasks.glue import GlueTask
from experiments.tasks.math.data import BadDataError, evaluation_problems, load_rows, training_rows
from experiments.tasks.vision.data import ImageDecodeError, TransformedImages, load_raw_split
from experiments.tasks.vision.transforms import build_transforms

SST2_HEADER = "sentence\tlabel\n"


def glue_folder(tmp_path, train: str, dev: str = SST2_HEADER + "fine\t1\nbad\t0\n", key_folder="SST-2"):
    folder = tmp_path / key_folder
    folder.mkdir(parents=True)
    (folder / "train.tsv").write_text(train)
    (folder / "dev.tsv").write_text(dev)
    return tmp_path


def sst2(root, **kwargs):
    return GlueTask(key="sst2", metric="accuracy", data_dir=str(root), **kwargs)


@pytest.mark.parametrize(
    "train,expected",
    [
        (SST2_HEADER + "good\t1\nodd\tx\n", r"train.tsv: line 3 has label='x'; expected one of \[0, 1\]"),
        (SST2_HEADER + "good\t1\nodd\t7\n", r"train.tsv: line 3 has label='7'; expected one of \[0, 1\]"),
        (
            "sentence\tscore\ngood\t1\n",
            r"train.tsv: no column\(s\) \['label'\]; expected the GLUE columns "
            r"\['sentence', 'label'\], found \['sentence', 'score'\]",
        ),
        ("", r"train.tsv is empty; expected a GLUE TSV with a header line and rows"),
        (SST2_HEADER, r"train.tsv is empty"),
        (SST2_HEADER + "good\t1\nno label here\n", r"train.tsv: line 3 has 1 tab-separated fields, expected 2"),
    ],
)
def test_bad_glue_rows_name_the_file_and_line(tmp_path, train, expected):
    with pytest.raises(ValueError, match=expected):
        sst2(glue_folder(tmp_path, train)).load_raw()


def test_glue_string_labels_name_the_allowed_names(tmp_path):
    rte = "index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n1\tc\td\tmaybe\n"
    root = glue_folder(tmp_path, rte, dev=rte.replace("maybe", "entailment"), key_folder="RTE")
    with pytest.raises(
        ValueError,
        match=r"line 3 has label='maybe'; expected one of \[0, 1\] or "
        r"\['entailment', 'not_entailment'\]",
    ):
        GlueTask(key="rte", metric="accuracy", data_dir=str(root)).load_raw()


def test_skip_bad_rows_keeps_the_good_ones_and_counts_the_rest(tmp_path):
    root = glue_folder(tmp_path, SST2_HEADER + "good\t1\nodd\tx\nshort\nfine\t0\n")
    task = sst2(root, skip_bad_rows=True)
    raw = task.load_raw()
    assert raw["train"]["text_a"] == ["good", "fine"] and raw["train"]["label"] == [1, 0]
    assert task.skipped_rows == {str(root / "SST-2" / "train.tsv"): 2}


def test_skipped_rows_reach_the_run_record(compose, tmp_path):
    from experiments import run as runner

    lines = [f"{word} movie {i}\t{i % 2}" for i, word in enumerate(["good", "bad"] * 12)]
    root = glue_folder(
        tmp_path, SST2_HEADER + "\n".join(lines + ["broken\tx"]) + "\n", dev=SST2_HEADER + "\n".join(lines[:8]) + "\n"
    )
    cfg = compose(
        [
            "model=tiny-roberta",
            f"task.data_dir={root}",
            "+task.skip_bad_rows=true",
            "task.validation_min_rows=4",
            "task.max_length=16",
            "trainer.epochs=1",
            "trainer.max_steps=1",
            "trainer.save_checkpoints=false",
            "method.config.d=64",
            f"paths.root={tmp_path}",
        ]
    )
    record = runner.run(cfg)
    assert record["status"] == "finished" and record["skipped_rows"] == {str(root / "SST-2" / "train.tsv"): 1}


def jsonl(tmp_path, *lines, name="data.jsonl"):
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


def test_invalid_json_names_file_line_and_expectation(tmp_path):
    path = jsonl(tmp_path, json.dumps({"query": "q", "response": "r"}), "{not json", "[1, 2]")
    with pytest.raises(
        BadDataError,
        match=rf"{re.escape(str(path))}: line 2 is not valid JSON .*; expected one "
        "JSON object per line",
    ):
        load_rows(None, "train", local_path=str(path))
    bad: list = []
    assert len(load_rows(None, "train", local_path=str(path), bad_rows=bad)) == 1 and len(bad) == 2
    assert "line 3 holds a JSON list; expected an object" in bad[1]


def test_math_rows_missing_fields_name_their_line(tmp_path):
    path = jsonl(tmp_path, json.dumps({"query": "q", "response": "r"}), json.dumps({"query": "only"}))
    with pytest.raises(
        BadDataError,
        match=rf"{re.escape(str(path))}: line 2: training rows need fields "
        r"query/response .* got fields \['query'\]",
    ):
        training_rows(load_rows(None, "train", local_path=str(path)))
    problems = jsonl(tmp_path, json.dumps({"question": "q", "answer": "#### 3"}), json.dumps({"question": "q"}))
    with pytest.raises(BadDataError, match=r"data.jsonl: line 2 has fields \['question'\]; expected GSM8K"):
        evaluation_problems(load_rows(None, "test", local_path=str(problems)), "gsm8k")
    no_marker = jsonl(tmp_path, json.dumps({"question": "q", "answer": "just 3"}), name="marker.jsonl")
    with pytest.raises(BadDataError, match=r"marker.jsonl: line 1: `answer` has no '#### <final answer>' line"):
        evaluation_problems(load_rows(None, "test", local_path=str(no_marker)), "gsm8k")
    bad: list = []
    kept = evaluation_problems(load_rows(None, "test", local_path=str(problems)), "gsm8k", bad)
    assert [p["reference"] for p in kept] == ["3"] and len(bad) == 1


def test_an_image_that_does_not_decode_names_its_file(tmp_path):
    for name in ("cat", "dog"):
        (tmp_path / "val" / name).mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(tmp_path / "val" / name / "0.png")
    broken = tmp_path / "val" / "dog" / "1.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    raw = load_raw_split("imagefolder", "val", data_dir=str(tmp_path))
    _, evaluation = build_transforms(8, (0.5,) * 3, (0.5,) * 3)
    dataset = TransformedImages(raw, [0, 1, 2], evaluation)
    assert dataset[0]["pixel_values"].shape == (3, 8, 8)
    with pytest.raises(
        ImageDecodeError,
        match=rf"{re.escape(str(broken))}: the image could not be decoded "
        r"\((OSError|UnidentifiedImageError).*expected an image file PIL can read",
    ):
        dataset[2]
