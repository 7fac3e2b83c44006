"""The PEFT examples (examples/): GPart trained by transformers.Trainer and by TRL's SFTTrainer through stock PEFT,
saved in the authors' format and reloaded by PeftModel.from_pretrained to the same outputs."""

from __future__ import annotations

import json

import pytest
from safetensors.torch import load_file


def assert_gpart_adapter(directory):
    assert json.loads((directory / "adapter_config.json").read_text())["peft_type"] == "GPART"
    assert set(load_file(directory / "adapter_model.safetensors")) == {"base_model.gpart_theta_d"}


def test_trainer_example_lowers_the_loss_and_its_adapter_reloads(tmp_path):
    from examples.peft_trainer import train

    result = train(tmp_path, steps=12)
    assert result["last_loss"] < result["first_loss"] - 0.05
    assert result["reloaded_outputs_equal"]
    assert_gpart_adapter(tmp_path / "adapter")


def test_trl_sft_example_trains_through_peft_config_and_its_adapter_reloads(tmp_path):
    pytest.importorskip("trl")
    from examples.peft_sft_trl import train

    result = train(tmp_path, steps=12)
    assert result["last_loss"] < result["first_loss"] - 0.05
    assert result["reloaded_outputs_equal"]
    assert_gpart_adapter(tmp_path / "adapter")
