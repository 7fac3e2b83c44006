"""GPart through stock PEFT (gpart/peft.py): the same training as apply_gpart, the authors' files both ways, merging,
disabling, several adapters, and clear refusals."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import textwrap

import pytest
import torch
from peft import PeftModel, get_peft_model
from safetensors.torch import load_file
from test_gpart_golden import CASES, GOLDEN, LOGIT_TOLERANCE, base_model, logits_of
from transformers import (
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    RobertaConfig,
    RobertaForSequenceClassification,
)

import gpart.peft  # noqa: F401  (registers GPart with PEFT)
from gpart import GPartConfig, apply_gpart, find_adapter, gpart_layers, load_adapter, save_adapter
from gpart import merge_and_unload as gpart_merge_and_unload
from gpart.convert import to_authors
from gpart.peft import GPartPeftConfig, GPartPeftLayer

AUTHORS_DIR = GOLDEN / "adapter-with-head.authors-adapter"

# Each architecture with a GPart config exercising what differs between them: Llama's q,k,v,o; RoBERTa's biases
# partitioned into θ's space and a trained head; GPT-2's Conv1D layout. Dropout on ΔW and a random θ start throughout.
ARCHITECTURES = {
    "llama": (
        lambda: LlamaForCausalLM(
            LlamaConfig(
                vocab_size=64,
                hidden_size=32,
                intermediate_size=48,
                num_hidden_layers=2,
                num_attention_heads=4,
                num_key_value_heads=2,
            )
        ),
        dict(target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]),
    ),
    "roberta": (
        lambda: RobertaForSequenceClassification(
            RobertaConfig(
                vocab_size=64,
                hidden_size=32,
                num_hidden_layers=2,
                num_attention_heads=2,
                intermediate_size=37,
                max_position_embeddings=64,
                num_labels=3,
            )
        ),
        dict(target_modules=["query", "value"], bias="partitioned", trainable_modules=["classifier"]),
    ),
    "gpt2": (
        lambda: GPT2LMHeadModel(GPT2Config(vocab_size=64, n_embd=16, n_layer=2, n_head=2, n_positions=32)),
        dict(target_modules=["c_attn", "c_fc"], bias="partitioned"),
    ),
}
INPUT_IDS = torch.tensor([[1, 5, 17, 42, 8, 2, 9], [1, 9, 9, 31, 60, 2, 3]])


def pair(name: str, d: int = 60, **overrides):
    """The same tiny model twice: one with apply_gpart, one with get_peft_model, from one GPartConfig."""
    build, fields = ARCHITECTURES[name]
    torch.manual_seed(0)
    base = build()
    config = GPartConfig(d=d, seed=3, dropout=0.1, init_bound=0.05, **{**fields, **overrides})
    ours, theirs = copy.deepcopy(base), copy.deepcopy(base)
    torch.manual_seed(1)  # θ's random start is drawn from the global generator in both
    apply_gpart(ours, config)
    torch.manual_seed(1)
    peft_model = get_peft_model(theirs, GPartPeftConfig.from_gpart_config(config))
    return ours, peft_model, base


def peft_theta(model) -> torch.Tensor:
    return model.base_model.gpart_adapters["default"].theta


def loss_of(model, name: str):
    labels = torch.tensor([0, 2]) if name == "roberta" else INPUT_IDS
    output = model(input_ids=INPUT_IDS, labels=labels)
    return output.loss, output.logits


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_peft_trains_exactly_what_apply_gpart_trains(name):
    """Same θ start, and over three Adam steps in train mode (dropout on): same outputs, θ gradients, head gradients."""
    ours, theirs, _ = pair(name)
    assert torch.equal(find_adapter(ours).theta, peft_theta(theirs)) and peft_theta(theirs).abs().max() > 0
    trained = {n: p for n, p in ours.named_parameters() if p.requires_grad}
    peft_trained = {n: p for n, p in theirs.named_parameters() if p.requires_grad}
    assert sum(p.numel() for p in peft_trained.values()) == sum(p.numel() for p in trained.values())
    optimizers = [torch.optim.Adam(model.parameters(), lr=1e-2) for model in (ours, theirs)]
    ours.train(), theirs.train()
    for step in range(3):
        results = []
        for model, optimizer in zip((ours, theirs), optimizers):
            optimizer.zero_grad()
            torch.manual_seed(100 + step)  # the same dropout masks (model dropout and GPart's ΔW dropout)
            loss, logits = loss_of(model, name)
            loss.backward()
            results.append((logits.detach(), loss.detach()))
        assert torch.equal(results[0][0], results[1][0]) and torch.equal(results[0][1], results[1][1])
        assert torch.equal(find_adapter(ours).theta.grad, peft_theta(theirs).grad)
        assert find_adapter(ours).theta.grad.abs().max() > 0
        for n, p in trained.items():
            if n.startswith("classifier."):  # PEFT trains a copy of the head (modules_to_save)
                head = peft_trained[
                    "base_model.model." + n.replace("classifier.", "classifier.modules_to_save.default.")
                ]
                assert torch.equal(p.grad, head.grad)
        for optimizer in optimizers:
            optimizer.step()
    assert torch.equal(find_adapter(ours).theta, peft_theta(theirs))


@pytest.mark.parametrize("name", ["roberta", "gpt2"])
def test_merge_and_unload_gives_apply_gpart_merged_weights_and_the_adapter_outputs(name):
    ours, theirs, base = pair(name)
    ours.eval(), theirs.eval()
    with torch.no_grad():
        adapted = theirs(input_ids=INPUT_IDS).logits
        theirs.merge_adapter()
        assert (theirs(input_ids=INPUT_IDS).logits - adapted).abs().max() <= 1e-5
        theirs.unmerge_adapter()
        assert (theirs(input_ids=INPUT_IDS).logits - adapted).abs().max() <= 1e-5
        merged = theirs.merge_and_unload()
        assert type(merged) is type(base)
        assert not any(isinstance(m, GPartPeftLayer) for m in merged.modules())
        assert (merged(input_ids=INPUT_IDS).logits - adapted).abs().max() <= 1e-5
        ours_merged = gpart_merge_and_unload(ours).state_dict()
        assert all(torch.equal(ours_merged[k], v) for k, v in merged.state_dict().items())
        assert any(not torch.equal(base.state_dict()[k], v) for k, v in merged.state_dict().items())


def test_disable_adapter_and_unload_give_the_base_outputs():
    _, theirs, base = pair("roberta")
    theirs.eval(), base.eval()
    with torch.no_grad():
        peft_theta(theirs).normal_()
        adapted = theirs(input_ids=INPUT_IDS).logits
        with theirs.disable_adapter():
            assert torch.equal(theirs(input_ids=INPUT_IDS).logits, base(input_ids=INPUT_IDS).logits)
        assert torch.equal(theirs(input_ids=INPUT_IDS).logits, adapted)
        assert (adapted - base(input_ids=INPUT_IDS).logits).abs().max() > 1e-4
        plain = theirs.unload()  # the base modules back, without ΔW
        assert not any(isinstance(m, GPartPeftLayer) for m in plain.modules())
        assert torch.equal(plain(input_ids=INPUT_IDS).logits, base(input_ids=INPUT_IDS).logits)


def test_print_trainable_parameters_counts_theta_and_the_head(capsys):
    ours, theirs, _ = pair("roberta", d=77)
    head = sum(p.numel() for n, p in ours.named_parameters() if n.startswith("classifier."))
    theirs.print_trainable_parameters()
    assert f"trainable params: {77 + head:,d} " in capsys.readouterr().out


def test_save_pretrained_writes_what_the_library_exports_in_the_authors_layout(tmp_path):
    """PEFT's directory = gpart.save_adapter + gpart.convert.to_authors for the same model: fields and tensors."""
    ours, theirs, _ = pair("roberta")
    theirs.save_pretrained(tmp_path / "peft")
    save_adapter(ours, tmp_path / "ours")
    to_authors(tmp_path / "ours", tmp_path / "exported")
    written = json.loads((tmp_path / "peft" / "adapter_config.json").read_text())
    exported = json.loads((tmp_path / "exported" / "adapter_config.json").read_text())
    authors = json.loads((AUTHORS_DIR / "adapter_config.json").read_text())
    assert set(written) == set(authors) and written["peft_type"] == "GPART"
    who_saved = {"auto_mapping", "base_model_name_or_path", "peft_version"}
    assert {k: v for k, v in written.items() if k not in who_saved} == {
        k: v for k, v in exported.items() if k not in who_saved
    }
    tensors = load_file(tmp_path / "peft" / "adapter_model.safetensors")
    expected = load_file(tmp_path / "exported" / "adapter_model.safetensors")
    assert "base_model.gpart_theta_d" in tensors and set(tensors) == set(expected)
    assert all(torch.equal(tensors[k], expected[k]) for k in expected)


