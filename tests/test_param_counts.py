"""`make params`: the paper's parameter budgets, counted on meta-device models."""

from experiments.param_counts import BUDGETS, count


def test_roberta_budgets_match_the_paper():
    base, large = (count(b, with_gpart=True) for b in BUDGETS[:2])
    assert base["N"] == 12 * 2 * 768 * 768 == 14_155_776
    assert large["N"] == 24 * 2 * 1024 * 1024 == 50_331_648
    assert base["GPart"] == large["GPart"] == base["Uni-LoRA"] == large["Uni-LoRA"] == 23_040
    assert (base["LoRA"], large["LoRA"]) == (294_912, 786_432)  # 0.295M and 0.786M in paper_glue.csv
