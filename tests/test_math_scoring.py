"""Answer extraction and scoring: tricky GSM8K / MATH answers, failed parses, throwing comparisons, threads."""

from __future__ import annotations

import threading

import pytest

from experiments.tasks.math import scoring
from experiments.tasks.math.scoring import (
    accuracy_summary,
    extract_answer,
    gsm8k_reference,
    last_boxed,
    math_equal,
    parse_number,
    score_gsm8k,
    score_math,
    wilson_interval,
)

# (generated text, reference, expected verdict, what it checks). Rendered as the scorer's table in docs/math.md.
GSM8K_CASES = [
    ("Sum them.\nThe answer is: 1,000", "1000", True, "thousands comma"),
    ("The answer is: 1,000,000", "1000000", True, "two thousands commas"),
    ("The answer is $1,234.00.", "1234", True, "currency, decimals, trailing period"),
    ("The answer is: 18 dollars", "18", True, "unit after the number"),
    ("The answer is: 5.00", "5", True, "trailing zeros"),
    ("The answer is 10%", "10", True, "percent sign"),
    ("The answer is: -3", "-3", True, "negative"),
    ("The answer is: 16 - 3 - 4 = 9", "9", True, "an equation: the value after the last ="),
    ("The answer is: 3", "-3", False, "sign matters"),
    ("The answer is: \\frac{10}{2}", "5", True, "LaTeX fraction, exact value"),
    ("So $\\boxed{42}$.", "42", True, "last \\boxed{} without a trigger"),
    ("The answer is 3. Wait, no.\nThe answer is: 4", "4", True, "the last trigger wins"),
    ("THE ANSWER IS: 7", "7", True, "trigger case-insensitive"),
    ("The answer is: 17", "18", False, "wrong number"),
    ("She has 18 eggs left.", "18", False, "no trigger, no box: parse failure is wrong (no last-number fallback)"),
    ("The answer is:", "18", False, "empty answer"),
    ("The answer is: eighteen", "18", False, "words do not parse"),
    ("The answer is: 18.5", "18", False, "no rounding"),
]

MATH_CASES = [
    ("The answer is: \\frac{1}{2}", "\\frac12", True, "\\frac12 shorthand"),
    ("Thus $\\boxed{0.5}$.", "\\frac{1}{2}", True, "decimal vs fraction"),
    ("$\\boxed{\\dfrac{14}{3}}$", "\\frac{14}{3}", True, "\\dfrac"),
    ("\\boxed{\\frac{\\sqrt{3}}{2}}", "\\frac{\\sqrt3}{2}", True, "nested braces"),
    ("\\boxed{\\sqrt{117}}", "3\\sqrt{13}", True, "symbolic equality"),
    ("\\boxed{[2,5)}", "[2, 5)", True, "half-open interval"),
    ("\\boxed{(2,5)}", "[2,5)", False, "interval ends differ"),
    ("The answer is: (-\\infty, 3]", "(-\\infty,3]", True, "infinite interval"),
    ("\\boxed{90^\\circ}", "90^\\circ", True, "degrees"),
    ("\\boxed{x=5}", "5", True, "equation vs value"),
    (
        "\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}",
        "\\left( 3, \\frac{\\pi}{2} \\right)",
        True,
        "tuple, \\left( \\right)",
    ),
    ("\\boxed{-2, 1}", "1,-2", True, "unordered solution list"),
    ("\\boxed{\\text{Evelyn}}", "\\text{Evelyn}", True, "text answer"),
    ("\\boxed{4\\text{ cm}}", "4", True, "units in \\text{}"),
    ("\\boxed{6-5i}", "6 - 5i", True, "complex number"),
    ("\\boxed{1} is wrong, it is \\boxed{2}", "2", True, "last \\boxed{} wins"),
    ("The answer is $\\boxed{5}$.", "5", True, "\\boxed{} after the trigger"),
    ("\\boxed{\\frac{1}{3}}", "\\frac12", False, "wrong value"),
    ("The answer is:", "5", False, "empty answer"),
    ("\\boxed{5", "5", False, "unclosed \\boxed: extraction fails"),
    ("The answer is one half, 1/2 maybe", "\\frac{1}{2}", False, "words before the number: no clean parse"),
    ("no final answer, just 1/2", "\\frac{1}{2}", False, "no trigger, no box"),
]


