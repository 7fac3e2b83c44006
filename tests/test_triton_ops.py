"""The Triton path (gpart.triton_ops) against the torch reference, on CPU under TRITON_INTERPRET=1.

Properties: the kernels' group ids equal gpart.partition's bit for bit; W0 + ΔW, layer outputs and gradients equal
the torch path's within dtype tolerance, for odd shapes, both assignments, bf16/fp16/fp32 weights with a float32 θ,
partitioned biases, Conv1D layout, the generic (Embedding) path and the non-isometric ablation; with dropout, the
backward uses the forward's mask (exact directional derivatives) and keeps a fraction ≈ 1 - p; the backend never
changes what an adapter file holds.
"""

import copy
import json
import weakref

import pytest

pytest.importorskip("triton")

import torch  # noqa: E402
from torch import nn  # noqa: E402
from transformers.pytorch_utils import Conv1D  # noqa: E402

from gpart import GPartConfig, apply_gpart, merge, save_adapter, triton_ops  # noqa: E402
from gpart.partition import Partition  # noqa: E402

if not triton_ops.interpreting():
    raise RuntimeError(
        "Triton was imported without TRITON_INTERPRET=1; tests/conftest.py must set it before any import"
    )


class Tiny(nn.Module):
    """Odd shapes; a Linear, a GPT-2 style Conv1D (weight stored (in, out)) and an Embedding (the generic path)."""

    def __init__(self, dtype=torch.float32):
        super().__init__()
        self.embed = nn.Embedding(13, 53)
        self.up = nn.Linear(53, 37)
        self.mix = Conv1D(29, 37)  # nf=29 outputs, nx=37 inputs
        self.to(dtype)

    def forward(self, tokens):
        return self.mix(torch.tanh(self.up(self.embed(tokens))))


def adapted(model, backend, *, d=211, seed=3, **options):
    config = GPartConfig(d=d, target_modules=["embed", "up", "mix"], seed=seed, backend=backend, **options)
    model = apply_gpart(copy.deepcopy(model), config)
    with torch.no_grad():
        model.gpart_adapter.theta.copy_(torch.randn(d, generator=torch.Generator().manual_seed(seed)))
    return model


def step(model, tokens):
    """Output, ∇θ and the gradient reaching the embedding output (checks ∇x of the adapted linear layers)."""
    captured = {}

    def keep_grad(module, inputs, out):
        out.register_hook(lambda grad: captured.update(x=grad))

    hook = model.embed.register_forward_hook(keep_grad)
    out = model(tokens)
    (out.float() * torch.linspace(-1, 1, out.shape[-1])).sum().backward()
    hook.remove()
    return out.detach().float(), model.gpart_adapter.theta.grad.clone(), captured["x"].float()


# ------------------------------------------------------------------------------------------------------ ids


@pytest.mark.parametrize("assignment", ["stateless", "balanced"])
@pytest.mark.parametrize(
    "size, d, seed",
    [(37 * 53, 97, 0), (129 * 65, 1, 1), (2003, 2003, (1 << 64) - 3), (1500, 7, (1 << 63) + 5)],
)
def test_kernel_group_ids_equal_partition_bit_for_bit(assignment, size, d, seed):
    if assignment == "balanced" and size > 3000:
        size = 2999  # the interpreter runs the cycle-walking loop slowly
    partition = Partition(size, d, seed=seed, assignment=assignment)
    for start, count in [(0, size), (size - 17, 17), (5, size - 5)]:
        expected = partition.group_ids(start, count)
        assert torch.equal(triton_ops.group_ids(partition, start, count, "cpu"), expected)


def test_group_ids_of_a_7b_scale_space_across_2_31_and_2_32():
    """Global indices on both sides of 2^31 and of 2^32 (N = 2^31 for Llama-2-7B q,k,v,o): 64-bit offsets, no
    truncation at either boundary."""
    size, d = 1 << 33, 1 << 19
    partition = Partition.__new__(Partition)  # skip counting 2^33 group sizes; ids need only (N, d, seed)
    partition.size, partition.d, partition.seed, partition.assignment = size, d, 7, "stateless"
    for boundary in (1 << 31, 1 << 32):
        start = boundary - 1500
        expected = Partition.group_ids(partition, start, 3000)
        assert torch.equal(triton_ops.group_ids(partition, start, 3000, "cpu"), expected)


