"""Triton kernels for GPart's two per-layer costs: building W0 + ΔW, and reducing ∇W into ∇θ = Pᵀ ∇w.

The pure-torch path in ``gpart.layers`` is the reference and the CPU default. These kernels compute the same
things without ever writing a group-id tensor: each program hashes the global indices of its block of coordinates
in registers (splitmix64, or the keyed Feistel bijection for ``balanced``), gathers θ_j / sqrt(n_j) from the
d-sized vector, and either adds it to W0 (forward) or atomically adds the weight gradient into a float32 θ-sized
buffer (backward). One backward kernel does both for a layer, so the ids are hashed twice per step, not three times,
and there θ̃ comes back with the atomic itself (one random access per coordinate, not two: ``_add_and_fetch_theta``).

* The group ids, W0 + ΔW and the group sums are bit-for-bit those of ``gpart.partition`` and plain torch (checked
  in ``tests/test_triton_ops.py``, and once per partition, device and dtype at first use, see ``_self_check``);
  ``gpart.triton_guard`` also checks a slice of the first real layer and falls back to torch if anything fails.
* Dropout on ΔW uses Triton's Philox stream keyed by (dropout seed, global coordinate index): a different stream from the
  torch path's ``torch.Generator`` mask, but forward and backward of the Triton path rebuild the same mask.
* ∇θ is accumulated with float32 atomics: on a GPU the order of additions varies, so ∇θ is reproducible only up
  to float rounding (not bitwise), unlike the torch path's ``index_add_`` on CPU.

Importable without Triton: ``AVAILABLE`` is False then and nothing here may be called. On CPU the kernels run only
under ``TRITON_INTERPRET=1`` (set before this module is imported), which the equivalence tests use.
"""

from __future__ import annotations

import contextlib
import functools
import os

import torch
import torch.nn.functional as F

from gpart.config import BACKENDS  # noqa: F401  (re-exported: the choices `selected` understands)
from gpart.partition import Partition, _as_int64

try:
    import triton
    import triton.language as tl
except ImportError:  # the torch path needs nothing from here
    triton = tl = None

AVAILABLE = triton is not None
BLOCK = 1024
# The backward reads θ̃ back from its own 8-byte atomics where the GPU has them (see _paired_atomics). False: a
# 4-byte gather beside each 4-byte atomic, kept so that bench/gpu_check.py can time both side by side.
PAIRED_ATOMICS = True
SELF_CHECK_COUNT = 4096  # coordinates per end of the space compared with torch at first use (see _self_check)


def interpreting() -> bool:
    """Whether the kernels were defined under TRITON_INTERPRET=1 (they then run on CPU tensors, slowly)."""
    return AVAILABLE and os.environ.get("TRITON_INTERPRET", "0") == "1" and _INTERPRET_AT_IMPORT


def selected(backend: str, device: torch.device) -> bool:
    """Whether a layer on ``device`` takes the Triton path. ``auto``: Triton on CUDA unless ``auto_prefers_torch``."""
    if backend == "torch":
        return False
    if backend == "auto":
        return AVAILABLE and device.type == "cuda" and auto_prefers_torch() is None
    if not AVAILABLE:
        raise ValueError(
            "backend='triton' needs the triton package (pip install 'gpart[triton]'); use 'auto' or 'torch'"
        )
    if device.type != "cuda" and not interpreting():
        raise ValueError(
            f"backend='triton' got tensors on {device}; Triton runs on CUDA, or on CPU only with TRITON_INTERPRET=1 "
            "set before gpart.triton_ops is imported"
        )
    return True


# Weight and θ dtypes the kernels compute exactly as torch does (they add, gather and reduce in float32).
DTYPES = (torch.bfloat16, torch.float16, torch.float32)


