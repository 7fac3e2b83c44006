"""Tied-LoRA, LoRA-XS and CondLoRA (baselines/): each equals its paper's dense ΔW, trains only its own tensors,
has the parameter count of paper_glue.csv, and restores from what the registry saves."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn
from transformers import RobertaConfig, RobertaForSequenceClassification

import baselines
from experiments.methods import build_method, load_trainable

TARGETS = ["query", "value"]


class Block(nn.Module):
    def __init__(self, width: int, ffn: int):
        super().__init__()
        self.query, self.value = nn.Linear(width, width), nn.Linear(width, width)
        self.ffn, self.proj = nn.Linear(width, ffn), nn.Linear(ffn, width)

    def forward(self, x):
        return self.proj(self.ffn(self.query(x) + self.value(x)))


class Blocks(nn.Module):
    def __init__(self, layers: int, width: int, ffn: int):
        super().__init__()
        self.layers = nn.ModuleList(Block(width, ffn) for _ in range(layers))

    def __getitem__(self, index):
        return self.layers[index]

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return x


def blocks(layers=3, width=12, ffn=20) -> Blocks:
    torch.manual_seed(0)
    return Blocks(layers, width, ffn)


def randomise_trainables(model: nn.Module) -> None:
    """Move every adapter tensor off its initial value (B = 0 would make any ΔW test trivially pass)."""
    with torch.no_grad():
        for param in model.parameters():
            if param.requires_grad:
                param.copy_(torch.randn_like(param))


def dense_reference(module: baselines.LowRankLinear, delta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return nn.functional.linear(x, module.base.weight + delta, module.base.bias)


def paper_delta(module) -> torch.Tensor:
    """ΔW written as each paper writes it, from the module's tensors but not through its `factors()`."""
    w0, s = module.base.weight, module.scaling
    if isinstance(module, baselines.TiedLoRALinear):
        return s * torch.diag(module.v) @ module.tied_b @ torch.diag(module.u) @ module.tied_a
    if isinstance(module, baselines.CondLoRALinear):
        return s * (w0 @ module.theta_b.T) @ (module.theta_a @ w0.T)
    return s * module.svd_b @ module.latent @ module.svd_a


