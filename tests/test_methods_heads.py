"""Models without a task head (decoder LLMs): adapters train alone, head-only refuses with a clear error."""

import pytest
from omegaconf import OmegaConf
from transformers import LlamaConfig, LlamaForCausalLM

from experiments.methods import build_method

LLM = OmegaConf.create({"target_modules": ["q_proj", "v_proj"], "head_modules": []})


def tiny_llama():
    return LlamaForCausalLM(
        LlamaConfig(
            vocab_size=32,
            hidden_size=16,
            intermediate_size=24,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=2,
        )
    )


def test_gpart_on_a_model_without_head_trains_only_theta():
    method = build_method(OmegaConf.create({"kind": "gpart", "config": {"d": 8}}), LLM)
    model = method.apply(tiny_llama())
    assert [n for n, p in model.named_parameters() if p.requires_grad] == ["gpart_adapter.theta"]


def test_head_only_needs_a_named_head():
    with pytest.raises(ValueError, match="head_only trains only model.head_modules, and this model config names none"):
        build_method(OmegaConf.create({"kind": "head_only"}), LLM).apply(tiny_llama())


def test_a_named_head_that_does_not_exist_is_still_an_error():
    model_cfg = OmegaConf.create({"target_modules": ["q_proj"], "head_modules": ["classifier"]})
    with pytest.raises(ValueError, match=r"model.head_modules=\['classifier'\] matches no parameter"):
        build_method(OmegaConf.create({"kind": "gpart", "config": {"d": 8}}), model_cfg).apply(tiny_llama())
