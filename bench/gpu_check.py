"""`make gpu-check`: prove GPart's Triton path on a real GPU, in one prepared run of under 8 minutes on one H200.

    python -m bench.gpu_check                    # everything; report -> $OUT/gpu_check.json, else bench/results/
    python -m bench.gpu_check --sections equivalence loss_curves --budget 200
    python -m bench.gpu_check --summary bench/results/gpu_check.json   # the table of a report, finished or cut off

The JSON report is rewritten atomically after every case, so a run cut short still reports everything it finished
(``--summary`` prints its table without a GPU). Sections run in order, each with its own time budget (the chosen
sections share ``--budget`` in proportion to ``SECTIONS``). A case that would start past its section's budget, or
past the whole run's, is recorded as skipped; one still running when that budget runs out is stopped (a bench row's
child process is killed) and recorded as ``overrun``.

* ``equivalence`` — the Triton and torch paths on CUDA: group ids bit-exact at starts 0, 3·10⁹, 2³³ and seeds
  0, 3·10⁹, 2⁶³+5, 2⁶⁴−3 for d from 1 to 2¹⁹+1 (scalars in [2³¹, 2³²) included, which Triton types as uint32);
  W0 + ΔW bit-identical; outputs, ∇θ and ∇x against a float64 reference for fp32/fp16/bf16 weights, odd shapes,
  Conv1D layout, partitioned bias, non-isometric, balanced, a transposed weight; NaN propagation; a tensor of more
  than 2³¹ elements (group sums equal a bincount); build and reduce at starts in [2³¹, 2³²); bf16 θ,
  autocast and torch.compile; dropout keep rate and mask reuse; the device check; whether two reduces agree bitwise.
* ``kernel_costs`` — measured: the cost of dropout's Philox draw, and of same-address atomic
  contention as d shrinks, on a 4096² bf16 layer; the backward kernel with θ̃ read back from paired atomics beside
  the same kernel gathering it separately.
* ``loss_curves`` — 50 AdamW steps of a small random Llama with each backend: the loss curves must agree.
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
import copy
import gc
import json
import math
import os
import signal
import statistics
import sys
import threading
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

DEVICE = "cuda"  # the tests run the small cases on "cpu" under TRITON_INTERPRET=1, to check this script itself
REPO = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO / "bench" / "results"
REPORT_NAME = "gpu_check.json"
TOTAL_BUDGET_S = 460.0  # the 8-minute budget of a GPU check, less start-up
# Seconds per section, in run order, at the default budget (about TOTAL_BUDGET_S in all); a run of some sections
# shares its --budget among them in these proportions. What a section leaves unused is not lent on.
SECTIONS = {
    "equivalence": 110.0,
    "kernel_costs": 20.0,
    "loss_curves": 35.0,
    "bench_7b": 190.0,
    "group_count": 25.0,
    "glue_throughput": 75.0,
}
# Relative error (‖got − ref‖ / ‖ref‖ against float64) allowed per weight dtype, or twice the torch path's own.
TOLERANCE = {"float32": 1e-5, "float16": 3e-3, "bfloat16": 2e-2}
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

    def __init__(self, path: Path, budget_s: float, clock=time.monotonic, meta: dict | None = None,
                 options: dict | None = None):
        self.path, self.clock = path, clock
        self.options = options or {}  # what the sections read from the command line (bench_methods)
        self.deadline = clock() + budget_s
        self.section_deadline = self.deadline
        self.section_name = None
        self.report = {"check": "gpu_check", "created": _now(), "budget_s": budget_s, **(meta or {}),
                       "status": "running", "cases": [], "sections": {}}

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
            entry.update(status="skipped", detail=f"not started: {self._whose_budget(finish)} time budget was spent")
            return self._record(entry)
        started = self.clock()
        try:
            with _stop_after(self.section_deadline - started):
                result = function(*args, **kwargs) or {}
            ok = result.pop("ok", None)
            entry.update(status={True: "pass", False: "FAIL", None: "measured"}[ok],
                         detail=result.pop("detail", ""), **result)
        except CaseOverrun:
            entry.update(status="overrun", detail=f"stopped after {self.clock() - started:.1f} s: "
                                                  f"{self._whose_budget(self.clock())} time budget ran out")
            _release_memory()
        except Exception as error:  # one broken case must not hide the others
            entry.update(status="error", detail=f"{type(error).__name__}: {str(error)[:300]}",
                         traceback=traceback.format_exc()[-2000:])
        entry["seconds"] = round(self.clock() - started, 3)
        return self._record(entry)

    def _whose_budget(self, moment: float) -> str:
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
        line = f"{case['status']:<9}{case['section'] or '':<16}{case['name'][:43]:<44}{case.get('detail', '')}"
        lines.append(line[:width])
    counts = ", ".join(f"{n} {s}" for s, n in sorted((report.get("counts") or _counts(report["cases"])).items()))
    state = report["status"] if report["status"] == "finished" else f"cut off ({report['status']} at its last case)"
    lines += ["-" * width, f"gpu_check {state} in {report.get('elapsed_s', '?')} s on "
              f"{report.get('device', '?')}: {counts}"]
    return "\n".join(lines)


def glue_gpu_hours(step_s: float, model: str, batch: int = GLUE_BATCH) -> dict:
    """GPU-hours of one method-seed and of a whole GLUE table (9 methods × 5 seeds) at a measured step time."""
    sequences_per_s = batch / step_s
    per_run_h = GLUE_SEQUENCES[model] / sequences_per_s / 3600
    return {"sequences_per_s": round(sequences_per_s, 1), "gpu_h_per_method_seed": round(per_run_h, 2),
            "gpu_h_per_table": round(per_run_h * GLUE_RUNS_PER_TABLE, 1)}


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


def _relative_error(got, expected) -> float:
    got, expected = got.double(), expected.double()
    if got.isnan().any() or expected.isnan().any():
        return math.nan
    return ((got - expected).norm() / expected.norm().clamp_min(1e-300)).item()


def _sync():
    import torch

    if DEVICE == "cuda":
        torch.cuda.synchronize()


def _median_ms(function, repeats: int = 20) -> float:
    import triton.testing

    return triton.testing.do_bench(function, warmup=5, rep=repeats, return_mode="median")


# ------------------------------------------------------------------------------------------- equivalence


STARTS = (0, 3 * 10**9, 1 << 33)
SEEDS = (0, 3 * 10**9, (1 << 63) + 5, (1 << 64) - 3)
ID_DS = (1, 2, 3, 97, 65_536, 524_287, (1 << 19) + 1)
ID_COUNT = (1 << 16) + 3


def case_group_ids(assignment: str, ds, seeds, starts=STARTS) -> dict:
    """Kernel ids == gpart.partition's, bit for bit, for every start × seed × d (N = 2³⁴)."""
    import torch

    from gpart import triton_ops

    wrong = []
    for d in ds:
        for seed in seeds:
            partition = _partition(1 << 34, d, seed, assignment)
            for start in starts:
                got = triton_ops.group_ids(partition, start, ID_COUNT, DEVICE).cpu()
                if not torch.equal(got, partition.group_ids(start, ID_COUNT)):
                    wrong.append((d, seed, start))
    total = len(ds) * len(seeds) * len(starts)
    return {"ok": not wrong, "detail": f"{total - len(wrong)}/{total} (d, seed, start) bit-exact",
            "mismatches": wrong[:20]}


