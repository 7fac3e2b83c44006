"""The Triton path against torch on a CUDA GPU: `pytest -m gpu tests/gpu`, the first section of `make gpu-check`.

What a GPU adds to the interpreter's checks (tests/test_triton_ops.py): compiled kernels, the GPU's own scalar typing
and float atomics at sizes the interpreter cannot reach, autocast, `torch.compile`, and `backend="auto"` picking
Triton. Every test marked `gpu` skips, saying why, without a CUDA device and compiled Triton. tests/conftest.py
turns the interpreter on unless told otherwise, so by hand they run as `TRITON_INTERPRET=0 pytest -m gpu tests/gpu`
(add `--noconftest` where omegaconf is missing, as on a bare GPU image: nothing here needs tests/conftest.py).

Each test the interpreter can run has a small `cpu` parameter beside its `cuda` ones (not marked `gpu`), so that a
GPU run never is the first run of a test's code; the exceptions are checked at CPU size in tests/test_triton_ops.py
already (build and reduce at a start and seed in [2³¹, 2³²), dropout's keep rate and mask reuse, the devices of the
arguments) or need the GPU itself (`auto` taking Triton, sums over more than 2³¹ elements, `torch.compile`).
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from gpart import GPartConfig, apply_gpart, gpart_layers, triton_guard, triton_ops
from gpart.partition import Partition, stateless_group_ids


def _why_no_gpu() -> str | None:
    if not torch.cuda.is_available():
        return "no CUDA device is visible (torch.cuda.is_available() is False)"
    if not triton_ops.AVAILABLE:
        return "the triton package is not installed"
    if triton_ops.interpreting():
        return (
            "TRITON_INTERPRET=1 (tests/conftest.py sets it unless told otherwise): these tests need compiled "
            "Triton; run TRITON_INTERPRET=0 pytest -m gpu tests/gpu, or make gpu-check"
        )
    return None


def _why_no_interpreter() -> str | None:
    if not triton_ops.AVAILABLE:
        return "the triton package is not installed"
    if not triton_ops.interpreting():
        return "Triton runs compiled in this process (TRITON_INTERPRET=0); the CPU variants need the interpreter"
    return None


needs_gpu = pytest.mark.skipif(_why_no_gpu() is not None, reason=f"needs a CUDA GPU: {_why_no_gpu()}")
needs_interpreter = pytest.mark.skipif(_why_no_interpreter() is not None, reason=str(_why_no_interpreter()))


def on_gpu(*values, id: str = ""):
    return pytest.param("cuda", *values, marks=[pytest.mark.gpu, needs_gpu], id="-".join(filter(None, ["cuda", id])))


def on_cpu(*values, id: str = ""):
    return pytest.param("cpu", *values, marks=needs_interpreter, id="-".join(filter(None, ["cpu", id])))


# ------------------------------------------------------------------------------------------------ helpers


def uncounted_partition(size: int, d: int, seed: int, assignment: str = "stateless") -> Partition:
    """A real Partition that skips counting group sizes (ids need only N, d, seed; N here is up to 2³⁴)."""
    if "_count_groups" not in vars(Partition):  # renamed: counting 2³⁴ sizes would hang, so say so instead
        raise RuntimeError("gpart.partition.Partition._count_groups is gone; update uncounted_partition")

    class Uncounted(Partition):
        def _count_groups(self):
            return None

    return Uncounted(size, d, seed=seed, assignment=assignment)


def relative_error(got, expected) -> float:
    got, expected = got.double(), expected.double()
    if got.isnan().any() or expected.isnan().any():
        return math.nan
    return ((got - expected).norm() / expected.norm().clamp_min(1e-300)).item()


def errors_text(errors: dict) -> str:
    return " ".join(f"{quantity} {error:.1e}" for quantity, error in errors.items())


class TinyNet(nn.Module):
    """Odd shapes: Embedding 13×53 (generic path), Linear 53→37, transformers Conv1D 37→29 (weight stored (in, out))."""

    def __init__(self):
        from transformers.pytorch_utils import Conv1D

        super().__init__()
        self.embed = nn.Embedding(13, 53)
        self.up = nn.Linear(53, 37)
        self.mix = Conv1D(29, 37)

    def forward(self, tokens):
        return self.mix(torch.tanh(self.up(self.embed(tokens))))

    @classmethod
    def build(cls, dtype, transposed: bool = False) -> TinyNet:
        torch.manual_seed(0)
        net = cls()
        with torch.no_grad():
            net.mix.bias.normal_()
            if transposed:  # a non-contiguous (transposed) weight, as after tying or a manual .t()
                net.up.weight = nn.Parameter(net.up.weight.detach().t().contiguous().t())
        return net.to(dtype)


def adapted(net, backend: str, device: str, d: int = 211, **options):
    config = GPartConfig(d=d, target_modules=["embed", "up", "mix"], seed=(1 << 64) - 3, backend=backend, **options)
    model = apply_gpart(copy.deepcopy(net).to(device), config)
    with torch.no_grad():
        model.gpart_adapter.theta.copy_(torch.randn(d, generator=torch.Generator().manual_seed(3)))
    return model


def step(model, tokens) -> dict:
    """Output, ∇θ and ∇x of the adapted Linear (the gradient reaching the embedding output)."""
    captured = {}

    def keep_grad(module, inputs, out):  # returns None: the output stays as it is
        out.register_hook(lambda grad: captured.update(x=grad))

    hook = model.embed.register_forward_hook(keep_grad)
    out = model(tokens)
    (out.double() * torch.linspace(-1, 1, out.shape[-1], device=out.device, dtype=torch.float64)).sum().backward()
    hook.remove()
    return {"output": out.detach(), "∇θ": model.gpart_adapter.theta.grad.clone(), "∇x": captured["x"]}


def tokens_on(device: str, seed: int, shape=(4, 9)):
    return torch.randint(0, 13, shape, generator=torch.Generator().manual_seed(seed)).to(device)


def bincount_of_ids(partition, device: str, chunk: int = 1 << 28):
    """The group sizes by a torch bincount of the ids, in chunks (2³¹ int64 ids at once would take 16 GiB)."""
    counts = torch.zeros(partition.d, dtype=torch.int64, device=device)
    for start in range(0, partition.size, chunk):
        count = min(chunk, partition.size - start)
        ids = stateless_group_ids(start, count, seed=partition.seed, d=partition.d, device=device)
        counts += torch.bincount(ids, minlength=partition.d)
    return counts


# --------------------------------------------------------------------------------------------- backend


@pytest.mark.gpu
@needs_gpu
def test_auto_takes_triton_and_its_first_use_check_passes(record_property):
    """First in this file: a fallback any later test caused would turn Triton off for the whole process."""
    model = adapted(TinyNet.build(torch.bfloat16), "auto", "cuda")
    step(model, tokens_on("cuda", 4, (2, 5)))
    report = triton_guard.backend_report(model.gpart_adapter)
    record_property("detail", str(report))
    assert report["ran"] == ["triton"] and report["fallback"] is None, report


# ------------------------------------------------------------------------------------------------- ids

STARTS = (0, 3 * 10**9, 1 << 33)
SEEDS = (0, 3 * 10**9, (1 << 63) + 5, (1 << 64) - 3)
ID_DS = (1, 2, 3, 97, 65_536, 524_287, (1 << 19) + 1)
ID_COUNT = (1 << 16) + 3


def mismatched_group_ids(assignment: str, ds, seeds, starts, device: str) -> list[tuple[int, int, int]]:
    """The (d, seed, start) whose kernel ids differ from gpart.partition's (N = 2³⁴)."""
    wrong = []
    for d in ds:
        for seed in seeds:
            partition = uncounted_partition(1 << 34, d, seed, assignment)
            for start in starts:
                got = triton_ops.group_ids(partition, start, ID_COUNT, device).cpu()
                if not torch.equal(got, partition.group_ids(start, ID_COUNT)):
                    wrong.append((d, seed, start))
    return wrong


