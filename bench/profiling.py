"""Where one training step's time goes, per method (``python -m bench.step_bench --profile`` and bench/gpu_check.py's
7B profile): torch.profiler over one step after a warm-up step, as a table (`profile_steps`) or as numbers by kind of
kernel (`profile_kernels`), GPart's own sections labelled ``gpart: ...``.
"""

from __future__ import annotations

from bench.workload import prepared, train_step

# Kernel (CUDA) or operation (CPU) names by what they compute, for profile_kernels' totals; first match wins.
KERNEL_KINDS = {
    "gpart": ("_build_kernel", "_reduce_kernel", "_ids_kernel"),
    "matmul": ("gemm", "nvjet", "xmma", "cutlass", "cublas", "aten::mm", "aten::addmm", "aten::bmm"),
    "attention": ("flash", "fmha", "attention", "sdpa", "cudnn"),
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
    for method, model, optimizer, batch in prepared(methods, shape, device):
        train_step(model, optimizer, batch, sync)
        with profile(activities=activities) as profiler:
            seconds, _, _ = train_step(model, optimizer, batch, sync)
        table = profiler.key_averages().table(
            sort_by="self_cuda_time_total" if cuda else "self_cpu_time_total", row_limit=rows, max_name_column_width=40
        )
        reports.append(f"--- {method}: one step, {seconds:.3f} s under the profiler\n{table}")
    return "\n".join(reports)


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
    for method, model, optimizer, batch in prepared(methods, shape, device):
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
