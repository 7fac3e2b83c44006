"""`make params`: the paper's parameter budgets, counted on meta-device models."""

import pytest

from experiments.tools.param_counts import BUDGETS, PAPER_GLUE, count, count_peer


def test_roberta_budgets_match_the_paper():
    base, large = (count(b, with_gpart=True) for b in BUDGETS[:2])
    assert base["N"] == 12 * 2 * 768 * 768 == 14_155_776
    assert large["N"] == 24 * 2 * 1024 * 1024 == 50_331_648
    assert base["GPart"] == large["GPart"] == base["Uni-LoRA"] == large["Uni-LoRA"] == 23_040
    assert (base["LoRA"], large["LoRA"]) == (294_912, 786_432)  # 0.295M and 0.786M in paper_glue.csv


@pytest.mark.parametrize(
    "method,size,count,paper",
    [
        ("tied_lora", "base", 43_200, "0.043M"),
        ("tied_lora", "large", 65_728, "0.066M"),
        ("lora_xs", "large", 24_576, "0.025M"),
        ("condlora", "base", 24_576, ""),
    ],
)
def test_peer_counts_equal_the_paper_table(method, size, count, paper):
    """`make params`: counted through the registry on the GLUE experiment config; CondLoRA has no paper row."""
    row = count_peer(method, size)
    assert row["trainable"] == count
    if PAPER_GLUE.exists():
        assert row["paper"] == paper
        if paper:
            assert f"{count / 1e6:.3f}M" == paper
