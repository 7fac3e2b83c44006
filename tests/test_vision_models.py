"""ViT loading (random config, local folder, timm -> transformers copy), loud target resolution, and the adapted-module
counts of every vision method on a meta-device ViT-B against paper_vision.csv's parameter budgets."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from experiments.tasks.vision.models import _labels_kwargs, build_image_classifier, timm_vit_to_transformers
from experiments.tasks.vision.targets import match_target_modules, require_target_modules

TINY = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "image_size": 32,
    "patch_size": 8,
}
REFERENCE = Path(__file__).resolve().parents[1].parent / "shared" / "reference" / "paper_vision.csv"


def tiny_vit(num_labels=5):
    torch.manual_seed(0)
    return build_image_classifier({"random_init": TINY}, num_labels)


def test_random_vit_has_the_5x_projection_names_and_a_fresh_head():
    model, processor = tiny_vit(7)
    assert model.classifier.out_features == 7
    assert match_target_modules(model, ["q_proj", "v_proj"]) == [
        "vit.layers.0.attention.q_proj",
        "vit.layers.0.attention.v_proj",
        "vit.layers.1.attention.q_proj",
        "vit.layers.1.attention.v_proj",
    ]
    assert match_target_modules(model, r"vit\.layers\.1\.attention\.(q|k|v)_proj") == [
        "vit.layers.1.attention.q_proj",
        "vit.layers.1.attention.k_proj",
        "vit.layers.1.attention.v_proj",
    ]
    assert processor.size["height"] == 32


@pytest.mark.parametrize(
    "targets, hint",
    [(["query", "value"], r"\['q_proj', 'v_proj'\]"), (["qkv"], "Linear layers are named"), ([], "empty")],
)
def test_targets_that_match_nothing_fail_loudly(targets, hint):
    model, _ = tiny_vit()
    with pytest.raises(ValueError, match=hint):
        require_target_modules(model, targets)


def test_local_folder_loads_the_saved_backbone_and_processor(tmp_path):
    from transformers import ViTImageProcessor

    model, _ = tiny_vit(3)
    model.save_pretrained(tmp_path)
    ViTImageProcessor(
        size={"height": 32, "width": 32}, image_mean=[0.1, 0.2, 0.3], image_std=[0.3, 0.2, 0.1]
    ).save_pretrained(tmp_path)
    loaded, processor = build_image_classifier({"name_or_path": str(tmp_path)}, 4, ["a", "b", "c", "d"])
    assert loaded.classifier.out_features == 4 and loaded.config.id2label[3] == "d"
    for name, tensor in model.state_dict().items():
        if not name.startswith("classifier"):
            assert torch.equal(tensor, loaded.state_dict()[name]), name
    assert list(processor.image_mean) == [0.1, 0.2, 0.3]


def test_timm_vit_copies_into_transformers_with_identical_features():
    from timm.models.vision_transformer import VisionTransformer

    torch.manual_seed(1)
    timm_model = VisionTransformer(img_size=32, patch_size=8, embed_dim=48, depth=2, num_heads=4, num_classes=0)
    model = timm_vit_to_transformers(timm_model, _labels_kwargs(6, None)).eval()
    pixels = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        expected = timm_model.eval().forward_head(timm_model.forward_features(pixels), pre_logits=True)
        actual = model.vit(pixels).last_hidden_state[:, 0]
    assert torch.allclose(expected, actual, atol=1e-5)
    assert len(match_target_modules(model, ["q_proj", "v_proj"])) == 4  # q and v separable after the copy
    assert torch.equal(model.vit.layers[1].attention.v_proj.weight, timm_model.blocks[1].attn.qkv.weight[96:])


def test_timm_variants_the_copy_cannot_express_are_refused():
    from timm.models.vision_transformer import VisionTransformer

    pooled = VisionTransformer(
        img_size=32, patch_size=8, embed_dim=48, depth=1, num_heads=4, num_classes=0, global_pool="avg"
    )
    with pytest.raises(ValueError, match="class token"):
        timm_vit_to_transformers(pooled, _labels_kwargs(2, None))


def _paper_budget(model_key: str, method: str) -> set[str]:
    with open(REFERENCE) as handle:
        return {
            row["trainable_params"]
            for row in csv.DictReader(handle)
            if row["model"] == model_key and row["method"] == method
        }


def _as_count(text: str) -> float:
    return float(text[:-1]) * {"K": 1e3, "M": 1e6}[text[-1]]


@pytest.mark.skipif(not REFERENCE.exists(), reason="../shared/reference/paper_vision.csv not found")
def test_vit_base_adapted_modules_and_budgets_match_the_paper():
    from experiments.tools.module_counts import count_experiment

    rows = {
        row["experiment"].rsplit("/", 1)[-1]: row
        for row in (
            count_experiment(f"vision/base/{name}", "base")
            for name in ("gpart", "unilora", "fourierft-72k", "full", "lp")
        )
    }
    n_qv = 12 * 2 * 768 * 768  # 12 layers × (q, v) × 768 × 768
    for name in ("gpart", "unilora", "fourierft-72k"):
        assert rows[name]["adapted_modules"] == 24 and rows[name]["adapted_space_size"] == n_qv, name
        assert rows[name]["trainable_params"] == 72_000, name
        assert "72K" in _paper_budget("vit-base-patch16-224-in21k", rows[name]["method"]), name
    assert rows["full"]["method"] == "FF" and rows["full"]["adapted_modules"] == 0
    (ff_budget,) = _paper_budget("vit-base-patch16-224-in21k", "FF")
    assert round(rows["full"]["trainable_params"] / 1e6, 1) == _as_count(ff_budget) / 1e6  # 85.8M
    assert rows["lp"]["trainable_params"] == 0 and rows["lp"]["head_params"] == 768 * 100 + 100


def _transformers_4_name(key: str) -> str:
    """A transformers 5.x ViTModel key in the 4.x layout the hub's in21k checkpoints are stored in."""
    import re

    renames = [
        (r"attention\.q_proj", "attention.attention.query"),
        (r"attention\.k_proj", "attention.attention.key"),
        (r"attention\.v_proj", "attention.attention.value"),
        (r"attention\.o_proj", "attention.output.dense"),
        (r"mlp\.fc1", "intermediate.dense"),
        (r"mlp\.fc2", "output.dense"),
    ]
    for new, old in renames:
        key = re.sub(rf"^layers\.(\d+)\.{new}", rf"encoder.layer.\1.{old}", key)
    return re.sub(r"^layers\.(\d+)\.layernorm_", r"encoder.layer.\1.layernorm_", key)


