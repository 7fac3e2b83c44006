"""The installed libraries meet the floors the code relies on; a too-old transformers is refused with a clear message
(pyproject.toml and experiments/runner/dependencies.py state the same floor)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from packaging.version import Version

from experiments.runner.dependencies import MIN_TRANSFORMERS, check_transformers

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def declared_floor(package: str) -> str:
    match = re.search(rf'"{re.escape(package)}>=([0-9][^",;<]*)', PYPROJECT.read_text())
    assert match, f"pyproject.toml declares no floor for {package}"
    return match.group(1)


def test_installed_transformers_meets_the_floor():
    import transformers

    floor = declared_floor("transformers")
    assert Version(transformers.__version__) >= Version(floor), (
        f"transformers {transformers.__version__} is installed but pyproject.toml requires >={floor} (ViT "
        f"q_proj/v_proj, 4.x checkpoint conversion, from_pretrained(dtype=)); run "
        f"`pip install -U 'transformers>={floor}'`"
    )


def test_installed_peft_meets_the_floor_transformers_5_needs():
    import peft

    floor = declared_floor("peft")
    assert Version(floor) >= Version("0.18.1")
    assert Version(peft.__version__) >= Version(floor), (
        f"peft {peft.__version__} is installed but transformers 5 needs peft>={floor}; run "
        f"`pip install -U 'peft>={floor}'`"
    )


def test_pyproject_and_the_runtime_check_state_the_same_floor():
    assert declared_floor("transformers") == MIN_TRANSFORMERS == "5.9.0"


@pytest.mark.parametrize("old", ["4.46.0", "4.57.6", "5.8.1"])
def test_an_older_transformers_is_refused_with_the_fix(old):
    with pytest.raises(ImportError, match=rf"transformers {re.escape(old)} is installed.*>=5\.9\.0.*q_proj"):
        check_transformers(old)
    check_transformers(MIN_TRANSFORMERS)  # the floor itself passes


def test_vit_names_the_projections_the_configs_target():
    """What the floor buys: transformers' ViT has q_proj / v_proj (4.x: attention.attention.query / value)."""
    from transformers import ViTConfig, ViTForImageClassification

    model = ViTForImageClassification(
        ViTConfig(
            hidden_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=32,
            image_size=32,
            patch_size=8,
        )
    )
    names = dict(model.named_modules())
    assert "vit.layers.0.attention.q_proj" in names and "vit.layers.0.attention.v_proj" in names
