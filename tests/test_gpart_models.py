"""GPart on real transformers architectures, and a 7B model's adapted space on a 24 GiB machine."""

import resource

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

from gpart import GPartConfig, apply_gpart, find_adapter, gpart_summary, merge_and_unload


def test_gpt2_conv1d_attention_is_adapted_and_merges():
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=50, n_embd=16, n_layer=2, n_head=2, n_positions=32)).eval()
    apply_gpart(model, GPartConfig(d=40, target_modules=["c_attn"]))
    assert gpart_summary(model).adapted_space_size == 2 * 16 * 48  # Conv1D weights are (in=16, out=48)
    with torch.no_grad():
        find_adapter(model).theta.normal_()
    ids = torch.randint(0, 50, (2, 7))
    before = model(ids).logits
    assert torch.allclose(merge_and_unload(model)(ids).logits, before, atol=1e-5)


def test_llama_qkvo_gradients_reach_only_theta():
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
    )
    model = apply_gpart(
        LlamaForCausalLM(config), GPartConfig(d=100, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"])
    )
    ids = torch.randint(0, 64, (2, 9))
    model(input_ids=ids, labels=ids).loss.backward()
    with_grad = [n for n, p in model.named_parameters() if p.grad is not None]
    assert with_grad == ["gpart_adapter.theta"]
    assert find_adapter(model).theta.grad.abs().sum() > 0
    n = 2 * (32 * 32 + 16 * 32 + 16 * 32 + 32 * 32)  # q, k, v (2 kv heads of 8), o per layer
    assert gpart_summary(model).adapted_space_size == n


@pytest.mark.slow
def test_seven_billion_qkvo_space_fits_in_memory():
    """Llama-2-7B's q,k,v,o (N = 2^31 coordinates) on the meta device: groups counted in chunks, no N-sized tensor."""
    config = LlamaConfig(
        hidden_size=4096,
        intermediate_size=11008,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=32,
        vocab_size=32000,
    )
    with torch.device("meta"):
        model = LlamaForCausalLM(config)
    apply_gpart(model, GPartConfig(d=524_288, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]))
    adapter = find_adapter(model)
    assert adapter.partition.size == 4 * 32 * 4096 * 4096 == 2_147_483_648
    assert int(adapter.partition.counts.sum()) == adapter.partition.size
    assert int(adapter.partition.counts.min()) > 0
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    assert peak_gib < 6, f"peak RSS {peak_gib:.1f} GiB: something of size N (8+ GiB) was materialised"
