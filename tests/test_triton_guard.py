"""The Triton path's safety net (gpart.triton_guard), on CPU under TRITON_INTERPRET=1.

`backend="auto"` is made to pick Triton on CPU here (the interpreter stands in for a GPU). Properties: a passing
first-use check lets Triton run; a forced mismatch (forward or backward) or a forced launch failure warns once,
naming the layer and the error, and the model then runs on the torch path, giving the torch path's results, for the
rest of the process; `backend="triton"` raises instead; the run record's backend says what ran.
"""

import contextlib
import warnings

import pytest

pytest.importorskip("triton")

import torch  # noqa: E402
from torch import nn  # noqa: E402

from gpart import GPartConfig, apply_gpart, find_adapter, triton_guard, triton_ops  # noqa: E402
from gpart.triton_guard import TritonCheckError, backend_report  # noqa: E402


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.embed = nn.Embedding(11, 23)
        self.proj = nn.Linear(23, 19)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=generator))

    def forward(self, tokens):
        return self.proj(self.embed(tokens))


def model(backend, targets=("proj",)):
    net = apply_gpart(
        Net(), GPartConfig(d=37, target_modules=list(targets), seed=5, bias="partitioned", backend=backend)
    )
    with torch.no_grad():
        net.gpart_adapter.theta.copy_(torch.randn(37, generator=torch.Generator().manual_seed(1)))
    return net


def run(net):
    tokens = torch.tensor([[1, 4, 7], [2, 9, 10]])
    out = net(tokens)
    (out * torch.linspace(-1, 1, out.shape[-1])).sum().backward()
    return out.detach(), net.gpart_adapter.theta.grad


@pytest.fixture(autouse=True)
def auto_takes_triton_on_cpu(monkeypatch):
    """Fresh guard state, and `auto` selecting the (interpreted) Triton path for CPU tensors."""
    triton_guard._reset_for_tests()
    selected = triton_ops.selected
    monkeypatch.setattr(
        triton_ops, "selected", lambda backend, device: selected("triton" if backend == "auto" else backend, device)
    )
    yield
    triton_guard._reset_for_tests()


def wrong_by_one(function):
    def wrapper(*args, **kwargs):
        result = function(*args, **kwargs)
        return result + 1 if isinstance(result, torch.Tensor) else (result[0] + 1, *result[1:])

    return wrapper


class FailingLaunch:
    def __getitem__(self, grid):
        raise RuntimeError("CUDA error: unspecified launch failure (simulated)")


def test_a_passing_check_lets_triton_run_and_the_record_says_so():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback warning
        run(model("auto"))
    net = model("auto")
    run(net)
    assert backend_report(find_adapter(net)) == {
        "requested": "auto",
        "ran": ["triton"],
        "fallback": None,
        "refused": {},
    }


@pytest.mark.parametrize("broken, quantity", [("build", "output differs"), ("group_sums", "∇θ differs")])
def test_a_mismatch_warns_once_naming_the_layer_then_torch_runs_for_the_process(monkeypatch, broken, quantity):
    expected = run(model("torch"))
    monkeypatch.setattr(triton_ops, broken, wrong_by_one(getattr(triton_ops, broken)))
    with pytest.warns(RuntimeWarning, match=rf"layer proj \(Linear weight \(19, 23\).*{quantity}") as caught:
        net = model("auto")
        got = run(net)
    assert len(caught) == 1
    assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])  # the torch path's own results
    assert backend_report(find_adapter(net))["ran"] == ["torch"]
    assert "layer proj" in backend_report(find_adapter(net))["fallback"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once per process: a second model falls back silently
        other = model("auto", targets=("embed", "proj"))
        run(other)
    assert backend_report(find_adapter(other))["ran"] == ["torch"]


def test_a_launch_failure_falls_back_too(monkeypatch):
    expected = run(model("torch"))
    monkeypatch.setattr(triton_ops, "_build_kernel", FailingLaunch())
    triton_ops._SELF_CHECKED.clear()
    with pytest.warns(RuntimeWarning, match="layer proj .*RuntimeError: CUDA error: unspecified launch failure"):
        got = run(model("auto"))
    assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])
    assert "launch failure" in triton_guard.fallback_reason()


def test_the_generic_path_is_checked_on_its_own_layer(monkeypatch):
    """An Embedding takes layer_tensor's autograd, not the fused linear: its first use is checked separately."""
    run(model("auto"))  # the linear kind passes
    monkeypatch.setattr(triton_ops, "build", wrong_by_one(triton_ops.build))
    with pytest.warns(RuntimeWarning, match=r"layer embed \(Embedding weight \(11, 23\)"):
        run(model("auto", targets=("embed", "proj")))


def test_explicit_triton_raises_instead_of_falling_back(monkeypatch):
    monkeypatch.setattr(triton_ops, "build", wrong_by_one(triton_ops.build))
    with pytest.raises(TritonCheckError, match="layer proj .*output differs"):
        run(model("triton"))
    assert triton_guard.fallback_reason() is None


# ------------------------------------------------------------------ kernel variants the first use must cover


