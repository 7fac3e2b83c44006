"""`make params`: adapted-space size N and trainable adapter parameters for the paper's budgets, offline.

Each architecture is built on the meta device from its published config values (recorded below, no download),
with the target modules named in `configs/model/<key>.yaml`; each method is counted by applying it for real:
GPart through `gpart`, LoRA and Uni-LoRA through PEFT. Task heads are excluded (the paper's convention).
The peers from `baselines/` (Tied-LoRA, LoRA-XS, CondLoRA) are counted through the method registry on the config
their GLUE experiment files compose to, next to the count `paper_glue.csv` prints for them.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import torch
import yaml
from peft import LoraConfig, UniLoraConfig, get_peft_model
from transformers import (
    LlamaConfig,
    LlamaForCausalLM,
    RobertaConfig,
    RobertaForSequenceClassification,
    ViTConfig,
    ViTForImageClassification,
)

from experiments import CONFIGS, REPO, compose
from gpart import GPartConfig, apply_gpart, gpart_summary
from gpart.model import matches


@dataclass(frozen=True)
class Budget:
    """One paper setting: an architecture, its model config file, and the budgets setup.md gives for it."""

    label: str
    model_yaml: str
    build: callable
    gpart_d: int  # setup.md
    unilora_d: int  # setup.md
    lora_r: int  # setup.md


def _roberta(hidden, layers, heads, intermediate):
    config = RobertaConfig(
        vocab_size=50265,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=intermediate,
        max_position_embeddings=514,
        type_vocab_size=1,
        num_labels=2,
    )
    return lambda: RobertaForSequenceClassification(config)


def _vit(hidden, layers, heads, intermediate):
    config = ViTConfig(
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=intermediate,
        image_size=224,
        patch_size=16,
        num_labels=10,
    )
    return lambda: ViTForImageClassification(config)


def _llama2_7b():
    config = LlamaConfig(
        hidden_size=4096,
        intermediate_size=11008,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=32,
        vocab_size=32000,
    )
    return LlamaForCausalLM(config)


# Architecture values are the public configs of roberta-{base,large}, google/vit-{base,large}-patch16-224-in21k and
# Llama-2-7B. Budgets: setup.md §2 (GLUE: d = 23,040, LoRA r = 8, Uni-LoRA r = 4), §3 (ViT: d = 72,000 / 144,000),
# §4 (7B: d = 524,288), §5 (7B benchmark: LoRA r = 4). ViT LoRA r = 4 is the suite's choice, not setup.md's.
BUDGETS = [
    Budget("roberta-base q,v", "roberta-base", _roberta(768, 12, 12, 3072), 23_040, 23_040, 8),
    Budget("roberta-large q,v", "roberta-large", _roberta(1024, 24, 16, 4096), 23_040, 23_040, 8),
    Budget("vit-base q,v", "vit-base", _vit(768, 12, 12, 3072), 72_000, 72_000, 4),
    Budget("vit-large q,v", "vit-large", _vit(1024, 24, 16, 4096), 144_000, 144_000, 4),
    Budget("llama-2-7b shape q,k,v,o", None, _llama2_7b, 524_288, 524_288, 4),
]
LLAMA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj"]  # setup.md §4


def target_modules(budget: Budget) -> list[str]:
    if budget.model_yaml is None:
        return LLAMA_TARGETS
    return list(yaml.safe_load((CONFIGS / "model" / f"{budget.model_yaml}.yaml").read_text())["target_modules"])


def meta_model(budget: Budget):
    with torch.device("meta"):
        return budget.build()


def adapted_space_size(model, targets) -> int:
    return sum(m.weight.numel() for n, m in model.named_modules() if n and matches(n, targets) and hasattr(m, "weight"))


def trainable(model) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def count(budget: Budget, with_gpart: bool) -> dict:
    targets = target_modules(budget)
    size = adapted_space_size(meta_model(budget), targets)
    row = {"setting": budget.label, "N": size}
    if with_gpart:
        gpart_model = apply_gpart(meta_model(budget), GPartConfig(d=budget.gpart_d, target_modules=targets))
        row["GPart"] = gpart_summary(gpart_model).trainable_adapter_params
    else:
        row["GPart"] = budget.gpart_d  # by construction; applying would count 2^31 group sizes first
    lora = get_peft_model(meta_model(budget), LoraConfig(r=budget.lora_r, target_modules=targets))
    row["LoRA"] = trainable(lora)
    row["LoRA r"] = budget.lora_r
    unilora = get_peft_model(
        meta_model(budget), UniLoraConfig(r=4, theta_d_length=budget.unilora_d, target_modules=targets)
    )
    row["Uni-LoRA"] = trainable(unilora)
    return row


PEERS = {"tied_lora": "Tied-LoRA", "lora_xs": "LoRA-XS", "condlora": "CondLoRA"}
PAPER_GLUE = REPO.parent / "shared" / "reference" / "paper_glue.csv"


def peer_config(method: str, size: str):
    """The config `make reproduce-glue` would run (`glue/<size>/<method>-sst2`), else the method's defaults."""
    experiment = f"glue/{size}/{method}-sst2"
    has_experiment = (CONFIGS / "experiment" / f"{experiment}.yaml").exists()
    overrides = [f"experiment={experiment}"] if has_experiment else [f"method={method}", f"model=roberta-{size}"]
    return compose(overrides), has_experiment


