"""Greedy generation for math evaluation: batched transformers `generate` with left padding (default), or vLLM.

Prompts are sorted by length before batching (less padding), decoded, cut at the first stop string, and returned in
the original order. A tqdm bar shows problems done and the ETA. Under DDP (torchrun) the ranks split the batches and
gather the texts, so every rank returns all of them. The adapter is merged into the weights for the
duration (:func:`merged`), as in the paper's protocol (setup.md §4), and unmerged afterwards.
"""

from __future__ import annotations

import contextlib
import importlib.util
import shutil
import tempfile
import time
from typing import Iterator, Sequence

import torch
from torch import nn
from tqdm.auto import tqdm

from experiments.runner.distributed import gather_objects, process_group

BACKENDS = ("transformers", "vllm", "auto")


def adds_bos(tokenizer) -> bool:
    """Whether the tokenizer's own convention starts a text with BOS (Llama, Gemma, Mistral: yes; Qwen2.5, SmolLM2,
    BERT-style test tokenizers: no). Read from what it does, since not every tokenizer exposes `add_bos_token`."""
    cached = getattr(tokenizer, "_math_adds_bos", None)
    if cached is None:
        bos = tokenizer.bos_token_id
        with_special = tokenizer("a")["input_ids"]
        without = tokenizer("a", add_special_tokens=False)["input_ids"]
        cached = bos is not None and with_special[:1] == [bos] and without[:1] != [bos]
        tokenizer._math_adds_bos = cached
    return cached


def encode_prompt(tokenizer, prompt: str) -> list[int]:
    """Token ids of a prompt: BOS when the tokenizer's convention has one, then the text without other special
    tokens (no trailing EOS/SEP). Training rows use the same encoding, so evaluation sees what training saw."""
    ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    return ([tokenizer.bos_token_id] if adds_bos(tokenizer) else []) + list(ids)


def prepare_tokenizer(tokenizer):
    """Give the tokenizer an EOS and a PAD token when it lacks them (Llama/Mistral have no PAD; BERT-style test
    tokenizers have no EOS: their [SEP] plays it)."""
    if tokenizer.eos_token is None:
        if tokenizer.sep_token is None:
            raise ValueError(
                f"tokenizer {type(tokenizer).__name__} has neither an EOS nor a SEP token to end responses with"
            )
        tokenizer.eos_token = tokenizer.sep_token
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


@contextlib.contextmanager
def merged(model: nn.Module) -> Iterator[nn.Module]:
    """Merge the model's adapter into its weights (PEFT tuners or GPart), in eval mode, and undo both on exit.
    A model without an adapter (full fine-tuning) is used as it is."""
    was_training = model.training
    model.eval()
    unmerge = None
    if callable(getattr(model, "merge_adapter", None)):  # any PEFT tuner
        model.merge_adapter()
        unmerge = model.unmerge_adapter
    else:
        from gpart.model import find_adapter

        if find_adapter(model) is not None:
            from gpart import merge
            from gpart import unmerge as gpart_unmerge

            merge(model)
            unmerge = lambda: gpart_unmerge(model)  # noqa: E731
    try:
        yield model
    finally:
        if unmerge is not None:
            unmerge()
        model.train(was_training)