SCALARS_2_31_TO_2_32 = (1 << 31, 3 * 10**9, (1 << 32) - 1)  # the interpreter types these as uint32


@pytest.mark.parametrize("assignment", ["stateless", "balanced"])
@pytest.mark.parametrize("start", SCALARS_2_31_TO_2_32)
@pytest.mark.parametrize("seed", SCALARS_2_31_TO_2_32)
def test_group_ids_at_starts_and_seeds_between_2_31_and_2_32(assignment, start, seed):
    partition = (
        Partition((1 << 32) + 64, 97, seed=seed, assignment=assignment)
        if assignment == "balanced"
        else _uncounted(seed)
    )
    expected = Partition.group_ids(partition, start, 64)
    assert torch.equal(triton_ops.group_ids(partition, start, 64, "cpu"), expected)


def test_build_and_reduce_at_a_start_and_seed_between_2_31_and_2_32():
    start, seed = 3 * 10**9, 3 * 10**9 + 17
    partition = _uncounted(seed)
    generator = torch.Generator().manual_seed(0)
    ids = Partition.group_ids(partition, start, 4096)
    scaled = torch.randn(partition.d, generator=generator)
    base = torch.randn(4096, generator=generator).to(torch.bfloat16)
    grad = torch.randint(-4, 5, (4096,), generator=generator).to(torch.bfloat16)  # integer sums: exact in any order
    expected_weight = base + scaled[ids].to(torch.bfloat16)
    sums, weight = triton_ops.group_sums(partition, grad, start, base=base, scaled_theta=scaled)
    assert torch.equal(triton_ops.build(partition, scaled, start, base, like=base), expected_weight)
    assert torch.equal(weight, expected_weight)
    assert torch.equal(sums, torch.zeros(partition.d).index_add_(0, ids, grad.float()))


def _uncounted(seed, size=1 << 33, d=97):
    """A stateless Partition of a large space without counting its group sizes (ids need only N, d, seed)."""
    partition = Partition.__new__(Partition)
    partition.size, partition.d, partition.seed, partition.assignment = size, d, seed, "stateless"
    partition.isometric = True
    return partition


# ------------------------------------------------------------------------------------------------ W0 + ΔW


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("assignment", ["stateless", "balanced"])
@pytest.mark.parametrize("isometric", [True, False])
def test_effective_weight_equals_torch_path_exactly(dtype, assignment, isometric):
    model = adapted(Tiny(dtype), "torch", assignment=assignment, isometric=isometric)
    scaled_theta = model.gpart_adapter.scaled_theta().detach()
    for layer in (model.up, model.mix, model.embed):
        expected = layer.effective(scaled_theta, None)["weight"]
        got = triton_ops.layer_tensor(layer, scaled_theta, "weight", None)
        assert got.dtype == dtype and got.shape == expected.shape
        assert torch.equal(got, expected)  # ΔW is rounded to the weight dtype before the sum, as in torch


# --------------------------------------------------------------------------------- whole model, both paths


@pytest.mark.parametrize(
    "dtype, tolerance",
    [(torch.float32, 1e-5), (torch.bfloat16, 2e-2), (torch.float16, 2e-3)],
)
def test_outputs_and_gradients_match_torch_path(dtype, tolerance):
    tokens = torch.randint(0, 13, (3, 7), generator=torch.Generator().manual_seed(0))
    base = Tiny(dtype)
    ref_out, ref_theta, ref_x = step(adapted(base, "torch", bias="partitioned"), tokens)
    out, grad_theta, grad_x = step(adapted(base, "triton", bias="partitioned"), tokens)
    torch.testing.assert_close(out, ref_out, rtol=tolerance, atol=tolerance)
    torch.testing.assert_close(grad_x, ref_x, rtol=tolerance, atol=tolerance * ref_x.abs().max().item())
    # ∇θ sums many terms in float32 in another order; bf16/fp16 inputs carry their own rounding into the sums.
    torch.testing.assert_close(grad_theta, ref_theta, rtol=tolerance, atol=tolerance * ref_theta.abs().max().item())
    assert grad_theta.abs().sum() > 0


def test_non_isometric_gradients_match_torch_path():
    tokens = torch.randint(0, 13, (2, 5), generator=torch.Generator().manual_seed(1))
    base = Tiny()
    ref = step(adapted(base, "torch", isometric=False), tokens)
    got = step(adapted(base, "triton", isometric=False), tokens)
    for a, b in zip(got, ref):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5 * b.abs().max().item())


