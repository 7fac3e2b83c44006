"""GPart as a method of stock PEFT: ``get_peft_model``, ``save_pretrained``, ``PeftModel.from_pretrained``, merging.

    import gpart.peft  # registers GPart with PEFT (needs `pip install gpart[peft]`)
    from gpart.peft import GPartPeftConfig
    from peft import get_peft_model

    model = get_peft_model(model, GPartPeftConfig(d=23040, target_modules=["query", "value"], proj_seed=0,
                                                  modules_to_save=["classifier"]))

The mathematics is the library's own: every adapted module is wrapped by a ``GPartPeftLayer`` that holds, per
adapter, a ``gpart.GPartLayer`` over the same base module, and θ is the ``gpart.GPartAdapter`` that
``gpart.model.build_adapter`` builds for ``apply_gpart``. So a PEFT model trains, merges and saves exactly what
``apply_gpart`` does with the same configuration (``GPartPeftConfig.from_gpart_config``).

The configuration uses the authors' field names (their PEFT fork, ``gpart/authors_format.py``), so ``save_pretrained``
writes their ``adapter_config.json`` and their ``base_model.gpart_theta_d`` key, and stock PEFT loads adapters saved
by either code. Heads are PEFT's ``modules_to_save``; other adapters may be added beside the first, one active at a
time (each is a whole ΔW of its own; summing two GPart adapters is not a GPart adapter).
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field, fields
from typing import Optional, Union

import torch

MIN_PEFT = "0.21"
try:
    import peft
except ImportError as error:  # the library itself needs no PEFT; only this plugin does
    raise ImportError(f"gpart.peft needs PEFT (peft>={MIN_PEFT}): pip install 'gpart[peft]' ({error})") from error
from peft import PeftConfig
from peft.mapping import PEFT_TYPE_TO_TUNER_MAPPING
from peft.tuners.tuners_utils import BaseTuner, BaseTunerLayer, check_adapters_to_merge
from peft.utils import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING, PeftType, register_peft_method
from peft.utils.other import AuxiliaryTrainingWrapper
from torch import nn

from gpart import authors_format
from gpart.config import GPartConfig
from gpart.layers import GPartLayer
from gpart.model import build_adapter

if not hasattr(BaseTuner, "_remove_adapter_name_from_key"):  # the state-dict hooks this plugin overrides (PEFT 0.21)
    raise ImportError(
        f"gpart.peft needs peft>={MIN_PEFT}; peft {peft.__version__} is installed. "
        f"Upgrade with `pip install 'gpart[peft]'` or `pip install -U 'peft>={MIN_PEFT}'`."
    )

PEFT_TYPE_NAME = "GPART"
ADAPTERS = "gpart_adapters"  # the tuner's ModuleDict: adapter name -> gpart.GPartAdapter (θ and P)
SAVED_THETA = "gpart_theta_d"  # θ's name in the authors' files: base_model.gpart_theta_d
_OUR_NAMES = {
    "seed": "proj_seed",
    "dropout": "gpart_dropout",
    "projection": "projection_type",
    "grouping": "grouping_strategy",
    "trainable_modules": "modules_to_save",
}


def _add_gpart_to_peft_types() -> None:
    """``register_peft_method`` accepts only a name that ``PeftType`` lists, and stock PEFT lists no GPART (the
    authors' fork adds it in its source), so the member is added the way ``enum`` adds its own."""
    if PEFT_TYPE_NAME in PeftType.__members__:
        return
    member = str.__new__(PeftType, PEFT_TYPE_NAME)
    member._name_ = member._value_ = PEFT_TYPE_NAME
    member.__objclass__ = PeftType
    member._sort_order_ = len(PeftType._member_names_)
    type.__setattr__(PeftType, PEFT_TYPE_NAME, member)  # EnumType.__setattr__ refuses new members
    PeftType._member_names_.append(PEFT_TYPE_NAME)
    PeftType._member_map_[PEFT_TYPE_NAME] = member
    PeftType._value2member_map_[PEFT_TYPE_NAME] = member


_add_gpart_to_peft_types()


@dataclass
class GPartPeftConfig(PeftConfig):
    """GPart's PEFT configuration, in the authors' field names (their ``adapter_config.json``).

    ``GPartPeftConfig.from_gpart_config(gpart.GPartConfig(...))`` gives the configuration that trains what
    ``apply_gpart`` trains with it. The README's table maps each field to ``gpart.GPartConfig``.

    Args:
        d: length of the trainable vector θ.
        target_modules: modules whose weights form the adapted space (PEFT's matching; None: PEFT's LoRA defaults
            for the model type).
        proj_seed: seed of the partition.
        isometric: scale P by 1/sqrt(group size) so PᵀP = I.
        gpart_dropout: probability of dropping each element of ΔW in training.
        bias: ``"none"``, or ``"all"`` (the authors' name; ``"gpart_only"`` is read the same) to append each target's
            bias to the adapted space after its weight. Biases are never trained on their own.
        modules_to_save: modules trained fully beside θ and saved with it (the task head).
        init_bound: θ starts uniform in [-init_bound, init_bound]; 0.0 starts at the pretrained model.
        projection_type: ``"partition"`` or ``"fastfood"``.
        partition_scope: ``"global"`` or ``"transformer_block"``.
        grouping_strategy: ``"random"`` or ``"signed_magnitude"`` (which needs ``assignment_backend="materialized"``).
        assignment_backend: ``"stateless"`` (hashed group ids, the default), or ``"materialized"`` with the
            signed-magnitude grouping.
        fan_in_fan_out: kept for the authors' format; the layout of transformers' Conv1D is detected from the module.
        layers_to_transform, layers_pattern: kept for the authors' format; only None is supported.
        backend: ``"auto"``, ``"torch"`` or ``"triton"``; how ΔW is computed, not saved.
        id_cache_mib: MiB of group ids the torch path may keep instead of re-hashing them; not saved.
    """

    d: int = field(default=1024, metadata={"help": "Length of the trainable vector θ."})
    target_modules: Optional[Union[list[str], str]] = field(
        default=None, metadata={"help": "Module names (or one regex) whose weights form the adapted space."}
    )
    proj_seed: int = field(default=42, metadata={"help": "Seed of the partition."})
    isometric: bool = field(default=True, metadata={"help": "Scale P so that PᵀP = I."})
    gpart_dropout: float = field(default=0.0, metadata={"help": "Dropout on the elements of ΔW."})
    fan_in_fan_out: bool = field(default=False, metadata={"help": "Ignored: Conv1D's layout is detected."})
    bias: str = field(default="none", metadata={"help": "'none', or 'all': targets' biases join the adapted space."})
    modules_to_save: Optional[list[str]] = field(
        default=None, metadata={"help": "Modules trained fully beside θ and saved with it (the task head)."}
    )
    init_bound: float = field(default=0.0, metadata={"help": "θ starts uniform in [-init_bound, init_bound]."})
    projection_type: str = field(default="partition", metadata={"help": "'partition' or 'fastfood'."})
    partition_scope: str = field(default="global", metadata={"help": "'global' or 'transformer_block'."})
    grouping_strategy: str = field(default="random", metadata={"help": "'random' or 'signed_magnitude'."})
    assignment_backend: str = field(default="stateless", metadata={"help": "'stateless' or 'materialized'."})
    layers_to_transform: Optional[Union[list[int], int]] = field(default=None, metadata={"help": "Only None."})
    layers_pattern: Optional[Union[list[str], str]] = field(default=None, metadata={"help": "Only None."})
    backend: str = field(default="auto", metadata={"help": "'auto', 'torch' or 'triton' (not saved)."})
    id_cache_mib: float = field(default=0.0, metadata={"help": "MiB of cached group ids (not saved)."})

    def __post_init__(self):
        super().__post_init__()
        self.peft_type = PeftType.GPART
        if isinstance(self.target_modules, (set, tuple)):  # a list in the saved JSON, in a stable order
            self.target_modules = sorted(self.target_modules)
        if self.modules_to_save is not None:
            self.modules_to_save = list(self.modules_to_save)
        # Validated now, naming the field; PEFT fills target_modules=None from the model type later.
        self._gpart_config(self.target_modules if self.target_modules is not None else ["<from the model type>"])

    def to_gpart_config(self) -> GPartConfig:
        """The ``gpart.GPartConfig`` this configuration stands for (``target_modules`` must be set)."""
        if self.target_modules is None:
            raise ValueError("target_modules is None; name the modules to adapt (a list of names or a regex)")
        return self._gpart_config(self.target_modules)

    def _gpart_config(self, target_modules) -> GPartConfig:
        theirs = {name: getattr(self, name) for name in _AUTHORS_METHOD_FIELDS}
        theirs["target_modules"] = sorted(target_modules) if isinstance(target_modules, set) else target_modules
        try:
            ours = authors_format.config_from_authors(theirs)
            return GPartConfig(**ours, backend=self.backend, id_cache_mib=self.id_cache_mib)
        except ValueError as error:
            message = str(error).replace(" in the authors' config", "")  # this configuration is in their names
            message = re.sub(r"\b(" + "|".join(_OUR_NAMES) + r")\b", lambda m: _OUR_NAMES[m[1]], message)
            raise ValueError(f"GPartPeftConfig: {message}") from None

    @classmethod
    def from_gpart_config(cls, config: GPartConfig, **peft_fields) -> "GPartPeftConfig":
        """The PEFT configuration training what ``apply_gpart(model, config)`` trains; ``peft_fields`` sets PEFT's own
        fields (``task_type``, ``inference_mode``, ...). ``assignment="balanced"`` has no equivalent in the authors'
        format and is refused."""
        theirs = authors_format.config_to_authors(config.to_dict())
        method_fields = {name: theirs[name] for name in _AUTHORS_METHOD_FIELDS}
        return cls(**method_fields, backend=config.backend, id_cache_mib=config.id_cache_mib, **peft_fields)

    def to_dict(self) -> dict:
        values = super().to_dict()
        for execution_only in ("backend", "id_cache_mib"):  # saved adapters are identical however they were run
            del values[execution_only]
        return values


_PEFT_BASE_FIELDS = {f.name for f in fields(PeftConfig)}
_AUTHORS_METHOD_FIELDS = [
    f.name
    for f in fields(GPartPeftConfig)
    if f.name not in _PEFT_BASE_FIELDS and f.name not in ("backend", "id_cache_mib")
]


class GPartPeftLayer(nn.Module, BaseTunerLayer):
    """A targeted module under PEFT: per adapter, a ``gpart.GPartLayer`` over this same base module.

    The GPartLayers are kept outside the module tree (a plain dict): each is a view of ``base_layer`` with the shared
    θ, owns no parameter, and must not appear twice in state dicts.
    """

    adapter_layer_names = ()  # θ is the tuner's, shared by every layer
    other_param_names = ("gpart_layers",)

    def __init__(self, base_layer: nn.Module, adapter_name: str):
        super().__init__()
        self.base_layer = base_layer
        self.gpart_layers: dict[str, GPartLayer] = {}
        self._active_adapter = adapter_name
        self._disable_adapters = False
        self.merged_adapters = []

    def update_layer(self, adapter_name: str, layer: GPartLayer) -> None:
        self.gpart_layers[adapter_name] = layer

    def _get_available_adapters(self) -> set[str]:
        return set(self.gpart_layers)  # PEFT's looks in adapter_layer_names, which hold nothing here

    def forward(self, x, *args, **kwargs):
        if self.disable_adapters:
            if self.merged:
                self.unmerge()
            return self.base_layer(x, *args, **kwargs)
        active = [name for name in self.active_adapters if name in self.gpart_layers]
        if self.merged or not active:
            return self.base_layer(x, *args, **kwargs)
        if len(active) > 1:
            raise ValueError(_one_active_message(active))
        layer = self.gpart_layers[active[0]]
        layer.training = self.training  # outside the module tree, so train()/eval() do not reach it
        return layer(x, *args, **kwargs)

    def merge(self, safe_merge: bool = False, adapter_names: Optional[list[str]] = None) -> None:
        for name in check_adapters_to_merge(self, adapter_names):
            layer = self.gpart_layers.get(name)
            if layer is None:
                continue
            if safe_merge and not torch.isfinite(layer.adapter.theta).all():
                raise ValueError(f"NaNs detected in the merged weights. The adapter {name} seems to be broken")
            layer.merge()
            self.merged_adapters.append(name)

    def unmerge(self) -> None:
        if not self.merged:
            warnings.warn("Already unmerged. Nothing to do.", stacklevel=2)
            return
        while self.merged_adapters:
            name = self.merged_adapters.pop()
            if name in self.gpart_layers:
                self.gpart_layers[name].unmerge()

    def extra_repr(self) -> str:
        return f"adapters={sorted(self.gpart_layers)}, merged={self.merged_adapters}"


def _one_active_message(active: list[str]) -> str:
    return (
        f"GPart runs one adapter at a time; active adapters {active} were asked for. Each GPart adapter is a whole "
        f"ΔW; allowed: one adapter name (set_adapter('name'))"
    )


class GPartPeftModel(BaseTuner):
    """The PEFT tuner of GPart: wraps the targets, then builds θ over them with ``gpart.model.build_adapter``."""

    prefix: str = "gpart_"
    tuner_layer_cls = GPartPeftLayer
    target_module_mapping = TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING
    uses_shared_state = True  # θ lives on the tuner

    def inject_adapter(
        self,
        model: nn.Module,
        adapter_name: str,
        autocast_adapter_dtype: bool = True,
        low_cpu_mem_usage: bool = False,
        state_dict: Optional[dict[str, torch.Tensor]] = None,
    ) -> None:
        if ADAPTERS not in self._modules:
            self.add_module(ADAPTERS, nn.ModuleDict())
        self._matched = []
        # PEFT restores the trainability of what sits in `model`; θ sits on the tuner, so it is restored here.
        trainable = {name: adapter.theta.requires_grad for name, adapter in self.gpart_adapters.items()}
        try:
            super().inject_adapter(
                model,
                adapter_name,
                autocast_adapter_dtype=autocast_adapter_dtype,
                low_cpu_mem_usage=low_cpu_mem_usage,
                state_dict=state_dict,
            )
            self._build_adapter(model, adapter_name)
        except Exception:
            self._unwrap_unused_layers(model)
            raise
        for name, flag in trainable.items():
            self.gpart_adapters[name].theta.requires_grad_(flag)
        config = self.peft_config[adapter_name]
        self.gpart_adapters[adapter_name].theta.requires_grad_(
            adapter_name in self.active_adapters and not config.inference_mode
        )

    def _create_and_replace(
        self, peft_config, adapter_name, target, target_name, parent, current_key, parameter_name=None
    ):
        if isinstance(target, GPartPeftLayer):  # another adapter over an already wrapped module
            self._matched.append(current_key)
            return
        if not isinstance(getattr(target, "weight", None), nn.Parameter):
            return  # apply_gpart adapts only modules with a weight (a matched container is not a target)
        if isinstance(target, BaseTunerLayer):
            raise ValueError(
                f"{current_key} is already adapted by another PEFT method ({type(target).__name__}); "
                "GPart cannot be stacked on it"
            )
        self._replace_module(parent, target_name, GPartPeftLayer(target, adapter_name), target)
        self._matched.append(current_key)

    def _build_adapter(self, model: nn.Module, adapter_name: str) -> None:
        config = self.peft_config[adapter_name].to_gpart_config()
        matched = set(self._matched)
        layers = [
            (name, module)
            for name, module in model.named_modules()
            if name in matched and isinstance(module, GPartPeftLayer)
        ]  # named_modules order, as apply_gpart
        if not layers:
            raise ValueError(
                f"target_modules={self.peft_config[adapter_name].target_modules!r} matched no module with a weight"
            )
        adapter, layout = build_adapter(config, [(name, layer.base_layer) for name, layer in layers])
        self.gpart_adapters[adapter_name] = adapter
        for (name, layer), (_, _, weight_start, bias_start) in zip(layers, layout):
            view = GPartLayer(layer.base_layer, adapter, weight_start, bias_start)
            view.name = name
            layer.update_layer(adapter_name, view)

    def _replace_module(self, parent, child_name, new_module, child) -> None:
        # PEFT's version also moves the new module's adapter tensors and copies `weight` onto a module without a
        # base layer. A GPartPeftLayer holds no tensor, and on unloading the new module is the base module itself
        # (or a head, which has no `weight`: PEFT's copy would fail on modules_to_save heads).
        setattr(parent, child_name, new_module)

    def _unwrap_unused_layers(self, model: nn.Module) -> None:
        """After a failed injection, put back the base modules of layers that no adapter uses."""
        for name, module in list(model.named_modules()):
            if isinstance(module, GPartPeftLayer) and not module.gpart_layers:
                parent_name, _, child = name.rpartition(".")
                self._replace_module(model.get_submodule(parent_name), child, module.base_layer, module)

    def set_adapter(self, adapter_name: str | list[str], inference_mode: bool = False) -> None:
        names = [adapter_name] if isinstance(adapter_name, str) else list(adapter_name)
        if len(names) > 1:
            raise ValueError(_one_active_message(names))
        super().set_adapter(adapter_name, inference_mode=inference_mode)
        for name, adapter in self.gpart_adapters.items():
            adapter.theta.requires_grad_(name in names and not inference_mode)

    def set_requires_grad(self, adapter_names, requires_grad: bool = True) -> None:
        super().set_requires_grad(adapter_names, requires_grad=requires_grad)
        names = {adapter_names} if isinstance(adapter_names, str) else set(adapter_names)
        for name, adapter in self.gpart_adapters.items():
            if name in names:
                adapter.theta.requires_grad_(requires_grad)

    def delete_adapter(self, adapter_name: str) -> None:
        super().delete_adapter(adapter_name)
        del self.gpart_adapters[adapter_name]

    def _mark_only_adapters_as_trainable(self, model: nn.Module) -> None:
        # θ sits on the tuner and the heads (modules_to_save) set their own flags, so all of `model` is frozen.
        # PEFT's version would also train every bias when bias="all", which for GPart means the targets' biases
        # join θ's adapted space instead.
        heads = [name for name, module in model.named_modules() if isinstance(module, AuxiliaryTrainingWrapper)]
        for name, param in model.named_parameters():
            if not any(name.startswith(head + ".") for head in heads):
                param.requires_grad = False

    @classmethod
    def _get_learnable_bias_state_dict(cls, model, state_dict, config) -> dict:
        return {}  # no bias is trained on its own (bias="all" partitions the targets' biases into θ's space)

    def disable_adapter_layers(self) -> None:
        self._enable_adapter_layers(enabled=False)  # Δb is inside each layer: disabled, the outputs are the base's

    def _check_new_adapter_config(self, config: PeftConfig) -> None:
        pass  # PEFT's check allows one adapter with bias != "none"; a GPart adapter's Δb is its own, so any number

    @classmethod
    def _remove_adapter_name_from_key(cls, key: str, adapter_name: str) -> str:
        theta = f"{ADAPTERS}.{adapter_name}.theta"
        if key == theta or key.endswith("." + theta):
            return key[: len(key) - len(theta)] + SAVED_THETA  # base_model.gpart_theta_d, as the authors save θ
        return super()._remove_adapter_name_from_key(key, adapter_name)


def _register() -> None:
    registered = PEFT_TYPE_TO_TUNER_MAPPING.get(PeftType.GPART)
    if registered is None:
        register_peft_method(name="gpart", config_cls=GPartPeftConfig, model_cls=GPartPeftModel, prefix="gpart_")
    elif registered.__module__ != __name__:
        raise ImportError(
            f"this PEFT already has a GPart method ({registered.__module__}.{registered.__name__}), "
            "e.g. the authors' fork; gpart.peft registers GPart with stock PEFT only"
        )


_register()
