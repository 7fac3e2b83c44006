"""The partition P: the stateless hash bit for bit, balanced sizes, and PᵀP = I."""

import pytest
import torch

from gpart.partition import (
    COUNT_CHUNK,
    Partition,
    _stateless_group_ids_numpy,
    _stateless_group_ids_torch,
    balanced_group_ids,
    splitmix64,
    stateless_group_ids,
)

# The CPU path hashes with numpy; accelerators use the torch one. Both must be the spec, bit for bit.
IMPLEMENTATIONS = {
    "numpy": lambda start, count, seed, d: torch.from_numpy(_stateless_group_ids_numpy(start, count, seed, d)),
    "torch": _stateless_group_ids_torch,
}

MASK64 = (1 << 64) - 1


def splitmix64_reference(x: int) -> int:
    """The standard splitmix64 finaliser in plain Python integers (the spec of setup.md §1)."""
    z = (x + 0x9E3779B97F4A7C15) & MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def as_unsigned(tensor: torch.Tensor) -> list[int]:
    return [v & MASK64 for v in tensor.tolist()]


def test_reference_matches_published_splitmix64_stream():
    # The splitmix64 generator seeded with 0 outputs finaliser(k * gamma) for k = 0, 1, 2: well-known values.
    gamma = 0x9E3779B97F4A7C15
    outputs = [splitmix64_reference((k * gamma) & MASK64) for k in range(3)]
    assert outputs == [0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4, 0x06C45D188009454F]


@pytest.mark.parametrize("start", [0, 12345, (1 << 63) - 5, (1 << 64) - 3])
def test_torch_splitmix64_matches_reference_including_wraparound(start):
    xs = [(start + k) & MASK64 for k in range(64)]
    as_int64 = torch.tensor([x - (1 << 64) if x >= 1 << 63 else x for x in xs], dtype=torch.int64)
    assert as_unsigned(splitmix64(as_int64)) == [splitmix64_reference(x) for x in xs]


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("seed,d", [(0, 7), (42, 23_040), ((1 << 64) - 1, 524_288), (2**40 + 3, 3), (5, 2**40 + 7)])
def test_stateless_group_ids_are_hash_mod_d(implementation, seed, d):
    start = 1_000_003
    ids = IMPLEMENTATIONS[implementation](start, 200, seed, d)
    expected = [splitmix64_reference((seed + start + k) & MASK64) % d for k in range(200)]
    assert ids.tolist() == expected


def test_group_ids_of_a_range_equal_the_slice_of_the_whole():
    whole = stateless_group_ids(0, 5000, seed=3, d=97)
    assert torch.equal(stateless_group_ids(1234, 777, seed=3, d=97), whole[1234 : 1234 + 777])
    partition = Partition(5000, 97, seed=3, assignment="balanced")
    assert torch.equal(partition.group_ids(1234, 777), partition.group_ids(0, 5000)[1234 : 1234 + 777])


@pytest.mark.parametrize("size,d", [(1000, 7), (1001, 1000), (4097, 64), (2, 1)])
def test_balanced_groups_differ_in_size_by_at_most_one_and_counts_match_ids(size, d):
    partition = Partition(size, d, seed=11, assignment="balanced")
    counted = torch.bincount(partition.group_ids(0, size), minlength=d)
    assert torch.equal(counted, partition.counts)
    assert int(counted.max() - counted.min()) <= 1
    assert int(counted.sum()) == size


def test_balanced_assignment_is_a_bijection_cut_into_chunks():
    size, d = 3000, 10
    ids = balanced_group_ids(0, size, seed=5, d=d, size=size)
    # Each group holds exactly the coordinates whose permuted position falls in its chunk: sizes 300 each.
    assert torch.bincount(ids).tolist() == [300] * 10


def test_stateless_counts_are_exact_across_chunk_boundaries(monkeypatch):
    monkeypatch.setattr("gpart.partition.COUNT_CHUNK", 1000)
    partition = Partition(4321, 50, seed=9)
    assert torch.equal(partition.counts, torch.bincount(stateless_group_ids(0, 4321, seed=9, d=50), minlength=50))
    assert COUNT_CHUNK > 1000  # the monkeypatch did not leak


@pytest.mark.parametrize("assignment", ["stateless", "balanced"])
def test_columns_of_p_are_orthonormal(assignment):
    p = Partition(1000, 17, seed=1, assignment=assignment).dense()
    assert torch.allclose(p.T @ p, torch.eye(17, dtype=p.dtype), atol=1e-12)
    assert torch.equal((p != 0).sum(dim=1), torch.ones(1000, dtype=torch.int64))  # one non-zero per row


def test_non_isometric_ablation_gives_diag_of_group_sizes():
    partition = Partition(1000, 17, seed=1, isometric=False)
    p = partition.dense()
    assert torch.allclose(p.T @ p, torch.diag(partition.counts.to(p.dtype)))


def test_empty_groups_get_a_zero_column():
    partition = Partition(50, 50, seed=0)  # stateless with d = N leaves some groups empty
    empty = partition.counts == 0
    assert bool(empty.any())
    p = partition.dense()
    assert torch.allclose(p.T @ p, torch.diag((~empty).to(p.dtype)))


def test_isometry_of_the_map():
    p = Partition(800, 40, seed=2).dense()
    theta, other = torch.randn(40, dtype=p.dtype), torch.randn(40, dtype=p.dtype)
    assert torch.allclose((p @ theta - p @ other).norm(), (theta - other).norm())


def test_different_seeds_give_different_partitions():
    a = stateless_group_ids(0, 1000, seed=0, d=100)
    b = stateless_group_ids(0, 1000, seed=1, d=100)
    assert (a != b).float().mean() > 0.9
    ba = Partition(1000, 100, seed=0, assignment="balanced").group_ids(0, 1000)
    bb = Partition(1000, 100, seed=1, assignment="balanced").group_ids(0, 1000)
    assert (ba != bb).float().mean() > 0.9


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(size=10, d=11), "d=11 must satisfy 0 < d <= N=10"),
        (dict(size=10, d=0), "d=0 must satisfy"),
        (dict(size=10, d=2, assignment="materialized"), "assignment='materialized' is not supported"),
    ],
)
def test_bad_partition_arguments_are_named(kwargs, message):
    size, d = kwargs.pop("size"), kwargs.pop("d")
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        Partition(size, d, seed=0, **kwargs)