@pytest.mark.parametrize(
    "device, assignment, ds, seeds, starts",
    [
        on_gpu("stateless", ID_DS, SEEDS, STARTS, id="stateless"),
        on_gpu("balanced", (97, (1 << 19) + 1), (0, (1 << 64) - 3), STARTS, id="balanced"),
        on_cpu("stateless", (1, 97), (0, (1 << 64) - 3), (0, 5000), id="stateless"),
    ],
)
def test_kernel_group_ids_equal_the_partitions_bit_for_bit(device, assignment, ds, seeds, starts, record_property):
    wrong = mismatched_group_ids(assignment, ds, seeds, starts, device)
    total = len(ds) * len(seeds) * len(starts)
    record_property("detail", f"{total - len(wrong)}/{total} (d, seed, start) bit-exact")
    assert wrong == []


@needs_interpreter
def test_a_wrong_kernel_is_caught(monkeypatch):
    """The id check can fail: ids off by one group in the kernel are found."""
    real = triton_ops.group_ids
    monkeypatch.setattr(triton_ops, "group_ids", lambda *args: (real(*args) + 1) % args[0].d)
    assert mismatched_group_ids("stateless", (97,), (0,), (0,), "cpu") == [(97, 0, 0)]


# ----------------------------------------------------------------------------- both paths against float64

