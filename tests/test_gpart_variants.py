"""Properties of the GPart variants beside the partition: Fastfood, block scope, signed-magnitude, init_bound.

(Agreement with the authors' numbers is tests/test_gpart_golden.py.)
"""

from __future__ import annotations

import json

import pytest
import torch
from test_gpart_layers import TinyNet, make, tokens
from torch import nn
from torch.func import functional_call

from gpart import GPartConfig, apply_gpart, find_adapter, gpart_layers, load_adapter, merge, save_adapter, unmerge
from gpart.block_scope import natural_key, transformer_block_of
from gpart.fastfood import FastfoodProjection, walsh_hadamard
from gpart.grouping import SignedMagnitudePartition, signed_magnitude_group_ids


class TinyBlocks(nn.Module):
    """Three numbered blocks (two linears each) and a head: the shape transformer_block scope needs."""

    def __init__(self):
        super().__init__()
        self.layers = nn.ModuleList(nn.ModuleDict({"q": nn.Linear(6, 6), "v": nn.Linear(6, 4)}) for _ in range(3))
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        for block in self.layers:
            x = torch.tanh(nn.functional.pad(block["v"](torch.tanh(block["q"](x))), (0, 2)))
        return self.head(x[..., :4])


def blocks_model(d=12, **kwargs):
    torch.manual_seed(0)
    config = GPartConfig(
        d=d,
        target_modules=["q", "v"],
        seed=3,
        partition_scope="transformer_block",
        trainable_modules=["head"],
        **kwargs,
    )
    return apply_gpart(TinyBlocks(), config)


def set_theta(model, generator_seed=0):
    with torch.no_grad():
        theta = find_adapter(model).theta
        theta.copy_(torch.randn(theta.shape, generator=torch.Generator().manual_seed(generator_seed)))
    return theta


# --- Fastfood -------------------------------------------------------------------------------------------------------


def test_walsh_hadamard_is_the_sylvester_matrix():
    h = torch.ones(1, 1, dtype=torch.float64)
    for _ in range(3):
        h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)], 0)
    x = torch.randn(5, 8, dtype=torch.float64)
    assert torch.allclose(walsh_hadamard(x), x @ h.T)


def test_fastfood_transpose_is_the_adjoint_of_every_slice():
    projection = FastfoodProjection(1000, 24, seed=9, isometric=False, slice_starts=[0, 300, 777])
    theta, values = torch.randn(24, dtype=torch.float64), torch.randn(350, dtype=torch.float64)
    for start in (0, 17, 300, 650):
        forward = projection.project(theta, start, 350)
        assert torch.allclose(forward @ values, theta @ projection.project_transpose(values, start))


def test_fastfood_slices_are_slices_of_the_whole_from_any_snapshot():
    whole = FastfoodProjection(700, 20, seed=4, slice_starts=[0])
    snapshots = FastfoodProjection(700, 20, seed=4, slice_starts=[100, 333, 640])
    theta = torch.randn(20)
    full = whole.project(theta, 0, 700)
    for start, count in [(100, 233), (333, 1), (512, 188), (5, 600)]:
        assert torch.equal(snapshots.project(theta, start, count), full[start : start + count])


def test_fastfood_is_isometric_in_expectation_and_its_state_is_not_n_sized():
    n, d = 1 << 14, 16
    projection = FastfoodProjection(n, d, seed=1, slice_starts=range(0, n, 1024))
    dense = projection.dense(torch.float64)
    gram = dense.T @ dense  # each diagonal entry is 1 ± sqrt(2/N), each off-diagonal 0 ± sqrt(2/N)
    assert torch.allclose(gram.diagonal(), torch.ones(d, dtype=torch.float64), atol=0.05)
    assert gram.fill_diagonal_(0).abs().max() < 0.05
    # No N-sized factor tensors (the authors keep ~9 bytes per coordinate): θ-sized gains and one snapshot per slice.
    state = [value for value in vars(projection).values() if isinstance(value, torch.Tensor)] + projection._snapshots
    assert max(t.numel() for t in state) < n and len(projection._snapshots) == n // 1024