@pytest.mark.parametrize("generated, reference, expected, why", GSM8K_CASES, ids=[c[3] for c in GSM8K_CASES])
def test_gsm8k_scoring_table(generated, reference, expected, why):
    assert score_gsm8k(generated, reference).correct is expected


@pytest.mark.parametrize("generated, reference, expected, why", MATH_CASES, ids=[c[3] for c in MATH_CASES])
def test_math_scoring_table(generated, reference, expected, why):
    assert score_math(generated, reference).correct is expected


def test_failed_extraction_is_recorded_as_none():
    score = score_gsm8k("I do not know", "3")
    assert (score.correct, score.extracted, score.parsed) == (False, None, None)
    assert score_math("\\boxed{5", "5").extracted is None


def test_last_boxed_balances_braces_and_handles_bare_form():
    assert last_boxed("a \\boxed{\\frac{1}{2}} b \\boxed{x^{2}}") == "x^{2}"
    assert last_boxed("\\boxed 7 apples") == "7"
    assert last_boxed("\\fbox{3}") == "3"
    assert last_boxed("\\boxed{1 + {2}") is None
    assert last_boxed("no box") is None


def test_extract_answer_keeps_only_the_first_line_after_the_trigger():
    assert extract_answer("The answer is: 12\nQuestion: what is 3+4?") == "12"
    assert extract_answer("The answer is: $\\frac{3}{4}$.") == "\\frac{3}{4}"


def test_parse_number_is_exact():
    assert parse_number("0.1") + parse_number("0.2") == parse_number("0.3")  # Fractions, not floats
    assert parse_number("3/4") == parse_number("\\frac{3}{4}") == parse_number("0.75")
    assert parse_number(None) is None and parse_number("many") is None


def test_gsm8k_reference_takes_the_text_after_the_marker():
    assert gsm8k_reference("Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 eggs.\n#### 1,800") == "1,800"
    with pytest.raises(ValueError, match="####"):
        gsm8k_reference("no marker here")


def test_gsm8k_rejects_a_non_numeric_reference():
    with pytest.raises(ValueError, match="not a number"):
        score_gsm8k("The answer is 3", "three")


def test_a_comparison_that_throws_is_wrong_never_right(monkeypatch):
    """Uni-LoRA's MATH scorer counted a throwing normalisation as correct (setup.md §4): here it is wrong."""
    import math_verify

    def explode(*args, **kwargs):
        raise RuntimeError("normalisation failed")

    monkeypatch.setattr(math_verify, "verify", explode)
    assert score_math("\\boxed{5}", "5").correct is False
    monkeypatch.setattr(math_verify, "parse", explode)
    assert math_equal("5", "5") == (False, None)


def test_an_unparsable_reference_makes_the_problem_wrong():
    assert math_equal("5", "}{")[0] is False


def test_math_verify_works_outside_the_main_thread():
    """math-verify's timeout uses signal.alarm (main thread only); the scorer drops the timeout elsewhere."""
    results = {}

    def work():
        try:
            results["verdict"] = score_math("\\boxed{\\frac{2}{4}}", "\\frac12").correct
        except Exception as error:  # noqa: BLE001 - the test reports it
            results["error"] = error

    thread = threading.Thread(target=work)
    thread.start()
    thread.join(60)
    assert results == {"verdict": True}


def test_wilson_interval_known_values():
    z2 = 1.959963984540054**2
    low, high = wilson_interval(0, 4)
    assert low == 0.0 and high == pytest.approx(z2 / (4 + z2))  # closed form at p = 0
    low, high = wilson_interval(50, 100)
    assert 0.5 - low == pytest.approx(high - 0.5)  # symmetric at p = 1/2
    assert (low, high) == pytest.approx((0.4038, 0.5962), abs=1e-4)
    low, high = wilson_interval(660, 1319)  # GSM8K-sized: close to the normal interval
    p = 660 / 1319
    half = 1.96 * (p * (1 - p) / 1319) ** 0.5
    assert (low, high) == pytest.approx((p - half, p + half), abs=1e-3)


def test_accuracy_summary_counts_and_bounds():
    summary = accuracy_summary([True, False, True, True])
    assert summary["exact_match"] == 0.75 and summary["num_correct"] == 3 and summary["num_problems"] == 4
    assert summary["exact_match_ci95_low"] < 0.75 < summary["exact_match_ci95_high"]


def test_unknown_answer_type_is_a_clear_error():
    with pytest.raises(ValueError, match="answer_type='mcq'.*allowed"):
        scoring.scorer("mcq")
