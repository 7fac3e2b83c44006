"""Training-step time and peak memory of GPart (each backend) beside LoRA, Uni-LoRA and the weight-gradient floor.

    python -m bench.step_bench --shape roberta-base --device cpu          # `make bench`
    python -m bench.step_bench --shape llama2-7b --device cuda            # the H200 comparison of setup.md §5
    python -m bench.step_bench --setup-time                               # also: group counts for 7B q,k,v,o
    python -m bench.step_bench --profile                                  # also: per-operation profile of a step

Every method runs in its own fresh process (so CPU peak RSS is per method), on the same randomly initialised model
(same seed) and the same batch. On CPU (shared, noisy machines) the step times come instead from one process that
runs all methods round-robin, so that background load hits each alike (--interleave / --no-interleave). A step is forward + backward + AdamW step + zero_grad; the floor is forward +
backward with only the adapted weights requiring gradients (no adapter, no optimizer): the arithmetic GPart needs
beyond LoRA. Reported: median step time over --steps after --warmup and median CPU time of the process per step
(steadier than wall time when others load the machine), each with its ratio to LoRA; peak memory (CUDA:
max_memory_allocated, weights included; CPU: the process's peak RSS, and its rise over the built model). The table
is printed and written as JSON under bench/out/. Models are built from configs; nothing is downloaded.
``gpart-torch`` is the stateless default; ``gpart-torch-cache`` keeps the group ids as int32 within
GPART_ID_CACHE_MIB (GPartConfig.id_cache_mib). ``--profile`` adds one profiled step per method (torch.profiler,
GPart's own sections labelled ``gpart: ...``), in a process of its own, after the timing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import traceback
from datetime import datetime, timezone
from multiprocessing import get_context
from pathlib import Path

OUT_DIR = Path(__file__).resolve().parent / "out"
METHODS = ("floor", "lora", "unilora", "gpart-torch", "gpart-torch-cache", "gpart-triton")
GPART_ID_CACHE_MIB = 64  # the memory allowed over LoRA; RoBERTa-base q,v ids take 54 MiB as int32
LLAMA2_7B_QKVO = (1 << 31, 524_288)  # N = 32 layers × 4 × 4096², d for the 7B class (setup.md §4, §5)

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

# ------------------------------------------------------------------------------------------------ models


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


# ----------------------------------------------------------------------------------------------- one method


def run_method(method: str, shape: dict, device: str, steps: int, warmup: int, threads: int) -> dict:
    """Measure one method in this (fresh) process."""
    import resource

    import torch

    torch.set_num_threads(threads)
    cuda = device == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    model = build_model(shape, device)
    batch = make_batch(model, shape, device)
    rss_model = _rss_gib()
    started = time.perf_counter()
    try:
        model, optimizer = prepare(method, model, shape)
    except (RuntimeError, ImportError) as reason:
        return {"method": method, "status": "skipped", "note": str(reason)}
    setup_s = time.perf_counter() - started
    model.train()
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    times, cpu_times = [], []
    for index in range(warmup + steps):
        seconds, cpu_seconds, loss = train_step(model, optimizer, batch, sync)
        if index >= warmup:
            times.append(seconds)
            cpu_times.append(cpu_seconds)
    result = {
        "method": method,
        "status": "ok",
        "setup_s": setup_s,
        "trainable_params": trainable,
        "final_loss": loss,
        **_step_times(times, cpu_times),
    }
    if cuda:
        result["peak_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
        result.update(peak_memory_gib=peak, peak_over_model_gib=peak - rss_model)
    return result


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


def run_interleaved(methods: list[str], shape: dict, device: str, steps: int, warmup: int, threads: int) -> dict:
    """Step times of all methods in one process, round-robin: on a shared machine, load hits every method alike."""
    import torch

    torch.set_num_threads(threads)
    runners = {method: runner for method, *runner in _prepared(methods, shape, device)}
    times = {method: ([], []) for method in runners}  # (wall seconds, CPU seconds) per step
    order = list(runners)
    for index in range(warmup + steps):
        for method in order[index % len(order) :] + order[: index % len(order)]:  # rotate who goes first
            seconds, cpu_seconds, _ = train_step(*runners[method], sync=lambda: None)
            if index >= warmup:
                times[method][0].append(seconds)
                times[method][1].append(cpu_seconds)
    return {method: _step_times(*pair) for method, pair in times.items()}


def _prepared(methods: list[str], shape: dict, device: str):
    """(method, model in train mode, optimizer, batch) for each method that is not skipped, built one at a time."""
    for method in methods:
        model = build_model(shape, device)
        try:
            model, optimizer = prepare(method, model, shape)
        except (RuntimeError, ImportError):
            continue
        yield method, model.train(), optimizer, make_batch(model, shape, device)


def _step_times(times: list[float], cpu_times: list[float]) -> dict:
    return {
        "median_step_s": statistics.median(times),
        "step_s": times,
        "median_cpu_step_s": statistics.median(cpu_times),
        "cpu_step_s": cpu_times,
    }


def profile_steps(methods: list[str], shape: dict, device: str, threads: int, rows: int) -> str:
    """One profiled step per method, after one warm-up step: torch.profiler's operations by self time."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    torch.set_num_threads(threads)
    _label_gpart_sections()
    cuda = device == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    reports = []
    for method, model, optimizer, batch in _prepared(methods, shape, device):
        train_step(model, optimizer, batch, sync)
        with profile(activities=activities) as profiler:
            seconds, _, _ = train_step(model, optimizer, batch, sync)
        table = profiler.key_averages().table(
            sort_by="self_cuda_time_total" if cuda else "self_cpu_time_total", row_limit=rows, max_name_column_width=40
        )
        reports.append(f"--- {method}: one step, {seconds:.3f} s under the profiler\n{table}")
    return "\n".join(reports)


