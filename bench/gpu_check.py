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
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

DEVICE = "cuda"  # tests/test_gpu_check.py runs some bench cases on "cpu" under TRITON_INTERPRET=1
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


# ---------------------------------------------------------------------------------------- report and budget

# Worst first: the summary table's order, and what makes main() exit 1 (the first three).
STATUSES = ("FAIL", "error", "overrun", "skipped", "measured", "pass")


class CaseOverrun(BaseException):
    """Raised inside a case when its section's time runs out.

    A BaseException, like KeyboardInterrupt: the code under test catches Exception in places (the Triton guard falls
    back to torch on any Exception) and must not take a deadline for a kernel failure.
    """


@contextlib.contextmanager
def _stop_after(seconds: float):
    """Raise CaseOverrun in this thread after ``seconds``; without SIGALRM or off the main thread, no limit."""
    if not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):
        raise CaseOverrun

    previous = signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 1e-3))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class Check:
    """Runs cases under section budgets and keeps the report on disk current after every case."""

    def __init__(
        self, path: Path, budget_s: float, clock=time.monotonic, meta: dict | None = None, options: dict | None = None
    ):
        self.path, self.clock = path, clock
        self.options = options or {}  # what the sections read from the command line (bench_methods)
        self.deadline = clock() + budget_s
        self.section_deadline = self.deadline
        self.section_name = None
        self.report = {
            "check": "gpu_check",
            "created": _now(),
            "budget_s": budget_s,
            **(meta or {}),
            "status": "running",
            "cases": [],
            "sections": {},
        }

    def start_section(self, name: str, budget_s: float):
        self.section_name = name
        self.section_deadline = min(self.clock() + budget_s, self.deadline)
        self.report["sections"][name] = {"budget_s": budget_s, "started_s": self._elapsed()}
        self.write()

    def case(self, name: str, function, *args, expect_s: float = 0.0, **kwargs) -> dict:
        """Run ``function`` (returns a dict with ``ok``: True/False, or None for a measurement) and record it.

        Skipped when fewer than ``expect_s`` seconds (the case's expected duration) are left in the budget; stopped
        (status ``overrun``) if it is still running when the section's or the whole run's budget runs out.
        """
        entry = {"section": self.section_name, "name": name}
        finish = self.clock() + expect_s
        if finish >= self.section_deadline:
            entry.update(status="skipped", detail=f"not started: {self.whose_budget(finish)} time budget was spent")
            return self._record(entry)
        started = self.clock()
        try:
            with _stop_after(self.section_deadline - started):
                result = function(*args, **kwargs) or {}
            ok = result.pop("ok", None)
            entry.update(
                status={True: "pass", False: "FAIL", None: "measured"}[ok], detail=result.pop("detail", ""), **result
            )
        except CaseOverrun:
            entry.update(
                status="overrun",
                detail=f"stopped after {self.clock() - started:.1f} s: "
                f"{self.whose_budget(self.clock())} time budget ran out",
            )
            _release_memory()
        except Exception as error:  # one broken case must not hide the others
            entry.update(
                status="error",
                detail=f"{type(error).__name__}: {str(error)[:300]}",
                traceback=traceback.format_exc()[-2000:],
            )
        entry["seconds"] = round(self.clock() - started, 3)
        return self._record(entry)

    def record(self, name: str, status: str, detail: str = "", **fields) -> dict:
        """Record an outcome found outside ``case``: a test that the gpu_tests section's child process ran."""
        return self._record({"section": self.section_name, "name": name, "status": status, "detail": detail, **fields})

    def whose_budget(self, moment: float) -> str:
        return "the whole run's" if moment >= self.deadline else f"section {self.section_name}'s"

    def _record(self, entry: dict) -> dict:
        self.report["cases"].append(entry)
        self.report["elapsed_s"] = self._elapsed()  # a report cut off later still says how far it got
        self.write()
        print(f"  [{entry['status']:>8}] {entry['section']}: {entry['name']} {entry.get('detail', '')}", flush=True)
        return entry

    def finish(self):
        self.report.update(status="finished", elapsed_s=self._elapsed(), counts=_counts(self.report["cases"]))
        self.write()

    def write(self):
        from gpart.io import _atomic_write  # the library's own atomic write (experiments/ needs Hydra)

        text = json.dumps(self.report, indent=1, default=_jsonable)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write(self.path, lambda temporary: Path(temporary).write_text(text))

    def _elapsed(self) -> float:
        return round(self.clock() - (self.deadline - self.report["budget_s"]), 2)