def cut_at_stop(text: str, stop_strings: Sequence[str]) -> str:
    """`text` up to the first occurrence of any stop string."""
    end = len(text)
    for stop in stop_strings:
        position = text.find(stop)
        if position != -1:
            end = min(end, position)
    return text[:end]


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def generate_transformers(
    model: nn.Module,
    tokenizer,
    prompts: Sequence[str],
    *,
    max_new_tokens: int,
    batch_size: int = 8,
    stop_strings: Sequence[str] = (),
    progress: bool = True,
    description: str = "generating",
) -> list[str]:
    """Greedy continuations of `prompts`, batched with left padding. Returns the decoded new text of each prompt
    (special tokens dropped), cut at the first stop string."""
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r} must be >= 1")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens={max_new_tokens!r} must be >= 1")
    prepare_tokenizer(tokenizer)
    encoded = [encode_prompt(tokenizer, prompt) for prompt in prompts]
    order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]), reverse=True)
    batches = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
    # Under DDP each rank generates every N-th of the batches one process would form: the same padded inputs, hence
    # the same greedy texts, gathered afterwards.
    rank, processes = process_group()
    mine = batches[rank::processes]
    outputs: dict[int, str] = {}
    device = _device(model)
    bar = tqdm(
        total=sum(map(len, mine)),
        desc=description,
        unit="problem",
        disable=not progress or rank != 0,
        dynamic_ncols=True,
    )
    for chunk in mine:
        width = max(len(encoded[i]) for i in chunk)
        input_ids = torch.full((len(chunk), width), tokenizer.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for row, index in enumerate(chunk):  # left padding: the prompts end where generation starts
            ids = encoded[index]
            input_ids[row, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
            attention_mask[row, width - len(ids) :] = 1
        generated = model.generate(
            input_ids=input_ids.to(device),
            attention_mask=attention_mask.to(device),
            do_sample=False,
            max_new_tokens=max_new_tokens,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
            use_cache=True,
            temperature=None,
            top_p=None,
            top_k=None,
            **({"stop_strings": list(stop_strings), "tokenizer": tokenizer} if stop_strings else {}),
        )
        for row, index in enumerate(chunk):
            text = tokenizer.decode(generated[row, width:], skip_special_tokens=True)
            outputs[index] = cut_at_stop(text, stop_strings)
        bar.update(len(chunk))
    bar.close()
    return gather_texts(outputs, len(prompts))


def gather_texts(mine: dict[int, str], count: int) -> list[str]:
    """Every rank's {prompt index: text}, merged into one list in prompt order (on every rank)."""
    merged: dict[int, str] = {}
    for part in gather_objects(mine):
        merged.update(part)
    return [merged.get(index) or "" for index in range(count)]


def vllm_available() -> bool:
    return importlib.util.find_spec("vllm") is not None and torch.cuda.is_available()


def export_merged(model: nn.Module, tokenizer, folder) -> None:
    """Save the (already merged) model as a plain transformers checkpoint: adapter parameters dropped and wrapper
    names (`.base_layer`) removed, keeping exactly the keys a fresh model of the same config has. Loadable by
    `from_pretrained` and by vLLM."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    with torch.device("meta"):
        expected = set(type(inner)(inner.config).state_dict())
    clean = {}
    for key, value in inner.state_dict().items():
        name = key.replace(".base_layer", "")
        if name in expected:
            clean[name] = value
    missing = expected - clean.keys()
    if missing:
        raise ValueError(
            f"cannot export the merged model: {len(missing)} weights not found, e.g. {sorted(missing)[:3]}"
        )
    inner.save_pretrained(folder, state_dict=clean, safe_serialization=True)
    tokenizer.save_pretrained(folder)


def generate_vllm(
    model: nn.Module,
    tokenizer,
    prompts: Sequence[str],
    *,
    max_new_tokens: int,
    stop_strings: Sequence[str] = (),
    gpu_memory_utilization: float = 0.5,
    dtype: str = "bfloat16",
    **_,
) -> list[str]:
    """Greedy generation with vLLM (GPU only): the merged model is exported to a temporary folder
    (:func:`export_merged`), which vLLM loads. Call inside :func:`merged`. vLLM shows its own progress bar."""
    from vllm import LLM, SamplingParams

    folder = tempfile.mkdtemp(prefix="gpart-vllm-")
    try:
        export_merged(model, tokenizer, folder)
        engine = LLM(model=folder, dtype=dtype, gpu_memory_utilization=gpu_memory_utilization)
        params = SamplingParams(temperature=0.0, max_tokens=max_new_tokens, stop=list(stop_strings) or None)
        rank, processes = process_group()
        mine = list(range(rank, len(prompts), processes))  # each DDP rank its share, gathered below
        results = engine.generate([{"prompt_token_ids": encode_prompt(tokenizer, prompts[i])} for i in mine], params)
        return gather_texts(
            {i: cut_at_stop(r.outputs[0].text, stop_strings) for i, r in zip(mine, results)}, len(prompts)
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def generate(
    model: nn.Module, tokenizer, prompts: Sequence[str], *, backend: str = "transformers", **kwargs
) -> tuple[list[str], dict]:
    """Greedy continuations with the chosen backend (`transformers`, `vllm`, or `auto`: vLLM when installed and a
    GPU is present). Returns ``(texts, timing)`` with `generation_s` and `problems_per_s`."""
    if backend not in BACKENDS:
        raise ValueError(f"generation backend={backend!r} is not known; allowed: {list(BACKENDS)}")
    if backend == "vllm" and not vllm_available():
        raise ValueError("generation backend='vllm' needs the vllm package and a CUDA GPU; use 'transformers'")
    chosen = "vllm" if backend == "vllm" or (backend == "auto" and vllm_available()) else "transformers"
    start = time.perf_counter()
    if chosen == "vllm":
        texts = generate_vllm(model, tokenizer, prompts, **kwargs)
    else:
        kwargs.pop("gpu_memory_utilization", None)
        kwargs.pop("dtype", None)
        texts = generate_transformers(model, tokenizer, prompts, **kwargs)
    seconds = time.perf_counter() - start
    return texts, {
        "backend": chosen,
        "generation_s": seconds,
        "problems_per_s": len(prompts) / seconds if seconds > 0 else float("nan"),
    }