def test_merge_is_the_same_under_both_backends():
    base = Tiny()
    merged = {b: merge(adapted(base, b, bias="partitioned")) for b in ("torch", "triton")}
    for name, value in merged["torch"].state_dict().items():
        assert torch.equal(merged["triton"].state_dict()[name], value), name


# ------------------------------------------------------------------------------------------------- dropout


def linear_layer(p=0.3, d=97, dtype=torch.float32):
    model = nn.Module()
    model.proj = nn.Linear(65, 129).to(dtype)
    apply_gpart(model, GPartConfig(d=d, target_modules=["proj"], dropout=p, bias="partitioned", backend="triton"))
    return model.proj


def test_dropout_backward_uses_the_forward_mask():
    """The loss is linear in θ, so L(θ + v) - L(θ) = <∇θ, v> exactly when backward applies forward's mask."""
    layer = linear_layer()
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(4, 65, generator=generator, dtype=torch.float64).float()
    weights = torch.randn(4, 129, generator=generator)
    theta = torch.randn(97, generator=generator).requires_grad_()
    direction = torch.randn(97, generator=generator)

    def loss(t, seed):
        return (triton_ops.AdaptedLinear.apply(x, t, layer, seed) * weights).sum()

    loss(theta, 1234).backward()
    with torch.no_grad():
        change = (loss(theta + direction, 1234) - loss(theta, 1234)).item()
        other_mask = (loss(theta + direction, 99) - loss(theta, 99)).item()
    predicted = (theta.grad * direction).sum().item()
    assert change == pytest.approx(predicted, rel=1e-4)
    assert abs(other_mask - predicted) > 1e-3 * abs(predicted)  # another seed, another mask: the test can fail


def test_dropout_keeps_a_fraction_one_minus_p_scaled_up():
    p = 0.3
    layer = linear_layer(p)
    scaled_theta = torch.linspace(1, 2, 97)  # no zeros: a dropped coordinate is exactly 0
    delta = triton_ops.layer_tensor(layer, scaled_theta, "weight", 777, with_base=False)
    full = triton_ops.layer_tensor(layer, scaled_theta, "weight", None, with_base=False)
    kept = delta != 0
    n = kept.numel()
    assert abs(kept.float().mean().item() - (1 - p)) < 4 * (p * (1 - p) / n) ** 0.5
    torch.testing.assert_close(delta[kept], full[kept] / (1 - p))
    assert not torch.equal(kept, triton_ops.layer_tensor(layer, scaled_theta, "weight", 778, with_base=False) != 0)


def test_dropout_through_the_generic_path_is_consistent_too():
    """Embedding takes layer_tensor's autograd (not the fused linear): its backward must reuse the mask as well."""
    model = nn.Module()
    model.embed = nn.Embedding(11, 23)
    apply_gpart(model, GPartConfig(d=31, target_modules=["embed"], dropout=0.4, backend="triton"))
    layer, scale = model.embed, model.gpart_adapter.scale
    generator = torch.Generator().manual_seed(2)
    weights = torch.randn(11, 23, generator=generator)
    theta = torch.randn(31, generator=generator).requires_grad_()
    direction = torch.randn(31, generator=generator)

    def loss(t):
        return (triton_ops.layer_tensor(layer, t * scale, "weight", 55) * weights).sum()

    loss(theta).backward()
    with torch.no_grad():
        change = (loss(theta + direction) - loss(theta)).item()
    assert change == pytest.approx((theta.grad * direction).sum().item(), rel=1e-4)


# ---------------------------------------------------------------------------------------- backend selection


def test_backend_is_validated_and_auto_stays_on_torch_for_cpu():
    with pytest.raises(ValueError, match="backend='cuda'.*'auto', 'torch', 'triton'"):
        GPartConfig(d=4, target_modules=["proj"], backend="cuda")
    assert not triton_ops.selected("auto", torch.device("cpu"))
    assert not triton_ops.selected("torch", torch.device("cuda"))
    assert triton_ops.selected("triton", torch.device("cpu"))  # the interpreter is on in this module


def test_backend_does_not_change_adapter_files(tmp_path):
    files, base = {}, Tiny()
    for backend in ("torch", "triton"):
        model = adapted(base, backend)
        save_adapter(model, tmp_path / backend)
        files[backend] = (
            (tmp_path / backend / "adapter_config.json").read_bytes(),
            (tmp_path / backend / "adapter_model.safetensors").read_bytes(),
        )
    assert files["torch"] == files["triton"]
    assert "backend" not in json.loads(files["torch"][0])["config"]


