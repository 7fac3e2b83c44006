"""Saving and loading adapters: exact round trips in a fresh process, size, and loud failures."""

import json
import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors.torch import load_file
from transformers import RobertaConfig, RobertaForSequenceClassification

from gpart import GPartConfig, apply_gpart, find_adapter, load_adapter, read_adapter_config, save_adapter

TINY_ROBERTA = dict(
    vocab_size=99,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=37,
    max_position_embeddings=64,
    num_labels=3,
)


def tiny_roberta(**overrides):
    torch.manual_seed(0)
    return RobertaForSequenceClassification(RobertaConfig(**{**TINY_ROBERTA, **overrides})).eval()


def trained_adapter(tmp_path, d=50, **config):
    model = apply_gpart(
        tiny_roberta(),
        GPartConfig(d=d, target_modules=["query", "value"], seed=7, trainable_modules=["classifier"], **config),
    )
    with torch.no_grad():
        find_adapter(model).theta.normal_()
        model.classifier.dense.weight.add_(1.0)
    save_adapter(model, tmp_path / "adapter")
    return model


INPUT_IDS = torch.tensor([[0, 5, 17, 42, 8, 2], [0, 9, 9, 31, 77, 2]])


def test_round_trip_in_a_fresh_process_reproduces_outputs_exactly(tmp_path):
    model = trained_adapter(tmp_path, assignment="balanced", bias="partitioned")
    torch.save(model(INPUT_IDS).logits, tmp_path / "expected.pt")
    tiny_roberta().save_pretrained(tmp_path / "base")  # the pretrained weights the adapter was trained on
    script = textwrap.dedent(f"""
        import torch
        from transformers import RobertaForSequenceClassification
        from gpart import load_adapter
        torch.manual_seed(12345)  # a different global seed: nothing may depend on it
        model = RobertaForSequenceClassification.from_pretrained({str(tmp_path / 'base')!r}).eval()
        load_adapter(model, {str(tmp_path / 'adapter')!r})
        logits = model(torch.tensor({INPUT_IDS.tolist()})).logits
        assert torch.equal(logits, torch.load({str(tmp_path / 'expected.pt')!r})), "outputs differ"
        print("identical")
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "identical" in result.stdout


def test_saved_adapter_is_theta_and_head_and_small_json(tmp_path):
    model = trained_adapter(tmp_path, d=1000)
    tensors = load_file(tmp_path / "adapter" / "adapter_model.safetensors")
    head = {n: p for n, p in model.named_parameters() if n.startswith("classifier.")}
    assert set(tensors) == {"theta"} | {f"trainable.{n}" for n in head}
    assert torch.equal(tensors["theta"], find_adapter(model).theta.detach())
    theta_only = tmp_path / "theta_only"
    model.classifier.requires_grad_(False)
    save_adapter(model, theta_only)
    weights = (theta_only / "adapter_model.safetensors").stat().st_size
    assert 4 * 1000 <= weights <= 4 * 1000 + 256  # θ in float32 plus the safetensors header
    assert (theta_only / "adapter_config.json").stat().st_size < 4096
    assert not list(theta_only.glob("*.tmp")), "no temporary files are left behind"


def test_config_records_n_and_fingerprint(tmp_path):
    trained_adapter(tmp_path)
    metadata = read_adapter_config(tmp_path / "adapter")
    assert metadata["fingerprint"]["adapted_space_size"] == 2 * 2 * 32 * 32
    assert [t[0] for t in metadata["fingerprint"]["targets"]][:2] == [
        "roberta.encoder.layer.0.attention.self.query",
        "roberta.encoder.layer.0.attention.self.value",
    ]
    assert metadata["config"]["seed"] == 7


def test_loading_onto_a_model_with_different_targets_fails(tmp_path):
    trained_adapter(tmp_path)
    other = tiny_roberta(hidden_size=48, num_attention_heads=3)
    with pytest.raises(ValueError, match="trained on different target weights.*different shapes"):
        load_adapter(other, tmp_path / "adapter")
    deeper = tiny_roberta(num_hidden_layers=3)
    with pytest.raises(ValueError, match=r"extra here \['roberta.encoder.layer.2"):
        load_adapter(deeper, tmp_path / "adapter")


def test_missing_adapter_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="adapter_config.json not found"):
        load_adapter(tiny_roberta(), tmp_path / "nowhere")
    trained_adapter(tmp_path)
    (tmp_path / "adapter" / "adapter_model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="adapter_model.safetensors not found"):
        load_adapter(tiny_roberta(), tmp_path / "adapter")


def test_truncated_weights_file_is_reported_as_corrupt(tmp_path):
    trained_adapter(tmp_path)
    weights = tmp_path / "adapter" / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-40])
    with pytest.raises(ValueError, match="corrupt or truncated"):
        load_adapter(tiny_roberta(), tmp_path / "adapter")


def test_corrupt_config_is_reported(tmp_path):
    trained_adapter(tmp_path)
    config = tmp_path / "adapter" / "adapter_config.json"
    config.write_text(config.read_text()[:30])
    with pytest.raises(ValueError, match="not valid JSON.*corrupt or truncated"):
        load_adapter(tiny_roberta(), tmp_path / "adapter")
    config.write_text(json.dumps({"format": "lora"}))
    with pytest.raises(ValueError, match="is not a GPart adapter config"):
        load_adapter(tiny_roberta(), tmp_path / "adapter")


def test_theta_of_the_wrong_length_is_rejected(tmp_path):
    trained_adapter(tmp_path, d=50)
    config = tmp_path / "adapter" / "adapter_config.json"
    metadata = json.loads(config.read_text())
    metadata["config"]["d"] = 60
    config.write_text(json.dumps(metadata))
    with pytest.raises(ValueError, match=r"θ of shape \(50,\); expected shape \(60,\)"):
        load_adapter(tiny_roberta(), tmp_path / "adapter")


def test_adapter_folder_holds_only_json_and_safetensors(tmp_path):
    trained_adapter(tmp_path)
    assert sorted(p.name for p in (tmp_path / "adapter").iterdir()) == [
        "adapter_config.json",
        "adapter_model.safetensors",
    ]