@pytest.mark.parametrize("apply", [baselines.apply_tied_lora, baselines.apply_lora_xs, baselines.apply_condlora])
def test_forward_equals_the_dense_reference(apply):
    model = apply(blocks(), TARGETS, r=4)
    randomise_trainables(model)
    x = torch.randn(5, 12)
    adapted = [m for m in model.modules() if isinstance(m, baselines.LowRankLinear)]
    assert len(adapted) == 6
    for module in adapted:
        delta = paper_delta(module)
        assert delta.abs().max() > 1e-3
        torch.testing.assert_close(module.delta_weight(), delta, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(module(x), dense_reference(module, delta, x), atol=1e-5, rtol=1e-5)


def test_lora_xs_bases_are_the_top_r_truncated_svd_of_the_pretrained_weight():
    """Sign-free check: with R = I, ΔW is scaling × the best rank-r approximation of W0 (Eckart–Young)."""
    model = baselines.apply_lora_xs(blocks(), TARGETS, r=3, alpha=3.0)
    module = model[0].query
    with torch.no_grad():
        module.latent.copy_(torch.eye(3))
    u, s, vh = torch.linalg.svd(module.base.weight.detach().double())
    best_rank_3 = (u[:, :3] * s[:3]) @ vh[:3]
    torch.testing.assert_close(module.delta_weight().double(), best_rank_3, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(module.svd_b.T @ module.svd_b, torch.eye(3), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "apply,tolerance",
    [
        (baselines.apply_tied_lora, 1e-6),
        (baselines.apply_condlora, 1e-6),
        (baselines.apply_lora_xs, 1e-3),  # the authors start R at N(0, 1e-5²), not at zero: near, not at, W0
    ],
)
def test_a_fresh_adapter_starts_at_the_pretrained_model(apply, tolerance):
    base = blocks()
    x = torch.randn(4, 12)
    expected = base(x)
    adapted = apply(base, TARGETS, r=4)(x)
    torch.testing.assert_close(adapted, expected, atol=tolerance, rtol=0)
    if tolerance > 1e-6:
        assert not torch.equal(adapted, expected)


def test_tied_and_conditioned_factors_are_one_tensor_per_target_across_layers():
    tied = baselines.apply_tied_lora(blocks(layers=3), TARGETS, r=4)
    assert tied[0].query.tied_a is tied[2].query.tied_a and tied[0].query.tied_a is not tied[0].value.tied_a
    assert tied[0].query.u is not tied[1].query.u  # the scaling vectors are each module's own
    cond = baselines.apply_condlora(blocks(layers=3), TARGETS, r=4)
    assert cond[1].value.theta_b is cond[2].value.theta_b
    # Trainable parameters, each counted once: Tied-LoRA T·r·(in+out) + T·L·(r+out); CondLoRA T·2·r·in.
    count = lambda m: sum(p.numel() for p in m.parameters() if p.requires_grad)  # noqa: E731
    assert count(tied) == 2 * 4 * (12 + 12) + 2 * 3 * (4 + 12)
    assert count(cond) == 2 * 2 * 4 * 12


@pytest.mark.parametrize("apply", [baselines.apply_tied_lora, baselines.apply_lora_xs, baselines.apply_condlora])
def test_only_adapter_tensors_receive_gradients(apply):
    model = apply(blocks(), TARGETS, r=4)
    randomise_trainables(model)
    model(torch.randn(3, 12)).square().sum().backward()
    for name, param in model.named_parameters():
        if ".base." in name or name.split(".")[2] in ("ffn", "proj"):
            assert not param.requires_grad and param.grad is None, name
        else:
            assert param.requires_grad and param.grad is not None and param.grad.abs().sum() > 0, name


def test_bad_input_names_the_argument():
    with pytest.raises(ValueError, match=r"target_modules=\['key'\] matched no module"):
        baselines.apply_tied_lora(blocks(), ["key"])
    with pytest.raises(ValueError, match="CondLoRA needs square weights.*'ffn' is 20×12"):
        baselines.apply_condlora(blocks(), ["ffn"])
    with pytest.raises(ValueError, match=r"LoRA-XS r=13 must be in \[1, 12\]"):
        baselines.apply_lora_xs(blocks(), TARGETS, r=13)
    with pytest.raises(ValueError, match="target module 'layers.0' is a Block"):
        baselines.apply_lora_xs(blocks(), ["layers.0"])
    with pytest.raises(ValueError, match="already has `tied_lora`: the adapter is applied already"):
        baselines.apply_tied_lora(baselines.apply_tied_lora(blocks(), TARGETS), TARGETS)


def tiny_roberta(seed=0):
    torch.manual_seed(seed)
    return RobertaForSequenceClassification(
        RobertaConfig(
            vocab_size=40,
            hidden_size=16,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=32,
            max_position_embeddings=20,
            num_labels=2,
        )
    ).eval()


@pytest.mark.parametrize("method", ["tied_lora", "lora_xs", "condlora"])
def test_saved_adapter_restores_the_logits_on_a_fresh_model(compose, tmp_path, method):
    cfg = compose([f"method={method}", "model=tiny-roberta", "method.config.r=4", "method.config.dropout=0.1"])
    trained = build_method(cfg.method, cfg.model).apply(tiny_roberta())
    randomise_trainables(trained)
    ids = torch.randint(3, 40, (2, 7))
    build_method(cfg.method, cfg.model).save(trained, tmp_path)
    trained.save_pretrained(tmp_path / "checkpoint")  # the Trainer's checkpoint: safetensors refuses aliased tensors
    fresh = build_method(cfg.method, cfg.model).apply(tiny_roberta())
    assert not torch.allclose(fresh(ids).logits, trained(ids).logits)
    assert not fresh.training  # eval mode survives apply: the new dropout is off
    restored = load_trainable(fresh, tmp_path)
    torch.testing.assert_close(restored(ids).logits, trained(ids).logits, atol=1e-6, rtol=1e-6)


def test_an_unknown_config_key_names_the_adapter_function():
    cfg = OmegaConf.create({"kind": "tied_lora", "config": {"rank": 4}})
    model_cfg = OmegaConf.create({"target_modules": TARGETS, "head_modules": ["classifier"]})
    with pytest.raises(ValueError, match=r"method.config=\{'rank': 4\} does not fit apply_tied_lora"):
        build_method(cfg, model_cfg).apply(tiny_roberta())


def test_baselines_import_nothing_from_experiments():
    """methods.py wraps baselines/; the reverse import would make an import circle (baselines must stay plain torch)."""
    import ast
    from pathlib import Path

    for path in Path(baselines.__file__).parent.glob("*.py"):
        tree = ast.parse(path.read_text())
        imported = [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]
        imported += [node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
        assert not [m for m in imported if m.split(".")[0] == "experiments"], path.name