# ------------------------------------------------------------------------- defects a GPU hits

NVIDIA_NAN = torch.tensor([0x7FFFFFFF], dtype=torch.int32).view(torch.float32)  # the GPU's canonical NaN


def test_tensors_on_different_devices_are_a_clear_error_naming_each():
    partition = Partition(64, 8, seed=1)
    base = torch.randn(8, 8)
    with pytest.raises(ValueError, match="scaled_theta on meta, base on cpu, like on cpu"):
        triton_ops.build(partition, torch.zeros(8, device="meta"), 0, base, like=base)
    with pytest.raises(ValueError, match="grad on cpu, base on cpu, scaled_theta on meta"):
        triton_ops.group_sums(partition, base, 0, base=base, scaled_theta=torch.zeros(8, device="meta"))


# What the kernels write, allocated by the wrappers on the checked tensors' device (weight_ptr only when written:
# otherwise the argument is a placeholder for a tensor that is read).
KERNEL_OUTPUTS = {"out_ptr", "sums_ptr"}


class _CheckedLaunches:
    """Stands in for every jitted kernel: each tensor a launch reads must have passed ``_same_device`` first.

    Tensors are matched by identity while alive (weak references): a freed tensor's address or id may be reused.
    """

    def __init__(self, monkeypatch):
        self.checked, self.launches = {}, []
        real = triton_ops._same_device

        def spy(**tensors):
            self.checked.update((id(t), weakref.ref(t)) for t in tensors.values() if t is not None)
            return real(**tensors)

        monkeypatch.setattr(triton_ops, "_same_device", spy)
        for name in ("_ids_kernel", "_build_kernel", "_reduce_kernel"):
            monkeypatch.setattr(triton_ops, name, self._wrap(getattr(triton_ops, name)))

    def _wrap(self, kernel):
        def index(grid):
            def launch(*args, **kwargs):
                named = dict(zip(kernel.arg_names, args), **kwargs)
                written = KERNEL_OUTPUTS | ({"weight_ptr"} if named.get("WRITE_WEIGHT") else set())
                outputs = [named[n] for n in written & named.keys()]
                unchecked = [
                    n
                    for n, value in named.items()
                    if isinstance(value, torch.Tensor)
                    and not self._was_checked(value)
                    and not any(value is out for out in outputs)
                ]
                self.launches.append((kernel.fn.__name__, unchecked))
                return kernel[grid](*args, **kwargs)

            return launch

        return type("Launcher", (), {"__getitem__": lambda _, grid: index(grid)})()

    def _was_checked(self, tensor) -> bool:
        ref = self.checked.get(id(tensor))
        return ref is not None and ref() is tensor


def test_every_kernel_launch_reads_only_tensors_the_device_check_saw(monkeypatch):
    """Not just the helper: every path that launches a kernel (build, both reduces, the generic autograd, the fused
    linear forward and backward, with a partitioned bias and an input with or without grad) checks its tensors'
    devices first. A launch site that skipped the check would launch with an unchecked tensor and fail here."""
    layer = linear_layer(p=0.0)
    embed = adapted(Tiny(), "triton").embed
    for partition, dtype in ((layer.adapter.partition, torch.float32), (embed.adapter.partition, torch.float32)):
        triton_ops._self_check(partition, torch.device("cpu"), dtype)  # its own launches use its own tensors
    spy = _CheckedLaunches(monkeypatch)
    partition, scaled = layer.adapter.partition, torch.linspace(-1, 1, 97)
    base, grad = torch.randn(129, 65), torch.randn(129, 65)
    triton_ops.build(partition, scaled, 0, base, like=base)
    triton_ops.build(partition, scaled, 0, None, like=base, dropout_seed=3, p=0.5)
    triton_ops.group_sums(partition, grad, 0)
    triton_ops.group_sums(partition, grad, 0, base=base, scaled_theta=scaled)
    theta = torch.randn(211, requires_grad=True)
    weight = triton_ops.layer_tensor(embed, theta * embed.adapter.scale, "weight", None)
    (weight * torch.randn(weight.shape)).sum().backward()  # a contiguous gradient reaches the reduce as it is
    for needs_grad in (True, False):
        x = torch.randn(3, 65, requires_grad=needs_grad)
        triton_ops.AdaptedLinear.apply(x, torch.randn(97, requires_grad=True), layer, None).sum().backward()
    kernels = {name for name, _ in spy.launches}
    assert kernels == {"_build_kernel", "_reduce_kernel"} and len(spy.launches) >= 12
    assert [launch for launch in spy.launches if launch[1]] == []


