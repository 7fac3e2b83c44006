"""How many modules each vision method adapts on ViT-B / ViT-L, built on the meta device (no weights, no network).

    python -m experiments.tools.module_counts            # ViT-Base, every configs/experiment/vision/base/*.yaml
    python -m experiments.tools.module_counts --size large

Each experiment config is composed with Hydra exactly as `experiments.run` would, and its method is applied through
the runner's own registry (`experiments.methods.build_method`), so the counts are the ones a real run records
(`adapted_modules`, `adapted_space_size`, `trainable_params`). The model is `ViTForImageClassification` with the
published shape of google/vit-{base,large}-patch16-224-in21k (their config.json), allocated on `meta`.
"""

from __future__ import annotations

import argparse

import torch

from experiments import CONFIGS

# Architecture of the in21k checkpoints (their config.json); ViTConfig's defaults are ViT-Base/16 at 224.
SHAPES = {
    "base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
    "large": dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096),
}


def experiment_names(size: str) -> list[str]:
    folder = CONFIGS / "experiment" / "vision" / size
    return sorted(f"vision/{size}/{p.stem}" for p in folder.glob("*.yaml") if not p.stem.startswith("_"))


def meta_vit(size: str, num_labels: int = 100):
    from transformers import ViTConfig, ViTForImageClassification

    config = ViTConfig(**SHAPES[size], image_size=224, patch_size=16, num_labels=num_labels)
    with torch.device("meta"):
        return ViTForImageClassification(config)


def count_experiment(experiment: str, size: str) -> dict:
    """Apply one experiment's method to a meta ViT and return what the run record would say about it."""
    from experiments import compose
    from experiments.methods import build_method
    from experiments.runner.training import count_parameters
    from experiments.tasks.vision.targets import require_target_modules

    cfg = compose([f"experiment={experiment}", "seed=0"])
    model = meta_vit(size)
    require_target_modules(model, list(cfg.model.target_modules))
    method = build_method(cfg.method, cfg.model)
    model = method.apply(model)
    space, modules = method.adapted(model)
    adapter, head = count_parameters(model, list(cfg.model.head_modules))
    return {
        "experiment": experiment,
        "method": cfg.method.key,
        "adapted_modules": modules,
        "adapted_space_size": space,
        "trainable_params": adapter,
        "head_params": head,
    }


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SHAPES), default="base")
    args = parser.parse_args(argv)
    rows = [count_experiment(name, args.size) for name in experiment_names(args.size)]
    header = f"{'experiment':<30} {'method':<10} {'adapted modules':>15} {'N':>12} {'trainable':>12} {'head':>8}"
    print(f"ViT-{args.size} (meta device, 100-class head)\n{header}")
    for row in rows:
        print(
            f"{row['experiment']:<30} {row['method']:<10} {row['adapted_modules']:>15} "
            f"{str(row['adapted_space_size']):>12} {row['trainable_params']:>12,} {row['head_params']:>8,}"
        )
    return rows


if __name__ == "__main__":
    main()