class TinyNet:
    """Odd shapes: Embedding 13×53 (generic path), Linear 53→37, transformers Conv1D 37→29 (weight stored (in, out))."""

    @staticmethod
    def build(dtype, transposed: bool = False):
        import torch
        from torch import nn
        from transformers.pytorch_utils import Conv1D

        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.embed = nn.Embedding(13, 53)
                self.up = nn.Linear(53, 37)
                self.mix = Conv1D(29, 37)

            def forward(self, tokens):
                return self.mix(torch.tanh(self.up(self.embed(tokens))))

        torch.manual_seed(0)
        net = Net()
        with torch.no_grad():
            net.mix.bias.normal_()
            if transposed:  # a non-contiguous (transposed) weight, as after tying or a manual .t()
                net.up.weight = nn.Parameter(net.up.weight.detach().t().contiguous().t())
        return net.to(dtype)


def _adapted(net, backend: str, d: int = 211, **options):
    import torch

    from gpart import GPartConfig, apply_gpart

    config = GPartConfig(d=d, target_modules=["embed", "up", "mix"], seed=(1 << 64) - 3, backend=backend, **options)
    model = apply_gpart(copy.deepcopy(net).to(DEVICE), config)
    with torch.no_grad():
        theta = torch.randn(d, generator=torch.Generator().manual_seed(3))
        model.gpart_adapter.theta.copy_(theta)
    return model