# Relative error (‖got − ref‖ / ‖ref‖ against float64) allowed per weight dtype, or twice the torch path's own.
TOLERANCE = {"float32": 1e-5, "float16": 3e-3, "bfloat16": 2e-2}
VARIANTS = {
    "partitioned bias": dict(bias="partitioned"),
    "non-isometric": dict(isometric=False),
    "balanced": dict(assignment="balanced"),
    "transposed weight": dict(transposed=True),
}


def effective_weights_identical(model) -> bool:
    """W0 + ΔW of the Triton path equals torch's gather of θ̃ by the partition's ids, bit for bit."""
    scaled = model.gpart_adapter.scaled_theta().detach()
    for _, layer in gpart_layers(model):
        for name, start in layer._adapted():
            base = getattr(layer.base_layer, name)
            ids = layer.adapter.partition.group_ids(start, base.numel()).to(base.device)
            expected = base + scaled[ids].view(base.shape).to(base.dtype)
            if not torch.equal(triton_ops.layer_tensor(layer, scaled, name, None), expected):
                return False
    return True


@pytest.mark.parametrize(
    "device, dtype_name, variant",
    [
        *(
            on_gpu(dtype, "partitioned bias", id=f"{dtype}-partitioned bias")
            for dtype in ("float32", "bfloat16", "float16")
        ),
        on_gpu("bfloat16", "non-isometric", id="bfloat16-non-isometric"),
        on_gpu("float32", "balanced", id="float32-balanced"),
        on_gpu("float32", "transposed weight", id="float32-transposed weight"),
        on_cpu("float32", "partitioned bias", id="float32-partitioned bias"),
        on_cpu("bfloat16", "non-isometric", id="bfloat16-non-isometric"),
        on_cpu("float32", "balanced", id="float32-balanced"),
        on_cpu("float16", "transposed weight", id="float16-transposed weight"),
    ],
)
def test_both_paths_agree_with_a_float64_reference(device, dtype_name, variant, record_property):
    """Output, ∇θ and ∇x of both paths against float64 torch; W0 + ΔW bit-identical between the paths."""
    options = dict(VARIANTS[variant])
    net = TinyNet.build(getattr(torch, dtype_name), options.pop("transposed", False))
    tokens = tokens_on(device, 0)
    reference = step(adapted(copy.deepcopy(net).double(), "torch", device, **options).double(), tokens)
    models = {backend: adapted(net, backend, device, **options) for backend in ("torch", "triton")}
    errors = {
        backend: {
            quantity: relative_error(value, reference[quantity]) for quantity, value in step(model, tokens).items()
        }
        for backend, model in models.items()
    }
    detail = " ".join(
        f"{quantity} {error:.1e}(torch {errors['torch'][quantity]:.1e})" for quantity, error in errors["triton"].items()
    )
    record_property("detail", detail)
    tolerance = TOLERANCE[dtype_name]
    assert [q for q, e in errors["triton"].items() if not e <= max(tolerance, 2 * errors["torch"][q])] == [], detail
    assert effective_weights_identical(models["triton"])


@pytest.mark.parametrize("device", [on_gpu(), on_cpu()])
def test_a_nan_in_theta_reaches_the_weights_and_the_output(device, record_property):
    """A NaN in θ (the device's own NaN, 0/0) reaches W0 + ΔW and the output in bf16, fp16 and fp32."""
    found = {}
    for dtype_name in ("bfloat16", "float16", "float32"):
        model = adapted(TinyNet.build(getattr(torch, dtype_name)), "triton", device)
        with torch.no_grad():
            model.gpart_adapter.theta[5] = torch.zeros((), device=device) / 0
        nan_bits = hex(model.gpart_adapter.theta[5:6].view(torch.int32).item() & 0xFFFFFFFF)
        weight = model.up.effective(model.gpart_adapter.scaled_theta(), None)["weight"]
        expected = int((model.up.group_ids("weight", device) == 5).sum())
        out = model(torch.arange(13, device=device)[None])
        found[dtype_name] = (int(weight.isnan().sum()), expected, bool(out.isnan().any()))
    record_property("detail", f"θ NaN bits {nan_bits}; NaN weights (got, expected, output NaN): {found}")
    assert all(got == expected > 0 and out_nan for got, expected, out_nan in found.values()), found


