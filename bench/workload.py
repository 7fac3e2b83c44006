"""What the benches time: a model built from a shape (sizes and method settings per shape, each from setup.md), a
batch, a method applied to the model, and one training step. Used by bench/step_bench.py, its profiles
(bench/profiling.py) and bench/gpu_check.py. Models are built from configs; nothing is downloaded.
"""

from __future__ import annotations

import time

METHODS = ("floor", "lora", "unilora", "gpart-torch", "gpart-torch-cache", "gpart-triton")
GPART_ID_CACHE_MIB = 64  # the memory allowed over LoRA; RoBERTa-base q,v ids take 54 MiB as int32

# Sizes and method settings per shape; each number's source in ../shared/reference/setup.md.
SHAPES = {
    "roberta-base": dict(
        family="roberta",
        targets=["query", "value"],
        head=["classifier"],  # §2: targets query,value
        d=23_040,  # §2: d = 23,040 for base
        lora_r=8,
        lora_alpha=8,  # §2: authors' LoRA baseline r=8, α=8
        unilora_r=4,
        unilora_length=23_040,  # §2: Uni-LoRA r=4, θ length 23,040
        batch=4,
        seq=32,
        dtype="float32",  # small, so a shared 2-core CPU finishes in minutes (not a paper setting)
    ),
    "llama2-7b": dict(
        family="llama",
        targets=["q_proj", "k_proj", "v_proj", "o_proj"],
        head=[],  # §5: targets q,k,v,o
        d=524_288,  # §5: GPart d=524,288
        lora_r=4,
        lora_alpha=8,  # §5: LoRA r=4 (α not given there; it does not change the cost)
        unilora_r=4,
        unilora_length=524_288,  # §5 / §4: Uni-LoRA r=4, θ length 524,288
        batch=4,
        seq=512,
        dtype="bfloat16",  # §5: bf16, batch 4 × 512 tokens
    ),
    "tiny": dict(  # smoke tests of this script only
        family="roberta",
        tiny=True,
        targets=["query", "value"],
        head=["classifier"],
        d=512,
        lora_r=2,
        lora_alpha=2,
        unilora_r=2,
        unilora_length=512,
        batch=2,
        seq=16,
        dtype="float32",
    ),
    "tiny-llama": dict(  # the llama2-7b code path (causal LM, q,k,v,o, bf16) at toy size, for smoke tests
        family="llama",
        tiny=True,
        targets=["q_proj", "k_proj", "v_proj", "o_proj"],
        head=[],
        d=512,
        lora_r=2,
        lora_alpha=8,
        unilora_r=2,
        unilora_length=512,
        batch=2,
        seq=16,
        dtype="bfloat16",
    ),
}

# The same model at the paper's GLUE batch: §2 batch 32; 128 tokens (GLUE sentences are short; §2 caps at 512).
SHAPES["roberta-base-glue"] = dict(SHAPES["roberta-base"], batch=32, seq=128)


def build_model(shape: dict, device: str):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, RobertaConfig, RobertaForSequenceClassification

    torch.manual_seed(0)
    dtype = getattr(torch, shape["dtype"])
    if shape["family"] == "llama":  # Llama-2-7B: 32 layers, hidden 4096, MLP 11008, 32 heads, vocab 32000
        size = dict(
            hidden_size=4096,
            intermediate_size=11008,
            num_hidden_layers=32,
            num_attention_heads=32,
            num_key_value_heads=32,
        )
        if shape.get("tiny"):
            size = dict(
                hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4
            )
        config = LlamaConfig(vocab_size=32000, max_position_embeddings=4096, **size)
        model_class = LlamaForCausalLM
    else:
        size = (
            dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128)
            if shape.get("tiny")
            else {}
        )
        config = RobertaConfig(vocab_size=50265, max_position_embeddings=514, type_vocab_size=1, num_labels=2, **size)
        model_class = RobertaForSequenceClassification
    config._attn_implementation = "sdpa"
    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # build in the training dtype: no float32 copy of 7B weights
    try:
        with torch.device(device):
            model = model_class(config)
    finally:
        torch.set_default_dtype(default)
    return model


def make_batch(model, shape: dict, device: str) -> dict:
    import torch

    generator = torch.Generator().manual_seed(1)
    tokens = torch.randint(3, model.config.vocab_size, (shape["batch"], shape["seq"]), generator=generator)
    batch = {"input_ids": tokens, "attention_mask": torch.ones_like(tokens)}
    if shape["family"] == "llama":
        batch["labels"] = tokens
    else:
        batch["labels"] = torch.randint(0, 2, (shape["batch"],), generator=generator)
    return {k: v.to(device) for k, v in batch.items()}


def prepare(method: str, model, shape: dict):
    """Apply the method; return (model, optimizer or None). Raises RuntimeError or ImportError to skip a method.

    ImportError too: a PEFT without ``UniLoraConfig``, or one too old for the installed transformers, skips that row
    with its reason instead of ending the whole bench.
    """
    import torch

    if method == "floor":
        model.requires_grad_(False)
        for name, module in model.named_modules():
            if any(name.endswith("." + t) for t in shape["targets"] + shape["head"]):
                module.requires_grad_(True)
        return model, None
    if method == "lora":
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(
            model,
            LoraConfig(
                r=shape["lora_r"],
                lora_alpha=shape["lora_alpha"],
                target_modules=shape["targets"],
                modules_to_save=shape["head"] or None,
            ),
        )
    elif method == "unilora":
        from peft import UniLoraConfig, get_peft_model

        model = get_peft_model(
            model,
            UniLoraConfig(
                r=shape["unilora_r"],
                theta_d_length=shape["unilora_length"],
                target_modules=shape["targets"],
                modules_to_save=shape["head"] or None,
            ),
        )
    else:
        from gpart import GPartConfig, apply_gpart, triton_ops

        backend, _, cache = method.removeprefix("gpart-").partition("-")
        device = next(model.parameters()).device
        if backend == "triton" and not (triton_ops.AVAILABLE and device.type == "cuda"):
            raise RuntimeError("needs CUDA and triton (the CPU interpreter is for correctness tests, not timing)")
        config = GPartConfig(
            d=shape["d"],
            target_modules=shape["targets"],
            trainable_modules=shape["head"],
            backend=backend,
            id_cache_mib=GPART_ID_CACHE_MIB if cache else 0.0,
        )
        model = apply_gpart(model, config)
    trainable = [p for p in model.parameters() if p.requires_grad]
    return model, torch.optim.AdamW(trainable, lr=1e-5)


def train_step(model, optimizer, batch, sync) -> tuple[float, float, float]:
    """One forward + backward (+ AdamW step) + zero_grad; returns (seconds, CPU seconds of this process, loss).

    CPU time is what the step cost, whatever else the machine ran meanwhile: on a loaded shared CPU it is the steadier
    measure (on CUDA it only counts the host's work).
    """
    sync()
    cpu_start = time.process_time()
    start = time.perf_counter()
    loss = model(**batch).loss
    loss.backward()
    if optimizer is not None:
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    else:
        model.zero_grad(set_to_none=True)
    sync()
    return time.perf_counter() - start, time.process_time() - cpu_start, loss.item()


def prepared(methods: list[str], shape: dict, device: str):
    """(method, model in train mode, optimizer, batch) for each method that is not skipped, built one at a time."""
    for method in methods:
        model = build_model(shape, device)
        try:
            model, optimizer = prepare(method, model, shape)
        except (RuntimeError, ImportError):
            continue
        yield method, model.train(), optimizer, make_batch(model, shape, device)