def paper_counts() -> dict[tuple[str, str], str]:
    """(model, method key) -> the `trainable_params` cell of paper_glue.csv; empty when the file is absent."""
    import csv

    if not PAPER_GLUE.exists():
        return {}
    with open(PAPER_GLUE) as handle:
        return {(row["model"], row["method"]): row["trainable_params"] for row in csv.DictReader(handle)}


def count_peer(method: str, size: str) -> dict:
    from experiments.methods import build_method, is_head_parameter

    cfg, has_experiment = peer_config(method, size)
    model = build_method(cfg.method, cfg.model).apply(meta_model(BUDGETS[0 if size == "base" else 1]))
    heads = list(cfg.model.head_modules)
    params = sum(p.numel() for n, p in model.named_parameters() if p.requires_grad and not is_head_parameter(n, heads))
    return {
        "setting": f"roberta-{size}",
        "method": PEERS[method],
        "trainable": params,
        "paper": paper_counts().get((f"roberta-{size}", cfg.method.key), ""),
        "config": f"r={cfg.method.config.r}, targets {','.join(cfg.method.config.target_modules)}",
        "experiment files": "yes" if has_experiment else "no",
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--with-7b-gpart", action="store_true", help="apply GPart to the 7B shape too (~1-2 min of hashing)"
    )
    args = parser.parse_args(argv)
    rows = [count(b, with_gpart=args.with_7b_gpart or b.model_yaml is not None) for b in BUDGETS]
    header = ["setting", "N", "GPart", "Uni-LoRA", "LoRA", "LoRA r"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(f"{row[h]:,}" if isinstance(row[h], int) else str(row[h]) for h in header) + " |")
    print("\nTrainable adapter parameters, task heads excluded; built on the meta device (no weights, no download).")
    peers = [count_peer(method, size) for size in ("base", "large") for method in PEERS]
    header = ["setting", "method", "trainable", "paper", "config", "experiment files"]
    print("\n| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in peers:
        print(
            "| " + " | ".join(f"{row[h]:,}" if isinstance(row[h], int) else str(row[h] or "—") for h in header) + " |"
        )
    print(
        "\nPeers from baselines/, counted through the method registry on their GLUE experiment configs; `paper` is "
        "paper_glue.csv's trainable_params (— where it has no row)."
    )
    return rows + peers


if __name__ == "__main__":
    main()
