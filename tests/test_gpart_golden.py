"""Every golden case of the authors' code (../shared/reference/golden/): the same logits and the same merged ΔW here.

Each case builds the tiny model from its exact base weights, applies our GPart with the authors' config translated
by ``gpart.authors_format`` (variants included), sets their θ, and compares the eval-mode logits (within 1e-5) and
merge − base for every tensor the authors' merge changed (within 1e-6). ``adapter-with-head`` instead loads the
directory their ``save_pretrained`` wrote. A last test shows the comparison discriminates: with the variant switched
off, the variant cases' logits are missed by far more than the tolerance.
"""

from __future__ import annotations

import json

import pytest
import torch
import transformers
from conftest import SHARED_DATA
from safetensors.torch import load_file

from gpart import GPartConfig, apply_gpart, find_adapter, gpart_layers, load_adapter, merge
from gpart.authors_format import config_from_authors

GOLDEN = SHARED_DATA.parent / "reference" / "golden"
LOGIT_TOLERANCE, DELTA_TOLERANCE = 1e-5, 1e-6

if not (GOLDEN / "manifest.json").is_file():
    pytest.skip(f"golden files not found at {GOLDEN} (set GPART_SHARED_DATA)", allow_module_level=True)

CASES = {case["name"]: case for case in json.loads((GOLDEN / "manifest.json").read_text())["cases"]}
VARIANT_CASES = ["fastfood", "fastfood-noniso", "block-scope", "signed-magnitude"]


def base_model(case: dict) -> torch.nn.Module:
    values = dict(case["model_config"])
    config = transformers.AutoConfig.for_model(values.pop("model_type"), **values)
    model = getattr(transformers, case["model_class"])(config)
    model.load_state_dict(load_file(GOLDEN / f"{case['model']}.base.safetensors"))
    return model.eval()


def adapted_model(case: dict, **overrides) -> tuple[torch.nn.Module, dict]:
    data = load_file(GOLDEN / f"{case['name']}.safetensors")
    model = base_model(case)
    config = {**config_from_authors(case["authors_config"]), **overrides}
    apply_gpart(model, GPartConfig.from_dict(config))
    (theta_key,) = case["theta_keys"]
    with torch.no_grad():
        find_adapter(model).theta.copy_(data[f"theta/{theta_key}"])
    return model, data


def logits_of(model, data) -> torch.Tensor:
    with torch.no_grad():
        return model(data["input_ids"]).logits


@pytest.mark.parametrize("name", [name for name in CASES if name != "adapter-with-head"])
def test_golden_case_logits_and_merged_delta(name):
    case = CASES[name]
    model, data = adapted_model(case)
    logit_error = (logits_of(model, data) - data["logits"]).abs().max().item()
    assert logit_error <= LOGIT_TOLERANCE, f"{name}: max |Δlogit| = {logit_error:.3g}"
    assert case["max_abs_logit_change"] > 100 * LOGIT_TOLERANCE  # the adapter is not a no-op at this tolerance

    base = load_file(GOLDEN / f"{case['model']}.base.safetensors")
    merge(model)
    merged = {
        f"{layer_name}.{pname}": getattr(layer.base_layer, pname).detach()
        for layer_name, layer in gpart_layers(model)
        for pname, _ in layer._adapted()
    }
    expected = {key.removeprefix("delta/"): value for key, value in data.items() if key.startswith("delta/")}
    assert len(expected) == case["n_delta_tensors"] and set(merged) == set(expected)
    delta_error = max((merged[n] - base[n] - expected[n]).abs().max().item() for n in expected)
    assert delta_error <= DELTA_TOLERANCE, f"{name}: max |ΔW error| = {delta_error:.3g}"


def test_authors_saved_adapter_with_head_gives_their_logits():
    case = CASES["adapter-with-head"]
    data = load_file(GOLDEN / "adapter-with-head.safetensors")
    model = base_model(case)
    before = logits_of(model, data)
    load_adapter(model, GOLDEN / "adapter-with-head.authors-adapter")
    error = (logits_of(model, data) - data["logits"]).abs().max().item()
    assert error <= LOGIT_TOLERANCE, f"max |Δlogit| = {error:.3g}"
    assert (before - data["logits"]).abs().max() > 100 * LOGIT_TOLERANCE
    theta = data["theta/base_model.gpart_theta_d.default"]
    assert torch.equal(find_adapter(model).theta.detach(), theta)


@pytest.mark.parametrize("name", VARIANT_CASES)
def test_without_the_variant_the_golden_logits_are_missed(name):
    defaults = dict(projection="partition", partition_scope="global", grouping="random")
    model, data = adapted_model(CASES[name], **defaults)
    assert (logits_of(model, data) - data["logits"]).abs().max() > 100 * LOGIT_TOLERANCE