def test_stock_peft_loads_the_authors_adapter_with_their_logits_and_merges_it():
    case = CASES["adapter-with-head"]
    data = load_file(GOLDEN / "adapter-with-head.safetensors")
    model = PeftModel.from_pretrained(base_model(case), AUTHORS_DIR)
    assert (logits_of(model, data) - data["logits"]).abs().max() <= LOGIT_TOLERANCE
    assert torch.equal(peft_theta(model).detach(), data["theta/base_model.gpart_theta_d.default"])
    assert not peft_theta(model).requires_grad  # PEFT's default: loaded for inference
    merged = model.merge_and_unload()  # the authors' fork cannot merge an adapter with a saved head
    assert type(merged).__name__ == case["model_class"]
    assert (logits_of(merged, data) - data["logits"]).abs().max() <= LOGIT_TOLERANCE
    trainable = PeftModel.from_pretrained(base_model(case), AUTHORS_DIR, is_trainable=True)
    assert peft_theta(trainable).requires_grad


@pytest.mark.parametrize("name", [name for name in CASES if name != "adapter-with-head"])
def test_the_authors_configs_reproduce_their_golden_logits_through_peft(name):
    """Their GPartConfig arguments, as they are, in GPartPeftConfig: every variant gives their logits."""
    case = CASES[name]
    data = load_file(GOLDEN / f"{name}.safetensors")
    model = get_peft_model(base_model(case), GPartPeftConfig(**case["authors_config"])).eval()
    with torch.no_grad():
        peft_theta(model).copy_(data[f"theta/{case['theta_keys'][0]}"])
    assert (logits_of(model, data) - data["logits"]).abs().max() <= LOGIT_TOLERANCE