def test_a_checkpoint_with_transformers_4_names_loads_every_backbone_weight(tmp_path):
    """google/vit-*-in21k are stored with 4.x names (attention.attention.query, ...); loading must fill q_proj etc.,
    not leave them randomly initialised."""
    import json

    from safetensors.torch import save_file
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    torch.manual_seed(2)
    config = ViTConfig(**TINY)
    backbone = ViTModel(config, add_pooling_layer=True)
    state = {_transformers_4_name(k): v.contiguous() for k, v in backbone.state_dict().items()}
    assert "encoder.layer.1.attention.attention.value.weight" in state
    save_file(state, str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
    (tmp_path / "config.json").write_text(json.dumps({**config.to_dict(), "architectures": ["ViTModel"]}))
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(tmp_path)
    model, _ = build_image_classifier({"name_or_path": str(tmp_path)}, 3)
    for name, tensor in backbone.state_dict().items():
        if not name.startswith("pooler"):
            assert torch.equal(model.vit.state_dict()[name], tensor), name


def test_timm_name_with_a_local_checkpoint_file_loads_through_the_task_entry_point(tmp_path):
    import timm

    torch.manual_seed(3)
    source = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0)
    torch.save(source.state_dict(), tmp_path / "weights.pth")
    model, processor = build_image_classifier(
        {"name_or_path": "timm:vit_tiny_patch16_224", "checkpoint_file": str(tmp_path / "weights.pth")}, 5
    )
    pixels = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        expected = source.eval().forward_head(source.forward_features(pixels), pre_logits=True)
        assert torch.allclose(model.eval().vit(pixels).last_hidden_state[:, 0], expected, atol=1e-4)
    # the processor carries timm's data config for that checkpoint, not transformers' defaults
    data_config = timm.data.resolve_data_config(model=source)
    assert tuple(processor.image_mean) == pytest.approx(data_config["mean"])
    assert model.classifier.out_features == 5
