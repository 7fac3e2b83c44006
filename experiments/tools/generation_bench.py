"""Generation throughput on MATH500 prompts: problems per second for several batch sizes, measured side by side in
one process with the same model, prompts and token budget, plus a check that greedy outputs do not depend on the
batch size (left padding is exact).

    python -m experiments.tools.generation_bench --model tiny-llama --problems 64 --max-new-tokens 64
    python -m experiments.tools.generation_bench --model smollm2 --problems 32 --batch-sizes 1 8 32   # real weights

Models are `configs/model/<name>.yaml`. A random model rarely emits EOS, so every sequence runs the full token
budget: the numbers are throughput at a fixed length, not a prediction of a trained model's speed.
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from experiments import REPO


def load_model(name: str):
    from omegaconf import OmegaConf

    import experiments  # noqa: F401  (registers ${minilm_path:})
    from experiments.tasks.math import MathTask

    model_cfg = OmegaConf.load(REPO / "configs" / "model" / f"{name}.yaml")
    task = MathTask(key="math500", eval_local_path="math500/test.jsonl", answer_type="math", progress=False)
    model, tokenizer = task.build_model(model_cfg)
    return model.eval(), tokenizer


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="tiny-llama", help="configs/model/<name>.yaml (default tiny-llama)")
    parser.add_argument("--problems", type=int, default=64, help="first N MATH500 problems")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--template", default="gpart")
    args = parser.parse_args(argv)

    from experiments.tasks.math.data import evaluation_problems, format_prompt, load_rows
    from experiments.tasks.math.evaluation import score_generations
    from experiments.tasks.math.generation import generate

    torch.manual_seed(0)
    model, tokenizer = load_model(args.model)
    problems = evaluation_problems(
        load_rows("HuggingFaceH4/MATH-500", "test", local_path="math500/test.jsonl", limit=args.problems), "math"
    )
    prompts = [format_prompt(args.template, p["question"]) for p in problems]
    device = "cuda" if torch.cuda.is_available() else f"cpu ({torch.get_num_threads()} threads)"
    print(
        f"model {args.model} ({sum(p.numel() for p in model.parameters()):,} params) on {device}; "
        f"{len(prompts)} MATH500 problems, greedy, max_new_tokens={args.max_new_tokens}"
    )
    results, reference = [], None
    for batch_size in args.batch_sizes:
        texts, timing = generate(
            model, tokenizer, prompts, max_new_tokens=args.max_new_tokens, batch_size=batch_size, progress=False
        )
        reference = texts if reference is None else reference
        results.append(
            {
                "batch_size": batch_size,
                "seconds": timing["generation_s"],
                "problems_per_s": timing["problems_per_s"],
                "same_outputs": texts == reference,
            }
        )
    start = time.perf_counter()
    metrics, _ = score_generations(problems, reference, "math")
    scoring_s = time.perf_counter() - start
    base = results[0]["problems_per_s"]
    print(
        f"{'batch':>6} {'seconds':>9} {'problems/s':>11} {'vs batch ' + str(args.batch_sizes[0]):>12} "
        f"{'outputs = first':>16}"
    )
    for row in results:
        print(
            f"{row['batch_size']:>6} {row['seconds']:>9.2f} {row['problems_per_s']:>11.2f} "
            f"{row['problems_per_s'] / base:>11.2f}x {str(row['same_outputs']):>16}"
        )
    print(
        f"scoring (extraction + math-verify): {scoring_s:.2f} s for {len(problems)} problems "
        f"({len(problems) / scoring_s:.1f} problems/s); exact_match {metrics['exact_match']:.3f}, "
        f"extraction failures {metrics['extraction_failure_rate']:.2f}"
    )
    return results


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
