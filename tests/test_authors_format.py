"""The authors' adapter format, both directions, on the golden files (../shared/reference/golden/)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file
from test_gpart_golden import CASES, GOLDEN, LOGIT_TOLERANCE, adapted_model, base_model, logits_of
from test_gpart_variants import make

from gpart import find_adapter, load_adapter, save_adapter
from gpart.authors_format import config_from_authors, config_to_authors
from gpart.convert import main as convert_main
from gpart.convert import to_authors

AUTHORS_DIR = GOLDEN / "adapter-with-head.authors-adapter"


def authors_config() -> dict:
    return json.loads((AUTHORS_DIR / "adapter_config.json").read_text())


def test_their_config_translates_field_by_field():
    ours = config_from_authors(authors_config())
    assert ours == {
        "d": 150,
        "target_modules": ["query", "value"],
        "isometric": True,
        "init_bound": 0.0,
        "partition_scope": "global",
        "seed": 6,
        "dropout": 0.0,
        "projection": "partition",
        "grouping": "random",
        "bias": "none",
        "trainable_modules": ["classifier"],
    }


def test_an_adapter_saved_here_exports_to_their_layout(tmp_path):
    """Their directory → load here → save ours → export: the same field names, values and tensors as theirs."""
    model = base_model(CASES["adapter-with-head"])
    load_adapter(model, AUTHORS_DIR)
    save_adapter(model, tmp_path / "ours")
    convert_main([str(tmp_path / "ours"), str(tmp_path / "theirs")])
    exported = json.loads((tmp_path / "theirs" / "adapter_config.json").read_text())
    original = authors_config()
    assert set(exported) == set(original)
    metadata_fields = {"auto_mapping", "base_model_name_or_path", "peft_version"}  # who saved it, not what it is
    assert {k: v for k, v in exported.items() if k not in metadata_fields} == {
        k: v for k, v in original.items() if k not in metadata_fields
    }
    theirs = load_file(AUTHORS_DIR / "adapter_model.safetensors")
    ours = load_file(tmp_path / "theirs" / "adapter_model.safetensors")
    assert set(ours) == set(theirs) and all(torch.equal(ours[k], theirs[k]) for k in theirs)


@pytest.mark.parametrize("case", ["block-scope", "signed-magnitude", "fastfood-noniso", "bias-all"])
def test_exported_variant_adapters_load_back_with_the_same_logits(tmp_path, case):
    model, data = adapted_model(CASES[case])
    save_adapter(model, tmp_path / "ours")
    to_authors(tmp_path / "ours", tmp_path / "theirs")
    exported = json.loads((tmp_path / "theirs" / "adapter_config.json").read_text())
    assert {k: exported[k] for k in CASES[case]["authors_config"]} == CASES[case]["authors_config"]
    fresh = load_adapter(base_model(CASES[case]), tmp_path / "theirs")
    assert (logits_of(fresh, data) - data["logits"]).abs().max() <= LOGIT_TOLERANCE


@pytest.mark.parametrize(
    "change,message",
    [
        (
            {"assignment_backend": "materialized"},
            "assignment_backend='materialized' with grouping_strategy='random' .* allowed: 'stateless'",
        ),
        (
            {"grouping_strategy": "signed_magnitude"},
            "assignment_backend='stateless' with grouping_strategy='signed_magnitude' .* allowed: 'materialized'",
        ),
        ({"layers_to_transform": [0]}, r"layers_to_transform=\[0\] in the authors' config is not supported"),
        ({"bias": "some"}, "bias='some' in the authors' config; allowed: 'none', 'all', 'gpart_only'"),
    ],
)
def test_their_configs_we_cannot_reproduce_are_refused_by_name(tmp_path, change, message):
    shutil.copytree(AUTHORS_DIR, tmp_path / "adapter")
    (tmp_path / "adapter" / "adapter_config.json").write_text(json.dumps({**authors_config(), **change}))
    with pytest.raises(ValueError, match=message):
        load_adapter(base_model(CASES["adapter-with-head"]), tmp_path / "adapter")


def test_stray_tensors_in_their_file_are_refused(tmp_path):
    from safetensors.torch import save_file

    shutil.copytree(AUTHORS_DIR, tmp_path / "adapter")
    tensors = {**load_file(AUTHORS_DIR / "adapter_model.safetensors"), "base_model.lora_A": torch.zeros(2)}
    save_file(tensors, tmp_path / "adapter" / "adapter_model.safetensors")
    with pytest.raises(ValueError, match="holds 'base_model.lora_A'; expected 'base_model.gpart_theta_d'"):
        load_adapter(base_model(CASES["adapter-with-head"]), tmp_path / "adapter")


def test_balanced_assignment_has_no_export(tmp_path):
    model = make(d=5, assignment="balanced")
    save_adapter(model, tmp_path / "ours")
    with pytest.raises(ValueError, match="assignment='balanced' has no equivalent in the authors' code"):
        to_authors(tmp_path / "ours", tmp_path / "theirs")
    assert config_to_authors(find_adapter(make(d=5)).config.to_dict())["assignment_backend"] == "stateless"


def test_convert_cli_reports_errors_without_a_traceback(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        convert_main([str(tmp_path / "missing"), str(tmp_path / "out")])
    assert exit_info.value.code == 2 and "no GPart adapter at" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
