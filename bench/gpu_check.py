"""`make gpu-check`: prove GPart's Triton path on a real GPU, in one prepared run of under 8 minutes on one H200.

    python -m bench.gpu_check                    # everything; report -> $OUT/gpu_check.json, else bench/results/
    python -m bench.gpu_check --sections gpu_tests kernel_costs --budget 200
    python -m bench.gpu_check --summary bench/results/gpu_check.json   # the table of a report, finished or cut off

The JSON report is rewritten atomically after every case, so a run cut short still reports everything it finished
(``--summary`` prints its table without a GPU). Sections run in order, each with its own time budget (the chosen
sections share ``--budget`` in proportion to ``SECTIONS``). A case that would start past its section's budget, or
past the whole run's, is recorded as skipped; one still running when that budget runs out is stopped (a bench row's
child process is killed) and recorded as ``overrun``.

* ``gpu_tests`` — first, the correctness half: ``pytest -m gpu tests/gpu`` in a child process (compiled Triton),
  each test a case of the report as it ends. tests/gpu/test_triton_equivalence.py says what they check: group ids
  bit-exact at scalars past 2³¹ and 2³², both paths against a float64 reference for every weight dtype and
  variant, NaN propagation, sums over more than 2³¹ elements, dropout, bf16 θ, autocast, torch.compile, the device
  check, ``auto`` taking Triton, and the loss curves of 50 AdamW steps of a small random Llama per backend.
* ``kernel_costs`` — measured: the cost of dropout's Philox draw, and of same-address atomic
  contention as d shrinks, on a 4096² bf16 layer; the backward kernel with θ̃ read back from paired atomics beside
  the same kernel gathering it separately; whether two reduces of one gradient agree bitwise.
* ``bench_7b`` — ``make bench``'s Llama-2-7B shape (setup.md §5): floor, LoRA, Uni-LoRA, GPart torch, GPart
  Triton, each in a fresh process (``--bench-methods`` picks some): median step, ratio to LoRA, peak memory; target
  ≤ 1.10× LoRA, memory ≤ LoRA. Then one profiled step of the floor and of GPart Triton: device time by kind of
  kernel (matmul, attention, GPart's own, other) and the top kernels, so the overhead over the floor has names.
* ``group_count`` — counting the d group sizes of the 7B q,k,v,o partition (N = 2³¹) on the GPU.
* ``glue_throughput`` — GPart's training throughput at RoBERTa-base/-large shapes, GLUE batch 32, turned into a
  measured GPU-hours estimate for ``make reproduce-glue`` (docs/runner.md).

Without a CUDA device it prints why and exits 0 without writing anything. It must run compiled Triton, so it
refuses TRITON_INTERPRET=1.

This module is the command line and the order of the sections; the report and its budgets are
bench/check_report.py, the gpu_tests section bench/pytest_section.py, the measured sections bench/gpu_measurements.py.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from bench.check_report import STATUSES, Check, summary_table
from bench.gpu_measurements import BENCH_ORDER, bench_7b, glue_throughput, group_count, kernel_costs
from bench.pytest_section import gpu_tests

REPO = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO / "bench" / "results"
REPORT_NAME = "gpu_check.json"
TOTAL_BUDGET_S = 460.0  # the 8-minute budget of a GPU check, less start-up
# Seconds per section, in run order, at the default budget (about TOTAL_BUDGET_S in all); a run of some sections
# shares its --budget among them in these proportions. What a section leaves unused is not lent on.
SECTIONS = {
    "gpu_tests": 145.0,
    "kernel_costs": 20.0,
    "bench_7b": 190.0,
    "group_count": 25.0,
    "glue_throughput": 75.0,
}
SECTION_RUNNERS = {
    "gpu_tests": gpu_tests,
    "kernel_costs": kernel_costs,
    "bench_7b": bench_7b,
    "group_count": group_count,
    "glue_throughput": glue_throughput,
}


def why_not_runnable() -> str | None:
    """Why this machine cannot run the check (printed, exit 0), or None."""
    if os.environ.get("TRITON_INTERPRET", "0") == "1":
        return "TRITON_INTERPRET=1 is set: the check must run compiled Triton kernels; unset it"
    try:
        import torch
    except ImportError:
        return "torch is not installed"
    if not torch.cuda.is_available():
        return "no CUDA device is visible (torch.cuda.is_available() is False)"
    from gpart import triton_ops

    if not triton_ops.AVAILABLE:
        return "the triton package is not installed (pip install 'gpart[triton]')"
    return None


def shown_path(path: Path) -> str:
    """``path`` as the report records it: relative to the repository, else its name (not this machine's layout)."""
    try:
        return str(Path(path).resolve().relative_to(REPO))
    except ValueError:
        return Path(path).name


def _versions() -> dict:
    import torch
    import transformers
    import triton

    try:
        import peft

        peft_version = peft.__version__
    except ImportError:
        peft_version = "not installed"
    return {
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "triton": triton.__version__,
        "transformers": transformers.__version__,
        "peft": peft_version,
        "python": sys.version.split()[0],
    }


def default_report_path() -> Path:
    out = os.environ.get("OUT")
    return (Path(out) if out else RESULTS_DIR) / REPORT_NAME


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sections", nargs="+", choices=list(SECTIONS), default=list(SECTIONS))
    parser.add_argument("--budget", type=float, default=TOTAL_BUDGET_S, help="seconds for the whole run")
    parser.add_argument(
        "--out", type=Path, default=None, help=f"report path (default $OUT/ or bench/results/{REPORT_NAME})"
    )
    parser.add_argument(
        "--bench-methods",
        nargs="+",
        choices=BENCH_ORDER,
        default=list(BENCH_ORDER),
        help="the bench_7b rows to measure, in this order (default: all)",
    )
    parser.add_argument(
        "--summary",
        type=Path,
        default=None,
        metavar="REPORT",
        help="only print the summary table of an existing report (finished or cut off); no GPU",
    )
    args = parser.parse_args(argv)
    if args.budget <= 0:
        parser.error(f"--budget must be > 0 seconds, got {args.budget}")
    return args


def print_summary(path: Path) -> int:
    try:
        report = json.loads(Path(path).read_text())
    except (OSError, ValueError) as error:
        print(f"gpu_check --summary {path}: cannot read a report there ({type(error).__name__}: {error})")
        return 2
    print(summary_table(report))
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.summary:
        return print_summary(args.summary)
    reason = why_not_runnable()
    if reason:
        print(
            f"gpu_check: skipped, nothing checked and no report written: {reason}. Run it on a machine with a "
            "CUDA GPU (docs/performance.md, 'make gpu-check')."
        )
        return 0
    import torch

    os.environ.setdefault("TQDM_DISABLE", "1")  # counting 2³¹ group sizes would fill the output tail with bars
    path = args.out or default_report_path()
    meta = {"device": torch.cuda.get_device_name(), "versions": _versions(), "report": shown_path(path)}
    check = Check(path, args.budget, meta=meta, options={"bench_methods": args.bench_methods})
    print(f"gpu_check on {meta['device']} ({meta['versions']}), budget {args.budget:.0f} s -> {path}", flush=True)
    scale = args.budget / sum(SECTIONS[name] for name in args.sections)
    for name in args.sections:
        check.start_section(name, SECTIONS[name] * scale)
        SECTION_RUNNERS[name](check)
    from gpart import triton_guard

    check.report["triton_guard_fallback"] = triton_guard.fallback_reason()
    check.finish()
    print(summary_table(check.report))
    print(f"wrote {path}")
    return 0 if not any(c["status"] in STATUSES[:3] for c in check.report["cases"]) else 1


if __name__ == "__main__":
    sys.exit(main())