@pytest.mark.gpu
@needs_gpu
def test_build_and_reduce_at_a_start_and_seed_between_2_31_and_2_32():
    """On a 4096² bf16 tensor (tests/test_triton_ops.py checks the same on 4096 coordinates)."""
    start, seed = 3 * 10**9, 3 * 10**9 + 17
    partition = uncounted_partition((1 << 32) - 5, 524_288, seed)
    generator = torch.Generator().manual_seed(0)
    count = 4096 * 4096
    ids = partition.group_ids(start, count).to("cuda")
    scaled = torch.randn(partition.d, generator=generator).to("cuda")
    base = torch.randn(count, generator=generator).to("cuda", torch.bfloat16)
    grad = torch.randint(-4, 5, (count,), generator=generator).to("cuda", torch.bfloat16)  # exact float sums
    expected_weight = base + scaled[ids].to(torch.bfloat16)
    expected_sums = torch.zeros(partition.d, device="cuda").index_add_(0, ids, grad.float())
    sums, weight = triton_ops.group_sums(partition, grad, start, base=base, scaled_theta=scaled)
    assert torch.equal(triton_ops.build(partition, scaled, start, base, like=base), expected_weight)
    assert torch.equal(sums, expected_sums)
    assert torch.equal(weight, expected_weight)


@pytest.mark.gpu
@needs_gpu
def test_group_sums_over_more_than_2_31_elements_equal_a_bincount(record_property):
    size, d = (1 << 31) + (1 << 20) + 7, 524_288
    partition = uncounted_partition(size, d, seed=7)
    ones = torch.ones(size, dtype=torch.bfloat16, device="cuda")
    sums = triton_ops.group_sums(partition, ones, 0)
    del ones
    counts = bincount_of_ids(partition, "cuda")
    record_property("detail", f"N={size:,}, d={d:,}")
    assert torch.equal(sums.long(), counts) and int(counts.sum()) == size


@pytest.mark.gpu
@needs_gpu
def test_dropout_keeps_one_minus_p_and_the_backward_reuses_the_forward_mask(record_property):
    """On a 4096² layer (tests/test_triton_ops.py checks both at CPU size)."""
    p, d = 0.1, 524_288
    holder = nn.Module()
    holder.proj = nn.Linear(4096, 4096, device="cuda")
    apply_gpart(holder, GPartConfig(d=d, target_modules=["proj"], dropout=p, backend="triton"))
    layer = holder.proj
    ones = torch.ones(d, device="cuda")
    kept = (triton_ops.layer_tensor(layer, ones, "weight", 12345, with_base=False) != 0).float().mean().item()
    sigma = (p * (1 - p) / 4096**2) ** 0.5
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(8, 4096, generator=generator).to("cuda")
    weights = torch.randn(8, 4096, generator=generator).to("cuda")
    theta = torch.randn(d, generator=generator).to("cuda").requires_grad_()
    direction = torch.randn(d, generator=generator).to("cuda")

    def loss(t):
        return (triton_ops.AdaptedLinear.apply(x, t, layer, 777) * weights).double().sum()

    loss(theta).backward()
    with torch.no_grad():
        change = (loss(theta + direction) - loss(theta)).item()
    predicted = (theta.grad.double() * direction.double()).sum().item()
    relative = abs(change - predicted) / abs(predicted)
    record_property(
        "detail",
        f"keep rate {kept:.5f} (expected {1 - p}, 5σ {5 * sigma:.1e}); directional derivative error {relative:.1e}",
    )
    assert abs(kept - (1 - p)) < 5 * sigma
    assert relative < 1e-3


@pytest.mark.parametrize("device", [on_gpu(), on_cpu()])
def test_a_bf16_theta_after_model_to_bfloat16_gives_the_same_on_both_paths(device, record_property):
    net = TinyNet.build(torch.bfloat16)
    tokens = tokens_on(device, 1)
    results = {b: step(adapted(net, b, device).to(torch.bfloat16), tokens) for b in ("torch", "triton")}
    errors = {q: relative_error(results["triton"][q], results["torch"][q]) for q in results["torch"]}
    record_property("detail", errors_text(errors))
    assert all(e <= 3e-2 for e in errors.values()), errors