def test_fastfood_layers_match_the_dense_projection_and_gradcheck():
    model = make(d=7, projection="fastfood", bias="partitioned")
    adapter = find_adapter(model)
    theta = set_theta(model)
    dense = adapter.partition.dense(torch.float64) @ theta.double()
    for _, layer in gpart_layers(model):
        for name, start in layer._adapted():
            delta = layer.delta(adapter.scaled_theta().detach(), name).double().flatten()
            assert torch.allclose(delta, dense[start : start + delta.numel()], atol=1e-6)
    model = model.double()
    x = tokens(batch=2, length=3)
    theta64 = torch.randn(7, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda t: functional_call(model, {"gpart_adapter.theta": t}, (x,)), (theta64,), eps=1e-6, atol=1e-5
    )


def test_fastfood_non_isometric_gains_have_rms_one_and_ratio_four():
    gains = FastfoodProjection(64, 10, seed=2, isometric=False).scale().double()
    assert gains.square().mean().sqrt().item() == pytest.approx(1.0, abs=1e-6)
    assert (gains.max() / gains.min()).item() == pytest.approx(4.0, rel=1e-5)
    with pytest.raises(ValueError, match="d >= 2"):
        FastfoodProjection(64, 1, seed=2, isometric=False)


# --- transformer-block scope ----------------------------------------------------------------------------------------


def test_block_names_and_their_natural_order():
    assert transformer_block_of("model.layers.12.self_attn.q_proj") == "model.layers.12"
    assert transformer_block_of("roberta.encoder.layer.0.attention.self.query") == "roberta.encoder.layer.0"
    assert transformer_block_of("classifier.dense") is None
    assert sorted(["l.layers.10", "l.layers.9", "l.layers.1"], key=natural_key) == [
        "l.layers.1",
        "l.layers.9",
        "l.layers.10",
    ]


def test_each_block_uses_only_its_own_slice_of_theta():
    model = blocks_model(d=11)  # widths 4, 4, 3
    partition = find_adapter(model).partition
    assert [(b.name, b.theta_start, b.partition.d) for b in partition.blocks] == [
        ("layers.0", 0, 4),
        ("layers.1", 4, 4),
        ("layers.2", 8, 3),
    ]
    for name, layer in gpart_layers(model):
        block = next(b for b in partition.blocks if name.startswith(b.name + "."))
        ids = layer.group_ids("weight")
        assert block.theta_start <= ids.min() and ids.max() < block.theta_start + block.partition.d
    p = partition.dense()
    assert torch.allclose(p.T @ p, torch.eye(11, dtype=torch.float64))  # isometric within and across blocks


def test_block_seeds_follow_the_block_order():
    partition = find_adapter(blocks_model(d=9)).partition
    assert [b.partition.seed for b in partition.blocks] == [3, 4, 5]


def test_block_scope_errors_name_the_problem():
    with pytest.raises(ValueError, match="target 'head' is in no numbered transformer block"):
        apply_gpart(TinyBlocks(), GPartConfig(d=6, target_modules=["q", "head"], partition_scope="transformer_block"))
    with pytest.raises(ValueError, match=r"needs d >= the number of blocks \(3\), got d=2"):
        apply_gpart(TinyBlocks(), GPartConfig(d=2, target_modules=["q"], partition_scope="transformer_block"))


# --- signed-magnitude grouping --------------------------------------------------------------------------------------