def unsupported(weight_dtype: torch.dtype, theta_dtype: torch.dtype) -> str | None:
    """Why the kernels cannot run a layer with these weight and θ dtypes (float64: they would round to float32)."""
    allowed = ", ".join(_dtype_name(dtype) for dtype in DTYPES)
    for what, dtype in (("weights", weight_dtype), ("θ", theta_dtype)):
        if dtype not in DTYPES:
            return f"{_dtype_name(dtype)} {what} (the kernels compute in float32; they support {allowed})"
    return None


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def auto_prefers_torch() -> str | None:
    """Why ``backend="auto"`` keeps CUDA tensors on the torch path, or None when Triton may run them."""
    if torch.are_deterministic_algorithms_enabled():
        return "torch.use_deterministic_algorithms(True): the Triton reduction adds ∇θ with float atomics"
    if os.environ.get("TRITON_INTERPRET", "0") == "1" or _INTERPRET_AT_IMPORT:
        return "TRITON_INTERPRET=1: the interpreter would run CUDA tensors through numpy on the CPU"
    return None


# ----------------------------------------------------------------------------------------------------- kernels

if AVAILABLE:
    _INTERPRET_AT_IMPORT = os.environ.get("TRITON_INTERPRET", "0") == "1"
    _SCALARS = ["start", "seed", "dropout_seed", "k0", "k1", "k2", "k3"]  # never specialised on their value

    @triton.jit
    def _u64(value):
        """A scalar int argument (any width, int64 bit pattern of a uint64) as uint64.

        A plain cast: Triton types an int argument by its value (int32, uint32 for [2^31, 2^32), int64), widens it
        by its own signedness and keeps the bits of a same-width one, so each arrives as its uint64 pattern. (A
        bitcast through int64 compiles the same on a GPU, but the interpreter refuses it for a uint32.)
        """
        return value.to(tl.uint64)

    @triton.jit
    def _splitmix64(x):
        """gpart.partition.splitmix64 in native uint64 (constants _GOLDEN_GAMMA, _MIX1, _MIX2 there)."""
        z = x + 0x9E3779B97F4A7C15
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
        z = (z ^ (z >> 27)) * 0x94D049BB133111EB
        return z ^ (z >> 31)

    @triton.jit
    def _feistel(x, k0, k1, k2, k3, HALF_BITS: tl.constexpr):
        mask = (1 << HALF_BITS) - 1
        left = x >> HALF_BITS
        right = x & mask
        left, right = right, left ^ (_splitmix64(right ^ k0) & mask)
        left, right = right, left ^ (_splitmix64(right ^ k1) & mask)
        left, right = right, left ^ (_splitmix64(right ^ k2) & mask)
        left, right = right, left ^ (_splitmix64(right ^ k3) & mask)
        return (left << HALF_BITS) | right

    @triton.jit
    def _global_index(offsets, start):
        """The coordinates' global indices start + offsets, as uint64."""
        return _u64(start) + offsets.to(tl.uint64)

    @triton.jit
    def _group_ids(
        index,
        seed,
        k0,
        k1,
        k2,
        k3,
        D: tl.constexpr,
        SIZE: tl.constexpr,
        HALF_BITS: tl.constexpr,
        BALANCED: tl.constexpr,
    ):
        """g(index) as int64. D and SIZE are compile-time constants so `mod D` becomes multiply-shift."""
        if BALANCED:
            key0, key1, key2, key3 = _u64(k0), _u64(k1), _u64(k2), _u64(k3)
            index = tl.where(index < SIZE, index, 0)  # masked-off lanes past N would walk forever
            y = _feistel(index, key0, key1, key2, key3, HALF_BITS)
            outside = y >= SIZE
            # Cycle walking: re-permute until inside [0, N); the domain is < 4N, so a few rounds at most.
            while tl.max(outside.to(tl.int32), axis=0) > 0:
                y = tl.where(outside, _feistel(y, key0, key1, key2, key3, HALF_BITS), y)
                outside = y >= SIZE
            ids = (y * D) // SIZE
        else:
            ids = _splitmix64(index + _u64(seed)) % D
        return ids.to(tl.int64, bitcast=True)

    @triton.jit
    def _kept_scale(index, dropout_seed, p, HAS_DROPOUT: tl.constexpr):
        """1/(1-p) where the coordinate is kept, 0 where dropped: Philox keyed by the seed and the GLOBAL index.

        Keyed by the global index, a layer's weight and bias (and any two layers) draw disjoint streams. The 64-bit
        index is split into two 32-bit Philox counters by hand, as ``tl.rand`` does from Triton 3.4 on (the same
        stream there); earlier Tritons would run a slower 64-bit Philox on a uint64 offset.
        """
        if HAS_DROPOUT:
            low = index.to(tl.uint32)
            zero = low * 0
            bits, _, _, _ = tl.philox(dropout_seed, low, (index >> 32).to(tl.uint32), zero, zero)
            kept = tl.where(tl.uint_to_uniform_float(bits) >= p, 1.0 / (1.0 - p), 0.0)
        else:
            kept = tl.full(index.shape, 1.0, tl.float32)
        return kept

    @triton.jit
    def _rounded(value, out_type: tl.constexpr):
        """float32 ``value`` rounded to nearest-even in ``out_type``, as torch rounds.

        bfloat16 is rounded with integer ops: the interpreter's own bf16 cast truncates, and this is exact on both.
        A NaN becomes torch's bf16 NaN 0x7FC0 first: the rounding carry would turn NVIDIA's canonical NaN
        0x7FFFFFFF into 0x8000 (-0.0), so a diverged θ would leave W0 + ΔW = W0 and hide the divergence.
        """
        if out_type == tl.bfloat16:
            bits = value.to(tl.uint32, bitcast=True)
            bits = tl.where(value != value, 0x7FC00000, bits + 0x7FFF + ((bits >> 16) & 1))
            return (bits >> 16).to(tl.uint16).to(tl.bfloat16, bitcast=True)
        elif out_type == tl.float32:
            return value
        else:
            return value.to(out_type)

    @triton.jit(do_not_specialize=_SCALARS)
    def _ids_kernel(
        out_ptr,
        numel,
        start,
        seed,
        k0,
        k1,
        k2,
        k3,
        D: tl.constexpr,
        SIZE: tl.constexpr,
        HALF_BITS: tl.constexpr,
        BALANCED: tl.constexpr,
        BLOCK_SIZE: tl.constexpr,
    ):
        offsets = tl.program_id(0).to(tl.int64) * BLOCK_SIZE + tl.arange(0, BLOCK_SIZE)
        inside = offsets < numel
        index = _global_index(offsets, start)
        ids = _group_ids(index, seed, k0, k1, k2, k3, D, SIZE, HALF_BITS, BALANCED)
        tl.store(out_ptr + offsets, ids, mask=inside)

    @triton.jit(do_not_specialize=_SCALARS)
    def _build_kernel(
        base_ptr,
        scaled_theta_ptr,
        out_ptr,
        numel,
        start,
        seed,
        k0,
        k1,
        k2,
        k3,
        dropout_seed,
        p,
        D: tl.constexpr,
        SIZE: tl.constexpr,
        HALF_BITS: tl.constexpr,
        BALANCED: tl.constexpr,
        HAS_BASE: tl.constexpr,
        HAS_DROPOUT: tl.constexpr,
        BLOCK_SIZE: tl.constexpr,
    ):
        """out = W0 + ΔW (or ΔW alone), in out's dtype. ΔW is rounded to that dtype before the sum, as in torch."""
        offsets = tl.program_id(0).to(tl.int64) * BLOCK_SIZE + tl.arange(0, BLOCK_SIZE)
        inside = offsets < numel
        index = _global_index(offsets, start)
        ids = _group_ids(index, seed, k0, k1, k2, k3, D, SIZE, HALF_BITS, BALANCED)
        delta = tl.load(scaled_theta_ptr + ids, mask=inside, other=0.0)
        delta = delta * _kept_scale(index, dropout_seed, p, HAS_DROPOUT)
        out_type = out_ptr.dtype.element_ty
        value = _rounded(delta, out_type)
        if HAS_BASE:
            value = _rounded(tl.load(base_ptr + offsets, mask=inside).to(tl.float32) + value.to(tl.float32), out_type)
        tl.store(out_ptr + offsets, value, mask=inside)

    @triton.jit(do_not_specialize=_SCALARS)
    def _reduce_kernel(
        grad_ptr,
        sums_ptr,
        base_ptr,
        weight_ptr,
        numel,
        start,
        seed,
        k0,
        k1,
        k2,
        k3,
        dropout_seed,
        p,
        D: tl.constexpr,
        SIZE: tl.constexpr,
        HALF_BITS: tl.constexpr,
        BALANCED: tl.constexpr,
        HAS_DROPOUT: tl.constexpr,
        WRITE_WEIGHT: tl.constexpr,
        PAIRED: tl.constexpr,
        BLOCK_SIZE: tl.constexpr,
    ):
        """sums[g(i)] += mask_i · ∇w_i (float32 atomics); with WRITE_WEIGHT also weight = W0 + ΔW from the same ids.

        With WRITE_WEIGHT, ``sums_ptr`` holds d pairs (sum_j, θ̃_j), and with PAIRED one 8-byte atomic per
        coordinate both adds into sum_j and returns θ̃_j (see _add_and_fetch_theta).
        """
        offsets = tl.program_id(0).to(tl.int64) * BLOCK_SIZE + tl.arange(0, BLOCK_SIZE)
        inside = offsets < numel
        index = _global_index(offsets, start)
        ids = _group_ids(index, seed, k0, k1, k2, k3, D, SIZE, HALF_BITS, BALANCED)
        kept = _kept_scale(index, dropout_seed, p, HAS_DROPOUT)
        grad = tl.load(grad_ptr + offsets, mask=inside, other=0.0).to(tl.float32) * kept
        if WRITE_WEIGHT:
            if PAIRED:
                theta = _add_and_fetch_theta(sums_ptr, ids, grad, inside)
            else:
                tl.atomic_add(sums_ptr + ids * 2, grad, mask=inside, sem="relaxed")
                theta = tl.load(sums_ptr + ids * 2 + 1, mask=inside, other=0.0)
            out_type = weight_ptr.dtype.element_ty
            delta = _rounded(theta * kept, out_type)
            value = _rounded(tl.load(base_ptr + offsets, mask=inside).to(tl.float32) + delta.to(tl.float32), out_type)
            tl.store(weight_ptr + offsets, value, mask=inside)
        else:
            tl.atomic_add(sums_ptr + ids, grad, mask=inside, sem="relaxed")

    @triton.jit
    def _add_and_fetch_theta(pairs_ptr, ids, grad, inside):
        """Atomically add (grad, -0.0) to the pairs (sum_j, θ̃_j) at ``ids``; return θ̃_j as it was.

        Random accesses into L2 bound this kernel; a gather of θ̃ would be a second one per coordinate beside the
        atomic. Riding on the atomic's return value (sm_90's atom.global.v2.f32), θ̃ costs none. Adding -0.0 leaves
        every float as it is (-0.0 and NaN included), except that the GPU's float atomics flush a subnormal θ̃_j
        (|θ̃_j| < 2⁻¹²⁶) to zero for the coordinates that read it after the first: a difference below 2⁻¹²⁶ in the
        rebuilt weight.
        """
        lanes = tl.arange(0, 2)
        negative_zero = tl.full(grad.shape, 0x80000000, tl.uint32).to(tl.float32, bitcast=True)
        before = tl.atomic_add(
            pairs_ptr + ids[:, None] * 2 + lanes[None, :],
            tl.join(grad, negative_zero),
            mask=inside[:, None],
            sem="relaxed",
        )
        _, theta = tl.split(before)
        return tl.where(inside, theta, 0.0)  # masked-off lanes return undefined bits (the interpreter's: garbage)