def _counts(cases: list[dict]) -> dict:
    counts = {}
    for entry in cases:
        counts[entry["status"]] = counts.get(entry["status"], 0) + 1
    return counts


def _release_memory():
    """After a stopped case: drop what it left behind, so that the next case has the GPU's memory."""
    gc.collect()
    if DEVICE == "cuda" and "torch" in sys.modules:
        sys.modules["torch"].cuda.empty_cache()


def _jsonable(value):
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def summary_table(report: dict, width: int = 118) -> str:
    """One line per case (failures and errors first), then the counts: what the device tool's output tail shows.

    Works on a report read back from disk, finished or cut off (``--summary PATH``).
    """
    order = {status: rank for rank, status in enumerate(STATUSES)}
    ranked = sorted(enumerate(report["cases"]), key=lambda item: (order.get(item[1]["status"], len(order)), item[0]))
    lines = [f"{'status':<9}{'section':<16}{'case':<44}detail", "-" * width]
    for _, case in ranked:
        line = (
            f"{case['status']:<9}{case['section'] or '':<16}{_shortened(case['name'], 43):<44}{case.get('detail', '')}"
        )
        lines.append(line[:width])
    counts = ", ".join(f"{n} {s}" for s, n in sorted((report.get("counts") or _counts(report["cases"])).items()))
    state = report["status"] if report["status"] == "finished" else f"cut off ({report['status']} at its last case)"
    lines += [
        "-" * width,
        f"gpu_check {state} in {report.get('elapsed_s', '?')} s on {report.get('device', '?')}: {counts}",
    ]
    return "\n".join(lines)


def _shortened(name: str, width: int) -> str:
    """``name`` cut to ``width`` before its `[parameters]`, which tell a test's rows apart, or else at its end."""
    base, bracket, parameters = name.partition("[")
    keep = width - 1 - len(bracket + parameters)
    if len(name) <= width or keep < 8:
        return name[:width]
    return f"{base[:keep]}…{bracket}{parameters}"


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
        raise RuntimeError("gpart.partition.Partition._count_groups is gone; update bench/gpu_check._partition")

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


# ------------------------------------------------------------------------------------------- GPU tests

GPU_TESTS = REPO / "tests" / "gpu"
PYTEST_STATUS = {"passed": "pass", "failed": "FAIL", "error": "error", "skipped": "skipped"}


def gpu_tests(check: Check):
    run_gpu_tests(check, [GPU_TESTS])


def run_gpu_tests(check: Check, paths: list[Path], poll_s: float = 0.2):
    """`pytest -m gpu` on ``paths`` in a child process, each test recorded as a case the moment it ends.

    When the section's budget runs out the child is killed: the test it was running is recorded as ``overrun``, those
    it had not started as ``skipped``. A child that dies on its own (a CUDA fault ends the process) leaves the test
    it was running as ``error``, with pytest's last output.
    """
    with tempfile.TemporaryDirectory(prefix="gpu-tests-") as folder:
        log, output = Path(folder) / "outcomes.jsonl", Path(folder) / "pytest.txt"
        log.touch()
        outcomes = OutcomeReader(check, log)
        with output.open("w") as sink:
            child = subprocess.Popen(
                pytest_command(log, paths),
                cwd=REPO,
                stdout=sink,
                stderr=subprocess.STDOUT,
                env=dict(os.environ, TRITON_INTERPRET="0"),
                start_new_session=True,
            )
            try:
                while child.poll() is None and check.clock() < check.section_deadline:
                    outcomes.read()
                    time.sleep(poll_s)
            finally:
                stopped = child.poll() is None
                if stopped:
                    os.killpg(child.pid, signal.SIGKILL)  # the tests' own child processes too
                    child.wait()
        outcomes.read()
        outcomes.close(stopped, child.returncode, output.read_text(errors="replace")[-2000:])


def pytest_command(log: Path, paths: list[Path]) -> list[str]:
    # --noconftest: tests/conftest.py imports experiments/, hence omegaconf, which a bare GPU image lacks; the GPU
    # tests use none of its fixtures. The child's TRITON_INTERPRET=0 keeps its Triton compiled.
    return [
        sys.executable,
        "-m",
        "pytest",
        "-m",
        "gpu",
        "-q",
        "--tb=short",
        "--noconftest",
        "-p",
        "no:cacheprovider",
        "-c",
        str(REPO / "pyproject.toml"),
        "--rootdir",
        str(REPO),
        "-p",
        "bench.pytest_outcomes",
        f"--outcomes-log={log}",
        *map(str, paths),
    ]