def test_kernels_launch_under_the_tensors_own_cuda_device():
    """Triton launches on the current CUDA device; the wrappers switch to the tensors' one (no GPU needed to build it)."""
    guard = triton_ops._on(torch.device("cuda", 1))
    assert isinstance(guard, torch.cuda.device) and guard.idx == 1
    assert not isinstance(triton_ops._on(torch.device("cpu")), torch.cuda.device)


def test_bf16_weight_keeps_the_gpus_canonical_nan():
    """0x7FFFFFFF + the rounding carry would wrap to 0x8000 (-0.0): a diverged θ must not leave W0 + ΔW = W0."""
    partition = Partition(64, 8, seed=1)
    scaled_theta = torch.linspace(-1, 1, 8)
    scaled_theta[3] = NVIDIA_NAN
    base = torch.randn(8, 8).to(torch.bfloat16)
    ids = partition.group_ids(0, 64).view(8, 8)
    expected = base + scaled_theta[ids].to(torch.bfloat16)  # torch: NaN -> bf16 0x7FC0
    for got in (
        triton_ops.build(partition, scaled_theta, 0, base, like=base),
        triton_ops.build(partition, scaled_theta, 0, None, like=base),
        triton_ops.group_sums(partition, base, 0, base=base, scaled_theta=scaled_theta)[1],
    ):
        assert got.isnan().sum() == (ids == 3).sum() > 0
    # Exact elsewhere, NaN where torch has NaN (NaN payloads differ even between torch's own bf16 casts).
    torch.testing.assert_close(
        triton_ops.build(partition, scaled_theta, 0, base, like=base), expected, rtol=0, atol=0, equal_nan=True
    )


@pytest.mark.parametrize("paired", [True, False])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_the_rebuilt_weight_equals_the_built_one_bit_for_bit_signed_zeros_included(dtype, paired, monkeypatch):
    """The backward reads θ̃ back from its own atomics, which add -0.0 to it: every later reader of a group must see
    θ̃ unchanged (adding +0.0 would turn a -0.0 into +0.0, and -0.0 + -0.0 into +0.0 in the weight). The unpaired
    variant (a gather beside each atomic, kept for side-by-side timing) gives the same."""
    monkeypatch.setattr(triton_ops, "PAIRED_ATOMICS", paired)
    partition = Partition(256, 5, seed=4)  # about 51 coordinates per group: each θ̃_j is read back many times
    scaled_theta = torch.tensor([-0.0, 0.0, -1.5, 2.0**-20, float("nan")])
    base = torch.full((16, 16), -0.0).to(dtype)
    built = triton_ops.build(partition, scaled_theta, 0, base, like=base)
    sums, rebuilt = triton_ops.group_sums(
        partition, torch.ones(16, 16, dtype=dtype), 0, base=base, scaled_theta=scaled_theta
    )
    bits = torch.int32 if dtype == torch.float32 else torch.int16
    assert torch.equal(rebuilt.view(bits), built.view(bits))
    assert (built.view(bits) == torch.tensor(-0.0, dtype=dtype).view(bits)).any()  # -0.0 + -0.0 stays -0.0
    assert torch.equal(sums, partition.counts.float())  # and the sums are the group sizes


def transposed_linear(backend):
    """A Linear whose weight is a transposed (non-contiguous) view, as after weight tying or a manual .t()."""
    model = nn.Module()
    model.proj = nn.Linear(65, 129)
    model.proj.weight = nn.Parameter(torch.randn(65, 129, generator=torch.Generator().manual_seed(4)).t())
    apply_gpart(model, GPartConfig(d=97, target_modules=["proj"], backend=backend))
    with torch.no_grad():
        model.gpart_adapter.theta.copy_(torch.randn(97, generator=torch.Generator().manual_seed(5)))
    return model