def loop_reference(values: torch.Tensor, d: int) -> torch.Tensor:
    """The authors' description, written as plainly as possible: pools by sign, sorted, cut into equal runs."""
    n_total = values.numel()
    pools = [torch.nonzero(values < 0).flatten(), torch.nonzero(values >= 0).flatten()]
    k_negative = min(max(round(d * pools[0].numel() / n_total), 1), d - 1)
    ids, first_group = torch.empty(n_total, dtype=torch.int64), 0
    for pool, k in zip(pools, (k_negative, d - k_negative)):
        n = pool.numel()
        keys = values.abs()[pool] * (n + 1) + pool.float() / (n + 1)
        ranked = sorted(range(n), key=lambda j: (keys[j].item(), pool[j].item()))
        for g in range(k):
            for j in ranked[g * n // k : (g + 1) * n // k]:
                ids[pool[j]] = first_group + g
        first_group += k
    return ids


@pytest.mark.parametrize("size,d", [(50, 7), (301, 12), (64, 2)])
def test_signed_magnitude_matches_the_plain_reference(size, d):
    values = torch.randn(size, generator=torch.Generator().manual_seed(size)) * 0.02
    tied = torch.arange(0, size - 2, 9)
    values[tied] = values[tied + 1]  # ties in magnitude within a pool ...
    values[tied + 2] = -values[tied + 1]  # ... and across the pools
    assert torch.equal(signed_magnitude_group_ids(values, d), loop_reference(values, d))


def test_signed_magnitude_groups_hold_one_sign_and_equal_counts():
    values = torch.randn(1000, generator=torch.Generator().manual_seed(0))
    partition = SignedMagnitudePartition(values, 10)
    ids = partition.group_ids(0, 1000)
    for g in range(10):
        assert len(set((values[ids == g] >= 0).tolist())) == 1
    assert partition.counts.max() - partition.counts.min() <= 1 + 1000 // 10 // 10  # equal-count runs per pool
    p = partition.dense()
    assert torch.allclose(p.T @ p, torch.eye(10, dtype=torch.float64))


def test_signed_magnitude_all_one_sign_uses_a_single_pool():
    values = torch.randperm(40, generator=torch.Generator().manual_seed(0)).float() + 1  # spaced beyond the index term
    ids = signed_magnitude_group_ids(values, 4)
    order = torch.argsort(values)
    assert torch.equal(ids[order], torch.arange(4).repeat_interleave(10))


def test_signed_magnitude_groups_survive_merge_and_unmerge():
    model = make(d=9, grouping="signed_magnitude", targets=["query", "value"])
    partition = find_adapter(model).partition
    assert partition.ids.dtype == torch.int32 and partition.ids.numel() == partition.size  # the stored state
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    set_theta(model)
    x = tokens()
    unmerged = model(x)
    merge(model)
    assert torch.allclose(model(x), unmerged, atol=1e-6)
    unmerge(model)
    after = dict(model.named_parameters())
    assert all(torch.allclose(after[n], before[n], atol=1e-6) for n in before if n != "gpart_adapter.theta")


# --- init_bound, configuration, saving ------------------------------------------------------------------------------


def test_init_bound_draws_theta_like_the_authors_and_zero_means_zeros():
    torch.manual_seed(11)
    theta = find_adapter(apply_gpart(TinyNet(), GPartConfig(d=13, target_modules=["value"], init_bound=0.01))).theta
    torch.manual_seed(11)
    TinyNet()  # the authors draw after building the same model
    assert torch.equal(theta.detach(), torch.zeros(13).uniform_(-0.01, 0.01))
    assert theta.abs().max() <= 0.01 and theta.abs().min() > 0
    assert not find_adapter(make(d=13)).theta.any()


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(projection="dense"), "projection='dense' is not supported; allowed: 'partition', 'fastfood'"),
        (
            dict(partition_scope="layer"),
            "partition_scope='layer' is not supported; allowed: 'global', 'transformer_block'",
        ),
        (dict(grouping="magnitude"), "grouping='magnitude' is not supported; allowed: 'random', 'signed_magnitude'"),
        (dict(init_bound=-0.1), r"init_bound must be a finite number >= 0 \(0.0 = θ starts at zeros\), got -0.1"),
        (dict(init_bound=float("nan")), "init_bound must be a finite number >= 0"),
        (dict(init_bound=True), "init_bound must be a finite number >= 0"),
        (
            dict(projection="fastfood", partition_scope="transformer_block"),
            "partition_scope='transformer_block' does not apply to projection='fastfood'; allowed: 'global'",
        ),
        (dict(projection="fastfood", grouping="signed_magnitude"), "grouping='signed_magnitude' does not apply"),
        (dict(grouping="signed_magnitude", assignment="balanced"), "assignment='balanced' does not apply"),
        (dict(projection="fastfood", backend="triton"), "backend='triton' implements only projection='partition'"),
    ],
)
def test_bad_variant_values_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        GPartConfig(d=4, target_modules=["q"], **kwargs)


