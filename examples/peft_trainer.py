"""Train a GPart adapter with `transformers.Trainer` through stock PEFT, save it, load it back with PEFT.

    python examples/peft_trainer.py OUT_DIR

Offline: a tiny random Llama learns a fixed token pattern. With a pretrained model, replace `tiny_llama()` by
`AutoModelForCausalLM.from_pretrained(...)`; nothing else changes.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from peft import PeftModel, get_peft_model
from transformers import LlamaConfig, LlamaForCausalLM, Trainer, TrainingArguments

import gpart.peft  # noqa: F401  (registers GPart with PEFT)
from gpart.peft import GPartPeftConfig

VOCAB, LENGTH = 64, 16


def tiny_llama() -> LlamaForCausalLM:
    torch.manual_seed(0)
    return LlamaForCausalLM(
        LlamaConfig(
            vocab_size=VOCAB,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
        )
    )


def pattern_dataset(n: int = 64) -> list[dict]:
    """Sequences counting up by 3 from a random start: next-token prediction a small adapter can learn."""
    generator = torch.Generator().manual_seed(0)
    starts = torch.randint(0, VOCAB, (n, 1), generator=generator)
    ids = (starts + 3 * torch.arange(LENGTH)) % VOCAB
    return [{"input_ids": row, "labels": row} for row in ids]


def train(out_dir: str | Path, steps: int = 15) -> dict:
    out_dir = Path(out_dir)
    config = GPartPeftConfig(
        d=512, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"], proj_seed=0, task_type="CAUSAL_LM"
    )
    model = get_peft_model(tiny_llama(), config)
    model.print_trainable_parameters()
    args = TrainingArguments(
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
    )
    trainer = Trainer(model=model, args=args, train_dataset=pattern_dataset())
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    model.save_pretrained(out_dir / "adapter")  # adapter_config.json (peft_type GPART) + base_model.gpart_theta_d

    reloaded = PeftModel.from_pretrained(tiny_llama(), out_dir / "adapter").eval()
    batch = torch.stack([row["input_ids"] for row in pattern_dataset()[:4]])
    with torch.no_grad():
        same = torch.equal(reloaded(input_ids=batch).logits, model.eval()(input_ids=batch).logits)
    return {"first_loss": losses[0], "last_loss": losses[-1], "reloaded_outputs_equal": same}


if __name__ == "__main__":
    print(train(sys.argv[1] if len(sys.argv) > 1 else "peft-trainer-out"))
