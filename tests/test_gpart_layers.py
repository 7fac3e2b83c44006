"""GPart layers against a dense reference: forward, gradients, merge, dropout, and which parameters move."""

import pytest
import torch
from torch import nn
from torch.func import functional_call
from transformers.pytorch_utils import Conv1D

from gpart import (
    GPartConfig,
    Partition,
    apply_gpart,
    find_adapter,
    gpart_layers,
    gpart_summary,
    merge,
    merge_and_unload,
    unmerge,
)


class TinyNet(nn.Module):
    """One module of every kind GPart handles: Linear, GPT-2's Conv1D, Conv2d and Embedding."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(11, 6)
        self.conv = nn.Conv2d(1, 2, kernel_size=3, padding=1)
        self.proj = Conv1D(8, 6)  # (in=6, out=8), weight stored (6, 8)
        self.query = nn.Linear(8, 8)
        self.value = nn.Linear(8, 5)
        self.classifier = nn.Linear(5, 3)

    def forward(self, tokens):
        h = self.embed(tokens)  # (b, t, 6)
        h = h + self.conv(h.unsqueeze(1)).mean(1)
        h = torch.tanh(self.proj(h))
        h = torch.tanh(self.query(h))
        return self.classifier(torch.tanh(self.value(h))).mean(1)


ALL_TARGETS = ["embed", "conv", "proj", "query", "value"]


def make(d=13, targets=ALL_TARGETS, seed=0, **kwargs):
    torch.manual_seed(0)
    model = TinyNet()
    config = GPartConfig(d=d, target_modules=targets, seed=seed, trainable_modules=["classifier"], **kwargs)
    return apply_gpart(model, config)


def tokens(batch=4, length=5, seed=1):
    return torch.randint(0, 11, (batch, length), generator=torch.Generator().manual_seed(seed))


def dense_reference(model, theta):
    """A plain TinyNet whose target weights are W0 + reshape(P θ) with P built densely from the same partition."""
    adapter = find_adapter(model)
    partition = adapter.partition
    p = Partition(
        partition.size, partition.d, seed=partition.seed, assignment=partition.assignment, isometric=partition.isometric
    ).dense(torch.float64)
    flat = (p @ theta.double()).float()
    reference = TinyNet()
    state = {}
    for name, layer in gpart_layers(model):
        for pname, start in layer._adapted():
            base = getattr(layer.base_layer, pname)
            state[f"{name}.{pname}"] = base.detach() + flat[start : start + base.numel()].view(base.shape)
        for pname, value in layer.base_layer.named_parameters():
            state.setdefault(f"{name}.{pname}", value.detach())
    state.update({k: v.detach() for k, v in model.classifier.named_parameters(prefix="classifier")})
    reference.load_state_dict(state)
    return reference


def test_only_theta_and_head_are_trainable_and_theta_has_d_entries():
    model = make(d=13)
    trainable = {n: p.numel() for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"gpart_adapter.theta": 13, "classifier.weight": 15, "classifier.bias": 3}
    summary = gpart_summary(model)
    expected_n = 11 * 6 + 2 * 1 * 3 * 3 + 6 * 8 + 8 * 8 + 8 * 5
    assert (summary.adapted_space_size, summary.trainable_adapter_params, summary.head_params) == (expected_n, 13, 18)
    assert summary.adapted_modules == ALL_TARGETS


def test_zero_theta_leaves_the_model_unchanged():
    torch.manual_seed(0)
    plain = TinyNet()
    assert torch.equal(make()(tokens()), plain(tokens()))


@pytest.mark.parametrize("assignment", ["stateless", "balanced"])
@pytest.mark.parametrize("isometric", [True, False])
def test_forward_equals_dense_reference(assignment, isometric):
    model = make(assignment=assignment, isometric=isometric)
    with torch.no_grad():
        find_adapter(model).theta.normal_()
    reference = dense_reference(model, find_adapter(model).theta.detach())
    assert torch.allclose(model(tokens()), reference(tokens()), atol=1e-5)


def test_delta_norm_equals_theta_norm():
    model = make(d=29)
    theta = torch.randn(29)
    with torch.no_grad():
        find_adapter(model).theta.copy_(theta)
        scaled = find_adapter(model).scaled_theta()
        deltas = [layer.delta(scaled, name) for _, layer in gpart_layers(model) for name, _ in layer._adapted()]
    assert torch.allclose(torch.cat([d.flatten() for d in deltas]).norm(), theta.norm(), rtol=1e-5)


def test_theta_gradient_is_p_transpose_of_weight_gradient():
    model = make(bias="partitioned")
    with torch.no_grad():
        find_adapter(model).theta.normal_()
    theta = find_adapter(model).theta
    reference = dense_reference(model, theta.detach())
    x = tokens()
    model(x).square().sum().backward()
    reference(x).square().sum().backward()
    partition = find_adapter(model).partition
    p = partition.dense(torch.float64)
    grad_w = []
    for name, layer in gpart_layers(model):
        for pname, _ in layer._adapted():
            grad_w.append(reference.get_parameter(f"{name}.{pname}").grad.flatten())
    expected = p.T @ torch.cat(grad_w).double()
    assert torch.allclose(theta.grad.double(), expected, atol=1e-5)


def test_gradcheck_in_float64():
    model = make(d=7, bias="partitioned").double()
    x = tokens(batch=2, length=3)

    def f(theta):
        return functional_call(model, {"gpart_adapter.theta": theta}, (x,))

    theta = torch.randn(7, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(f, (theta,), eps=1e-6, atol=1e-5)


def test_gradcheck_with_dropout_uses_the_same_mask_in_backward():
    model = make(d=7, dropout=0.5).double().train()
    x = tokens(batch=2, length=3)

    def f(theta):
        torch.manual_seed(123)  # the same dropout masks on every evaluation
        return functional_call(model, {"gpart_adapter.theta": theta}, (x,))

    theta = torch.randn(7, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(f, (theta,), eps=1e-6, atol=1e-5)
    torch.manual_seed(5)
    first = f(theta)
    model.eval()
    assert not torch.allclose(first, f(theta)), "dropout must be active in training and off in eval"


def test_weight_and_bias_draw_different_dropout_masks():
    """Each adapted tensor draws its own mask stream: a bias's mask is not the first entries of its weight's (one
    generator seed for both made them equal)."""
    model = make(d=7, targets=["query"], bias="partitioned", dropout=0.5)
    layer, ones = model.query, torch.ones(7)
    for seed in (31, 2**61 + 3):
        weight_kept = layer.delta(ones, "weight", seed) != 0
        bias_kept = layer.delta(ones, "bias", seed) != 0
        assert not torch.equal(bias_kept, weight_kept.flatten()[: bias_kept.numel()])
        assert torch.equal(weight_kept, layer.delta(ones, "weight", seed) != 0)  # and each repeats under its seed
    kept = torch.cat([layer.delta(ones, "bias", seed) != 0 for seed in range(64)])  # 512 draws
    assert 0.4 < kept.float().mean() < 0.6


def test_a_weights_dropout_mask_is_drawn_from_the_forward_seed_itself():
    """The weight's mask is torch.rand under the forward's seed, as it has always been on the torch path: runs
    recorded before the bias got a stream of its own rerun to the same numbers."""
    model = make(d=7, targets=["query"], dropout=0.5)
    layer = model.query
    shape = layer.base_layer.weight.shape
    expected = torch.rand(shape, generator=torch.Generator().manual_seed(1234)) >= 0.5
    assert torch.equal(layer.delta(torch.ones(7), "weight", 1234) != 0, expected)


class OneLinear(nn.Module):
    def __init__(self, n_in, n_out):
        super().__init__()
        self.layer = nn.Linear(n_in, n_out)

    def forward(self, x):
        return self.layer(x)


def test_linear_input_gradient_matches_dense_reference():
    torch.manual_seed(0)
    model = apply_gpart(OneLinear(6, 4), GPartConfig(d=5, target_modules=["layer"]))
    with torch.no_grad():
        find_adapter(model).theta.normal_()
    x = torch.randn(3, 6, requires_grad=True)
    model(x).sum().backward()
    weight = model.layer.effective(find_adapter(model).scaled_theta().detach(), None)["weight"]
    x_ref = x.detach().clone().requires_grad_(True)
    nn.functional.linear(x_ref, weight, model.layer.base_layer.bias).sum().backward()
    assert torch.allclose(x.grad, x_ref.grad, atol=1e-6)


def test_merge_equals_unmerged_and_unmerge_restores():
    model = make().eval()
    with torch.no_grad():
        find_adapter(model).theta.normal_()
    x = tokens()
    before = model(x)
    weights_before = model.query.base_layer.weight.clone()
    merge(model)
    assert torch.allclose(model(x), before, atol=1e-5)
    assert not torch.equal(model.query.base_layer.weight, weights_before)
    unmerge(model)
    assert torch.allclose(model.query.base_layer.weight, weights_before, atol=1e-6)
    assert torch.allclose(model(x), before, atol=1e-5)


def test_merge_and_unload_gives_a_plain_model():
    model = make().eval()
    with torch.no_grad():
        find_adapter(model).theta.normal_()
    x = tokens()
    before = model(x)
    plain = merge_and_unload(model)
    assert isinstance(plain.query, nn.Linear) and not hasattr(plain, "gpart_adapter")
    assert torch.allclose(plain(x), before, atol=1e-5)


def test_training_moves_only_theta_and_head():
    model = make()
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    trainable = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for step in range(3):
        loss = nn.functional.cross_entropy(model(tokens(seed=step)), torch.tensor([0, 1, 2, 0]))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    params = dict(model.named_parameters())
    assert all(torch.equal(params[n], v) for n, v in frozen.items())
    assert all(not torch.equal(params[n], v) for n, v in trainable.items())


def test_applied_to_a_model_in_eval_mode_the_layers_do_not_drop_delta():
    """The wrappers take the mode of the modules they wrap: an adapter loaded for inference is deterministic."""
    torch.manual_seed(0)
    model = apply_gpart(TinyNet().eval(), GPartConfig(d=13, target_modules=ALL_TARGETS, dropout=0.5))
    with torch.no_grad():
        find_adapter(model).theta.normal_()
        assert all(not layer.training for _, layer in gpart_layers(model))
        assert torch.equal(model(tokens()), model(tokens()))
        model.train()
        assert not torch.equal(model(tokens()), model(tokens()))  # in training, dropout on ΔW does act


def test_training_is_deterministic_under_a_seed():
    def train():
        model = make(dropout=0.1)
        optimizer = torch.optim.SGD([find_adapter(model).theta], lr=0.1)
        torch.manual_seed(7)
        for step in range(3):
            optimizer.zero_grad()
            model(tokens(seed=step)).sum().backward()
            optimizer.step()
        return find_adapter(model).theta.detach().clone()

    assert torch.equal(train(), train())


def test_effective_weight_is_not_saved_for_backward():
    torch.manual_seed(0)
    model = apply_gpart(OneLinear(256, 256), GPartConfig(d=10, target_modules=["layer"]))
    saved = []

    def pack(tensor):
        saved.append(tensor.numel())
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(torch.randn(2, 256)).sum()
    assert max(saved) < 256 * 256, f"a tensor of {max(saved)} elements (a whole weight) was saved for backward"


def _two_training_steps(model):
    """Outputs and ∇θ of two forward/backward passes (the second reads whatever the first cached)."""
    adapter = find_adapter(model)
    with torch.no_grad():
        adapter.theta.normal_(generator=torch.Generator().manual_seed(3))
    torch.manual_seed(5)  # the same dropout seeds for every model
    steps = []
    for _ in range(2):
        out = model(tokens())
        out.square().sum().backward()
        steps.append((out.detach(), adapter.theta.grad.clone()))
        adapter.theta.grad = None
    return steps


@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_group_id_cache_gives_identical_outputs_and_theta_gradients(dropout):
    stateless = make(bias="partitioned", dropout=dropout).train()
    cached = make(bias="partitioned", dropout=dropout, id_cache_mib=1.0).train()  # room for every layer
    for (out, grad), (out_cached, grad_cached) in zip(_two_training_steps(stateless), _two_training_steps(cached)):
        assert torch.equal(out, out_cached)
        assert torch.equal(grad, grad_cached)
    adapter = find_adapter(cached)
    assert adapter.id_cache_bytes == 4 * adapter.partition.size  # every coordinate cached, as int32
    assert all(ids.dtype == torch.int32 for ids in adapter._id_cache.values())


def test_group_id_cache_stays_within_its_budget_and_keeps_the_hashed_ids():
    budget_bytes = 4 * 100  # room for 100 of the 236 adapted coordinates
    model = make(id_cache_mib=budget_bytes / 2**20)
    _two_training_steps(model)
    adapter = find_adapter(model)
    cache = adapter._id_cache
    assert 0 < adapter.id_cache_bytes <= budget_bytes
    assert adapter.id_cache_bytes == sum(4 * ids.numel() for ids in cache.values())
    assert len(cache) < len(ALL_TARGETS), "the budget should have left some layers uncached"
    for (start, count, _), ids in cache.items():
        assert torch.equal(ids.long(), adapter.partition.group_ids(start, count))


def test_by_default_nothing_of_size_n_is_stored():
    model = make()
    _two_training_steps(model)
    adapter = find_adapter(model)
    assert adapter._id_cache == {} and adapter.id_cache_bytes == 0
    assert max(t.numel() for t in [*adapter.parameters(), *adapter.buffers()]) == adapter.config.d
    assert "id_cache_mib" not in GPartConfig(d=4, target_modules=["q"], id_cache_mib=64).to_dict()


@pytest.mark.parametrize(
    "kwargs,error,message",
    [
        (dict(d=0, target_modules=["q"]), ValueError, "d must be >= 1, got 0"),
        (dict(d=-3, target_modules=["q"]), ValueError, "d must be >= 1, got -3"),
        (dict(d=2.5, target_modules=["q"]), ValueError, "d must be an integer, got 2.5"),
        (dict(d=4, target_modules=["q"], assignment="random"), ValueError, "assignment='random' is not supported"),
        (dict(d=4, target_modules=[]), ValueError, "target_modules must name at least one module"),
        (dict(d=4, target_modules=["q"], dropout=1.0), ValueError, r"dropout must be a number in \[0, 1\)"),
        (dict(d=4, target_modules=["q"], bias="all"), ValueError, "bias='all' is not supported"),
        (dict(d=4, target_modules=["q"], seed=-1), ValueError, "seed must be in"),
        (dict(d=4, target_modules=["q"], id_cache_mib=-1), ValueError, "id_cache_mib must be a number of MiB >= 0"),
        (dict(d=4, target_modules=["q"], id_cache_mib="64"), ValueError, "id_cache_mib must be a number"),
    ],
)
def test_bad_config_values_are_named(kwargs, error, message):
    with pytest.raises(error, match=message):
        GPartConfig(**kwargs)


def test_targets_that_match_nothing_are_an_error():
    with pytest.raises(ValueError, match=r"target_modules=\['q_proj'\] matched no module.*'query'"):
        apply_gpart(TinyNet(), GPartConfig(d=4, target_modules=["q_proj"]))


def test_d_larger_than_the_adapted_space_is_an_error():
    with pytest.raises(ValueError, match="d=41 must satisfy 0 < d <= N=40"):
        apply_gpart(TinyNet(), GPartConfig(d=41, target_modules=["value"]))


def test_unknown_trainable_module_and_double_application_are_errors():
    with pytest.raises(ValueError, match="trainable_modules entry 'head' matched no module"):
        apply_gpart(TinyNet(), GPartConfig(d=4, target_modules=["value"], trainable_modules=["head"]))
    model = make()
    with pytest.raises(ValueError, match="already has a GPart adapter"):
        apply_gpart(model, GPartConfig(d=4, target_modules=["value"]))
    with pytest.raises(ValueError, match="not an nn.Sequential"):
        apply_gpart(nn.Sequential(nn.Linear(3, 3)), GPartConfig(d=4, target_modules=["0"]))