def _step(model, tokens) -> dict:
    """Output, ∇θ and ∇x of the adapted Linear (the gradient reaching the embedding output)."""
    import torch

    captured = {}

    def keep_grad(module, inputs, out):  # returns None: the output stays as it is
        out.register_hook(lambda grad: captured.update(x=grad))

    hook = model.embed.register_forward_hook(keep_grad)
    out = model(tokens)
    (out.double() * torch.linspace(-1, 1, out.shape[-1], device=out.device, dtype=torch.float64)).sum().backward()
    hook.remove()
    return {"output": out.detach(), "∇θ": model.gpart_adapter.theta.grad.clone(), "∇x": captured["x"]}


def case_paths_vs_float64(dtype_name: str, transposed: bool = False, **options) -> dict:
    """Both paths against a float64 torch reference; W0 + ΔW bit-identical between the paths."""
    import torch

    dtype = getattr(torch, dtype_name)
    net = TinyNet.build(dtype, transposed)
    tokens = torch.randint(0, 13, (4, 9), generator=torch.Generator().manual_seed(0)).to(DEVICE)
    reference = _step(_adapted(copy.deepcopy(net).double(), "torch", **options).double(), tokens)
    models = {backend: _adapted(net, backend, **options) for backend in ("torch", "triton")}
    errors = {backend: {q: _relative_error(v, reference[q]) for q, v in _step(m, tokens).items()}
              for backend, m in models.items()}
    tolerance = TOLERANCE[dtype_name]
    bad = [q for q, e in errors["triton"].items() if not e <= max(tolerance, 2 * errors["torch"][q])]
    identical = _effective_weights_identical(models["triton"])
    detail = " ".join(f"{q} {errors['triton'][q]:.1e}(torch {errors['torch'][q]:.1e})" for q in errors["triton"])
    return {"ok": not bad and identical, "detail": f"{detail}; W0+ΔW identical: {identical}", "errors": errors,
            "beyond_tolerance": bad}


def _effective_weights_identical(model) -> bool:
    import torch

    from gpart import gpart_layers, triton_ops

    scaled = model.gpart_adapter.scaled_theta().detach()
    for _, layer in gpart_layers(model):
        for name, start in layer._adapted():
            base = getattr(layer.base_layer, name)
            ids = layer.adapter.partition.group_ids(start, base.numel()).to(base.device)
            expected = base + scaled[ids].view(base.shape).to(base.dtype)
            if not torch.equal(triton_ops.layer_tensor(layer, scaled, name, None), expected):
                return False
    return True


def case_nan_propagates() -> dict:
    """A NaN in θ (the GPU's own NaN, 0/0) reaches W0 + ΔW and the output in bf16, fp16 and fp32."""
    import torch

    found = {}
    for dtype_name in ("bfloat16", "float16", "float32"):
        model = _adapted(TinyNet.build(getattr(torch, dtype_name)), "triton")
        with torch.no_grad():
            model.gpart_adapter.theta[5] = torch.zeros((), device=DEVICE) / 0
        nan_pattern = hex(model.gpart_adapter.theta[5:6].view(torch.int32).item() & 0xFFFFFFFF)
        weight = model.up.effective(model.gpart_adapter.scaled_theta(), None)["weight"]
        expected = int((model.up.group_ids("weight", DEVICE) == 5).sum())
        out = model(torch.arange(13, device=DEVICE)[None])
        found[dtype_name] = (int(weight.isnan().sum()), expected, bool(out.isnan().any()))
    ok = all(got == expected > 0 and out_nan for got, expected, out_nan in found.values())
    return {"ok": ok, "detail": f"θ NaN bits {nan_pattern}; NaN weights (got, expected, output NaN): {found}"}