else:
    _INTERPRET_AT_IMPORT = False


# ----------------------------------------------------------------------------------------------------- wrappers


def _partition_args(partition: Partition, start: int) -> dict:
    """Kernel arguments that fix g: scalars as int64 bit patterns, D/N/half-bits as compile-time constants."""
    if partition.assignment == "balanced":
        keys, half_bits = _feistel_keys(partition.size, partition.seed)
    else:
        keys, half_bits = [0, 0, 0, 0], 1
    return dict(
        start=start,
        seed=_as_int64(partition.seed),
        k0=keys[0],
        k1=keys[1],
        k2=keys[2],
        k3=keys[3],
        D=partition.d,
        SIZE=partition.size,
        HALF_BITS=half_bits,
        BALANCED=partition.assignment == "balanced",
    )


@functools.lru_cache(maxsize=64)
def _feistel_keys(size: int, seed: int) -> tuple[list[int], int]:
    """Round keys and half width of gpart.partition's Feistel bijection (computed once per partition, not per call)."""
    from gpart.partition import _FeistelBijection

    bijection = _FeistelBijection(size, seed)
    return bijection.round_keys, bijection.half_bits


def _dropout_args(dropout_seed: int | None, p: float) -> dict:
    if dropout_seed is None or p == 0:
        return dict(dropout_seed=0, p=0.0, HAS_DROPOUT=False)
    return dict(dropout_seed=dropout_seed, p=float(p), HAS_DROPOUT=True)


