"""ViT classifiers from a hub id / local folder (transformers), a timm name, or a random config (tests).

Whatever the source, the result is a transformers image-classification model (for ViT, `ViTForImageClassification`:
projections `vit.layers.<i>.attention.{q,k,v,o}_proj` in transformers 5.x, head `classifier`), so every method
config names the same modules. A `timm:<name>` model is loaded with timm and its weights are copied into a
transformers ViT of the same shape (timm fuses q, k and v into one `qkv` Linear, which module-level adapters could
not target separately); the copy is checked to compute the same features before it is returned.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

import torch
from torch import nn

from experiments.runner.dependencies import check_transformers
from experiments.runner.hub import explain_offline

TIMM_PREFIX = "timm:"
# timm interpolation names -> PIL resample codes, as transformers' image processors store them.
_RESAMPLE_CODES = {"nearest": 0, "lanczos": 1, "bilinear": 2, "bicubic": 3}


def _labels_kwargs(num_labels: int, class_names: Optional[list[str]]) -> dict:
    names = class_names if class_names and len(class_names) == num_labels else [str(i) for i in range(num_labels)]
    return {
        "num_labels": num_labels,
        "id2label": dict(enumerate(names)),
        "label2id": {name: i for i, name in enumerate(names)},
    }


def _vit_processor(image_size: int, mean=None, std=None, interpolation: str = "bilinear"):
    from transformers import ViTImageProcessor

    kwargs = {"size": {"height": image_size, "width": image_size}, "resample": _RESAMPLE_CODES[interpolation]}
    if mean is not None:
        kwargs.update(image_mean=list(mean), image_std=list(std))
    return ViTImageProcessor(**kwargs)  # defaults: mean = std = 0.5, the in21k checkpoints' normalisation


def build_image_classifier(
    model_cfg: Mapping[str, Any], num_labels: int, class_names: Optional[list[str]] = None
) -> tuple[nn.Module, Any]:
    """Return ``(model, image_processor)`` with a fresh `num_labels`-way head.

    Model config keys: `name_or_path` (hub id, local folder, or `timm:<timm name>`), `random_init` (ViTConfig
    kwargs: build a random model of that shape instead), `tokenizer` (where the image processor lives if not
    `name_or_path`; the key every task's model config uses), `checkpoint_file` (local weights for a `timm:` model,
    since the hub is unreachable offline).
    """
    from transformers import AutoImageProcessor, AutoModelForImageClassification, ViTConfig, ViTForImageClassification

    check_transformers()
    labels = _labels_kwargs(num_labels, class_names)
    random_init = model_cfg.get("random_init")
    name = str(model_cfg.get("name_or_path") or "")
    if random_init:
        config = ViTConfig(**dict(random_init), **labels)
        return ViTForImageClassification(config), _vit_processor(config.image_size)
    if not name:
        raise ValueError("model config needs `name_or_path` (hub id, local folder or 'timm:<name>') or `random_init`")
    if name.startswith(TIMM_PREFIX):
        return load_timm_as_transformers(name[len(TIMM_PREFIX) :], labels, model_cfg.get("checkpoint_file"))
    with explain_offline(name):
        model = AutoModelForImageClassification.from_pretrained(name, ignore_mismatched_sizes=True, **labels)
    processor_source = model_cfg.get("tokenizer") or name
    with explain_offline(processor_source):
        processor = AutoImageProcessor.from_pretrained(processor_source)
    return model, processor


def _check_plain_vit(timm_model) -> None:
    """timm ViT variants the transformers ViT cannot express are refused rather than silently mis-copied."""
    problems = []
    if getattr(timm_model, "global_pool", "token") != "token" or getattr(timm_model, "cls_token", None) is None:
        problems.append("pooling is not the class token")
    if getattr(timm_model, "num_reg_tokens", 0):
        problems.append("register tokens")
    for attribute in ("norm_pre", "fc_norm"):
        if not isinstance(getattr(timm_model, attribute, nn.Identity()), nn.Identity):
            problems.append(attribute)
    block = timm_model.blocks[0]
    if not isinstance(getattr(block, "ls1", nn.Identity()), nn.Identity):
        problems.append("layer scale")
    if not isinstance(getattr(block.attn, "q_norm", nn.Identity()), nn.Identity):
        problems.append("q/k norm")
    if problems:
        raise ValueError(
            f"timm model {type(timm_model).__name__} has {', '.join(problems)}; only plain "
            "class-token ViTs (e.g. vit_base_patch16_224.augreg_in21k) convert to transformers' ViT"
        )


def timm_vit_to_transformers(timm_model, labels: dict):
    """A `ViTForImageClassification` holding the weights of a plain timm `VisionTransformer` (new head)."""
    from transformers import ViTConfig, ViTForImageClassification

    _check_plain_vit(timm_model)
    block = timm_model.blocks[0]
    hidden = timm_model.embed_dim
    config = ViTConfig(
        hidden_size=hidden,
        num_hidden_layers=len(timm_model.blocks),
        num_attention_heads=block.attn.num_heads,
        intermediate_size=block.mlp.fc1.out_features,
        image_size=timm_model.patch_embed.img_size[0],
        patch_size=timm_model.patch_embed.patch_size[0],
        layer_norm_eps=timm_model.norm.eps,
        qkv_bias=block.attn.qkv.bias is not None,
        hidden_act="gelu",
        **labels,
    )
    model = ViTForImageClassification(config)
    source = timm_model.state_dict()
    target = {
        "vit.embeddings.cls_token": source["cls_token"],
        "vit.embeddings.position_embeddings": source["pos_embed"],
        "vit.embeddings.patch_embeddings.projection.weight": source["patch_embed.proj.weight"],
        "vit.embeddings.patch_embeddings.projection.bias": source["patch_embed.proj.bias"],
        "vit.layernorm.weight": source["norm.weight"],
        "vit.layernorm.bias": source["norm.bias"],
    }
    renames = {
        "norm1": "layernorm_before",
        "norm2": "layernorm_after",
        "attn.proj": "attention.o_proj",
        "mlp.fc1": "mlp.fc1",
        "mlp.fc2": "mlp.fc2",
    }
    for i in range(config.num_hidden_layers):
        prefix, out = f"blocks.{i}.", f"vit.layers.{i}."
        for old, new in renames.items():
            for kind in ("weight", "bias"):
                target[f"{out}{new}.{kind}"] = source[f"{prefix}{old}.{kind}"]
        for kind in ("weight", "bias"):
            if f"{prefix}attn.qkv.{kind}" in source:
                for projection, chunk in zip(
                    ("q_proj", "k_proj", "v_proj"), source[f"{prefix}attn.qkv.{kind}"].chunk(3)
                ):
                    target[f"{out}attention.{projection}.{kind}"] = chunk
    missing, unexpected = model.load_state_dict(target, strict=False)
    if unexpected or set(missing) - {"classifier.weight", "classifier.bias"}:
        raise ValueError(f"timm -> transformers ViT copy failed: missing {missing}, unexpected {unexpected}")
    _check_same_features(timm_model, model)
    return model


@torch.no_grad()
def _check_same_features(timm_model, model) -> None:
    timm_model.eval(), model.eval()
    size = model.config.image_size
    generator = torch.Generator().manual_seed(0)
    pixels = torch.randn(2, 3, size, size, generator=generator)
    expected = timm_model.forward_head(timm_model.forward_features(pixels), pre_logits=True)
    actual = model.vit(pixels).last_hidden_state[:, 0]
    if not torch.allclose(expected, actual, atol=1e-4, rtol=1e-4):
        raise ValueError(
            f"timm -> transformers ViT copy changed the features (max abs diff "
            f"{(expected - actual).abs().max().item():.2e}); the timm model is not a plain ViT"
        )


def load_timm_as_transformers(timm_name: str, labels: dict, checkpoint_file: Optional[str] = None):
    """`timm.create_model(timm_name, pretrained=True)` (or from `checkpoint_file`), converted; the processor
    carries timm's own data config (mean, std, interpolation) for that checkpoint."""
    import timm

    overlay = {"file": str(checkpoint_file)} if checkpoint_file else None
    timm_model = timm.create_model(timm_name, pretrained=True, num_classes=0, pretrained_cfg_overlay=overlay)
    data_config = timm.data.resolve_data_config(model=timm_model)
    processor = _vit_processor(
        data_config["input_size"][-1],
        data_config["mean"],
        data_config["std"],
        data_config.get("interpolation", "bilinear"),
    )
    return timm_vit_to_transformers(timm_model, labels), processor
