"""Math data: MetaMathQA for training; GSM8K, MATH and MATH500 for evaluation; prompt templates.

Every source loads from its hub id (`datasets.load_dataset`) or from a local JSONL file, and is normalised to plain
dicts: training rows ``{"query", "response"}``, evaluation problems ``{"id", "question", "reference"}``.

Offline stand-in for MetaMathQA (not in `../shared/data`): GSM8K train rows mapped to the same fields
(:func:`gsm8k_as_metamath`): calculator annotations ``<<...>>`` removed and the ``#### 18`` line rewritten as
MetaMathQA's closing ``The answer is: 18``.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Iterable, Optional

from experiments import shared_data_dir
from experiments.runner.hub import offline_hint
from experiments.tasks.math.scoring import gsm8k_reference, last_boxed

# Prompt templates: `prompt` is what the model sees at evaluation, `response` is appended for training (then EOS).
# Their concatenation is the full training text. Sources: ../shared/reference/setup.md §4.
PROMPT_TEMPLATES: dict[str, dict[str, str]] = {
    # GPart authors: "Question: {query}\nAnswer: {response}" + EOS.
    "gpart": {"prompt": "Question: {query}\nAnswer:", "response": " {response}"},
    # Uni-LoRA: Alpaca-style, the response opens with "Let's think step by step." (MetaMath's prompt).
    "unilora": {
        "prompt": (
            "Below is an instruction that describes a task. Write a response that appropriately completes "
            "the request.\n\n### Instruction:\n{query}\n\n### Response: Let's think step by step."
        ),
        "response": " {response}",
    },
}


def template(name: str) -> dict[str, str]:
    """The prompt template called `name` (`gpart` or `unilora`)."""
    if name not in PROMPT_TEMPLATES:
        raise ValueError(f"prompt_template={name!r} is not known; allowed: {sorted(PROMPT_TEMPLATES)}")
    return PROMPT_TEMPLATES[name]


def format_prompt(name: str, query: str) -> str:
    return template(name)["prompt"].format(query=query)


def format_response(name: str, response: str) -> str:
    return template(name)["response"].format(response=response)


def resolve_local(path: Optional[str]) -> Optional[Path]:
    """A local data file: absolute, relative to the working directory, or relative to the shared data folder.
    None when `path` is None or no such file exists."""
    if not path:
        return None
    for candidate in (Path(path), shared_data_dir() / path):
        if candidate.is_file():
            return candidate
    return None


class BadDataError(ValueError):
    """A data file holds a row the task cannot use; the message names the file, the line and what was expected."""


SOURCE_KEY = "_source"  # where a row came from ("<file>: line <n>"), for error messages


def bad_row(message: str, bad_rows: Optional[list]) -> None:
    """Raise `BadDataError`, or, when the caller collects `bad_rows` (`task.skip_bad_rows=true`), note it there."""
    if bad_rows is None:
        raise BadDataError(message + " (task.skip_bad_rows=true skips such rows and records how many)")
    bad_rows.append(message)


def read_jsonl(path: Path, limit: Optional[int] = None, bad_rows: Optional[list] = None) -> list[dict]:
    """One JSON object per line; each row remembers its file and line under `SOURCE_KEY`."""
    rows = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if limit is not None and len(rows) >= limit:
                break
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                bad_row(
                    f"{path}: line {number} is not valid JSON ({error.msg} at column {error.colno}); "
                    "expected one JSON object per line",
                    bad_rows,
                )
                continue
            if not isinstance(row, dict):
                bad_row(f"{path}: line {number} holds a JSON {type(row).__name__}; expected an object", bad_rows)
                continue
            rows.append({**row, SOURCE_KEY: f"{path}: line {number}"})
    return rows


def _where(row: dict, index: int) -> str:
    return row.get(SOURCE_KEY, f"row {index}")


def _fields(row: dict) -> list[str]:
    return sorted(k for k in row if k != SOURCE_KEY)


def _hub_rows(hub_id: str, configs: Optional[Iterable[str]], split: str, limit: Optional[int]) -> list[dict]:
    from datasets import load_dataset

    rows: list[dict] = []
    for config in list(configs) if configs else [None]:
        selection = split if limit is None else f"{split}[:{limit}]"
        try:
            dataset = load_dataset(hub_id, config, split=selection)
        except Exception as error:  # the hub is unreachable offline: say which file would have worked instead
            raise RuntimeError(
                f"could not load {hub_id!r} (config {config!r}, split {split!r}) from the hub: "
                f"{error}. Offline, point the task's local_path at a JSONL copy. "
                f"{offline_hint(hub_id)}".rstrip()
            ) from error
        rows.extend(dict(row) for row in dataset)
    return rows if limit is None else rows[:limit]


def load_rows(
    hub_id: Optional[str],
    split: str,
    *,
    local_path: Optional[str] = None,
    hub_configs: Optional[Iterable[str]] = None,
    limit: Optional[int] = None,
    sample_seed: Optional[int] = None,
    bad_rows: Optional[list] = None,
) -> list[dict]:
    """Raw rows from `local_path` when that file exists, else from the hub (`hub_id`, each of `hub_configs`).

    `limit` keeps the first rows (training: Uni-LoRA's "first 100K"). With `sample_seed` it is instead a seeded
    sample of all rows of every config, kept in their original order: the first N rows of MATH's seven subject
    configs would all be algebra. `bad_rows` (a list) collects unreadable local rows instead of failing on them."""
    if limit is not None and limit <= 0:
        raise ValueError(f"limit={limit!r} must be a positive number of rows or None (all rows)")
    sampled = limit is not None and sample_seed is not None
    read_limit = None if sampled else limit
    local = resolve_local(local_path)
    if local is not None:
        rows = read_jsonl(local, read_limit, bad_rows)
    elif local_path and not hub_id:
        raise FileNotFoundError(f"local_path={local_path!r} is not a file (also looked in {shared_data_dir()})")
    elif not hub_id:
        raise ValueError("neither hub_id nor an existing local_path was given")
    else:
        rows = _hub_rows(hub_id, hub_configs, split, read_limit)
    return seeded_sample(rows, limit, sample_seed) if sampled else rows


def seeded_sample(rows: list[dict], size: int, seed: int) -> list[dict]:
    """`size` rows drawn without replacement with `seed`, in their original order (all rows if there are fewer)."""
    if size >= len(rows):
        return rows
    chosen = sorted(random.Random(seed).sample(range(len(rows)), size))
    return [rows[i] for i in chosen]


# -- training rows -------------------------------------------------------------------------------------------------
_CALCULATOR = re.compile(r"<<[^>]*>>")


def gsm8k_as_metamath(row: dict) -> dict:
    """A GSM8K train row in MetaMathQA's fields and answer style (offline stand-in for MetaMathQA)."""
    reasoning, final = row["answer"].rsplit("####", 1)
    reasoning = _CALCULATOR.sub("", reasoning).strip()
    return {"query": row["question"], "response": f"{reasoning}\nThe answer is: {final.strip()}"}


def training_rows(rows: list[dict], bad_rows: Optional[list] = None) -> list[dict]:
    """Normalise MetaMathQA rows (`query`, `response`) or GSM8K rows (`question`, `answer`) to query/response."""
    if not rows:
        raise ValueError("the training data is empty")
    normalised = []
    for index, row in enumerate(rows):
        if {"query", "response"} <= row.keys():
            normalised.append({"query": row["query"], "response": row["response"]})
        elif {"question", "answer"} <= row.keys() and "####" in str(row["answer"]):
            normalised.append(gsm8k_as_metamath(row))
        else:
            bad_row(
                f"{_where(row, index)}: training rows need fields query/response (MetaMathQA) or "
                f"question/answer with a '#### <answer>' line (GSM8K); got fields {_fields(row)}",
                bad_rows,
            )
    if not normalised:
        raise BadDataError(f"no usable training rows (all {len(rows)} were bad)")
    return normalised


# -- evaluation problems -------------------------------------------------------------------------------------------
def evaluation_problems(rows: list[dict], answer_type: str, bad_rows: Optional[list] = None) -> list[dict]:
    """Normalise GSM8K (`question`, `answer` with ``####``), MATH500 (`problem`, `answer`) or MATH (`problem`,
    `solution` whose last ``\\boxed{}`` is the answer) rows to ``{"id", "question", "reference"}``."""
    problems = []
    for index, row in enumerate(rows):
        if "question" in row and "answer" in row and answer_type == "gsm8k":
            if "####" not in str(row["answer"]):
                bad_row(f"GSM8K {_where(row, index)}: `answer` has no '#### <final answer>' line", bad_rows)
                continue
            question, reference = row["question"], gsm8k_reference(row["answer"])
        elif "problem" in row:
            question = row["problem"]
            reference = row.get("answer") or last_boxed(row.get("solution", ""))
            if reference is None:
                bad_row(f"MATH {_where(row, index)} has neither `answer` nor a \\boxed{{}} in its solution", bad_rows)
                continue
        else:
            bad_row(
                f"evaluation {_where(row, index)} has fields {_fields(row)}; expected GSM8K (question, answer) "
                f"or MATH (problem, answer/solution) with answer_type {answer_type!r}",
                bad_rows,
            )
            continue
        problems.append({"id": str(row.get("unique_id", index)), "question": question, "reference": reference})
    return problems