def case_sums_past_2_31(size: int = (1 << 31) + (1 << 20) + 7, d: int = 524_288) -> dict:
    """group_sums over a tensor of more than 2³¹ elements equals a bincount of the ids (ones: exact counts)."""
    import torch

    from gpart import triton_ops

    partition = _partition(size, d, seed=7)
    ones = torch.ones(size, dtype=torch.bfloat16, device=DEVICE)
    sums = triton_ops.group_sums(partition, ones, 0)
    del ones
    counts = _bincount_on_gpu(partition)
    ok = torch.equal(sums.long(), counts) and int(counts.sum()) == size
    return {"ok": ok, "detail": f"N={size:,}, d={d:,}: sums == bincount: {ok}"}


def _bincount_on_gpu(partition, chunk: int = 1 << 28):
    import torch

    from gpart.partition import stateless_group_ids

    counts = torch.zeros(partition.d, dtype=torch.int64, device=DEVICE)
    for start in range(0, partition.size, chunk):
        count = min(chunk, partition.size - start)
        ids = stateless_group_ids(start, count, seed=partition.seed, d=partition.d, device=DEVICE)
        counts += torch.bincount(ids, minlength=partition.d)
    return counts


def case_large_scalars(start: int = 3 * 10**9, seed: int = 3 * 10**9 + 17) -> dict:
    """build and reduce (with the rebuilt weight) at a start and seed in [2³¹, 2³²), on a 4096² bf16 tensor."""
    import torch

    from gpart import triton_ops

    partition = _partition((1 << 32) - 5, 524_288, seed)
    generator = torch.Generator().manual_seed(0)
    count = 4096 * 4096
    ids = partition.group_ids(start, count).to(DEVICE)
    scaled = torch.randn(partition.d, generator=generator).to(DEVICE)
    base = torch.randn(count, generator=generator).to(DEVICE, torch.bfloat16)
    grad = torch.randint(-4, 5, (count,), generator=generator).to(DEVICE, torch.bfloat16)  # exact float sums
    expected_weight = base + scaled[ids].to(torch.bfloat16)
    expected_sums = torch.zeros(partition.d, device=DEVICE).index_add_(0, ids, grad.float())
    sums, weight = triton_ops.group_sums(partition, grad, start, base=base, scaled_theta=scaled)
    built = triton_ops.build(partition, scaled, start, base, like=base)
    checks = {"build": torch.equal(built, expected_weight), "reduce": torch.equal(sums, expected_sums),
              "rebuilt weight": torch.equal(weight, expected_weight)}
    return {"ok": all(checks.values()), "detail": f"start {start:,}, seed {seed:,}: {checks}"}


def case_bf16_theta() -> dict:
    """model.to(bfloat16) casts θ too: both paths must still agree."""
    import torch

    net = TinyNet.build(torch.bfloat16)
    tokens = torch.randint(0, 13, (4, 9), generator=torch.Generator().manual_seed(1)).to(DEVICE)
    results = {b: _step(_adapted(net, b).to(torch.bfloat16), tokens) for b in ("torch", "triton")}
    errors = {q: _relative_error(results["triton"][q], results["torch"][q]) for q in results["torch"]}
    return {"ok": all(e <= 3e-2 for e in errors.values()), "detail": _errors(errors), "errors": errors}


def case_autocast() -> dict:
    """An fp32 model under torch.autocast(bfloat16): both paths agree within bf16 tolerance."""
    import torch

    net = TinyNet.build(torch.float32)
    tokens = torch.randint(0, 13, (4, 9), generator=torch.Generator().manual_seed(2)).to(DEVICE)
    results = {}
    for backend in ("torch", "triton"):
        with torch.autocast(DEVICE, dtype=torch.bfloat16):
            results[backend] = _step(_adapted(net, backend), tokens)
    errors = {q: _relative_error(results["triton"][q], results["torch"][q]) for q in results["torch"]}
    return {"ok": all(e <= 3e-2 for e in errors.values()), "detail": _errors(errors), "errors": errors}


