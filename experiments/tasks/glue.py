"""GLUE sentence(-pair) tasks: SST-2, CoLA, MRPC, QNLI, RTE, STS-B.

Data comes from a local folder in the original GLUE TSV layout (`task.data_dir`, default `$GLUE_DIR`) or, when none
is configured, from the hub (`load_dataset("nyu-mll/glue", <task>)`); with neither, a clear error. Protocol
(`../shared/reference/setup.md` §2): the GLUE validation split is the *test* split; a seeded, stratified 15% of
train (at least 300 rows) is held out as *validation* to pick the best epoch.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
from sklearn.model_selection import train_test_split

from experiments.runner.hub import explain_offline, offline_hint
from experiments.tasks.base import Splits, Task
from experiments.tasks.metrics import classification_metrics, regression_metrics

log = logging.getLogger("experiments.tasks.glue")


@dataclass(frozen=True)
class GlueLayout:
    """Where a task's text and label live: in the local TSVs (`folder`, columns) and on the hub (`hub_columns`)."""

    folder: str
    text_columns: tuple[str, ...]  # TSV header names (or positional names for header-less CoLA)
    label_column: str
    hub_columns: tuple[str, ...]
    num_labels: int = 2
    header: Optional[tuple[str, ...]] = None  # column names for files without a header line
    label_names: Optional[tuple[str, ...]] = None  # string labels in the TSVs, in hub id order
    has_local_train: bool = True
    score_range: Optional[tuple[float, float]] = None  # regression: the scale the scores are given on


LAYOUTS = {
    "sst2": GlueLayout("SST-2", ("sentence",), "label", ("sentence",)),
    "cola": GlueLayout(
        "CoLA", ("sentence",), "label", ("sentence",), header=("source", "label", "original_label", "sentence")
    ),
    "mrpc": GlueLayout("MRPC", ("#1 String", "#2 String"), "Quality", ("sentence1", "sentence2")),
    "qnli": GlueLayout(
        "QNLI",
        ("question", "sentence"),
        "label",
        ("question", "sentence"),
        label_names=("entailment", "not_entailment"),
        has_local_train=False,
    ),
    "rte": GlueLayout(
        "RTE",
        ("sentence1", "sentence2"),
        "label",
        ("sentence1", "sentence2"),
        label_names=("entailment", "not_entailment"),
    ),
    "stsb": GlueLayout(
        "STS-B", ("sentence1", "sentence2"), "score", ("sentence1", "sentence2"), num_labels=1, score_range=(0.0, 5.0)
    ),  # STS-B: similarity from 0 (unrelated) to 5 (equivalent)
}


class BadDataError(ValueError):
    """A data file holds a row the task cannot use; the message names the file, the line and what was expected."""


def read_tsv(
    path: Path,
    header: Optional[tuple[str, ...]] = None,
    *,
    required: tuple[str, ...] = (),
    bad_rows: Optional[list] = None,
) -> list[dict]:
    """Read a GLUE TSV: tab-separated, no quoting, optional UTF-8 BOM (MRPC), optional header (CoLA has none).
    Every row gets its line number under ``"_line"``. A file without rows, a header lacking a `required` column, or
    a line with the wrong number of fields raises `BadDataError`; with a `bad_rows` list, bad lines are appended to
    it instead (as messages) and skipped."""
    text = _decoded(Path(path))
    numbered = [(n, line.rstrip("\r")) for n, line in enumerate(text.split("\n"), start=1) if line.strip()]
    if not numbered or (not header and len(numbered) == 1):
        raise BadDataError(
            f"{path} is empty; expected a GLUE TSV with "
            f"{'rows of ' + ', '.join(header) if header else 'a header line and rows'}"
        )
    names = list(header) if header else numbered.pop(0)[1].split("\t")
    missing = [c for c in required if c not in names]
    if missing:
        raise BadDataError(f"{path}: no column(s) {missing}; expected the GLUE columns {list(required)}, found {names}")
    rows = []
    for number, line in numbered:
        cells = line.split("\t")
        if len(cells) != len(names):
            _bad_row(
                f"{path}: line {number} has {len(cells)} tab-separated fields, expected {len(names)} "
                f"({', '.join(names)})",
                bad_rows,
            )
            continue
        rows.append({**dict(zip(names, cells)), "_line": number})
    return rows