def _grid(numel: int):
    return (triton.cdiv(numel, BLOCK),)


def group_ids(partition: Partition, start: int, count: int, device) -> torch.Tensor:
    """g(start), ..., g(start + count - 1) computed by the kernel (tests and the first-use check only)."""
    out = torch.empty(count, dtype=torch.int64, device=device)
    if count:
        with _on(out.device):
            _ids_kernel[_grid(count)](out, count, **_partition_args(partition, start), BLOCK_SIZE=BLOCK)
    return out


def _same_device(**tensors: torch.Tensor | None) -> torch.device:
    """The one device all given tensors live on; a clear error naming each tensor's device otherwise.

    Triton launches on the current CUDA device and trusts every pointer: a stray tensor elsewhere is an illegal
    access, or with peer access a silent race. The torch path raises for this; so does this one.
    """
    devices = {name: tensor.device for name, tensor in tensors.items() if tensor is not None}
    device = next(iter(devices.values()))
    if any(other != device for other in devices.values()):
        found = ", ".join(f"{name} on {other}" for name, other in devices.items())
        raise ValueError(f"GPart's Triton kernels need all tensors on one device; got {found}")
    return device


def _on(device: torch.device):
    """Launch under the tensors' own CUDA device (Triton launches on the current one, not the tensors')."""
    return torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()


