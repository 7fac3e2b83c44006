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

The shapes, the methods and the step are bench/workload.py; the profiles bench/profiling.py; the fresh processes
bench/fresh_process.py. This module measures, prints the table and writes the JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from bench.fresh_process import in_fresh_process
from bench.profiling import profile_steps
from bench.workload import METHODS, SHAPES, build_model, make_batch, prepare, prepared, train_step

OUT_DIR = Path(__file__).resolve().parent / "out"
LLAMA2_7B_QKVO = (1 << 31, 524_288)  # N = 32 layers × 4 × 4096², d for the 7B class (setup.md §4, §5)


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


def run_interleaved(methods: list[str], shape: dict, device: str, steps: int, warmup: int, threads: int) -> dict:
    """Step times of all methods in one process, round-robin: on a shared machine, load hits every method alike."""
    import torch

    torch.set_num_threads(threads)
    runners = {method: runner for method, *runner in prepared(methods, shape, device)}
    times = {method: ([], []) for method in runners}  # (wall seconds, CPU seconds) per step
    order = list(runners)
    for index in range(warmup + steps):
        for method in order[index % len(order) :] + order[: index % len(order)]:  # rotate who goes first
            seconds, cpu_seconds, _ = train_step(*runners[method], sync=lambda: None)
            if index >= warmup:
                times[method][0].append(seconds)
                times[method][1].append(cpu_seconds)
    return {method: _step_times(*pair) for method, pair in times.items()}


def _step_times(times: list[float], cpu_times: list[float]) -> dict:
    return {
        "median_step_s": statistics.median(times),
        "step_s": times,
        "median_cpu_step_s": statistics.median(cpu_times),
        "cpu_step_s": cpu_times,
    }


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
        result = in_fresh_process(run_method, method, shape, args.device, steps, warmup, threads)
        results.append(result)
        shown = f"{result['median_step_s']:.4f} s" if result["status"] == "ok" else result["note"]
        print(
            f"  {method:<18} {'peak memory measured' if interleave and result['status'] == 'ok' else shown}", flush=True
        )
    if interleave:
        print(f"  timing {args.steps} round-robin steps of each method in one process ...", flush=True)
        times = in_fresh_process(run_interleaved, args.methods, shape, args.device, args.steps, args.warmup, threads)
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
        payload["profile"] = in_fresh_process(
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


def _device_name(device: str) -> str:
    import platform

    import torch

    return torch.cuda.get_device_name() if device == "cuda" else (platform.processor() or platform.machine())


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
