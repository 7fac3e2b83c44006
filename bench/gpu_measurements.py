"""The sections of bench/gpu_check.py that measure, each a list of cases run under the check's budget:
`kernel_costs` (Triton kernel times on a 4096² bf16 layer, reduce determinism), `bench_7b` (make bench's Llama-2-7B
rows, the ≤ 1.10× LoRA target, a profiled step), `group_count` (the 7B partition's group sizes on the GPU) and
`glue_throughput` (RoBERTa steps at GLUE batch 32, as GPU-hours of make reproduce-glue).
"""

from __future__ import annotations

import contextlib
import os
import statistics
import time

from bench.check_report import Check

DEVICE = "cuda"  # tests/test_gpu_check.py runs some bench cases on "cpu" under TRITON_INTERPRET=1
STEP_TARGET = 1.10  # GPart step ≤ 1.10 × LoRA's on the 7B shape (docs/performance.md)
# make reproduce-glue, per method and seed, in training-sequence equivalents (docs/runner.md: 7.06 M trained + 1.7 M
# evaluated at a third of the cost on roberta-base; 5.15 M + 1.3 M on roberta-large), over 9 methods × 5 seeds.
GLUE_SEQUENCES = {"roberta-base": 7.6e6, "roberta-large": 5.6e6}
GLUE_RUNS_PER_TABLE = 9 * 5
GLUE_BATCH = 32  # setup.md §2
ROBERTA_SIZES = {
    "roberta-base": {},
    "roberta-large": dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096),
}


def glue_gpu_hours(step_s: float, model: str, batch: int = GLUE_BATCH) -> dict:
    """GPU-hours of one method-seed and of a whole GLUE table (9 methods × 5 seeds) at a measured step time."""
    sequences_per_s = batch / step_s
    per_run_h = GLUE_SEQUENCES[model] / sequences_per_s / 3600
    return {
        "sequences_per_s": round(sequences_per_s, 1),
        "gpu_h_per_method_seed": round(per_run_h, 2),
        "gpu_h_per_table": round(per_run_h * GLUE_RUNS_PER_TABLE, 1),
    }


# ------------------------------------------------------------------------------------------------ helpers


def _partition(size: int, d: int, seed: int, assignment: str = "stateless"):
    """A real Partition that skips counting group sizes (ids need only N, d, seed; N here is up to 2³⁴)."""
    from gpart.partition import Partition

    # under another name the override below would do nothing and counting 2³⁴ sizes would hang: say so instead
    if "_count_groups" not in vars(Partition):
        raise RuntimeError("gpart.partition.Partition._count_groups is gone; update bench/gpu_measurements._partition")

    class Uncounted(Partition):
        def _count_groups(self):
            return None

    return Uncounted(size, d, seed=seed, assignment=assignment)


def _sync():
    import torch

    if DEVICE == "cuda":
        torch.cuda.synchronize()


def _median_ms(function, repeats: int = 20) -> float:
    import triton.testing

    return triton.testing.do_bench(function, warmup=5, rep=repeats, return_mode="median")


# ------------------------------------------------------------------------------------------ kernel costs


def case_kernel_costs() -> dict:
    """Median kernel times on a 4096² bf16 layer: build ± dropout (Philox), reduce at shrinking d (atomic contention)."""
    import torch
    import triton

    from gpart import triton_ops

    count = 4096 * 4096
    generator = torch.Generator().manual_seed(0)
    base = torch.randn(4096, 4096, generator=generator).to(DEVICE, torch.bfloat16)
    grad = torch.randn(4096, 4096, generator=generator).to(DEVICE, torch.bfloat16)
    times = {}
    partition = _partition(1 << 31, 524_288, 0)
    scaled = torch.randn(partition.d, device=DEVICE)
    times["build"] = _median_ms(lambda: triton_ops.build(partition, scaled, 0, base, like=base))
    times["build+dropout"] = _median_ms(
        lambda: triton_ops.build(partition, scaled, 0, base, like=base, dropout_seed=5, p=0.05)
    )
    times["reduce+weight"] = _median_ms(
        lambda: triton_ops.group_sums(partition, grad, 0, base=base, scaled_theta=scaled)
    )
    with _setting(triton_ops, "PAIRED_ATOMICS", False):  # θ̃ gathered beside each atomic: two random accesses
        times["reduce+weight unpaired"] = _median_ms(
            lambda: triton_ops.group_sums(partition, grad, 0, base=base, scaled_theta=scaled)
        )
    for d in (1, 64, 4096, 524_288):
        partition_d = _partition(1 << 31, d, 0)
        times[f"reduce d={d}"] = _median_ms(lambda partition_d=partition_d: triton_ops.group_sums(partition_d, grad, 0))
    copy_ms = _median_ms(lambda: base.clone())
    times = {k: round(v, 4) for k, v in times.items()}
    detail = " ".join(f"{k} {v:.3f}" for k, v in times.items()) + f" ms (bf16 copy {copy_ms:.3f} ms)"
    return {
        "ok": None,
        "detail": detail,
        "ms": times,
        "copy_ms": copy_ms,
        "triton": triton.__version__,
        "coordinates": count,
    }


