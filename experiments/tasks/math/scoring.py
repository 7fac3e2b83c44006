"""Answer extraction and scoring for GSM8K and MATH (exact match), with a 95% interval for the accuracy.

Protocol (`../shared/reference/setup.md` §4): the model's answer is what follows the last "The answer is" (the
MetaMathQA response format) or, failing that, the content of the last ``\\boxed{}``. GSM8K compares numbers exactly;
MATH compares by symbolic equivalence with `math-verify`. **A prediction whose extraction or parsing fails is wrong,
never right**, and so is any comparison that raises or times out (Uni-LoRA's MATH scorer counted a throwing
normalisation as correct; setup.md §4 lists that as the bug to avoid).

`math-verify` bounds its work with ``signal.alarm``, which only works in the main thread. :func:`math_equal` uses
that timeout in the main thread and runs without it elsewhere (math-verify then cannot be interrupted; see
docs/math.md).
"""

from __future__ import annotations

import math
import re
import threading
from dataclasses import dataclass
from fractions import Fraction
from typing import Optional

ANSWER_TRIGGER = re.compile(r"the answer is\s*:?", re.IGNORECASE)
_BOXED = re.compile(r"\\(?:boxed|fbox)\s*")
# A number: optional sign, digits with optional thousands groups or a decimal part, or a fraction a/b.
_NUMBER = re.compile(r"-?\s*(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:\s*/\s*\d+)?|-?\.\d+")
_LATEX_FRAC = re.compile(r"\\[dt]?frac\s*\{\s*(-?[\d.,]+)\s*\}\s*\{\s*(-?[\d.,]+)\s*\}")


def last_boxed(text: str) -> Optional[str]:
    """Content of the last ``\\boxed{...}`` (or ``\\fbox{...}``) with balanced braces; ``\\boxed 5`` gives ``5``.
    None when there is none or its braces never close."""
    matches = list(_BOXED.finditer(text))
    if not matches:
        return None
    start = matches[-1].end()
    if start >= len(text):
        return None
    if text[start] != "{":
        token = re.match(r"[^\s$]+", text[start:])
        return token.group(0) if token else None
    depth = 0
    for position in range(start, len(text)):
        if text[position] == "{":
            depth += 1
        elif text[position] == "}":
            depth -= 1
            if depth == 0:
                return text[start + 1 : position]
    return None


def _strip_answer(span: str) -> str:
    span = span.strip()
    # Only the first line: models often continue with a new question after answering.
    span = span.split("\n", 1)[0].strip()
    span = span.rstrip(".").strip()
    if span.startswith("$") and span.endswith("$") and len(span) > 1:
        span = span.strip("$").strip()
    return span.rstrip(".").strip()


def extract_answer(text: str) -> Optional[str]:
    """The answer span of a generated solution: after the last "The answer is" (a ``\\boxed{}`` inside it is
    unwrapped), else the last ``\\boxed{}``'s content. None when neither is present or the span is empty."""
    triggers = list(ANSWER_TRIGGER.finditer(text))
    if triggers:
        span = text[triggers[-1].end() :]
        boxed = last_boxed(span.split("\n", 1)[0])
        span = _strip_answer(boxed if boxed is not None else span)
        if span:
            return span
    boxed = last_boxed(text)
    if boxed is not None and _strip_answer(boxed):
        return _strip_answer(boxed)
    return None


def parse_number(span: Optional[str]) -> Optional[Fraction]:
    """The first number in an answer span (after its last "=", if any) as an exact fraction, tolerating thousands
    commas, currency signs, units, LaTeX ``\\frac{a}{b}``, percent signs and a trailing period. None when there is
    no number."""
    if span is None:
        return None
    text = span.replace("\\!", "").replace("{,}", ",").replace("\\$", "$").replace("−", "-")
    text = text.rsplit("=", 1)[-1]  # "2 + 3 = 5": the value is what the last equation sign gives
    latex_fraction = _LATEX_FRAC.search(text)
    if latex_fraction:
        text = (
            text[: latex_fraction.start()]
            + f"{latex_fraction.group(1)}/{latex_fraction.group(2)}"
            + text[latex_fraction.end() :]
        )
    match = _NUMBER.search(text)
    if match is None:
        return None
    literal = re.sub(r"[\s,]", "", match.group(0))
    try:
        if "/" in literal:
            numerator, denominator = literal.split("/")
            return Fraction(numerator) / Fraction(denominator)
        return Fraction(literal)
    except (ValueError, ZeroDivisionError):
        return None