# Kernel (CUDA) or operation (CPU) names by what they compute, for profile_kernels' totals; first match wins.
KERNEL_KINDS = {
    "gpart": ("_build_kernel", "_reduce_kernel", "_ids_kernel"),
    "matmul": ("gemm", "nvjet", "xmma", "cutlass", "cublas", "aten::mm", "aten::addmm", "aten::bmm"),
    "attention": ("flash", "fmha", "attention", "sdpa", "cudnn"),
}


def profile_kernels(methods: list[str], shape: dict, device: str, threads: int, rows: int) -> dict:
    """Per method, one profiled step after a warm-up step: where its device time goes, as numbers.

    {method: {"step_s", "total_ms", "by_kind_ms" (KERNEL_KINDS and "other"), "top" ([name, calls, ms] by time)}}.
    On CUDA the kernels' own times (each kernel once, not again under the operation that launched it); on CPU the
    operations' self times.
    """
    import torch
    from torch.profiler import ProfilerActivity, profile

    torch.set_num_threads(threads)
    cuda = device == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    found = {}
    for method, model, optimizer, batch in _prepared(methods, shape, device):
        train_step(model, optimizer, batch, sync)
        with profile(activities=activities) as profiler:
            seconds, _, _ = train_step(model, optimizer, batch, sync)
        found[method] = dict(step_s=seconds, **_kernel_times(profiler.key_averages(), cuda, rows))
        del model, optimizer
    return found


def _kernel_times(events, cuda: bool, rows: int) -> dict:
    from torch.autograd import DeviceType

    if cuda:
        timed = [
            (e.key, e.count, getattr(e, "self_device_time_total", 0.0) / 1e3)
            for e in events
            if e.device_type == DeviceType.CUDA
        ]
    else:
        timed = [(e.key, e.count, e.self_cpu_time_total / 1e3) for e in events]
    by_kind = {kind: 0.0 for kind in (*KERNEL_KINDS, "other")}
    for name, _, ms in timed:
        by_kind[_kernel_kind(name)] += ms
    top = sorted(timed, key=lambda row: -row[2])[:rows]
    return {
        "total_ms": round(sum(ms for _, _, ms in timed), 3),
        "by_kind_ms": {kind: round(ms, 3) for kind, ms in by_kind.items()},
        "top": [[name[:90], count, round(ms, 3)] for name, count, ms in top],
    }


def _kernel_kind(name: str) -> str:
    lowered = name.lower()
    return next(
        (kind for kind, marks in KERNEL_KINDS.items() if any(mark.lower() in lowered for mark in marks)), "other"
    )