def test_round_trip_in_a_fresh_process_and_into_the_library(tmp_path):
    """save_pretrained → stock PeftModel.from_pretrained in a new process: identical logits; gpart.load_adapter
    reads the same directory to the same logits."""
    _, theirs, base = pair("roberta")
    with torch.no_grad():
        peft_theta(theirs).normal_()
    theirs.eval().save_pretrained(tmp_path / "adapter")
    base.save_pretrained(tmp_path / "base")
    with torch.no_grad():
        expected = theirs(input_ids=INPUT_IDS).logits
    torch.save(expected, tmp_path / "expected.pt")
    script = textwrap.dedent(f"""
        import torch
        from peft import PeftModel
        from transformers import RobertaForSequenceClassification
        import gpart.peft
        torch.manual_seed(12345)  # a different global seed: nothing may depend on it
        base = RobertaForSequenceClassification.from_pretrained({str(tmp_path / 'base')!r})
        model = PeftModel.from_pretrained(base, {str(tmp_path / 'adapter')!r}).eval()
        with torch.no_grad():
            logits = model(input_ids=torch.tensor({INPUT_IDS.tolist()})).logits
        assert torch.equal(logits, torch.load({str(tmp_path / 'expected.pt')!r})), "outputs differ"
        print("identical")
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "identical" in result.stdout
    library = load_adapter(copy.deepcopy(base).eval(), tmp_path / "adapter")
    with torch.no_grad():
        assert torch.equal(library(input_ids=INPUT_IDS).logits, expected)


def test_a_second_adapter_switches_saves_and_reloads(tmp_path):
    ours, theirs, base = pair("llama")
    other = GPartConfig(d=40, target_modules=["v_proj"], seed=9, init_bound=0.3)
    theirs.add_adapter("other", GPartPeftConfig.from_gpart_config(other))
    single = apply_gpart(copy.deepcopy(base), other)
    with torch.no_grad():
        find_adapter(single).theta.copy_(theirs.base_model.gpart_adapters["other"].theta)
    theirs.eval(), ours.eval(), single.eval()
    with torch.no_grad():
        first = theirs(input_ids=INPUT_IDS).logits
        assert torch.equal(first, ours(input_ids=INPUT_IDS).logits)
        theirs.set_adapter("other")
        assert torch.equal(theirs(input_ids=INPUT_IDS).logits, single(input_ids=INPUT_IDS).logits)
    assert theirs.base_model.gpart_adapters["other"].theta.requires_grad
    assert not peft_theta(theirs).requires_grad
    with pytest.raises(ValueError, match=r"GPart runs one adapter at a time; active adapters \['default', 'other'\]"):
        theirs.base_model.set_adapter(["default", "other"])
    theirs.save_pretrained(tmp_path / "adapters")  # "other" goes to a subfolder, as PEFT does for every method
    reloaded = PeftModel.from_pretrained(copy.deepcopy(base), tmp_path / "adapters")
    reloaded.load_adapter(tmp_path / "adapters" / "other", adapter_name="other")
    reloaded.set_adapter("other")
    with torch.no_grad():
        assert torch.equal(reloaded.eval()(input_ids=INPUT_IDS).logits, single(input_ids=INPUT_IDS).logits)
    reloaded.delete_adapter("other")
    assert set(reloaded.base_model.gpart_adapters) == {"default"}
    with torch.no_grad():
        assert torch.equal(reloaded(input_ids=INPUT_IDS).logits, first)


@pytest.mark.parametrize(
    "fields,message",
    [
        (dict(d=0), r"GPartPeftConfig: d must be >= 1, got 0"),
        (dict(gpart_dropout=1.5), r"GPartPeftConfig: gpart_dropout must be a number in \[0, 1\), got 1.5"),
        (dict(projection_type="dense"), r"projection_type='dense' is not supported; allowed: 'partition', 'fastfood'"),
        (dict(layers_to_transform=[0]), r"layers_to_transform=\[0\] is not supported here; allowed: null"),
        (
            dict(grouping_strategy="signed_magnitude"),
            r"assignment_backend='stateless' with grouping_strategy='signed_magnitude' is not supported here; "
            r"allowed: 'materialized'",
        ),
    ],
)
def test_bad_configs_are_refused_naming_the_field(fields, message):
    with pytest.raises(ValueError, match=message):
        GPartPeftConfig(target_modules=["q_proj"], **fields)


def test_a_balanced_assignment_has_no_peft_config():
    with pytest.raises(ValueError, match="assignment='balanced' has no equivalent in the authors' code"):
        GPartPeftConfig.from_gpart_config(GPartConfig(d=4, target_modules=["q_proj"], assignment="balanced"))


def test_d_larger_than_the_adapted_space_is_refused_and_the_model_left_unwrapped():
    build, _ = ARCHITECTURES["llama"]
    model = build()
    with pytest.raises(ValueError, match=r"d=100000 must satisfy 0 < d <= N=2048"):
        get_peft_model(model, GPartPeftConfig(d=100_000, target_modules=["q_proj"]))
    assert not any(isinstance(m, GPartPeftLayer) for m in model.modules())


def test_only_theta_and_the_head_receive_gradients_and_biases_stay_frozen():
    """bias='all' (partitioned) must not make PEFT train every bias, as PEFT's own bias='all' would."""
    _, theirs, _ = pair("roberta")
    loss, _ = loss_of(theirs, "roberta")
    loss.backward()
    with_grad = {n for n, p in theirs.named_parameters() if p.grad is not None}
    assert "base_model.gpart_adapters.default.theta" in with_grad
    assert all(n == "base_model.gpart_adapters.default.theta" or ".modules_to_save.default." in n for n in with_grad)
    assert len(gpart_layers(theirs)) == 0  # the PEFT model holds GPartPeftLayers, not the library's wrappers