@pytest.mark.parametrize("device", [on_gpu(), on_cpu()])
def test_autocast_to_bf16_gives_the_same_on_both_paths(device, record_property):
    """An fp32 model under torch.autocast(bfloat16): both paths agree within bf16 tolerance."""
    net = TinyNet.build(torch.float32)
    tokens = tokens_on(device, 2)
    results = {}
    for backend in ("torch", "triton"):
        with torch.autocast(device, dtype=torch.bfloat16):
            results[backend] = step(adapted(net, backend, device), tokens)
    errors = {q: relative_error(results["triton"][q], results["torch"][q]) for q in results["torch"]}
    record_property("detail", errors_text(errors))
    assert all(e <= 3e-2 for e in errors.values()), errors


@pytest.mark.gpu
@needs_gpu
def test_theta_on_the_cpu_with_the_weight_on_cuda_is_a_clear_error():
    """Not an illegal memory access (tests/test_triton_ops.py checks the message with tensors on `meta`)."""
    partition = uncounted_partition(64, 8, 1)
    base = torch.randn(8, 8, device="cuda")
    with pytest.raises(ValueError, match="scaled_theta on cpu"):
        triton_ops.build(partition, torch.zeros(8), 0, base, like=base)


@pytest.mark.gpu
@needs_gpu
def test_torch_compile_of_the_triton_path_gives_the_eager_torch_paths_output_and_gradient(record_property):
    net = TinyNet.build(torch.float32)
    tokens = tokens_on("cuda", 3)
    results = {}
    for backend in ("torch", "triton"):
        model = adapted(net, backend, "cuda")
        run = torch.compile(model) if backend == "triton" else model
        out = run(tokens)
        out.double().sum().backward()
        results[backend] = {"output": out.detach(), "∇θ": model.gpart_adapter.theta.grad}
    errors = {q: relative_error(results["triton"][q], results["torch"][q]) for q in results["torch"]}
    record_property("detail", errors_text(errors))
    assert all(e <= 1e-4 for e in errors.values()), errors


# ------------------------------------------------------------------------------------------- loss curves

SMALL_LLAMA = dict(
    size=dict(
        vocab_size=1000,
        hidden_size=256,
        intermediate_size=512,
        num_hidden_layers=4,
        num_attention_heads=8,
        num_key_value_heads=8,
        max_position_embeddings=256,
    ),
    steps=50,
    batch=(8, 128),
    d=8192,
)
TINY_LLAMA = dict(
    size=dict(
        vocab_size=50,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=32,
    ),
    steps=3,
    batch=(2, 8),
    d=64,
)


@pytest.mark.parametrize(
    "device, dtype_name, tolerance, shape",
    [
        on_gpu("float32", 1e-2, SMALL_LLAMA, id="float32"),
        on_gpu("bfloat16", 3e-2, SMALL_LLAMA, id="bfloat16"),
        on_cpu("float32", 1e-2, TINY_LLAMA, id="float32-tiny"),
    ],
)
def test_adamw_loss_curves_of_a_random_llama_agree_between_the_paths(
    device, dtype_name, tolerance, shape, record_property
):
    """AdamW steps of a random Llama (q,k,v,o) per backend, same init and batches: the curves agree, the loss falls."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(**shape["size"])
    generator = torch.Generator().manual_seed(0)
    batches = [torch.randint(0, config.vocab_size, shape["batch"], generator=generator).to(device) for _ in range(4)]
    curves = {}
    for backend in ("torch", "triton"):
        torch.manual_seed(0)
        model = LlamaForCausalLM(config).to(device, getattr(torch, dtype_name))
        apply_gpart(
            model, GPartConfig(d=shape["d"], target_modules=["q_proj", "k_proj", "v_proj", "o_proj"], backend=backend)
        )
        optimizer = torch.optim.AdamW([model.gpart_adapter.theta], lr=5e-3)
        curves[backend] = []
        for index in range(shape["steps"]):
            loss = model(input_ids=batches[index % 4], labels=batches[index % 4]).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            curves[backend].append(loss.item())
    worst = max(abs(a - b) / abs(b) for a, b in zip(curves["triton"], curves["torch"]))
    detail = (
        f"max relative loss difference {worst:.1e} (allowed {tolerance:g}); "
        f"loss {curves['torch'][0]:.3f} -> {curves['torch'][-1]:.3f}"
    )
    record_property("detail", detail)
    assert worst <= tolerance, detail
    assert curves["torch"][-1] < curves["torch"][0], detail