def test_default_configs_serialise_exactly_as_before_the_variants():
    config = GPartConfig(d=4, target_modules=["q"])
    assert list(config.to_dict()) == [
        "d",
        "target_modules",
        "seed",
        "assignment",
        "isometric",
        "dropout",
        "bias",
        "trainable_modules",
    ]
    assert GPartConfig.from_dict(config.to_dict()) == config
    variant = GPartConfig(d=4, target_modules=["q"], projection="fastfood", init_bound=0.5)
    assert variant.to_dict()["projection"] == "fastfood" and "grouping" not in variant.to_dict()
    assert GPartConfig.from_dict(json.loads(json.dumps(variant.to_dict()))) == variant


def test_auto_backend_runs_torch_for_variants(monkeypatch):
    pytest.importorskip("triton")
    from gpart import triton_ops

    monkeypatch.setattr(triton_ops, "selected", lambda backend, device: True)  # as if on CUDA
    default, variant = make(d=5), make(d=5, grouping="signed_magnitude")
    weight = default.query.base_layer.weight
    assert default.query.triton_ops(weight) is triton_ops
    assert variant.query.triton_ops(weight) is None


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(projection="fastfood", isometric=False),
        dict(grouping="signed_magnitude"),
        dict(init_bound=0.3, bias="partitioned"),
    ],
)
def test_variant_adapters_round_trip(tmp_path, kwargs):
    model = make(d=9, **kwargs)
    set_theta(model, 3)
    save_adapter(model, tmp_path)
    torch.manual_seed(0)
    fresh = load_adapter(TinyNet(), tmp_path)
    fresh.classifier.load_state_dict(model.classifier.state_dict())
    assert torch.equal(fresh(tokens()), model(tokens()))


def test_block_scope_adapter_round_trips(tmp_path):
    model = blocks_model(d=10, grouping="signed_magnitude")
    set_theta(model)
    save_adapter(model, tmp_path)
    torch.manual_seed(0)
    fresh = load_adapter(TinyBlocks(), tmp_path)
    x = torch.randn(3, 6)
    assert torch.equal(fresh(x), model(x))


def test_dropout_drops_partitioned_bias_elements_too_unlike_the_authors():
    """On purpose: dropout acts on P θ, and partitioned biases are coordinates of that space like the weights.

    The authors' code masks ΔW and adds Δb whole; ours masks both (gpart/layers.py ``delta``)."""
    model = make(d=9, targets=["query"], bias="partitioned", dropout=0.5)
    set_theta(model)
    scaled = find_adapter(model).scaled_theta().detach()
    full = model.query.delta(scaled, "bias")
    assert full.ne(0).all()
    dropped = torch.stack([model.query.delta(scaled, "bias", dropout_seed=seed) for seed in range(6)])
    kept = dropped != 0
    assert (~kept).any() and kept.any()  # elements of Δb are dropped, the others scaled by 1/(1 - p)
    assert torch.allclose(dropped[kept], (2 * full).expand_as(dropped)[kept])


# --- the runner ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "override,check",
    [
        ("method.config.projection=fastfood", lambda p: type(p).__name__ == "FastfoodProjection"),
        ("method.config.partition_scope=transformer_block", lambda p: len(p.blocks) == 2),
        ("method.config.grouping=signed_magnitude", lambda p: p.ids.numel() == p.size),
        ("method.config.init_bound=0.5", lambda p: type(p).__name__ == "Partition"),
    ],
)
def test_each_variant_is_selected_by_a_runner_override(override, check):
    import transformers
    from conftest import compose_config

    from experiments.methods import build_method

    cfg = compose_config(["method=gpart", "model=tiny-roberta", "method.config.d=40", override])
    config = transformers.RobertaConfig(
        vocab_size=50,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=20,
        num_labels=2,
    )
    model = build_method(cfg.method, cfg.model).apply(transformers.RobertaForSequenceClassification(config))
    adapter = find_adapter(model)
    field, value = override.removeprefix("method.config.").split("=")
    assert str(getattr(adapter.config, field)) == value and check(adapter.partition)