@contextlib.contextmanager
def _setting(owner, name: str, value):
    previous = getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, previous)


def case_reduce_determinism() -> dict:
    """Whether two reduces of one gradient give bitwise equal ∇θ (float atomics: expected not to, at small d)."""
    import torch

    from gpart import triton_ops

    grad = torch.randn(4096 * 4096, generator=torch.Generator().manual_seed(0)).to(DEVICE, torch.bfloat16)
    equal = {}
    for d in (64, 4096, 524_288):
        partition = _partition(4096 * 4096, d, 0)
        first, second = triton_ops.group_sums(partition, grad, 0), triton_ops.group_sums(partition, grad, 0)
        equal[d] = {
            "bitwise_equal": torch.equal(first, second),
            "max_relative_difference": ((first - second).abs().max() / first.abs().max()).item(),
        }
    return {
        "ok": None,
        "detail": " ".join(
            f"d={d}: {'equal' if v['bitwise_equal'] else 'differs'} ({v['max_relative_difference']:.1e})"
            for d, v in equal.items()
        ),
        "by_d": equal,
    }


def kernel_costs(check: Check):
    check.case("kernel times, 4096^2 bf16", case_kernel_costs)
    check.case("two reduces bitwise equal?", case_reduce_determinism)


# ---------------------------------------------------------------------------------------------- 7B bench

BENCH_ORDER = ("lora", "gpart-triton", "floor", "unilora", "gpart-torch")  # the target's two rows first
PROFILED = ("floor", "gpart-triton")  # what GPart adds over the weight-gradient floor, kernel by kernel


def case_bench_method(method: str, rows: dict, steps: int = 10, warmup: int = 3, shape: str = "llama2-7b") -> dict:
    from bench import fresh_process, step_bench, workload

    result = fresh_process.in_fresh_process(
        step_bench.run_method, method, workload.SHAPES[shape], DEVICE, steps, warmup, os.cpu_count() or 1
    )
    rows[method] = result
    if result["status"] != "ok":
        return {"ok": None, "detail": f"skipped: {result.get('note')}"}
    lora = rows.get("lora", {}).get("median_step_s")
    ratio = result["median_step_s"] / lora if lora else None
    detail = (
        f"{result['median_step_s']:.4f} s/step, {'%.2f' % ratio if ratio else '?'}× LoRA, peak "
        f"{result['peak_memory_gib']:.1f} GiB, set-up {result['setup_s']:.1f} s"
    )
    return {"ok": None, "detail": detail, "ratio_to_lora": ratio, "row": result}


def case_target(rows: dict) -> dict:
    lora, gpart = rows.get("lora"), rows.get("gpart-triton")
    if not (lora and gpart and lora["status"] == gpart["status"] == "ok"):
        return {"ok": None, "detail": "not measured (LoRA or GPart Triton row missing)"}
    ratio = gpart["median_step_s"] / lora["median_step_s"]
    memory = gpart["peak_memory_gib"] <= lora["peak_memory_gib"]
    return {
        "ok": ratio <= STEP_TARGET and memory,
        "ratio_to_lora": ratio,
        "memory_within_lora": memory,
        "detail": f"GPart Triton {ratio:.2f}× LoRA's step (target ≤ {STEP_TARGET}), peak "
        f"{gpart['peak_memory_gib']:.1f} vs LoRA {lora['peak_memory_gib']:.1f} GiB",
    }


def case_profile(methods=PROFILED, shape: str = "llama2-7b", rows: int = 25) -> dict:
    """One profiled step per method (profiling.profile_kernels, in a fresh process): device time by kind of kernel."""
    from bench import fresh_process, profiling, workload

    found = fresh_process.in_fresh_process(
        profiling.profile_kernels, list(methods), workload.SHAPES[shape], DEVICE, os.cpu_count() or 1, rows
    )
    detail = "; ".join(
        f"{method}: {found[method]['total_ms']:.1f} ms ("
        + ", ".join(f"{kind} {ms:.1f}" for kind, ms in found[method]["by_kind_ms"].items())
        + ")"
        for method in found
    )
    return {"ok": None, "detail": detail, "profiles": found}