def _label_gpart_sections(patch=setattr):
    """Name GPart's per-layer work in the profile (numpy's hashing is no torch operation and is otherwise unseen).

    ``patch`` replaces each function (``setattr``; tests pass pytest's ``monkeypatch.setattr`` to undo it).
    """
    from torch.profiler import record_function

    from gpart import layers, partition

    sections = [
        (partition.Partition, "group_ids", "gpart: hash group ids"),
        (layers.GPartAdapter, "group_ids", "gpart: group ids (cached or hashed)"),
        (layers.GPartLayer, "delta", "gpart: ΔW = gather of θ"),
        (layers.GPartLayer, "theta_grad", "gpart: ∇θ = Pᵀ ∇W"),
        (layers, "_dropout_mask", "gpart: dropout mask"),
    ]
    for owner, name, label in sections:
        function = getattr(owner, name)

        def labelled(*args, _function=function, _label=label, **kwargs):
            with record_function(_label):
                return _function(*args, **kwargs)

        patch(owner, name, labelled)


def _rss_gib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**30


def group_count_seconds() -> dict:
    """Time to count the d group sizes of Llama-2-7B's q,k,v,o space (the set-up cost of the stateless partition)."""
    from gpart.partition import Partition

    size, d = LLAMA2_7B_QKVO
    start = time.perf_counter()
    Partition(size, d, seed=0, assignment="stateless")
    return {"adapted_space_size": size, "d": d, "seconds": time.perf_counter() - start, "cpu_count": os.cpu_count()}


# ------------------------------------------------------------------------------------------------- report


def table(results: list[dict], device: str) -> str:
    """Wall and CPU time per step, peak memory, each beside its ratio (or difference) to LoRA's."""
    lora = next((r for r in results if r["method"] == "lora" and r["status"] == "ok"), None)
    memory = "peak GiB (max allocated)" if device == "cuda" else "peak RSS GiB (+ over model)"
    lines = [
        f"{'method':<18} {'median step s':>14} {'vs LoRA':>8} {'CPU s/step':>11} {'vs LoRA':>8} {memory:>28} "
        f"{'MiB vs LoRA':>12} {'trainable':>12}"
    ]
    for r in results:
        if r["status"] != "ok":
            lines.append(f"{r['method']:<18} {'skipped: ' + r['note']}")
            continue
        r["ratio_to_lora"] = r["median_step_s"] / lora["median_step_s"] if lora else float("nan")
        r["cpu_ratio_to_lora"] = r["median_cpu_step_s"] / lora["median_cpu_step_s"] if lora else float("nan")
        r["memory_over_lora_mib"] = (r["peak_memory_gib"] - lora["peak_memory_gib"]) * 1024 if lora else float("nan")
        mem = f"{r['peak_memory_gib']:.2f}"
        if "peak_over_model_gib" in r:
            mem += f" (+{r['peak_over_model_gib']:.2f})"
        lines.append(
            f"{r['method']:<18} {r['median_step_s']:>14.4f} {r['ratio_to_lora']:>8.2f} "
            f"{r['median_cpu_step_s']:>11.4f} {r['cpu_ratio_to_lora']:>8.2f} {mem:>28} "
            f"{r['memory_over_lora_mib']:>+12.0f} {r['trainable_params']:>12,}"
        )
    return "\n".join(lines)


