"""load_adapter onto a model that already carries a GPart adapter: the saved configuration must be the one present."""

import pytest
import torch
from test_gpart_io import INPUT_IDS, tiny_roberta, trained_adapter

from gpart import GPartConfig, apply_gpart, load_adapter

SAVED = dict(d=50, seed=7, assignment="stateless", isometric=True)


@pytest.mark.parametrize("field,value", [("seed", 8), ("assignment", "balanced"), ("isometric", False), ("d", 60)])
def test_loading_onto_an_adapter_with_another_mapping_fails_naming_the_field(tmp_path, field, value):
    trained_adapter(tmp_path)
    carrier = apply_gpart(
        tiny_roberta(),
        GPartConfig(target_modules=["query", "value"], trainable_modules=["classifier"], **{**SAVED, field: value}),
    )
    before = {n: p.detach().clone() for n, p in carrier.named_parameters()}
    with pytest.raises(
        ValueError,
        match=rf"another GPart configuration.*{field}: model has {value!r}, "
        rf"adapter has {SAVED[field]!r}",
    ):
        load_adapter(carrier, tmp_path / "adapter")
    assert all(torch.equal(before[n], p) for n, p in carrier.named_parameters())  # nothing half-loaded


def test_loading_onto_an_identical_adapter_reuses_it_exactly(tmp_path):
    trained = trained_adapter(tmp_path)
    carrier = apply_gpart(
        tiny_roberta(),
        GPartConfig(target_modules=["query", "value"], trainable_modules=["classifier"], dropout=0.1, **SAVED),
    )
    load_adapter(carrier, tmp_path / "adapter")
    with torch.no_grad():
        assert torch.equal(trained(INPUT_IDS).logits, carrier.eval()(INPUT_IDS).logits)