def case_torch_compile() -> dict:
    """torch.compile of a Triton-path model gives the eager torch path's output and gradients."""
    import torch

    net = TinyNet.build(torch.float32)
    tokens = torch.randint(0, 13, (4, 9), generator=torch.Generator().manual_seed(3)).to(DEVICE)
    results = {}
    for backend in ("torch", "triton"):
        model = _adapted(net, backend)
        run = torch.compile(model) if backend == "triton" else model
        out = run(tokens)
        out.double().sum().backward()
        results[backend] = {"output": out.detach(), "∇θ": model.gpart_adapter.theta.grad}
    errors = {q: _relative_error(results["triton"][q], results["torch"][q]) for q in results["torch"]}
    return {"ok": all(e <= 1e-4 for e in errors.values()), "detail": _errors(errors), "errors": errors}


def _errors(errors: dict) -> str:
    return " ".join(f"{q} {e:.1e}" for q, e in errors.items())


def case_dropout() -> dict:
    """Keep rate ≈ 1 − p on a 4096² layer; the backward reuses the forward's mask (exact directional derivative)."""
    import torch
    from torch import nn

    from gpart import GPartConfig, apply_gpart, triton_ops

    p = 0.1
    holder = nn.Module()
    holder.proj = nn.Linear(4096, 4096, device=DEVICE)
    apply_gpart(holder, GPartConfig(d=524_288, target_modules=["proj"], dropout=p, backend="triton"))
    layer = holder.proj
    ones = torch.ones(524_288, device=DEVICE)
    kept = (triton_ops.layer_tensor(layer, ones, "weight", 12345, with_base=False) != 0).float().mean().item()
    sigma = (p * (1 - p) / 4096**2) ** 0.5
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(8, 4096, generator=generator).to(DEVICE)
    weights = torch.randn(8, 4096, generator=generator).to(DEVICE)
    theta = torch.randn(524_288, generator=generator).to(DEVICE).requires_grad_()
    direction = torch.randn(524_288, generator=generator).to(DEVICE)

    def loss(t):
        return (triton_ops.AdaptedLinear.apply(x, t, layer, 777) * weights).double().sum()

    loss(theta).backward()
    with torch.no_grad():
        change = (loss(theta + direction) - loss(theta)).item()
    predicted = (theta.grad.double() * direction.double()).sum().item()
    relative = abs(change - predicted) / abs(predicted)
    ok = abs(kept - (1 - p)) < 5 * sigma and relative < 1e-3
    return {"ok": ok, "detail": f"keep rate {kept:.5f} (expected {1 - p}, 5σ {5 * sigma:.1e}); directional "
                                f"derivative error {relative:.1e}", "keep_rate": kept}


def case_device_check() -> dict:
    """θ on the CPU and the weight on CUDA: a clear ValueError, not an illegal access."""
    import torch

    from gpart import triton_ops

    partition = _partition(64, 8, 1)
    base = torch.randn(8, 8, device=DEVICE)
    try:
        triton_ops.build(partition, torch.zeros(8), 0, base, like=base)
    except ValueError as error:
        return {"ok": "scaled_theta on cpu" in str(error), "detail": str(error)[:120]}
    return {"ok": False, "detail": "no error raised"}


def case_auto_runs_triton() -> dict:
    """backend="auto" (the default) takes the Triton path here, its first-use check passing, and says so."""
    import torch

    from gpart import triton_guard

    model = _adapted(TinyNet.build(torch.bfloat16), "auto")
    _step(model, torch.randint(0, 13, (2, 5), generator=torch.Generator().manual_seed(4)).to(DEVICE))
    report = triton_guard.backend_report(model.gpart_adapter)
    return {"ok": report["ran"] == ["triton"] and report["fallback"] is None, "detail": str(report)}


