"""GPart layers: the shared vector θ, and the wrapper that adds ΔW = reshape(P θ) to a frozen weight.

Memory discipline: ΔW and W0 + ΔW exist only while one layer computes. Autograd saves the layer input and θ, never
the effective weight; backward rebuilds it (a gather of d numbers, cheap next to the matmuls) and reduces the weight
gradient into θ's gradient group by group: ∇θ = Pᵀ ∇w. Peak extra memory is O(largest adapted layer), not O(N).

``nn.Linear`` and transformers' ``Conv1D`` take a fused autograd function (no matmul beyond what the layer itself
needs). Any other module with a ``weight`` (Conv2d, Embedding, ...) takes a generic path: the module's own forward
with W0 + ΔW substituted, under activation checkpointing so that the effective weight is not kept for backward.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from gpart.config import GPartConfig
from gpart.layout import AdaptedTensors, _is_hf_conv1d, _out_in
from gpart.partition import Partition, _as_int64, splitmix64


class GPartAdapter(nn.Module):
    """θ ∈ R^d (trainable, float32, zero-initialised unless ``init_bound``) and P's non-zero per group.

    ``partition`` is a ``gpart.Partition`` or a variant with the same interface (``gpart/variants.py``); a
    ``matrix_free`` one (Fastfood) supplies ΔW and ∇θ of a slice itself instead of group ids.
    """

    def __init__(self, config: GPartConfig, partition: Partition, fingerprint: dict, device=None):
        super().__init__()
        self.config, self.partition, self.fingerprint = config, partition, fingerprint
        self.matrix_free = getattr(partition, "matrix_free", False)
        theta = torch.zeros(config.d, dtype=torch.float32, device=None if config.init_bound else device)
        if config.init_bound:  # drawn on the CPU from torch's global generator, as the authors' code does
            theta = theta.uniform_(-config.init_bound, config.init_bound).to(device)
        self.theta = nn.Parameter(theta)
        self.register_buffer("scale", partition.scale().to(device), persistent=False)
        self.backends_ran: set[str] = set()  # "torch"/"triton": the paths layers actually took (run records)
        self.triton_refused: dict[str, list[str]] = {}  # why the kernels cannot run some layers -> their names
        self._id_cache: dict[tuple, torch.Tensor] = {}  # (start, count, device) -> int32 ids, within the budget
        self.id_cache_bytes = 0

    def group_ids(self, start: int, count: int, device) -> torch.Tensor:
        """g(i) for i in [start, start + count): hashed, or kept as int32 while ``config.id_cache_mib`` allows."""
        key = (start, count, torch.device(device or "cpu"))
        if (ids := self._id_cache.get(key)) is not None:
            return ids
        ids = self.partition.group_ids(start, count, device=device)
        if self.id_cache_bytes + 4 * count <= self.config.id_cache_mib * 2**20 and self.config.d < 2**31:
            ids = self._id_cache[key] = ids.to(torch.int32)
            self.id_cache_bytes += 4 * count
        return ids

    def scaled_theta(self) -> torch.Tensor:
        """The d distinct values of P θ: θ_j / sqrt(n_j)."""
        return self.theta * self.scale

    def extra_repr(self) -> str:
        c = self.config
        return f"d={c.d}, N={self.partition.size}, assignment={c.assignment}, seed={c.seed}, isometric={c.isometric}"


def _dropout_mask(shape, p: float, seed: int, stream: int | None, device) -> torch.Tensor:
    """A keep-mask scaled by 1/(1-p), reproducible from ``seed`` so backward rebuilds the forward's mask.

    ``stream`` None draws from ``seed`` itself (a layer's weight); a tensor beside it (its bias) passes its global
    start, mixed into the seed, so that it draws a stream of its own: one seed for both would make the bias's mask
    the first entries of the weight's.
    """
    if stream is not None:
        seed = int(splitmix64(torch.tensor([_as_int64(seed + stream)]))[0]) & ((1 << 63) - 1)
    generator = torch.Generator(device=device).manual_seed(seed)
    keep = torch.rand(shape, generator=generator, device=device) >= p
    return keep / (1.0 - p)


class GPartLayer(AdaptedTensors, nn.Module):
    """Wraps a module and adds ΔW (and Δb, when biases are partitioned) from the shared adapter to its weights."""

    name = ""  # the module's path in the model, set by apply_gpart (for messages)

    def __init__(self, base_layer: nn.Module, adapter: GPartAdapter, weight_start: int, bias_start: int | None):
        super().__init__()
        self.base_layer = base_layer
        # A plain attribute, not a submodule: θ belongs to the model once, not to every layer.
        object.__setattr__(self, "adapter", adapter)
        self.weight_start, self.bias_start = weight_start, bias_start
        self.merged = False

    def group_ids(self, name: str, device=None) -> torch.Tensor:
        """g(i) for every coordinate of ``base_layer.<name>``, in its stored row-major order."""
        if self.adapter.matrix_free:
            return None  # a matrix-free projection has no group ids: delta and theta_grad ask it directly
        start = dict(self._adapted())[name]
        return self.adapter.group_ids(start, getattr(self.base_layer, name).numel(), device)

    def triton_ops(self, tensor: torch.Tensor):
        """``gpart.triton_ops`` when ``config.backend`` sends this tensor's device to the Triton kernels, else None.

        The Triton path is taken only after ``gpart.triton_guard`` checked it on this layer kind (first use), and only
        for the global random partition: the kernels implement no variant (GPartConfig.backend).
        """
        ops = None
        if self.adapter.config.backend != "torch" and self.adapter.config.is_default_variant:
            # Imported on first use only: Triton reads TRITON_INTERPRET when the kernels are defined, and the guard's
            # torch.compiler.disable loads Dynamo, which imports Triton.
            from gpart import triton_guard, triton_ops

            if triton_ops.selected(self.adapter.config.backend, tensor.device) and triton_guard.use_triton(
                self, tensor
            ):
                ops = triton_ops
        self.adapter.backends_ran.add("torch" if ops is None else "triton")
        return ops

    def delta(self, scaled_theta: torch.Tensor, name: str, dropout_seed: int | None = None, ids=None) -> torch.Tensor:
        """ΔW (or Δb) in the stored layout of ``base_layer.<name>``, with dropout when a seed is given."""
        base = getattr(self.base_layer, name)
        if (ops := self.triton_ops(base)) is not None:
            return ops.layer_tensor(self, scaled_theta, name, dropout_seed, with_base=False)
        if self.adapter.matrix_free:
            start = dict(self._adapted())[name]
            delta = self.adapter.partition.project(scaled_theta, start, base.numel()).view(base.shape)
        else:
            ids = self.group_ids(name, scaled_theta.device) if ids is None else ids
            delta = scaled_theta.index_select(0, ids).view(base.shape)  # ~4x faster on CPU than scaled_theta[ids]
        if dropout_seed is not None:
            delta = delta * self._dropout_mask(name, dropout_seed)
        return delta

    def theta_grad(self, grad: torch.Tensor, name: str, dropout_seed: int | None = None, ids=None) -> torch.Tensor:
        """Pᵀ restricted to this tensor's rows: group sums of ``grad`` (dropout-masked), times 1/sqrt(n_j)."""
        if dropout_seed is not None:
            grad = grad * self._dropout_mask(name, dropout_seed)
        dtype = self.adapter.theta.dtype  # float32 in training; float64 under gradcheck
        if self.adapter.matrix_free:
            sums = self.adapter.partition.project_transpose(grad.reshape(-1).to(dtype), dict(self._adapted())[name])
            return sums * self.adapter.scale.to(dtype)
        ids = self.group_ids(name, grad.device) if ids is None else ids
        sums = torch.zeros(self.adapter.config.d, dtype=dtype, device=grad.device)
        sums.index_add_(0, ids, grad.reshape(-1).to(dtype))
        return sums * self.adapter.scale.to(dtype)

    def _dropout_mask(self, name: str, seed: int) -> torch.Tensor:
        """The torch path's dropout keep-scale for ``base_layer.<name>`` under the forward's seed."""
        base = getattr(self.base_layer, name)
        stream = None if name == "weight" else dict(self._adapted())[name]
        return _dropout_mask(base.shape, self.adapter.config.dropout, seed, stream, base.device)

    def effective(self, scaled_theta: torch.Tensor, dropout_seed: int | None) -> dict[str, torch.Tensor]:
        """W0 + ΔW (and b0 + Δb) for every adapted tensor."""
        params = {}
        for name, _ in self._adapted():
            base = getattr(self.base_layer, name)
            if (ops := self.triton_ops(base)) is not None:
                params[name] = ops.layer_tensor(self, scaled_theta, name, dropout_seed)  # one fused kernel
                continue
            params[name] = base + self.delta(scaled_theta, name, dropout_seed).to(base.dtype)
        return params

    def _dropout_seed(self) -> int | None:
        if not (self.training and self.adapter.config.dropout > 0):
            return None
        return int(torch.randint(0, 2**62, (1,)))  # from torch's global CPU generator: seeded runs repeat

    def forward(self, *args, **kwargs):
        if self.merged:
            return self.base_layer(*args, **kwargs)
        dropout_seed = self._dropout_seed()
        if self.is_linear and len(args) == 1 and not kwargs:
            ops = self.triton_ops(self.base_layer.weight)
            linear = _AdaptedLinear if ops is None else ops.AdaptedLinear
            return linear.apply(args[0], self.adapter.theta, self, dropout_seed)
        return checkpoint(self._generic_forward, self.adapter.theta, dropout_seed, *args, use_reentrant=False, **kwargs)

    def _generic_forward(self, theta, dropout_seed, *args, **kwargs):
        params = self.effective(theta * self.adapter.scale, dropout_seed)
        return torch.func.functional_call(self.base_layer, params, args, kwargs)

    @torch.no_grad()
    def merge(self):
        if self.merged:
            return
        for name, value in self.effective(self.adapter.scaled_theta(), None).items():
            getattr(self.base_layer, name).copy_(value)
        self.merged = True

    @torch.no_grad()
    def unmerge(self):
        if not self.merged:
            return
        scaled_theta = self.adapter.scaled_theta()
        for name, _ in self._adapted():
            base = getattr(self.base_layer, name)
            base.sub_(self.delta(scaled_theta, name).to(base.dtype))
        self.merged = False

    def extra_repr(self) -> str:
        return f"weight_start={self.weight_start}, bias_start={self.bias_start}, merged={self.merged}"


class _AdaptedLinear(torch.autograd.Function):
    """y = x (W0 + ΔW)ᵀ + b, saving only x and θ; backward recomputes W0 + ΔW and returns ∇θ = Pᵀ ∇w."""

    @staticmethod
    def forward(ctx, x, theta, layer: GPartLayer, dropout_seed):
        params = layer.effective(theta * layer.adapter.scale, dropout_seed)
        ctx.save_for_backward(x, theta)
        ctx.layer, ctx.dropout_seed = layer, dropout_seed
        bias = params.get("bias", layer.base_layer.bias)
        return F.linear(x, _out_in(layer, params["weight"]), None if bias is None else bias.to(x.dtype))

    @staticmethod
    def backward(ctx, grad_out):
        x, theta = ctx.saved_tensors
        layer, seed = ctx.layer, ctx.dropout_seed
        compute_dtype = grad_out.dtype
        base = layer.base_layer.weight
        # Hashed and drawn once, used both to rebuild W and to reduce ∇W.
        ids = layer.group_ids("weight", grad_out.device)
        keep = None if seed is None else layer._dropout_mask("weight", seed)
        grad_x = None
        if ctx.needs_input_grad[0]:
            delta = layer.delta(theta * layer.adapter.scale, "weight", ids=ids)
            weight = base + (delta if keep is None else delta * keep).to(base.dtype)
            grad_x = (grad_out @ _out_in(layer, weight).to(compute_dtype)).to(x.dtype)
            del delta, weight
        grad_out_2d = grad_out.reshape(-1, grad_out.shape[-1])
        grad_weight = grad_out_2d.t() @ x.reshape(-1, x.shape[-1]).to(compute_dtype)  # (out, in)
        if _is_hf_conv1d(layer.base_layer):
            grad_weight = grad_weight.t()  # back to Conv1D's stored (in, out) layout, the order P indexes
        grad_theta = layer.theta_grad(grad_weight if keep is None else grad_weight * keep, "weight", ids=ids)
        if layer.bias_start is not None:
            grad_theta = grad_theta + layer.theta_grad(grad_out_2d.sum(0), "bias", seed)
        return grad_x, grad_theta.to(theta.dtype), None, None