def _decoded(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise BadDataError(
            f"{path}: line {line} is not valid UTF-8 (byte {data[error.start]:#04x} at offset "
            f"{error.start}); expected a UTF-8 GLUE TSV"
        ) from None


def _bad_row(message: str, bad_rows: Optional[list]) -> None:
    if bad_rows is None:
        raise BadDataError(message + " (task.skip_bad_rows=true skips such rows and records how many)")
    bad_rows.append(message)


def stratified_subset(labels, size: int, seed: int, stratify: bool) -> np.ndarray:
    """Indices of a seeded subset of `size` rows (stratified by label for classification)."""
    indices = np.arange(len(labels))
    if size >= len(labels):
        return indices
    chosen, _ = train_test_split(
        indices, train_size=size, random_state=seed, stratify=np.asarray(labels) if stratify else None
    )
    return np.sort(chosen)


class GlueTask(Task):
    """One GLUE task. Config keys (`configs/task/glue/<name>.yaml`): `key` (sst2|cola|mrpc|qnli|rte|stsb), `metric`,
    `table`, `data_dir`, `hub_id`, `max_length`, `validation_fraction`, `validation_min_rows`, `train_subset`,
    `test_subset`. Reads `model.name_or_path`, `model.tokenizer`, `model.random_init` (see `Task`) and
    `model.pooling` (`cls`, the default, or `mean`)."""

    def __init__(
        self,
        key: str,
        metric: str,
        table: str = "glue",
        data_dir: Optional[str] = None,
        hub_id: str = "nyu-mll/glue",
        max_length: int = 512,
        validation_fraction: float = 0.15,
        validation_min_rows: int = 300,
        train_subset: Optional[int] = None,
        test_subset: Optional[int] = None,
        skip_bad_rows: bool = False,
    ):
        super().__init__(key=key, metric=metric, table=table)
        self.data_dir = data_dir
        self.hub_id = hub_id
        self.max_length = int(max_length)
        self.validation_fraction = float(validation_fraction)
        self.validation_min_rows = int(validation_min_rows)
        self.train_subset = train_subset
        self.test_subset = test_subset
        # Not in the task YAMLs (that would change every run's config hash): `+task.skip_bad_rows=true`.
        self.skip_bad_rows = bool(skip_bad_rows)
        self.skipped_rows: dict[str, int] = {}
        if not 0 < self.validation_fraction < 1:
            raise ValueError(f"task.validation_fraction={validation_fraction} must lie strictly between 0 and 1")

    # -- data -----------------------------------------------------------------------------------------------------
    @property
    def layout(self) -> GlueLayout:
        if self.key not in LAYOUTS:
            raise ValueError(f"task.key={self.key!r} is not a GLUE task; allowed: {sorted(LAYOUTS)}")
        return LAYOUTS[self.key]

    @property
    def is_regression(self) -> bool:
        return self.layout.num_labels == 1

    @property
    def num_labels(self) -> int:
        return self.layout.num_labels

    def load_raw(self) -> dict[str, dict[str, list]]:
        """{"train": columns, "test": columns}; columns = {"text_a": [...], "text_b": [...] or None, "label": [...]}
        where "test" is GLUE's validation split."""
        if self.data_dir:
            return self._load_local(Path(self.data_dir))
        return self._load_hub()

    def _load_local(self, root: Path) -> dict:
        layout = self.layout
        folder = root / layout.folder
        if not root.is_dir():
            raise ValueError(
                f"task.data_dir={str(root)!r} (or $GLUE_DIR) does not exist; point it at a folder in "
                f"the GLUE TSV layout (e.g. ../shared/data/glue) or unset it to use the hub"
            )
        if not layout.has_local_train and not (folder / "train.tsv").exists():
            raise ValueError(
                f"GLUE task {self.key!r}: {folder}/train.tsv is missing. The offline copy ships only "
                f"QNLI's dev split (train.tsv is 28 MB); run {self.key} with the hub ({self.hub_id}) "
                f"or add the original train.tsv to {folder}"
            )
        splits = {}
        for split, file_name in (("train", "train.tsv"), ("test", "dev.tsv")):
            path = folder / file_name
            if not path.exists():
                raise ValueError(
                    f"GLUE task {self.key!r}: expected {path} (GLUE TSV layout) under task.data_dir={str(root)!r}"
                )
            splits[split] = self._read_local(path)
        return splits

    def _read_local(self, path: Path) -> dict:
        """Columns of one local TSV; bad rows raise `BadDataError` naming file and line, or are skipped and
        counted in `skipped_rows` with `skip_bad_rows`."""
        layout = self.layout
        bad: Optional[list] = [] if self.skip_bad_rows else None
        rows = read_tsv(path, layout.header, required=(*layout.text_columns, layout.label_column), bad_rows=bad)
        kept = []
        for row in rows:
            try:
                row[layout.label_column] = self._label(row[layout.label_column], from_hub=False)
            except ValueError:
                _bad_row(
                    f"{path}: line {row['_line']} has {layout.label_column}={row[layout.label_column]!r}; "
                    f"expected {self._allowed_labels()}",
                    bad,
                )
                continue
            kept.append(row)
        if bad:
            self.skipped_rows[str(path)] = len(bad)
            log.warning("skipped %d bad rows of %s (task.skip_bad_rows=true), e.g. %s", len(bad), path, bad[0])
        if not kept:
            raise BadDataError(f"{path}: no usable rows (all {len(bad or [])} were bad)")
        return self._columns(kept, layout.text_columns, layout.label_column, parsed=True)

    def _allowed_labels(self) -> str:
        if self.is_regression:
            low, high = self.layout.score_range or (-math.inf, math.inf)
            return f"a finite number in [{low:g}, {high:g}] (the similarity score)"
        ids = list(range(self.num_labels))
        names = self.layout.label_names
        return f"one of {ids}" + (f" or {list(names)}" if names else "")

    def _load_hub(self) -> dict:
        try:
            import datasets

            loaded = datasets.load_dataset(self.hub_id, self.key)
        except Exception as error:
            raise RuntimeError(
                f"No data for GLUE task {self.key!r}: task.data_dir / $GLUE_DIR is not set and loading "
                f"{self.hub_id!r} from the hub failed ({type(error).__name__}: {str(error)[:200]}). "
                f"Set GLUE_DIR=../shared/data/glue or task.data_dir=<folder in GLUE TSV layout>."
                f" {offline_hint(self.hub_id)}".rstrip()
            ) from error
        return {
            split: self._columns(loaded[name], self.layout.hub_columns, "label", from_hub=True)
            for split, name in (("train", "train"), ("test", "validation"))
        }

    def _columns(self, rows, text_columns, label_column, from_hub: bool = False, parsed: bool = False) -> dict:
        if from_hub:
            rows = [dict(zip(rows.column_names, values)) for values in zip(*(rows[c] for c in rows.column_names))]
        labels = [row[label_column] if parsed else self._label(row[label_column], from_hub) for row in rows]
        text_b = [row[text_columns[1]] for row in rows] if len(text_columns) > 1 else None
        return {"text_a": [row[text_columns[0]] for row in rows], "text_b": text_b, "label": labels}

    def _label(self, value, from_hub: bool):
        if self.is_regression:
            return self._score(value)
        names = self.layout.label_names
        if names and not from_hub and isinstance(value, str) and value in names:
            return names.index(value)
        label = int(value)
        if not from_hub and not 0 <= label < self.num_labels:
            raise ValueError(f"label {label} out of range")
        return label

    def _score(self, value) -> float:
        """A regression label: finite and on the task's scale (a NaN label would make every metric NaN)."""
        score = float(value)
        low, high = self.layout.score_range or (-math.inf, math.inf)
        if not (math.isfinite(score) and low <= score <= high):
            raise ValueError(f"score {value!r} is not a finite number in [{low:g}, {high:g}]")
        return score

    def build_splits(self, processor, seed: int) -> Splits:
        raw = self.load_raw()
        train, test = raw["train"], raw["test"]
        if self.train_subset:
            self._check_subset("train_subset", self.train_subset, train["label"])
            train = _take(
                train, stratified_subset(train["label"], int(self.train_subset), seed, not self.is_regression)
            )
        if self.test_subset:
            self._check_subset("test_subset", self.test_subset, test["label"])
            test = _take(test, stratified_subset(test["label"], int(self.test_subset), seed, not self.is_regression))
        fit, held_out = self.hold_out(train, seed)
        train_set, validation_set, test_set = (self.tokenize(processor, part) for part in (fit, held_out, test))
        # Scores do not depend on row order; length-sorted evaluation batches carry far less padding.
        return Splits(train_set, by_length(validation_set), by_length(test_set))

    def _check_subset(self, name: str, size, labels) -> None:
        """A stratified subset needs a row of every class (sklearn would fail with its own message)."""
        classes = 1 if self.is_regression else len(set(labels))
        if int(size) < len(labels) and int(size) < max(classes, 2):
            raise ValueError(
                f"task.{name}={size} is too small for task {self.key!r}: a seeded subset needs at "
                f"least {max(classes, 2)} rows ({classes} classes); allowed: null or an integer "
                f">= {max(classes, 2)}"
            )

    def hold_out(self, train: dict, seed: int) -> tuple[dict, dict]:
        """Split train into (fit, validation): seeded, stratified, max(fraction·n, min_rows) validation rows."""
        n = len(train["label"])
        n_validation = max(math.ceil(self.validation_fraction * n), self.validation_min_rows)
        if n_validation >= n:
            raise ValueError(
                f"task {self.key!r}: holding out {n_validation} validation rows "
                f"(validation_fraction={self.validation_fraction}, validation_min_rows="
                f"{self.validation_min_rows}) leaves nothing of the {n} training rows"
            )
        indices = np.arange(n)
        stratify = None if self.is_regression else np.asarray(train["label"])
        fit, held = train_test_split(indices, test_size=n_validation, random_state=seed, stratify=stratify)
        return _take(train, np.sort(fit)), _take(train, np.sort(held))

    def tokenize(self, tokenizer, columns: dict):
        import datasets

        texts = [columns["text_a"]] + ([columns["text_b"]] if columns["text_b"] is not None else [])
        encoded = tokenizer(*texts, truncation=True, max_length=self.max_length)
        data = {name: list(values) for name, values in encoded.items()}
        data["labels"] = columns["label"]
        return datasets.Dataset.from_dict(data)

    # -- model and metrics ----------------------------------------------------------------------------------------
    def build_model(self, model_cfg):
        """The model's own sequence-classification head ([CLS]), or with `model.pooling: mean` the mean-pooled
        linear head that sentence-embedding checkpoints were trained for (experiments/tasks/pooling.py)."""
        from transformers import AutoModel, AutoModelForSequenceClassification

        problem = "regression" if self.is_regression else "single_label_classification"
        pooling = model_cfg.get("pooling") or "cls"
        if pooling == "cls":
            return load_pretrained(
                AutoModelForSequenceClassification, model_cfg, num_labels=self.num_labels, problem_type=problem
            )
        if pooling != "mean":
            raise ValueError(f"model.pooling={pooling!r}; allowed: 'cls' (the model's own head), 'mean'")
        from experiments.tasks.pooling import MeanPooledClassifier

        encoder, tokenizer = load_pretrained(AutoModel, model_cfg)
        return MeanPooledClassifier(encoder, self.num_labels, problem), tokenizer

    def data_collator(self, processor):
        from transformers import DataCollatorWithPadding

        return DataCollatorWithPadding(processor)

    def compute_metrics(self, eval_pred) -> dict[str, float]:
        predictions, labels = eval_pred.predictions, eval_pred.label_ids
        if self.is_regression:
            return regression_metrics(predictions, labels)
        return classification_metrics(predictions, labels)


def by_length(dataset):
    lengths = [len(ids) for ids in dataset["input_ids"]]
    return dataset.select(np.argsort(lengths, kind="stable"))


def _take(columns: dict, indices) -> dict:
    return {name: (None if values is None else [values[i] for i in indices]) for name, values in columns.items()}


def load_pretrained(auto_class, model_cfg, **head_kwargs):
    """(model, tokenizer) from `model.name_or_path` (hub id or local folder), or random weights of the shape in
    `model.random_init` (tests). The tokenizer comes from `model.tokenizer`, else `model.name_or_path`."""
    from omegaconf import OmegaConf
    from transformers import AutoConfig, AutoTokenizer

    random_init = model_cfg.get("random_init")
    source = model_cfg.get("name_or_path")
    tokenizer_source = model_cfg.get("tokenizer") or source
    if not random_init and not source:
        raise ValueError(
            f"model {model_cfg.get('key')!r}: set model.name_or_path (hub id or folder) or model.random_init"
        )
    if not tokenizer_source:
        raise ValueError(f"model {model_cfg.get('key')!r}: set model.tokenizer (no name_or_path to take it from)")
    if random_init:
        shape = OmegaConf.to_container(random_init, resolve=True)
        config = AutoConfig.for_model(**shape, **head_kwargs)
        model = auto_class.from_config(config)
    else:
        with explain_offline(source):
            model = auto_class.from_pretrained(source, **head_kwargs)
    with explain_offline(tokenizer_source):
        return model, AutoTokenizer.from_pretrained(tokenizer_source)