def case_reduce_determinism() -> dict:
    """Whether two reduces of one gradient give bitwise equal ∇θ (float atomics: expected not to, at small d)."""
    import torch

    from gpart import triton_ops

    grad = torch.randn(4096 * 4096, generator=torch.Generator().manual_seed(0)).to(DEVICE, torch.bfloat16)
    equal = {}
    for d in (64, 4096, 524_288):
        partition = _partition(4096 * 4096, d, 0)
        first, second = triton_ops.group_sums(partition, grad, 0), triton_ops.group_sums(partition, grad, 0)
        equal[d] = {"bitwise_equal": torch.equal(first, second),
                    "max_relative_difference": ((first - second).abs().max() / first.abs().max()).item()}
    return {"ok": None, "detail": " ".join(f"d={d}: {'equal' if v['bitwise_equal'] else 'differs'} "
                                           f"({v['max_relative_difference']:.1e})" for d, v in equal.items()),
            "by_d": equal}


def equivalence(check: Check):
    check.case("auto takes Triton, first-use check passes", case_auto_runs_triton)
    check.case("group ids, stateless", case_group_ids, "stateless", ID_DS, SEEDS)
    check.case("group ids, balanced", case_group_ids, "balanced", (97, (1 << 19) + 1), (0, (1 << 64) - 3))
    for dtype in ("float32", "bfloat16", "float16"):
        check.case(f"paths vs fp64, {dtype}, partitioned bias", case_paths_vs_float64, dtype, bias="partitioned")
    check.case("paths vs fp64, bf16, non-isometric", case_paths_vs_float64, "bfloat16", isometric=False)
    check.case("paths vs fp64, fp32, balanced", case_paths_vs_float64, "float32", assignment="balanced")
    check.case("paths vs fp64, fp32, transposed weight", case_paths_vs_float64, "float32", transposed=True)
    check.case("NaN in θ reaches weights and output", case_nan_propagates)
    check.case("scalars in [2^31, 2^32): build, reduce", case_large_scalars)
    check.case("group sums over > 2^31 elements", case_sums_past_2_31, expect_s=3)
    check.case("dropout keep rate and mask reuse", case_dropout)
    check.case("bf16 θ (model.to(bfloat16))", case_bf16_theta)
    check.case("autocast bf16", case_autocast)
    check.case("devices of the arguments checked", case_device_check)
    check.case("two reduces bitwise equal?", case_reduce_determinism)
    check.case("torch.compile", case_torch_compile, expect_s=20)


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
    times["build+dropout"] = _median_ms(lambda: triton_ops.build(partition, scaled, 0, base, like=base,
                                                                 dropout_seed=5, p=0.05))
    times["reduce+weight"] = _median_ms(lambda: triton_ops.group_sums(partition, grad, 0, base=base,
                                                                      scaled_theta=scaled))
    with _setting(triton_ops, "PAIRED_ATOMICS", False):  # θ̃ gathered beside each atomic: two random accesses
        times["reduce+weight unpaired"] = _median_ms(lambda: triton_ops.group_sums(partition, grad, 0, base=base,
                                                                                   scaled_theta=scaled))
    for d in (1, 64, 4096, 524_288):
        partition_d = _partition(1 << 31, d, 0)
        times[f"reduce d={d}"] = _median_ms(lambda: triton_ops.group_sums(partition_d, grad, 0))
    copy_ms = _median_ms(lambda: base.clone())
    times = {k: round(v, 4) for k, v in times.items()}
    detail = " ".join(f"{k} {v:.3f}" for k, v in times.items()) + f" ms (bf16 copy {copy_ms:.3f} ms)"
    return {"ok": None, "detail": detail, "ms": times, "copy_ms": copy_ms, "triton": triton.__version__,
            "coordinates": count}


@contextlib.contextmanager
def _setting(owner, name: str, value):
    previous = getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, previous)


def kernel_costs(check: Check):
    check.case("kernel times, 4096^2 bf16", case_kernel_costs)


# ------------------------------------------------------------------------------------------- loss curves


SMALL_LLAMA = dict(vocab_size=1000, hidden_size=256, intermediate_size=512, num_hidden_layers=4,
                   num_attention_heads=8, num_key_value_heads=8, max_position_embeddings=256)