def test_transposed_weight_gives_the_same_input_gradient_on_both_paths():
    assert not transposed_linear("torch").proj.base_layer.weight.is_contiguous()
    x = torch.randn(3, 65, generator=torch.Generator().manual_seed(6))
    grads = {}
    for backend in ("torch", "triton"):
        model, x_b = transposed_linear(backend), x.clone().requires_grad_()
        (model.proj(x_b) * torch.linspace(-1, 1, 129)).sum().backward()
        grads[backend] = (x_b.grad, model.gpart_adapter.theta.grad)
    torch.testing.assert_close(grads["triton"][0], grads["torch"][0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grads["triton"][1], grads["torch"][1], rtol=1e-5, atol=1e-5)


class _RecordingKernel:
    """Stands in for a jitted kernel: records each launch's start, optionally corrupts the output, then launches."""

    def __init__(self, kernel, launches, corrupt_at_end=False):
        self.kernel, self.launches, self.corrupt_at_end = kernel, launches, corrupt_at_end

    def __getitem__(self, grid):
        def launch(*args, **kwargs):
            self.launches.append(kwargs["start"])
            self.kernel[grid](*args, **kwargs)
            if self.corrupt_at_end and kwargs["start"] > 0:
                args[1][0] += 1  # the reduce kernel's sums

        return launch


def test_self_check_runs_build_and_reduce_at_both_ends_of_the_space(monkeypatch):
    partition = Partition(5000, 7, seed=2)
    end = 5000 - triton_ops.SELF_CHECK_COUNT
    builds, reduces = [], []
    monkeypatch.setattr(triton_ops, "_build_kernel", _RecordingKernel(triton_ops._build_kernel, builds))
    monkeypatch.setattr(triton_ops, "_reduce_kernel", _RecordingKernel(triton_ops._reduce_kernel, reduces))
    triton_ops._self_check(partition, torch.device("cpu"), torch.float32)
    assert set(builds) == {0, end} and set(reduces) == {0, end}


def test_self_check_catches_a_reduce_that_is_wrong_only_at_the_end_of_the_space(monkeypatch):
    partition = Partition(5000, 7, seed=3)
    monkeypatch.setattr(triton_ops, "_reduce_kernel", _RecordingKernel(triton_ops._reduce_kernel, [], True))
    with pytest.raises(RuntimeError, match=r"coordinates 904\.\.4999.*group sums \(reduce\)"):
        triton_ops._self_check(partition, torch.device("cpu"), torch.bfloat16)


def test_weight_and_bias_draw_different_dropout_masks():
    """Philox is keyed by the global coordinate index: a bias is not masked like the first row of its weight."""
    layer = linear_layer(p=0.5)
    ones = torch.ones(97)
    weight_kept = triton_ops.layer_tensor(layer, ones, "weight", 31, with_base=False) != 0
    bias_kept = triton_ops.layer_tensor(layer, ones, "bias", 31, with_base=False) != 0
    assert not torch.equal(bias_kept, weight_kept.flatten()[: bias_kept.numel()])
    assert 0.3 < bias_kept.float().mean() < 0.7


def test_auto_keeps_cuda_tensors_off_the_interpreter():
    assert triton_ops.interpreting()
    assert not triton_ops.selected("auto", torch.device("cuda"))
    assert "TRITON_INTERPRET" in triton_ops.auto_prefers_torch()


def test_auto_picks_torch_under_deterministic_algorithms(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    monkeypatch.setattr(triton_ops, "_INTERPRET_AT_IMPORT", False)
    assert triton_ops.selected("auto", torch.device("cuda"))  # a compiled-Triton process on a GPU
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        assert not triton_ops.selected("auto", torch.device("cuda"))
        assert "deterministic" in triton_ops.auto_prefers_torch()
    finally:
        torch.use_deterministic_algorithms(previous)


def test_paired_atomics_only_where_the_gpu_has_them(monkeypatch):
    """sm_90+ has 8-byte float atomics; older GPUs would split each into two scalar ones (one on θ̃), so they gather."""
    capabilities = {0: (9, 0), 1: (8, 0)}
    monkeypatch.setattr(triton_ops, "_compute_capability", lambda index: capabilities[index])
    assert triton_ops._paired_atomics(torch.device("cuda", 0))
    assert not triton_ops._paired_atomics(torch.device("cuda", 1))
    assert triton_ops._paired_atomics(torch.device("cpu"))  # the interpreter: the tests run the paired kernel
    monkeypatch.setattr(triton_ops, "PAIRED_ATOMICS", False)
    assert not triton_ops._paired_atomics(torch.device("cuda", 0))