_SELF_CHECKED: set = set()


def _self_check(partition: Partition, device: torch.device, dtype: torch.dtype):
    """Compare every kernel with gpart.partition and plain torch, once per partition, device and weight dtype.

    Ids, W0 + ΔW (build), and the group sums with and without the rebuilt weight (reduce) are checked on
    SELF_CHECK_COUNT coordinates at the start of the adapted space (start 0, the scalar type most layers pass) and
    at its end (the largest indices, where 64-bit overflow would show first, typed int64 once N > 2^31). The grads
    are small integers, so float32 sums are exact in any order and the comparison is bitwise. A compiler that
    mistranslated 64-bit unsigned arithmetic would otherwise corrupt training silently.
    """
    key = (partition.assignment, partition.seed, partition.d, partition.size, str(device), dtype)
    if key in _SELF_CHECKED:
        return
    count = min(SELF_CHECK_COUNT, partition.size)
    generator = torch.Generator().manual_seed(0)
    scaled_theta = torch.randn(partition.d, generator=generator).to(device)
    for start in sorted({0, partition.size - count}):
        ids = partition.group_ids(start, count).to(device)
        base = torch.randn(count, generator=generator).to(device, dtype)
        grad = torch.randint(-4, 5, (count,), generator=generator).to(device, dtype)
        expected_weight = base + scaled_theta[ids].to(dtype)
        expected_sums = torch.zeros(partition.d, device=device).index_add_(0, ids, grad.float())
        sums, weight = _group_sums(partition, grad, start, base=base, scaled_theta=scaled_theta)
        checks = {
            "group ids": torch.equal(group_ids(partition, start, count, device), ids),
            "W0 + ΔW (build)": torch.equal(_build(partition, scaled_theta, start, base, like=base), expected_weight),
            "group sums (reduce)": torch.equal(_group_sums(partition, grad, start), expected_sums),
            "group sums + rebuilt weight (reduce)": torch.equal(sums, expected_sums)
            and torch.equal(weight, expected_weight),
        }
        wrong = [name for name, ok in checks.items() if not ok]
        if wrong:
            raise RuntimeError(
                f"Triton kernels differ from gpart.partition/torch on {device} ({partition.assignment}, "
                f"d={partition.d}, N={partition.size}, {dtype}, coordinates {start}..{start + count - 1}): "
                f"{', '.join(wrong)}; use backend='torch' and report this"
            )
    _SELF_CHECKED.add(key)