def gsm8k_reference(answer: str) -> str:
    """The final answer of a GSM8K reference solution (after ``####``)."""
    if "####" not in answer:
        raise ValueError(f"GSM8K reference answer has no '####' marker: {answer[-80:]!r}")
    return answer.rsplit("####", 1)[1].strip()


@dataclass
class Score:
    """One problem's verdict. `extracted` is the answer span (None: extraction failed), `parsed` what it was
    compared as (None: parsing failed), `correct` the verdict."""

    correct: bool
    extracted: Optional[str]
    parsed: Optional[str]


def score_gsm8k(generated: str, reference: str) -> Score:
    """Exact numeric match of the extracted answer with the reference number (commas, units, ``$`` ignored)."""
    extracted = extract_answer(generated)
    predicted = parse_number(extracted)
    expected = parse_number(reference)
    if expected is None:
        raise ValueError(f"GSM8K reference {reference!r} is not a number")
    return Score(
        correct=predicted is not None and predicted == expected,
        extracted=extracted,
        parsed=None if predicted is None else str(predicted),
    )


def _timeout_seconds(seconds: int) -> Optional[int]:
    # math-verify's timeout is signal.alarm: only usable in the main thread.
    return seconds if threading.current_thread() is threading.main_thread() else None


def _math_parse(latex: str, timeout: int):
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse
    from sympy import Basic, MatrixBase

    parsed = parse(
        f"${latex}$",
        extraction_config=[LatexExtractionConfig(), ExprExtractionConfig()],
        parsing_timeout=_timeout_seconds(timeout),
    )
    # math-verify appends the raw string as a fallback; a string alone means the parse failed.
    return [item for item in parsed if isinstance(item, (Basic, MatrixBase))], parsed


def math_equal(predicted: str, reference: str, timeout: int = 5) -> tuple[bool, Optional[str]]:
    """Symbolic equivalence of two LaTeX answers with math-verify. Returns ``(equal, parsed prediction)``; a
    prediction or reference that does not parse, a comparison that raises or times out: ``(False, ...)``."""
    from math_verify import verify

    try:
        gold, gold_all = _math_parse(reference, timeout)
        target, target_all = _math_parse(predicted, timeout)
        if not gold or not target:
            return False, None if not target else str(target[0])
        equal = verify(gold_all, target_all, timeout_seconds=_timeout_seconds(timeout))
        return bool(equal), str(target[0])
    except Exception:  # noqa: BLE001 - any failure inside the comparison is a wrong answer, never a right one
        return False, None


def score_math(generated: str, reference: str, timeout: int = 5) -> Score:
    """MATH: the extracted answer is correct when math-verify finds it equivalent to the reference answer."""
    extracted = extract_answer(generated)
    if extracted is None:
        return Score(correct=False, extracted=None, parsed=None)
    equal, parsed = math_equal(extracted, reference, timeout=timeout)
    return Score(correct=equal, extracted=extracted, parsed=parsed)


SCORERS = {"gsm8k": score_gsm8k, "math": score_math}


def scorer(kind: str):
    """The scoring function for an answer kind (`gsm8k`: numeric, `math`: symbolic)."""
    if kind not in SCORERS:
        raise ValueError(f"answer_type={kind!r} is not known; allowed: {sorted(SCORERS)}")
    return SCORERS[kind]


def wilson_interval(correct: int, total: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """95% Wilson score interval for a binomial proportion (sensible at 0, 1 and small n, unlike the normal one)."""
    if total <= 0:
        return (float("nan"), float("nan"))
    p = correct / total
    denominator = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denominator
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denominator
    # Exact ends at 0 and n correct (the formula gives them up to rounding).
    low = 0.0 if correct == 0 else max(0.0, centre - half)
    high = 1.0 if correct == total else min(1.0, centre + half)
    return (low, high)


def accuracy_summary(verdicts: list[bool]) -> dict[str, float]:
    """``exact_match`` (fraction), its 95% Wilson interval, the counts."""
    correct, total = sum(bool(v) for v in verdicts), len(verdicts)
    low, high = wilson_interval(correct, total)
    return {
        "exact_match": correct / total if total else float("nan"),
        "exact_match_ci95_low": low,
        "exact_match_ci95_high": high,
        "num_correct": float(correct),
        "num_problems": float(total),
    }
