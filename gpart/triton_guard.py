"""The safety net of the Triton path: check a real layer once, fall back to torch for good if anything is off.

The kernels in ``gpart.triton_ops`` are proven in Triton's CPU interpreter; a GPU compiler, driver or Triton
version can still mistranslate them, or fail to compile or launch them. So the first time a kind of layer would take
the Triton path in a process, ``use_triton`` runs a few rows of that real layer — its own weights, its own global
start, a random θ — forward and backward through the Triton path and through a dense torch reference (W0 + P θ
built by indexing, differentiated by autograd), and compares the output, ∇x, ∇θ and ΔW alone. A kind is everything
that selects a compiled kernel variant: fused linear or generic, the weight's and θ's dtypes, autocast's compute
dtype, dropout on or off (checked against the reference under Triton's own mask), device and partition; so a
variant first needed mid-training (dropout in ``train()``, an autocast region) is checked before it runs.

Layers whose weights or θ the kernels cannot compute like torch (float64: they add in float32) are refused one by
one: they take the torch path, with a warning once per reason, and Triton stays on for every other layer.

If they differ, or a kernel fails to compile or launch:

* ``backend="auto"``: warn once, naming the layer and the error, and run every layer of every model on the torch
  path for the rest of the process (``fallback_reason()`` says why);
* ``backend="triton"``: raise, naming the layer and the error (the user asked for Triton explicitly).

``backend_report(adapter)`` says which path actually ran (the runner writes it into each run record).
"""

from __future__ import annotations

import copy
import warnings

import torch
import torch.nn.functional as F
from torch import nn

from gpart.layout import AdaptedTensors

PROBE_ROWS = 8  # stored rows of the real weight that the first-use check runs (its first rows: its own start)
PROBE_TOKENS = 5  # input rows of the probe's linear layer
# ‖triton − reference‖ / ‖reference‖ allowed per weight dtype; a wrong partition or layout gives about 1.
TOLERANCE = {torch.float32: 1e-4, torch.float64: 1e-10, torch.bfloat16: 2e-2, torch.float16: 4e-3}

_PASSED: set = set()
_fallback: str | None = None


class TritonCheckError(RuntimeError):
    """The Triton path disagreed with the torch reference on a real layer."""


def fallback_reason() -> str | None:
    """Why this process runs ``backend="auto"`` on torch after a failed Triton check, or None."""
    return _fallback


def use_triton(layer, tensor: torch.Tensor) -> bool:
    """Whether ``layer`` (a GPartLayer that selected Triton for ``tensor``) may run the Triton kernels."""
    from gpart import triton_ops

    reason = triton_ops.unsupported(tensor.dtype, layer.adapter.theta.dtype)
    if reason is not None:
        return _refuse(layer, reason)
    if _fallback is not None:
        if layer.adapter.config.backend == "triton":
            raise TritonCheckError(f"backend='triton' requested, but the Triton path failed its check: {_fallback}")
        return False
    key = _check_key(layer, tensor)
    if key in _PASSED:
        return True
    try:
        check_layer(layer)
    except Exception as error:  # a mismatch, or any compile/launch error: the torch path is always there
        return _fail(layer, error)
    _PASSED.add(key)
    return True


def _check_key(layer, tensor: torch.Tensor) -> tuple:
    partition = layer.adapter.partition
    return (
        layer.is_linear,
        tensor.dtype,
        layer.adapter.theta.dtype,
        _autocast_dtype(tensor.device),
        _dropout_on(layer),
        str(tensor.device),
        partition.assignment,
        partition.seed,
        partition.d,
        partition.size,
    )


def _autocast_dtype(device: torch.device) -> torch.dtype | None:
    return torch.get_autocast_dtype(device.type) if torch.is_autocast_enabled(device.type) else None


def _dropout_on(layer) -> bool:
    """Whether this forward draws a dropout mask (GPartLayer._dropout_seed is not None)."""
    return layer.training and layer.adapter.config.dropout > 0


_REFUSALS_WARNED: set = set()


def _refuse(layer, reason: str) -> bool:
    name = getattr(layer, "name", "") or type(layer.base_layer).__name__
    names = layer.adapter.triton_refused.setdefault(reason, [])
    if name not in names:
        names.append(name)
    if reason not in _REFUSALS_WARNED:
        _REFUSALS_WARNED.add(reason)
        warnings.warn(
            f"GPart: layer {name}: {reason}; it runs on the torch path (same results, slower), and so does "
            "every layer like it; Triton stays on for the others",
            RuntimeWarning,
            stacklevel=4,
        )
    return False