def build(
    partition: Partition,
    scaled_theta: torch.Tensor,
    start: int,
    base: torch.Tensor | None,
    *,
    like: torch.Tensor,
    dropout_seed: int | None = None,
    p: float = 0.0,
) -> torch.Tensor:
    """W0 + ΔW (``base`` given) or ΔW alone, shaped and typed like ``like`` (the base parameter), contiguous."""
    device = _same_device(scaled_theta=scaled_theta, base=base, like=like)
    _self_check(partition, device, like.dtype)
    return _build(partition, scaled_theta, start, base, like=like, dropout_seed=dropout_seed, p=p)


def _build(partition, scaled_theta, start, base, *, like, dropout_seed=None, p=0.0) -> torch.Tensor:
    out = torch.empty(like.shape, dtype=like.dtype, device=like.device)
    base_flat = base.contiguous() if base is not None else out
    with _on(out.device):
        _build_kernel[_grid(out.numel())](
            base_flat,
            scaled_theta.contiguous(),
            out,
            out.numel(),
            **_partition_args(partition, start),
            **_dropout_args(dropout_seed, p),
            HAS_BASE=base is not None,
            BLOCK_SIZE=BLOCK,
        )
    return out


def group_sums(
    partition: Partition,
    grad: torch.Tensor,
    start: int,
    *,
    dropout_seed: int | None = None,
    p: float = 0.0,
    base: torch.Tensor | None = None,
    scaled_theta: torch.Tensor | None = None,
):
    """Σ_{i in group j} mask_i ∇w_i in float32 (shape (d,)); with ``base``, also W0 + ΔW built from the same ids.

    Returns ``sums`` or ``(sums, weight)`` (weight contiguous, in base's dtype). Multiply by P's non-zeros
    (``adapter.scale``) to get ∇θ.
    """
    device = _same_device(grad=grad, base=base, scaled_theta=scaled_theta)
    _self_check(partition, device, grad.dtype if base is None else base.dtype)
    return _group_sums(partition, grad, start, dropout_seed=dropout_seed, p=p, base=base, scaled_theta=scaled_theta)


def _group_sums(partition, grad, start, *, dropout_seed=None, p=0.0, base=None, scaled_theta=None):
    grad = grad.contiguous()
    if base is None:
        sums = torch.zeros(partition.d, dtype=torch.float32, device=grad.device)
        weight = None
    else:  # d pairs (0, θ̃_j): the kernel adds into the first and reads the second with one atomic
        sums = F.pad(scaled_theta.float().unsqueeze(1), (1, 0))
        # Row-major like the kernel writes it, whatever base's strides (a transposed weight's would scramble ∇x).
        weight = torch.empty(base.shape, dtype=base.dtype, device=base.device)
    with _on(grad.device):
        _reduce_kernel[_grid(grad.numel())](
            grad,
            sums,
            base.contiguous() if base is not None else grad,
            weight if base is not None else grad,
            grad.numel(),
            **_partition_args(partition, start),
            **_dropout_args(dropout_seed, p),
            WRITE_WEIGHT=base is not None,
            PAIRED=_paired_atomics(grad.device),
            BLOCK_SIZE=BLOCK,
        )
    return sums if base is None else (sums[:, 0], weight)


def _paired_atomics(device: torch.device) -> bool:
    """Whether the backward reads θ̃ back from 8-byte paired atomics: GPUs from sm_90 on have them; on older ones
    they split into two scalar atomics, one of them on θ̃, and a plain gather costs less. (The interpreter runs both.)
    """
    return PAIRED_ATOMICS and (device.type != "cuda" or _compute_capability(device.index) >= (9, 0))


@functools.lru_cache(maxsize=None)
def _compute_capability(index: int | None) -> tuple[int, int]:
    return torch.cuda.get_device_capability(index)