def case_loss_curves(dtype_name: str, steps: int = 50, tolerance: float = 1e-2, size: dict = SMALL_LLAMA,
                     batch: tuple = (8, 128), d: int = 8192) -> dict:
    """50 AdamW steps of a small random Llama (q,k,v,o) per backend, same init and batches: curves agree."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from gpart import GPartConfig, apply_gpart

    config = LlamaConfig(**size)
    generator = torch.Generator().manual_seed(0)
    batches = [torch.randint(0, config.vocab_size, batch, generator=generator).to(DEVICE) for _ in range(4)]
    curves = {}
    for backend in ("torch", "triton"):
        torch.manual_seed(0)
        model = LlamaForCausalLM(config).to(DEVICE, getattr(torch, dtype_name))
        apply_gpart(model, GPartConfig(d=d, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
                                       backend=backend))
        optimizer = torch.optim.AdamW([model.gpart_adapter.theta], lr=5e-3)
        curves[backend] = []
        for step in range(steps):
            loss = model(input_ids=batches[step % 4], labels=batches[step % 4]).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            curves[backend].append(loss.item())
    worst = max(abs(a - b) / abs(b) for a, b in zip(curves["triton"], curves["torch"]))
    drop = curves["torch"][0] - curves["torch"][-1]
    return {"ok": worst <= tolerance and drop > 0, "detail": f"max relative loss difference {worst:.1e} "
            f"(allowed {tolerance:g}); loss {curves['torch'][0]:.3f} -> {curves['torch'][-1]:.3f}",
            "curves": curves}


def loss_curves(check: Check):
    check.case("50 steps, small Llama, fp32", case_loss_curves, "float32")
    check.case("50 steps, small Llama, bf16", case_loss_curves, "bfloat16", tolerance=3e-2)


# ---------------------------------------------------------------------------------------------- 7B bench

BENCH_ORDER = ("lora", "gpart-triton", "floor", "unilora", "gpart-torch")  # the target's two rows first
PROFILED = ("floor", "gpart-triton")  # what GPart adds over the weight-gradient floor, kernel by kernel


def case_bench_method(method: str, rows: dict, steps: int = 10, warmup: int = 3, shape: str = "llama2-7b") -> dict:
    from bench import step_bench

    result = step_bench._in_fresh_process(step_bench.run_method, method, step_bench.SHAPES[shape], DEVICE, steps,
                                          warmup, os.cpu_count() or 1)
    rows[method] = result
    if result["status"] != "ok":
        return {"ok": None, "detail": f"skipped: {result.get('note')}"}
    lora = rows.get("lora", {}).get("median_step_s")
    ratio = result["median_step_s"] / lora if lora else None
    detail = (f"{result['median_step_s']:.4f} s/step, {'%.2f' % ratio if ratio else '?'}× LoRA, peak "
              f"{result['peak_memory_gib']:.1f} GiB, set-up {result['setup_s']:.1f} s")
    return {"ok": None, "detail": detail, "ratio_to_lora": ratio, "row": result}


def case_target(rows: dict) -> dict:
    lora, gpart = rows.get("lora"), rows.get("gpart-triton")
    if not (lora and gpart and lora["status"] == gpart["status"] == "ok"):
        return {"ok": None, "detail": "not measured (LoRA or GPart Triton row missing)"}
    ratio = gpart["median_step_s"] / lora["median_step_s"]
    memory = gpart["peak_memory_gib"] <= lora["peak_memory_gib"]
    return {"ok": ratio <= STEP_TARGET and memory, "ratio_to_lora": ratio, "memory_within_lora": memory,
            "detail": f"GPart Triton {ratio:.2f}× LoRA's step (target ≤ {STEP_TARGET}), peak "
                      f"{gpart['peak_memory_gib']:.1f} vs LoRA {lora['peak_memory_gib']:.1f} GiB"}


def case_profile(methods=PROFILED, shape: str = "llama2-7b", rows: int = 25) -> dict:
    """One profiled step per method (step_bench.profile_kernels, in a fresh process): device time by kind of kernel."""
    from bench import step_bench

    found = step_bench._in_fresh_process(step_bench.profile_kernels, list(methods), step_bench.SHAPES[shape], DEVICE,
                                         os.cpu_count() or 1, rows)
    detail = "; ".join(f"{method}: {found[method]['total_ms']:.1f} ms (" + ", ".join(
        f"{kind} {ms:.1f}" for kind, ms in found[method]["by_kind_ms"].items()) + ")" for method in found)
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
    return {"ok": equal, "detail": f"Triton {triton_s:.2f} s, torch bincount {torch_s:.2f} s (CPU: the bench rows' "
            f"set-up time); counts equal: {equal}", "triton_s": triton_s, "torch_bincount_s": torch_s}


def group_count(check: Check):
    check.case("7B q,k,v,o group sizes on the GPU", case_group_count_7b)


# ---------------------------------------------------------------------------------------- GLUE throughput


def case_glue_throughput(model_name: str, seq: int, method: str, steps: int = 8, warmup: int = 3) -> dict:
    """Median training step at batch 32 × seq (fp32, as the runner trains GLUE), and what it means in GPU-hours."""
    import torch
    from transformers import RobertaConfig, RobertaForSequenceClassification

    from bench import step_bench

    torch.manual_seed(0)
    config = RobertaConfig(vocab_size=50265, max_position_embeddings=514, type_vocab_size=1, num_labels=2,
                           **ROBERTA_SIZES[model_name])
    config._attn_implementation = "sdpa"
    model = RobertaForSequenceClassification(config).to(DEVICE)
    shape = dict(step_bench.SHAPES["roberta-base"], batch=GLUE_BATCH, seq=seq)
    if method == "lora":
        model, optimizer = step_bench.prepare("lora", model, shape)
    else:
        from gpart import GPartConfig, apply_gpart

        apply_gpart(model, GPartConfig(d=23_040, target_modules=["query", "value"], trainable_modules=["classifier"],
                                       dropout=0.1, backend=method.removeprefix("gpart-")))  # setup.md §2
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-3)
    model.train()
    batch = step_bench.make_batch(model, shape, DEVICE)
    times = [step_bench.train_step(model, optimizer, batch, _sync)[0] for _ in range(warmup + steps)][warmup:]
    step_s = statistics.median(times)
    hours = glue_gpu_hours(step_s, model_name)
    return {"ok": None, "median_step_s": step_s, **hours,
            "detail": f"{step_s:.4f} s/step, {hours['sequences_per_s']:.0f} seq/s -> "
                      f"{hours['gpu_h_per_method_seed']:.2f} GPU-h per method-seed, "
                      f"{hours['gpu_h_per_table']:.0f} per table"}


def glue_throughput(check: Check):
    for seq in (128, 512):  # 128 first: typical of GLUE's dynamically padded batches; 512 is the upper bound
        for model_name in ("roberta-base", "roberta-large"):
            for method in ("gpart-triton", "lora"):
                check.case(f"{model_name} 32×{seq} {method}", case_glue_throughput, model_name, seq, method,
                           expect_s=4 * seq / 128)


# ------------------------------------------------------------------------------------------------- main


SECTION_RUNNERS = {"equivalence": equivalence, "kernel_costs": kernel_costs, "loss_curves": loss_curves,
                   "bench_7b": bench_7b, "group_count": group_count, "glue_throughput": glue_throughput}


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
    return {"torch": torch.__version__, "cuda": torch.version.cuda, "triton": triton.__version__,
            "transformers": transformers.__version__, "peft": peft_version, "python": sys.version.split()[0]}


def default_report_path() -> Path:
    out = os.environ.get("OUT")
    return (Path(out) if out else RESULTS_DIR) / REPORT_NAME


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sections", nargs="+", choices=list(SECTIONS), default=list(SECTIONS))
    parser.add_argument("--budget", type=float, default=TOTAL_BUDGET_S, help="seconds for the whole run")
    parser.add_argument("--out", type=Path, default=None, help=f"report path (default $OUT/ or bench/results/"
                                                               f"{REPORT_NAME})")
    parser.add_argument("--bench-methods", nargs="+", choices=BENCH_ORDER, default=list(BENCH_ORDER),
                        help="the bench_7b rows to measure, in this order (default: all)")
    parser.add_argument("--summary", type=Path, default=None, metavar="REPORT",
                        help="only print the summary table of an existing report (finished or cut off); no GPU")
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
        print(f"gpu_check: skipped, nothing checked and no report written: {reason}. Run it on a machine with a "
              "CUDA GPU (docs/performance.md, 'make gpu-check').")
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