def _fail(layer, error: Exception) -> bool:
    global _fallback
    what = f"{type(error).__name__}: {error}"
    name = f"{getattr(layer, 'name', '') or type(layer.base_layer).__name__} ({_describe(layer)})"
    if layer.adapter.config.backend == "triton":
        raise TritonCheckError(f"the Triton path failed its first-use check on layer {name}: {what}") from error
    _fallback = f"layer {name}: {what}"
    warnings.warn(
        f"GPart: the Triton path failed its first-use check on layer {name} ({what}); every GPart layer runs on "
        "the torch path for the rest of this process (same results, slower). Please report this.",
        RuntimeWarning,
        stacklevel=3,
    )
    return False


def _describe(layer) -> str:
    weight = layer.base_layer.weight
    return (
        f"{type(layer.base_layer).__name__} weight {tuple(weight.shape)} {weight.dtype} on {weight.device}, "
        f"global start {layer.weight_start}"
    )


# ------------------------------------------------------------------------------------------------ the check


@torch.compiler.disable
def check_layer(layer) -> None:
    """Run the first PROBE_ROWS stored rows of ``layer`` through Triton and a dense torch reference; raise on mismatch.

    Under the conditions of this forward that select kernel variants (autocast's dtype, dropout on or off, θ's
    dtype); with dropout, the reference applies Triton's own mask (its keep-scale per coordinate, built alone).
    """
    weight = layer.base_layer.weight
    device, theta_dtype = weight.device, layer.adapter.theta.dtype
    compute_dtype = _autocast_dtype(device)
    dropout_seed = 12345 if _dropout_on(layer) else None
    # Whatever else the first forward runs under (no_grad for merge, activation checkpointing's saved-tensor hooks,
    # inference mode), the check runs plain autograd.
    with (
        torch.inference_mode(False),
        torch.enable_grad(),
        torch.autocast(device.type, dtype=compute_dtype or torch.bfloat16, enabled=compute_dtype is not None),
        torch.autograd.graph.saved_tensors_hooks(lambda tensor: tensor, lambda tensor: tensor),
    ):
        probe = _probe(layer)
        generator = torch.Generator().manual_seed(0)
        theta = torch.randn(layer.adapter.config.d, generator=generator).to(device, theta_dtype)  # θ is 0 at first
        got, expected = _probe_both_paths(probe, theta, dropout_seed, generator)
    dtypes = [weight.dtype, theta_dtype] + ([compute_dtype] if compute_dtype else [])
    tolerance = max(TOLERANCE.get(dtype, 1e-2) for dtype in dtypes)
    for name in expected:
        error = _relative_error(got[name], expected[name])
        if not error <= tolerance:  # NaN fails too
            raise TritonCheckError(
                f"{name} differs from the torch reference by {error:.3g} (relative; allowed "
                f"{tolerance:g} for {', '.join(map(str, dtypes))}"
                f"{', dropout' if dropout_seed else ''}) on the first {PROBE_ROWS} rows"
            )


def _probe_both_paths(probe, theta, dropout_seed, generator) -> tuple[dict, dict]:
    """(Triton's, the reference's) output, ∇θ, ∇x (linear) and ΔW alone, for one θ and one dropout seed."""
    from gpart import triton_ops

    weight, scale = probe.base_layer.weight, probe.adapter.scale
    masks = {name: _kept_scale(probe, name, dropout_seed) for name, _ in probe._adapted()}
    if probe.is_linear:
        inputs = torch.randn(PROBE_TOKENS, _in_features(probe), generator=generator).to(weight.device, weight.dtype)
        run_triton = lambda x, t: triton_ops.AdaptedLinear.apply(x, t, probe, dropout_seed)  # noqa: E731
        run_reference = lambda x, t: _reference_linear(probe, x, t, masks)  # noqa: E731
    else:
        inputs = None
        run_triton = lambda x, t: triton_ops.layer_tensor(probe, t * scale, "weight", dropout_seed)  # noqa: E731
        run_reference = lambda x, t: _reference_tensor(probe, "weight", t, masks["weight"])  # noqa: E731
    got = _forward_backward(run_triton, inputs, theta, generator)
    expected = _forward_backward(run_reference, inputs, theta, generator)
    with torch.no_grad():  # ΔW alone: the variant unmerge and GPartLayer.delta launch
        got["ΔW"] = triton_ops.layer_tensor(probe, theta * scale, "weight", None, with_base=False).double()
        expected["ΔW"] = (_reference_tensor(probe, "weight", theta) - weight).double()
    return got, expected