# ------------------------------------------------------------------------------------------- autograd, per layer


class _Build(torch.autograd.Function):
    """W0 + ΔW (or ΔW) as a differentiable function of the scaled θ: backward reduces with the same ids and mask."""

    @staticmethod
    def forward(ctx, scaled_theta, partition, start, base, like, dropout_seed, p):
        ctx.partition, ctx.start, ctx.dropout_seed, ctx.p = partition, start, dropout_seed, p
        ctx.theta_dtype = scaled_theta.dtype
        return build(partition, scaled_theta, start, base, like=like, dropout_seed=dropout_seed, p=p)

    @staticmethod
    def backward(ctx, grad):
        sums = group_sums(ctx.partition, grad, ctx.start, dropout_seed=ctx.dropout_seed, p=ctx.p)
        return sums.to(ctx.theta_dtype), None, None, None, None, None, None


def layer_tensor(layer, scaled_theta: torch.Tensor, name: str, dropout_seed: int | None, *, with_base: bool = True):
    """``base_layer.<name>`` + its ΔW (or ΔW alone, in the parameter's dtype) for a GPartLayer; differentiable in θ."""
    base = getattr(layer.base_layer, name)
    start = dict(layer._adapted())[name]
    p = layer.adapter.config.dropout
    return _Build.apply(
        scaled_theta, layer.adapter.partition, start, base if with_base else None, base, dropout_seed, p
    )


class AdaptedLinear(torch.autograd.Function):
    """The Triton twin of ``gpart.layers._AdaptedLinear``: y = x (W0 + ΔW)ᵀ + b, saving only x and θ.

    Forward: one kernel builds W0 + ΔW, then one matmul. Backward: ∇W by one matmul in the stored layout, then one
    kernel that hashes the ids once to both reduce ∇W into θ and rebuild W0 + ΔW for the input gradient.
    """

    @staticmethod
    def forward(ctx, x, theta, layer, dropout_seed):
        from gpart.layout import _out_in

        adapter, base_layer = layer.adapter, layer.base_layer
        scaled = theta * adapter.scale
        options = dict(dropout_seed=dropout_seed, p=adapter.config.dropout)
        weight = build(
            adapter.partition, scaled, layer.weight_start, base_layer.weight, like=base_layer.weight, **options
        )
        bias = base_layer.bias
        if layer.bias_start is not None:
            bias = build(adapter.partition, scaled, layer.bias_start, bias, like=bias, **options)
        ctx.save_for_backward(x, theta)
        ctx.layer, ctx.options = layer, options
        return F.linear(x, _out_in(layer, weight), None if bias is None else bias.to(x.dtype))

    @staticmethod
    def backward(ctx, grad_out):
        from gpart.layout import _is_hf_conv1d, _out_in

        x, theta = ctx.saved_tensors
        layer, options = ctx.layer, ctx.options
        adapter, base_layer = layer.adapter, layer.base_layer
        compute_dtype = grad_out.dtype
        grad_out_2d = grad_out.reshape(-1, grad_out.shape[-1])
        x_2d = x.reshape(-1, x.shape[-1]).to(compute_dtype)
        # ∇W in the stored layout, the order P indexes: (out, in) for nn.Linear, (in, out) for Conv1D.
        grad_weight = x_2d.t() @ grad_out_2d if _is_hf_conv1d(base_layer) else grad_out_2d.t() @ x_2d
        grad_x = None
        if ctx.needs_input_grad[0]:
            sums, weight = group_sums(
                adapter.partition,
                grad_weight,
                layer.weight_start,
                base=base_layer.weight,
                scaled_theta=theta * adapter.scale,
                **options,
            )
            del grad_weight
            grad_x = (grad_out @ _out_in(layer, weight).to(compute_dtype)).to(x.dtype)
            del weight
        else:
            sums = group_sums(adapter.partition, grad_weight, layer.weight_start, **options)
        if layer.bias_start is not None:
            sums = sums + group_sums(adapter.partition, grad_out_2d.sum(0), layer.bias_start, **options)
        return grad_x, (sums * adapter.scale).to(theta.dtype), None, None
