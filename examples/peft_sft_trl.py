"""Supervised fine-tuning with TRL's `SFTTrainer(peft_config=GPartPeftConfig(...))`: TRL wraps the model with PEFT.

    python examples/peft_sft_trl.py OUT_DIR

Offline: a tiny random Llama and a character-level tokenizer built here learn short arithmetic lines. With a
pretrained model, pass its name (or model and tokenizer) to SFTTrainer instead; the GPart part is the config alone.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from datasets import Dataset
from peft import PeftModel
from tokenizers import Regex, Tokenizer, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast
from trl import SFTConfig, SFTTrainer

import gpart.peft  # noqa: F401  (registers GPart with PEFT)
from gpart.peft import GPartPeftConfig

SPECIAL = ["<pad>", "<unk>", "<s>", "</s>"]
CHARACTERS = "0123456789+= "


def char_tokenizer() -> PreTrainedTokenizerFast:
    vocab = {token: i for i, token in enumerate(SPECIAL + list(CHARACTERS))}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token="<pad>", unk_token="<unk>", bos_token="<s>", eos_token="</s>"
    )


def tiny_llama(tokenizer) -> LlamaForCausalLM:
    torch.manual_seed(0)
    return LlamaForCausalLM(
        LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
    )


def sums(n: int = 64) -> Dataset:
    generator = torch.Generator().manual_seed(0)
    pairs = torch.randint(0, 50, (n, 2), generator=generator).tolist()
    return Dataset.from_dict({"text": [f"{a}+{b}={a + b}" for a, b in pairs]})


def train(out_dir: str | Path, steps: int = 15) -> dict:
    out_dir = Path(out_dir)
    tokenizer = char_tokenizer()
    # bf16=False: TRL defaults to bfloat16 autocast; float32 here lets the reloaded adapter be compared exactly.
    args = SFTConfig(
        output_dir=str(out_dir / "trainer"),
        max_steps=steps,
        per_device_train_batch_size=16,
        learning_rate=0.2,
        lr_scheduler_type="constant",
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
        seed=0,
        max_length=32,
        bf16=False,
    )
    trainer = SFTTrainer(
        model=tiny_llama(tokenizer),
        args=args,
        train_dataset=sums(),
        processing_class=tokenizer,
        peft_config=GPartPeftConfig(d=512, target_modules=["q_proj", "v_proj"], proj_seed=0),
    )
    trainer.train()
    trainer.save_model(str(out_dir / "adapter"))  # the PEFT adapter: adapter_config.json + adapter_model.safetensors
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]

    reloaded = PeftModel.from_pretrained(tiny_llama(tokenizer), out_dir / "adapter").eval()
    batch = tokenizer(["12+30=42", "7+8=15"], return_tensors="pt", padding=True)
    with torch.no_grad():
        same = torch.equal(reloaded(**batch).logits, trainer.model.eval()(**batch).logits)
    return {"first_loss": losses[0], "last_loss": losses[-1], "reloaded_outputs_equal": same}


if __name__ == "__main__":
    print(train(sys.argv[1] if len(sys.argv) > 1 else "peft-sft-out"))