def _kept_scale(probe, name: str, dropout_seed: int | None) -> torch.Tensor | None:
    """Triton's dropout keep-scale (1/(1-p) or 0) per coordinate of ``base_layer.<name>``: ΔW of θ̃ = 1, in float32."""
    from gpart import triton_ops

    if dropout_seed is None:
        return None
    base, adapter = getattr(probe.base_layer, name), probe.adapter
    ones = torch.ones(adapter.config.d, device=base.device)
    like = torch.empty(base.shape, device=base.device)
    return triton_ops.build(
        adapter.partition,
        ones,
        dict(probe._adapted())[name],
        None,
        like=like,
        dropout_seed=dropout_seed,
        p=adapter.config.dropout,
    )


def _forward_backward(run, inputs, theta, generator) -> dict[str, torch.Tensor]:
    """The output, ∇θ and (for a linear layer) ∇x of ``run`` under a fixed random cotangent, all in float64."""
    theta = theta.detach().clone().requires_grad_()
    x = None if inputs is None else inputs.detach().clone().requires_grad_()
    out = run(x, theta)
    cotangent = torch.randn(out.shape, generator=torch.Generator().manual_seed(1)).to(out.device, out.dtype)
    out.backward(cotangent)
    result = {"output": out.detach().double(), "∇θ": theta.grad.double()}
    if x is not None:
        result["∇x"] = x.grad.double()
    return result


def _relative_error(got: torch.Tensor, expected: torch.Tensor) -> float:
    return ((got - expected).norm() / expected.norm().clamp_min(1e-30)).item()


class _Probe(AdaptedTensors):
    """The check's stand-in for a layer: a copy of its first rows, at the same global indices, under its adapter."""

    def __init__(self, base_layer: nn.Module, adapter, weight_start: int, bias_start: int | None):
        self.base_layer, self.adapter = base_layer, adapter
        self.weight_start, self.bias_start = weight_start, bias_start


def _probe(layer) -> _Probe:
    """A probe over a copy of the first rows of ``layer``'s stored weight, at the same global indices."""
    base = layer.base_layer
    rows = min(PROBE_ROWS, base.weight.shape[0])
    small = copy.copy(base)  # same class and attributes (nn.Linear, transformers' Conv1D, Embedding, ...)
    small._parameters = dict(base._parameters)
    with torch.no_grad():
        small.weight = nn.Parameter(base.weight[:rows].clone(), requires_grad=False)
        bias = getattr(base, "bias", None)
        if isinstance(base, nn.Linear) and bias is not None:  # (out, in): the bias follows the output rows
            small.bias = nn.Parameter(bias[:rows].clone(), requires_grad=False)
    bias_start = layer.bias_start if isinstance(getattr(small, "bias", None), nn.Parameter) else None
    return _Probe(small, layer.adapter, layer.weight_start, bias_start)


def _in_features(probe) -> int:
    weight = probe.base_layer.weight
    return weight.shape[1] if isinstance(probe.base_layer, nn.Linear) else weight.shape[0]  # Conv1D: (in, out)


def _reference_tensor(probe, name: str, theta: torch.Tensor, kept: torch.Tensor | None = None) -> torch.Tensor:
    """W0 + ΔW by plain indexing (differentiable by autograd): the dense definition, no GPart code path.

    ``kept``: a dropout keep-scale per coordinate, applied to ΔW before it is rounded to the weight's dtype.
    """
    base = getattr(probe.base_layer, name)
    start = dict(probe._adapted())[name]
    adapter = probe.adapter
    ids = adapter.partition.group_ids(start, base.numel()).to(base.device)
    delta = (theta * adapter.scale)[ids].view(base.shape)
    return base + (delta if kept is None else delta * kept).to(base.dtype)


def _reference_linear(probe, x: torch.Tensor, theta: torch.Tensor, masks: dict | None = None) -> torch.Tensor:
    masks = masks or {}
    weight = _reference_tensor(probe, "weight", theta, masks.get("weight"))
    if not isinstance(probe.base_layer, nn.Linear):
        weight = weight.t()  # Conv1D stores (in, out)
    bias = probe.base_layer.bias
    if probe.bias_start is not None:
        bias = _reference_tensor(probe, "bias", theta, masks.get("bias"))
    return F.linear(x, weight, None if bias is None else bias.to(x.dtype))


# ----------------------------------------------------------------------------------------------- reporting


def backend_report(adapter) -> dict:
    """What was asked for and what ran: {"requested", "ran" (sorted list of "torch"/"triton"), "fallback",
    "refused" (reason → names of the layers the kernels cannot run, which took torch)}."""
    return {
        "requested": adapter.config.backend,
        "ran": sorted(adapter.backends_ran),
        "fallback": _fallback,
        "refused": {reason: sorted(names) for reason, names in adapter.triton_refused.items()},
    }


def _reset_for_tests() -> None:
    """Forget passed checks and any fallback (tests only: a real process never un-falls-back)."""
    global _fallback
    _PASSED.clear()
    _REFUSALS_WARNED.clear()
    _fallback = None