class FailingVariant:
    """Stands in for a jitted kernel: launches normally, except the variants ``fails(args, kwargs)`` picks raise, as
    a variant that fails to compile on the GPU would."""

    def __init__(self, kernel, fails):
        self.kernel, self.fails = kernel, fails

    def __getitem__(self, grid):
        def launch(*args, **kwargs):
            if self.fails(args, kwargs):
                raise RuntimeError("PTX compile error in this variant (simulated)")
            return self.kernel[grid](*args, **kwargs)

        return launch


def break_variant(monkeypatch, fails):
    for name in ("_build_kernel", "_reduce_kernel"):
        monkeypatch.setattr(triton_ops, name, FailingVariant(getattr(triton_ops, name), fails))
    triton_ops._SELF_CHECKED.clear()


def model_with(backend, *, dropout=0.0, bias="partitioned", dtype=torch.float32):
    net = Net().to(dtype)
    apply_gpart(net, GPartConfig(d=37, target_modules=["proj"], seed=5, bias=bias, dropout=dropout, backend=backend))
    with torch.no_grad():
        net.gpart_adapter.theta.copy_(torch.randn(37, generator=torch.Generator().manual_seed(1)))
    return net


def seeded_run(net, seed=0):
    torch.manual_seed(seed)  # the dropout seeds come from torch's global generator
    return run(net)


@pytest.mark.parametrize("case", ["dropout", "autocast", "input without grad"])
def test_a_variant_first_used_in_training_is_checked_first_and_falls_back(monkeypatch, case):
    """Dropout on, autocast's compute dtype, or an input that needs no gradient compile other kernels than the
    plain probe: their first use is checked too, so a failing variant falls back instead of raising mid-step."""
    options = {"dropout": dict(dropout=0.2), "autocast": {}, "input without grad": dict(bias="none")}[case]
    fails = {
        "dropout": lambda args, kwargs: kwargs.get("HAS_DROPOUT"),
        "autocast": lambda args, kwargs: args[0].dtype == torch.bfloat16,
        "input without grad": lambda args, kwargs: kwargs.get("WRITE_WEIGHT") is False,
    }[case]
    context = torch.autocast("cpu", dtype=torch.bfloat16) if case == "autocast" else contextlib.nullcontext()
    with context:
        expected = seeded_run(model_with("torch", **options))
    break_variant(monkeypatch, fails)
    with pytest.warns(RuntimeWarning, match="layer proj .*PTX compile error in this variant"), context:
        got = seeded_run(model_with("auto", **options))
    assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])


def test_the_dropout_variant_is_checked_against_its_own_mask(monkeypatch):
    """With dropout the check compares Triton with the dense reference under Triton's own mask: a reduce that
    ignored the mask is a mismatch, not a pass."""
    monkeypatch.setattr(triton_ops, "group_sums", lambda *a, **k: _without_dropout(triton_ops._group_sums, *a, **k))
    with pytest.warns(RuntimeWarning, match=r"layer proj .*∇θ differs"):
        seeded_run(model_with("auto", dropout=0.2))


def _without_dropout(function, *args, **kwargs):
    kwargs.update(dropout_seed=None, p=0.0)
    return function(*args, **kwargs)


@pytest.mark.parametrize("backend", ["auto", "triton"])
def test_float64_layers_take_torch_with_a_reason_and_leave_triton_on_for_the_rest(backend):
    expected = run(model_with("torch", dtype=torch.float64))
    with pytest.warns(RuntimeWarning, match=r"layer proj: float64 weights .*bfloat16, float16, float32"):
        net = model_with(backend, dtype=torch.float64)
        got = run(net)
    assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])
    report = backend_report(find_adapter(net))
    assert report["ran"] == ["torch"] and report["fallback"] is None and triton_guard.fallback_reason() is None
    assert report["refused"] == {
        "float64 weights (the kernels compute in float32; they support bfloat16, float16, float32)": ["proj"]
    }
    other = model_with(backend)
    run(other)
    assert backend_report(find_adapter(other))["ran"] == ["triton"]


def test_a_float64_theta_takes_torch_too():
    """gradcheck runs θ in float64: the kernels would round it to float32."""
    net = model_with("auto")
    net.gpart_adapter.theta.data = net.gpart_adapter.theta.data.double()
    with pytest.warns(RuntimeWarning, match=r"layer proj: float64 θ"):
        run(net)
    assert backend_report(find_adapter(net))["ran"] == ["torch"]


def test_the_guard_imports_nothing_of_the_layers_it_guards():
    """gpart.layers calls the guard, and nothing runs back: the guard imports nothing of gpart.layers, and its probe is
    an AdaptedTensors of gpart.layout, not a GPartLayer it would have to build."""
    import ast
    from pathlib import Path

    import gpart

    for module in ("triton_guard", "triton_ops"):
        tree = ast.parse((Path(gpart.__file__).parent / f"{module}.py").read_text())
        imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        imported |= {
            f"gpart.{alias.name}"
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module == "gpart"
            for alias in node.names
        }
        assert "gpart.layers" not in imported, module
    from gpart.layout import AdaptedTensors

    layer = model("auto").proj
    probe = triton_guard._probe(layer)
    assert isinstance(probe, AdaptedTensors) and not isinstance(probe, nn.Module)
    assert (probe.adapter, probe.weight_start, probe.bias_start) == (
        layer.adapter,
        layer.weight_start,
        layer.bias_start,
    )
    assert probe.is_linear and probe._adapted() == layer._adapted()
