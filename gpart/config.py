"""GPartConfig: every choice that, with the model, determines the partition P — validated on construction."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from gpart.partition import ASSIGNMENTS

BIAS_MODES = ("none", "partitioned")
BACKENDS = ("auto", "torch", "triton")  # how ΔW and ∇θ are computed; never changes P or the adapter files
# Variants of the authors' code that the paper's ablations use (gpart/variants.py); the first value is the default.
PROJECTIONS = ("partition", "fastfood")
PARTITION_SCOPES = ("global", "transformer_block")
GROUPINGS = ("random", "signed_magnitude")
# Fields saved only when they differ from their default, so adapters saved before the variants existed (and every
# default adapter since) keep byte-identical files.
VARIANT_DEFAULTS = {"projection": "partition", "partition_scope": "global", "grouping": "random", "init_bound": 0.0}


@dataclass
class GPartConfig:
    """Configuration of a GPart adapter.

    Args:
        d: length of the trainable vector θ (the only hyperparameter of the method).
        target_modules: modules whose weights form the adapted space, in PEFT's convention: a list of names, each
            matching a module whose full name equals it or ends with ``"." + name``; or one regex string that must
            match a full module name.
        seed: seed of the partition (any integer in [0, 2^64)); stored with θ, it determines P exactly.
        assignment: ``"stateless"`` (g(i) = splitmix64(seed + i) mod d) or ``"balanced"`` (group sizes differ by ≤ 1).
        isometric: scale P's non-zeros by 1/sqrt(group size) so PᵀP = I; False is the unnormalised ablation.
        dropout: probability of dropping each element of ΔW during training (not of the activations); with
            partitioned biases, of Δb too — on purpose, unlike the authors' code, which adds Δb whole
            (docs/variants.md).
        bias: ``"none"``, or ``"partitioned"`` to append each target's bias to the adapted space after its weight.
        trainable_modules: modules trained fully beside θ (the task head), saved with the adapter and not counted
            in d. Matched like ``target_modules``.
        backend: ``"auto"`` (Triton kernels on CUDA when triton is installed, else torch), ``"torch"`` or
            ``"triton"`` (docs/performance.md). An execution choice, not part of the adapter: ``to_dict`` omits it.
            The Triton kernels implement the default global random partition only: with any other ``projection``,
            ``partition_scope`` or ``grouping``, ``"auto"`` runs torch and ``"triton"`` is an error.
        projection: ``"partition"`` (GPart's P) or ``"fastfood"`` (the intrinsic-dimension "DID" baseline: a
            matrix-free Fastfood transform, isometric only in expectation; ``gpart/fastfood.py``).
        partition_scope: ``"global"`` (one partition of all targets) or ``"transformer_block"`` (θ cut into one
            slice per numbered transformer block, each partitioning that block's targets; ``gpart/block_scope.py``).
        grouping: ``"random"`` (``assignment`` decides g) or ``"signed_magnitude"`` (groups by the sign and
            magnitude of the pretrained weights; ``gpart/grouping.py``).
        init_bound: θ starts uniform in [-init_bound, init_bound] (drawn from torch's global CPU generator, as the
            authors' code does); 0.0 starts θ at zeros, i.e. at the pretrained model.
        id_cache_mib: memory (MiB) the torch path may spend keeping group ids as int32, 4 bytes per adapted
            coordinate, instead of hashing them in every forward and backward; layers are cached in order until the
            budget is spent. 0 (default): stateless, nothing of size N is stored. An execution choice like
            ``backend``: ``to_dict`` omits it.
    """

    d: int
    target_modules: list[str] | str
    seed: int = 0
    assignment: str = "stateless"
    isometric: bool = True
    dropout: float = 0.0
    bias: str = "none"
    trainable_modules: list[str] = field(default_factory=list)
    backend: str = "auto"
    projection: str = "partition"
    partition_scope: str = "global"
    grouping: str = "random"
    init_bound: float = 0.0
    id_cache_mib: float = 0.0

    def __post_init__(self):
        if isinstance(self.target_modules, tuple):
            self.target_modules = list(self.target_modules)
        self.trainable_modules = list(self.trainable_modules)
        _check_int("d", self.d, low=1)
        _check_int("seed", self.seed, low=0, high=(1 << 64) - 1)
        _check_names("target_modules", self.target_modules, allow_regex=True)
        _check_names("trainable_modules", self.trainable_modules, allow_regex=False, allow_empty=True)
        _check_choice("assignment", self.assignment, ASSIGNMENTS)
        _check_choice("bias", self.bias, BIAS_MODES)
        _check_choice("backend", self.backend, BACKENDS)
        if not isinstance(self.isometric, bool):
            raise ValueError(f"isometric must be a bool, got {self.isometric!r}")
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)) or not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be a number in [0, 1), got {self.dropout!r}")
        self.dropout = float(self.dropout)
        _check_choice("projection", self.projection, PROJECTIONS)
        _check_choice("partition_scope", self.partition_scope, PARTITION_SCOPES)
        _check_choice("grouping", self.grouping, GROUPINGS)
        if (
            isinstance(self.init_bound, bool)
            or not isinstance(self.init_bound, (int, float))
            or not 0 <= self.init_bound < float("inf")
        ):
            raise ValueError(
                f"init_bound must be a finite number >= 0 (0.0 = θ starts at zeros), got {self.init_bound!r}"
            )
        self.init_bound = float(self.init_bound)
        if (
            isinstance(self.id_cache_mib, bool)
            or not isinstance(self.id_cache_mib, (int, float))
            or not 0 <= self.id_cache_mib < float("inf")
        ):
            raise ValueError(f"id_cache_mib must be a number of MiB >= 0, got {self.id_cache_mib!r}")
        self._check_variant_combination()

    @property
    def is_default_variant(self) -> bool:
        """True for the global random partition, the only variant the Triton kernels implement."""
        shape_fields = ("projection", "partition_scope", "grouping")
        return all(getattr(self, name) == VARIANT_DEFAULTS[name] for name in shape_fields)

    def _check_variant_combination(self):
        if self.projection == "fastfood":
            # The authors' code defines Fastfood over the global space only; grouping and assignment shape P alone.
            for name, default in (("partition_scope", "global"), ("grouping", "random"), ("assignment", "stateless")):
                if getattr(self, name) != default:
                    raise ValueError(
                        f"{name}={getattr(self, name)!r} does not apply to projection='fastfood'; allowed: {default!r}"
                    )
        if self.grouping == "signed_magnitude" and self.assignment != "stateless":
            raise ValueError(
                f"assignment={self.assignment!r} does not apply to grouping='signed_magnitude' (the weights decide the "
                "groups); allowed: 'stateless' (the default, ignored)"
            )
        if self.backend == "triton" and not self.is_default_variant:
            raise ValueError(
                "backend='triton' implements only projection='partition', partition_scope='global', "
                "grouping='random'; "
                f"got projection={self.projection!r}, partition_scope={self.partition_scope!r}, "
                f"grouping={self.grouping!r}; allowed backends for this variant: 'auto', 'torch'"
            )

    def to_dict(self) -> dict:
        values = dataclasses.asdict(self)
        for execution_only in ("backend", "id_cache_mib"):
            del values[execution_only]  # saved adapters are identical however they were trained
        for name, default in VARIANT_DEFAULTS.items():
            if values[name] == default:
                del values[name]
        return values

    @classmethod
    def from_dict(cls, values: dict) -> "GPartConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown GPartConfig field(s) {unknown}; allowed: {sorted(known)}")
        return cls(**values)


def _check_int(name: str, value, *, low: int, high: int | None = None):
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer, got {value!r} ({type(value).__name__})")
    if value < low or (high is not None and value > high):
        allowed = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"{name} must be {allowed}, got {value}")


def _check_choice(name: str, value, allowed: tuple[str, ...]):
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not supported; allowed: {', '.join(map(repr, allowed))}")


def _check_names(name: str, value, *, allow_regex: bool, allow_empty: bool = False):
    if allow_regex and isinstance(value, str):
        if not value:
            raise ValueError(f"{name} must not be an empty string")
        return
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        kind = "a list of module names or a regex string" if allow_regex else "a list of module names"
        raise ValueError(f"{name} must be {kind}, got {value!r}")
    if not value and not allow_empty:
        raise ValueError(f"{name} must name at least one module, got an empty list")
