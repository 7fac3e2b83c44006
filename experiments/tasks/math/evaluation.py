"""Score a model on math problems: prompt, generate greedily, extract, compare, summarise, save per-problem rows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, Sequence

from torch import nn

from experiments.runner.atomic import write_text_atomic
from experiments.tasks.math.data import format_prompt
from experiments.tasks.math.generation import generate, merged
from experiments.tasks.math.scoring import accuracy_summary, scorer


def write_jsonl_atomic(path: Path, rows: Sequence[dict]) -> None:
    """Write rows as JSON lines to `path` atomically (a killed run leaves no half file)."""
    write_text_atomic(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))


def score_generations(
    problems: Sequence[dict], generations: Sequence[str], answer_type: str, timeout: int = 5
) -> tuple[dict[str, float], list[dict]]:
    """Per-problem verdicts and the summary (`exact_match` with its 95% interval, extraction failures)."""
    if len(problems) != len(generations):
        raise ValueError(f"{len(problems)} problems but {len(generations)} generations")
    score = scorer(answer_type)
    rows = []
    for problem, text in zip(problems, generations):
        verdict = score(text, problem["reference"], **({"timeout": timeout} if answer_type == "math" else {}))
        rows.append(
            {
                "id": problem["id"],
                "question": problem["question"],
                "reference": problem["reference"],
                "generation": text,
                "extracted": verdict.extracted,
                "parsed": verdict.parsed,
                "correct": verdict.correct,
            }
        )
    metrics = accuracy_summary([row["correct"] for row in rows])
    metrics["extraction_failure_rate"] = (
        sum(row["extracted"] is None for row in rows) / len(rows) if rows else float("nan")
    )
    return metrics, rows


def evaluate_problems(
    model: nn.Module,
    tokenizer,
    problems: Sequence[dict],
    *,
    prompt_template: str,
    answer_type: str,
    max_new_tokens: int,
    batch_size: int = 8,
    stop_strings: Sequence[str] = (),
    backend: str = "transformers",
    predictions_path: Optional[Path] = None,
    progress: bool = True,
    description: str = "generating",
    math_verify_timeout: int = 5,
    gpu_memory_utilization: float = 0.5,
) -> tuple[dict[str, float], list[dict]]:
    """Merge the adapter, generate greedily for every problem, score, and (when `predictions_path` is given) save
    one JSON line per problem there. Returns ``(metrics, rows)``."""
    if not problems:
        raise ValueError("no problems to evaluate")
    prompts = [format_prompt(prompt_template, problem["question"]) for problem in problems]
    with merged(model):
        texts, timing = generate(
            model,
            tokenizer,
            prompts,
            backend=backend,
            max_new_tokens=max_new_tokens,
            batch_size=batch_size,
            stop_strings=stop_strings,
            progress=progress,
            description=description,
            gpu_memory_utilization=gpu_memory_utilization,
        )
    metrics, rows = score_generations(problems, texts, answer_type, timeout=math_verify_timeout)
    metrics.update({"generation_s": timing["generation_s"], "problems_per_s": timing["problems_per_s"]})
    if predictions_path is not None:
        write_jsonl_atomic(Path(predictions_path), rows)
    return metrics, rows