def write_json(payload: dict, path: Path):
    from experiments.runner.atomic import (
        write_text_atomic,  # here, not at import: the GPU image lacks omegaconf (gpu_check)
    )

    write_text_atomic(path, json.dumps(payload, indent=2))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), default="roberta-base")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--steps", type=int, default=10, help="timed steps per method (median reported)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batch", type=int, default=None, help="override the shape's batch size")
    parser.add_argument("--seq", type=int, default=None, help="override the shape's sequence length")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: all cores)")
    parser.add_argument(
        "--interleave",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="time all methods round-robin in one process (default on CPU, whose load is shared); "
        "memory still comes from one process per method",
    )
    parser.add_argument(
        "--setup-time",
        action="store_true",
        help="also time counting the group sizes of a 7B model's q,k,v,o (about a minute on CPU)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also profile one step of each method and print its per-operation breakdown",
    )
    parser.add_argument("--profile-rows", type=int, default=18, help="operations shown per method with --profile")
    parser.add_argument("--out", type=Path, default=None, help="JSON path (default bench/out/<shape>-<device>.json)")
    args = parser.parse_args(argv)
    for name, low in (("steps", 1), ("warmup", 0), ("batch", 1), ("seq", 2), ("threads", 1), ("profile_rows", 1)):
        value = getattr(args, name)
        if value is not None and value < low:
            parser.error(f"--{name.replace('_', '-')} must be >= {low}, got {value}")
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            parser.error("--device cuda: no CUDA device is visible here")
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    threads = args.threads or os.cpu_count() or 1
    print(
        f"step_bench: shape={args.shape} device={args.device} steps={args.steps} warmup={args.warmup} "
        f"threads={threads}",
        flush=True,
    )
    shape = dict(SHAPES[args.shape])
    shape.update({k: getattr(args, k) for k in ("batch", "seq") if getattr(args, k) is not None})
    interleave = args.device == "cpu" if args.interleave is None else args.interleave
    results = []
    for method in args.methods:  # a fresh process each: separate peak memory, no allocator state carried over
        steps, warmup = (1, 0) if interleave else (args.steps, args.warmup)  # interleaved: memory only here
        result = _in_fresh_process(run_method, method, shape, args.device, steps, warmup, threads)
        results.append(result)
        shown = f"{result['median_step_s']:.4f} s" if result["status"] == "ok" else result["note"]
        print(
            f"  {method:<18} {'peak memory measured' if interleave and result['status'] == 'ok' else shown}", flush=True
        )
    if interleave:
        print(f"  timing {args.steps} round-robin steps of each method in one process ...", flush=True)
        times = _in_fresh_process(run_interleaved, args.methods, shape, args.device, args.steps, args.warmup, threads)
        for result in results:
            result.update(times.get(result["method"], {}))
    print(table(results, args.device))
    payload = {
        "bench": "step_bench",
        "shape": args.shape,
        "shape_settings": shape,
        "device": args.device,
        "device_name": _device_name(args.device),
        "steps": args.steps,
        "warmup": args.warmup,
        "threads": threads,
        "interleaved": interleave,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "results": results,
    }
    if args.profile:
        print(f"  profiling one step of each method (--profile-rows {args.profile_rows}) ...", flush=True)
        payload["profile"] = _in_fresh_process(
            profile_steps, args.methods, shape, args.device, threads, args.profile_rows
        )
        print(payload["profile"])
    if args.setup_time:
        payload["group_count_7b_qkvo"] = setup = group_count_seconds()
        print(
            f"set-up: counting d={setup['d']:,} group sizes over N={setup['adapted_space_size']:,} coordinates "
            f"took {setup['seconds']:.1f} s on {setup['cpu_count']} CPU cores"
        )
    out = args.out or OUT_DIR / f"{args.shape}-{args.device}.json"
    write_json(payload, out)
    print(f"wrote {out}")
    return payload


def _in_fresh_process(function, *args):
    """``function(*args)`` in a new (spawned) process: its result, or its exception raised here.

    Interrupted while it waits (Ctrl-C, or ``bench.gpu_check`` stopping a case at its deadline), this kills the
    child instead of waiting for it: a 7B step loop would otherwise run on past any time budget.
    """
    context = get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    child = context.Process(target=_run_and_send, args=(send, function, args), daemon=True)
    child.start()
    send.close()  # the child holds the only writing end: a child that dies makes recv() raise EOFError
    try:
        status, value = receive.recv()
    except EOFError:
        child.join()
        raise RuntimeError(f"the process running {function.__name__} died (exit code {child.exitcode})") from None
    except BaseException:
        child.kill()
        raise
    finally:
        child.join()
        receive.close()
    if status == "error":
        raise value
    return value


def _run_and_send(send, function, args):
    """The child's side of _in_fresh_process: send ("ok", result) or ("error", exception with its traceback)."""
    try:
        reply = ("ok", function(*args))
    except BaseException as error:  # noqa: BLE001 (re-raised in the parent)
        error.add_note(f"in the fresh process:\n{traceback.format_exc()}")
        reply = ("error", error)
    try:
        send.send(reply)
    except Exception as unpicklable:  # an exception that cannot be pickled still arrives, as text
        send.send(("error", RuntimeError(f"{reply[1]!r} (not picklable: {unpicklable})")))
    send.close()


def _device_name(device: str) -> str:
    import platform

    import torch

    return torch.cuda.get_device_name() if device == "cuda" else (platform.processor() or platform.machine())


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