def bench_7b(check: Check):
    rows: dict = {}
    for method in check.options.get("bench_methods", BENCH_ORDER):
        check.case(f"llama2-7b {method}", case_bench_method, method, rows, expect_s=20)
    check.case("7B target: ≤ 1.10× LoRA, memory ≤ LoRA", case_target, rows)
    check.report["bench_7b_rows"] = rows
    check.case("7B step profile: floor vs GPart Triton", case_profile, expect_s=40)


# ------------------------------------------------------------------------------------------- group count


def case_group_count_7b() -> dict:
    """Counting the 7B q,k,v,o group sizes (N = 2³¹, d = 524,288) on the GPU: Triton reduce of ones, torch bincount."""
    import torch

    from gpart import triton_ops

    partition = _partition(1 << 31, 524_288, 0)
    _sync()
    started = time.perf_counter()
    ones = torch.ones(partition.size, dtype=torch.bfloat16, device=DEVICE)
    triton_counts = triton_ops.group_sums(partition, ones, 0).long()
    _sync()
    triton_s = time.perf_counter() - started
    del ones
    started = time.perf_counter()
    torch_counts = _bincount_on_gpu(partition)
    _sync()
    torch_s = time.perf_counter() - started
    equal = torch.equal(triton_counts, torch_counts)
    return {
        "ok": equal,
        "detail": f"Triton {triton_s:.2f} s, torch bincount {torch_s:.2f} s (CPU: the bench rows' "
        f"set-up time); counts equal: {equal}",
        "triton_s": triton_s,
        "torch_bincount_s": torch_s,
    }


def _bincount_on_gpu(partition, chunk: int = 1 << 28):
    import torch

    from gpart.partition import stateless_group_ids

    counts = torch.zeros(partition.d, dtype=torch.int64, device=DEVICE)
    for start in range(0, partition.size, chunk):
        count = min(chunk, partition.size - start)
        ids = stateless_group_ids(start, count, seed=partition.seed, d=partition.d, device=DEVICE)
        counts += torch.bincount(ids, minlength=partition.d)
    return counts


def group_count(check: Check):
    check.case("7B q,k,v,o group sizes on the GPU", case_group_count_7b)


# ---------------------------------------------------------------------------------------- GLUE throughput


def case_glue_throughput(model_name: str, seq: int, method: str, steps: int = 8, warmup: int = 3) -> dict:
    """Median training step at batch 32 × seq (fp32, as the runner trains GLUE), and what it means in GPU-hours."""
    import torch
    from transformers import RobertaConfig, RobertaForSequenceClassification

    from bench import workload

    torch.manual_seed(0)
    config = RobertaConfig(
        vocab_size=50265, max_position_embeddings=514, type_vocab_size=1, num_labels=2, **ROBERTA_SIZES[model_name]
    )
    config._attn_implementation = "sdpa"
    model = RobertaForSequenceClassification(config).to(DEVICE)
    shape = dict(workload.SHAPES["roberta-base"], batch=GLUE_BATCH, seq=seq)
    if method == "lora":
        model, optimizer = workload.prepare("lora", model, shape)
    else:
        from gpart import GPartConfig, apply_gpart

        apply_gpart(
            model,
            GPartConfig(
                d=23_040,
                target_modules=["query", "value"],
                trainable_modules=["classifier"],
                dropout=0.1,
                backend=method.removeprefix("gpart-"),
            ),
        )  # setup.md §2
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-3)
    model.train()
    batch = workload.make_batch(model, shape, DEVICE)
    times = [workload.train_step(model, optimizer, batch, _sync)[0] for _ in range(warmup + steps)][warmup:]
    step_s = statistics.median(times)
    hours = glue_gpu_hours(step_s, model_name)
    return {
        "ok": None,
        "median_step_s": step_s,
        **hours,
        "detail": f"{step_s:.4f} s/step, {hours['sequences_per_s']:.0f} seq/s -> "
        f"{hours['gpu_h_per_method_seed']:.2f} GPU-h per method-seed, "
        f"{hours['gpu_h_per_table']:.0f} per table",
    }


def glue_throughput(check: Check):
    for seq in (128, 512):  # 128 first: typical of GLUE's dynamically padded batches; 512 is the upper bound
        for model_name in ("roberta-base", "roberta-large"):
            for method in ("gpart-triton", "lora"):
                check.case(
                    f"{model_name} 32×{seq} {method}",
                    case_glue_throughput,
                    model_name,
                    seq,
                    method,
                    expect_s=4 * seq / 128,
                )