class OutcomeReader:
    """The child's outcomes log (bench/pytest_outcomes.py) read as it grows, each finished test recorded in ``check``."""

    def __init__(self, check: Check, log: Path):
        self.check, self.log, self.offset = check, log, 0
        self.collected: list[str] = []
        self.running: dict[str, float] = {}  # nodeid -> when it started
        self.finished: set[str] = set()
        self.collect_errors = 0

    def read(self):
        with self.log.open("rb") as log:
            log.seek(self.offset)
            data = log.read()
        complete = data[: data.rfind(b"\n") + 1]  # a line still being written waits for the next read
        self.offset += len(complete)
        for line in complete.decode().splitlines():
            self._event(json.loads(line))

    def _event(self, event: dict):
        if "collected" in event:
            self.collected = event["collected"]
        elif "collect_error" in event:
            self.collect_errors += 1
            self.check.record(
                event["collect_error"], "error", "could not collect the tests", traceback=event["longrepr"]
            )
        elif "started" in event:
            self.running[event["started"]] = self.check.clock()
        elif "finished" in event:
            self._finished(event)

    def _finished(self, event: dict):
        nodeid = event["finished"]
        self.running.pop(nodeid, None)
        self.finished.add(nodeid)
        status = PYTEST_STATUS[event["outcome"]]
        detail = event["properties"].get("detail", "") if status == "pass" else event["message"]
        extra = {"traceback": event["longrepr"]} if event["longrepr"] else {}
        self.check.record(case_name(nodeid), status, detail, seconds=event["seconds"], **extra)

    def close(self, stopped: bool, returncode: int, output_tail: str):
        """Record what the child left unfinished, killed at the deadline (``stopped``) or ended on its own."""
        budget = f"{self.check.whose_budget(self.check.clock())} time budget"
        for nodeid, started in self.running.items():
            if stopped:
                detail = f"stopped after {self.check.clock() - started:.1f} s: {budget} ran out"
                self.check.record(case_name(nodeid), "overrun", detail)
            else:
                self.check.record(
                    case_name(nodeid),
                    "error",
                    f"pytest ended with exit code {returncode} while it ran",
                    traceback=output_tail,
                )
        not_started = [n for n in self.collected if n not in self.finished and n not in self.running]
        why = f"{budget} was spent" if stopped else f"pytest ended with exit code {returncode} first"
        for nodeid in not_started:
            self.check.record(case_name(nodeid), "skipped", f"not started: {why}")
        if not stopped and returncode not in (0, 1) and not (self.collect_errors or self.running or not_started):
            last = next((line for line in reversed(output_tail.splitlines()) if line.strip()), "")
            self.check.record("pytest -m gpu", "error", f"exit code {returncode}: {last}", traceback=output_tail)


def case_name(nodeid: str) -> str:
    """`tests/gpu/test_x.py::test_y[cuda-a]` -> `y[a]`: the report's case name (every test it runs is on CUDA)."""
    name = nodeid.rpartition("::")[2].removeprefix("test_")
    return name.replace("[cuda]", "").replace("[cuda-", "[")


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
    from bench import step_bench

    result = step_bench._in_fresh_process(
        step_bench.run_method, method, step_bench.SHAPES[shape], DEVICE, steps, warmup, os.cpu_count() or 1
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
    """One profiled step per method (step_bench.profile_kernels, in a fresh process): device time by kind of kernel."""
    from bench import step_bench

    found = step_bench._in_fresh_process(
        step_bench.profile_kernels, list(methods), step_bench.SHAPES[shape], DEVICE, os.cpu_count() or 1, rows
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

    from bench import step_bench

    torch.manual_seed(0)
    config = RobertaConfig(
        vocab_size=50265, max_position_embeddings=514, type_vocab_size=1, num_labels=2, **ROBERTA_SIZES[model_name]
    )
    config._attn_implementation = "sdpa"
    model = RobertaForSequenceClassification(config).to(DEVICE)
    shape = dict(step_bench.SHAPES["roberta-base"], batch=GLUE_BATCH, seq=seq)
    if method == "lora":
        model, optimizer = step_bench.prepare("lora", model, shape)
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
    batch = step_bench.make_batch(model, shape, DEVICE)
    times = [step_bench.train_step(model, optimizer, batch, _sync)[0] for _ in range(warmup + steps)][warmup:]
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


# ------------------------------------------------------------------------------------------------- main


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
