"""The safety net of the Triton path: check a real layer once, fall back to torch for good if anything is off.

The kernels in ``gpart.triton_ops`` are proven in Triton's CPU interpreter; a GPU compiler, driver or Triton
version can still mistranslate them, or fail to compile or launch them. So the first time a kind of layer (fused
linear or generic, per weight dtype, device and partition) would take the Triton path in a process, ``use_triton``
runs a few rows of that real layer — its own weights, its own global start, a random θ — forward and backward
through the Triton path and through a dense torch reference (W0 + P θ built by indexing, differentiated by
autograd), and compares the output, ∇x and ∇θ.

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
    return (layer.is_linear, tensor.dtype, str(tensor.device), partition.assignment, partition.seed, partition.d,
            partition.size)


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
        RuntimeWarning, stacklevel=3,
    )
    return False


def _describe(layer) -> str:
    weight = layer.base_layer.weight
    return f"{type(layer.base_layer).__name__} weight {tuple(weight.shape)} {weight.dtype} on {weight.device}, " \
           f"global start {layer.weight_start}"


# ------------------------------------------------------------------------------------------------ the check


@torch.compiler.disable
def check_layer(layer) -> None:
    """Run the first PROBE_ROWS stored rows of ``layer`` through Triton and a dense torch reference; raise on mismatch."""
    from gpart import triton_ops

    # Whatever context the first forward runs in (no_grad for merge, autocast, activation checkpointing's
    # saved-tensor hooks, inference mode), the check runs plain autograd.
    with torch.inference_mode(False), torch.enable_grad(), \
            torch.autocast(layer.base_layer.weight.device.type, enabled=False), \
            torch.autograd.graph.saved_tensors_hooks(lambda tensor: tensor, lambda tensor: tensor):
        probe = _probe(layer)
        weight = probe.base_layer.weight
        adapter = layer.adapter
        generator = torch.Generator().manual_seed(0)
        theta = torch.randn(adapter.config.d, generator=generator).to(weight.device)  # θ is all zeros at first use
        if probe.is_linear:
            inputs = torch.randn(PROBE_TOKENS, _in_features(probe), generator=generator).to(weight.device, weight.dtype)
            run_triton = lambda x, t: triton_ops.AdaptedLinear.apply(x, t, probe, None)  # noqa: E731
            run_reference = lambda x, t: _reference_linear(probe, x, t)  # noqa: E731
        else:
            inputs = None
            run_triton = lambda x, t: triton_ops.layer_tensor(probe, t * adapter.scale, "weight", None)  # noqa: E731
            run_reference = lambda x, t: _reference_tensor(probe, "weight", t)  # noqa: E731
        got = _forward_backward(run_triton, inputs, theta, generator)
        expected = _forward_backward(run_reference, inputs, theta, generator)
    tolerance = TOLERANCE.get(weight.dtype, 1e-2)
    for name in expected:
        error = _relative_error(got[name], expected[name])
        if not error <= tolerance:  # NaN fails too
            raise TritonCheckError(f"{name} differs from the torch reference by {error:.3g} (relative; allowed "
                                   f"{tolerance:g} for {weight.dtype}) on the first {PROBE_ROWS} rows")


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


def _probe(layer):
    """A GPartLayer over a copy of the first rows of ``layer``'s stored weight, at the same global indices."""
    from gpart.layers import GPartLayer

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
    return GPartLayer(small, layer.adapter, layer.weight_start, bias_start)


def _in_features(probe) -> int:
    weight = probe.base_layer.weight
    return weight.shape[1] if isinstance(probe.base_layer, nn.Linear) else weight.shape[0]  # Conv1D: (in, out)


def _reference_tensor(probe, name: str, theta: torch.Tensor) -> torch.Tensor:
    """W0 + ΔW by plain indexing (differentiable by autograd): the dense definition, no GPart code path."""
    base = getattr(probe.base_layer, name)
    start = dict(probe._adapted())[name]
    adapter = probe.adapter
    ids = adapter.partition.group_ids(start, base.numel()).to(base.device)
    return base + (theta * adapter.scale)[ids].view(base.shape).to(base.dtype)


def _reference_linear(probe, x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    weight = _reference_tensor(probe, "weight", theta)
    if not isinstance(probe.base_layer, nn.Linear):
        weight = weight.t()  # Conv1D stores (in, out)
    bias = _reference_tensor(probe, "bias", theta) if probe.bias_start is not None else probe.base_layer.bias
    return F.linear(x, weight, None if bias is None else bias.to(x.dtype))


# ----------------------------------------------------------------------------------------------- reporting


def backend_report(adapter) -> dict:
    """What was asked for and what ran: {"requested", "ran" (sorted list of "torch"/"triton"), "fallback"}."""
    return {"requested": adapter.config.backend, "ran": sorted(adapter.backends_ran), "fallback": _fallback}


def _reset_for_tests() -> None:
    """Forget passed checks and any fallback (tests only: a real process never un-falls-back)."""
    global _fallback
    _PASSED.clear()
    _fallback = None
