"""The method registry: `method.kind` -> a class that turns a task model into the model to train.

Every `configs/method/<name>.yaml` has `key` (the paper CSV's method name), `kind` (a key of :data:`REGISTRY`),
`lr` / `head_lr` (defaults of `trainer.lr` / `trainer.head_lr`) and a `config` block that only its kind reads.
The runner calls ``build_method(cfg.method, cfg.model)`` and then the three methods of :class:`Method`; it never looks
at a method's name.

What counts as "head" is architecture knowledge (`model.head_modules`); every method keeps the head fully trainable
and the runner counts head parameters apart from the adapter's (paper convention).

Peers PEFT does not ship live in `baselines/` as plain torch functions that this module wraps; `baselines` imports
nothing from here, so the dependency runs one way.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Optional

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from safetensors.torch import load_file, save_file
from torch import nn

import baselines
from experiments.runner.atomic import atomic_write


def is_head_parameter(name: str, head_modules) -> bool:
    """True when a dotted parameter name passes through one of the head modules (PEFT wrappers included)."""
    parts = name.split(".")
    return any(part in parts for part in head_modules) or any(
        name.startswith(f"{h}.") for h in head_modules if "." in h
    )


def freeze_all_but_head(model: nn.Module, head_modules) -> None:
    for name, param in model.named_parameters():
        param.requires_grad = is_head_parameter(name, head_modules)


def _require_head(model: nn.Module, head_modules) -> None:
    """Named head modules must exist; an empty list means the model has no task head (decoder LLMs)."""
    if not head_modules:
        return
    if not any(is_head_parameter(n, head_modules) for n, _ in model.named_parameters()):
        raise ValueError(
            f"model.head_modules={list(head_modules)} matches no parameter of "
            f"{type(model).__name__}; name the task head's module (e.g. 'classifier')."
        )


class Method:
    """Base class. Subclasses implement :meth:`apply` and may override :meth:`adapted` and :meth:`save`."""

    def __init__(self, method_cfg: DictConfig, model_cfg: DictConfig):
        self.cfg = method_cfg
        self.head_modules = list(model_cfg.head_modules or [])
        self.target_modules = list(model_cfg.target_modules or [])

    def apply(self, model: nn.Module) -> nn.Module:
        """Return the model to train, with exactly the method's parameters (and the head) trainable."""
        raise NotImplementedError

    def adapted(self, model: nn.Module) -> tuple[Optional[int], int]:
        """(adapted-space size N or None, number of adapted modules)."""
        return None, 0

    def save(self, model: nn.Module, out_dir: Path) -> None:
        """Save what is needed to restore the trained model on top of the base checkpoint."""
        model.save_pretrained(str(out_dir))

    def backend(self, model: nn.Module) -> Optional[dict]:
        """Which compute path the method's layers actually ran, for methods that have more than one."""
        return None

    def load(self, model: nn.Module, out_dir: Path) -> nn.Module:
        """Load what :meth:`save` wrote into ``model`` as returned by :meth:`apply` (same config, same seed)."""
        raise NotImplementedError(f"method.kind={self.cfg.get('kind')!r} cannot restore a saved run yet")

    def config_kwargs(self) -> dict:
        return OmegaConf.to_container(self.cfg.get("config") or {}, resolve=True)


class FullFineTuning(Method):
    """Every parameter trainable (paper `FT`)."""

    def apply(self, model):
        _require_head(model, self.head_modules)
        for param in model.parameters():
            param.requires_grad = True
        return model


class GPartMethod(Method):
    """GPart through the `gpart` library; `config` holds `GPartConfig` fields except `trainable_modules`."""

    def apply(self, model):
        from gpart import GPartConfig, apply_gpart

        _require_head(model, self.head_modules)
        kwargs = self.config_kwargs()
        kwargs.setdefault("target_modules", self.target_modules)
        return apply_gpart(model, GPartConfig(trainable_modules=self.head_modules, **kwargs))

    def adapted(self, model):
        from gpart import gpart_summary

        summary = gpart_summary(model)
        return int(summary.adapted_space_size), len(summary.adapted_modules)

    def save(self, model, out_dir):
        from gpart import save_adapter

        save_adapter(model, str(out_dir))

    def backend(self, model):
        from gpart import find_adapter
        from gpart.triton_guard import backend_report

        return backend_report(find_adapter(model))

    def load(self, model, out_dir):
        from gpart import load_adapter

        return load_adapter(model, str(out_dir))


class PeftMethod(Method):
    """Any PEFT tuner, configured not re-implemented: `config._target_` names the PEFT config class (e.g.
    `peft.LoraConfig`); the head goes into `modules_to_save` so it trains fully and is saved with the adapter."""

    def apply(self, model):
        from peft import get_peft_model

        _require_head(model, self.head_modules)
        kwargs = self.config_kwargs()
        kwargs.setdefault("target_modules", self.target_modules)
        kwargs.setdefault("modules_to_save", self.head_modules)
        try:
            peft_config = instantiate(kwargs, _convert_="all")
        except Exception as error:  # Hydra wraps the PEFT constructor's own message; surface it plainly
            raise ValueError(f"method.config could not build {kwargs.get('_target_')}: {error}") from error
        try:
            return get_peft_model(model, peft_config)
        except ValueError as error:  # e.g. target_modules matching nothing: name the value and where to fix it
            raise ValueError(
                f"{type(peft_config).__name__} with target_modules="
                f"{kwargs.get('target_modules')} (model.target_modules) failed on "
                f"{type(model).__name__}: {error}"
            ) from error

    def adapted(self, model):
        from peft.tuners.tuners_utils import BaseTunerLayer

        layers = [
            m
            for m in model.modules()
            if isinstance(m, BaseTunerLayer) and hasattr(m, "get_base_layer") and m.get_base_layer() is not m
        ]
        size = sum(m.get_base_layer().weight.numel() for m in layers if hasattr(m.get_base_layer(), "weight"))
        return (size or None), len(layers)

    def load(self, model, out_dir):
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        weights = Path(out_dir) / "adapter_model.safetensors"
        if not weights.is_file():
            raise FileNotFoundError(f"no PEFT adapter weights at {weights}")
        result = set_peft_model_state_dict(model, load_file(str(weights)))
        if getattr(result, "unexpected_keys", None):
            raise ValueError(f"{weights} holds keys this model does not have: {result.unexpected_keys[:5]}")
        return model


TRAINABLE_FILE = "trainable.safetensors"


def save_trainable(model: nn.Module, out_dir: Path, extra: Optional[dict] = None) -> None:
    """Save the trainable tensors (what differs from the base checkpoint), plus `extra` ones, as safetensors."""
    tensors = {n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad}
    tensors.update({n: t.detach().cpu().contiguous() for n, t in (extra or {}).items()})
    atomic_write(Path(out_dir) / TRAINABLE_FILE, lambda temporary: save_file(tensors, str(temporary)))


def load_trainable(model: nn.Module, out_dir: Path) -> nn.Module:
    """Inverse of :func:`save_trainable` on a model the same method was applied to; every saved name must exist."""
    state = load_file(str(Path(out_dir) / TRAINABLE_FILE))
    unexpected = model.load_state_dict(state, strict=False).unexpected_keys
    if unexpected:
        raise ValueError(f"{Path(out_dir) / TRAINABLE_FILE} holds tensors this model lacks: {unexpected[:5]}")
    return model


class HeadOnly(Method):
    """Head only / linear probe (paper key `LP`): the backbone is frozen, only `model.head_modules` train."""

    def apply(self, model):
        if not self.head_modules:
            raise ValueError("method head_only trains only model.head_modules, and this model config names none")
        _require_head(model, self.head_modules)
        freeze_all_but_head(model, self.head_modules)
        return model

    def save(self, model, out_dir):
        save_trainable(model, out_dir)

    def load(self, model, out_dir):
        return load_trainable(model, out_dir)


class BitFit(HeadOnly):
    """BitFit (baselines/bitfit.py): every bias of the backbone plus the head."""

    def apply(self, model):
        _require_head(model, self.head_modules)
        freeze_all_but_head(model, self.head_modules)
        return baselines.train_biases(model)


class LowRankBaseline(Method):
    """A `baselines.apply_*` adapter; `config` holds its keyword arguments (`target_modules` defaults to the
    model's). The head stays fully trainable; the adapter's frozen buffers are saved with it."""

    adapter = None  # the baselines function, set by each subclass

    def apply(self, model):
        _require_head(model, self.head_modules)
        kwargs = self.config_kwargs()
        targets = kwargs.pop("target_modules", None) or self.target_modules
        adapter = type(self).adapter
        try:
            inspect.signature(adapter).bind(model, targets, **kwargs)
        except TypeError as error:  # an unknown config key: name the function and the keys it takes
            raise ValueError(
                f"method.config={kwargs} does not fit {adapter.__name__}{inspect.signature(adapter)}: {error}"
            ) from error
        model = adapter(model, targets, **kwargs)
        for name, param in model.named_parameters():
            if is_head_parameter(name, self.head_modules):
                param.requires_grad = True
        return model

    def adapted(self, model):
        layers = [m for m in model.modules() if isinstance(m, baselines.LowRankLinear)]
        return (sum(m.base.weight.numel() for m in layers) or None), len(layers)

    def save(self, model, out_dir):
        buffers = {n: b for n, b in model.named_buffers() if _in_low_rank_module(model, n)}
        save_trainable(model, out_dir, extra=buffers)

    def load(self, model, out_dir):
        return load_trainable(model, out_dir)


def _in_low_rank_module(model: nn.Module, tensor_name: str) -> bool:
    owner = tensor_name.rpartition(".")[0]
    return isinstance(model.get_submodule(owner) if owner else model, baselines.LowRankLinear)


class TiedLoRA(LowRankBaseline):
    adapter = staticmethod(baselines.apply_tied_lora)


class LoRAXS(LowRankBaseline):
    adapter = staticmethod(baselines.apply_lora_xs)


class CondLoRA(LowRankBaseline):
    adapter = staticmethod(baselines.apply_condlora)


REGISTRY = {
    "full": FullFineTuning,
    "gpart": GPartMethod,
    "peft": PeftMethod,
    "bitfit": BitFit,
    "head_only": HeadOnly,
    "tied_lora": TiedLoRA,
    "lora_xs": LoRAXS,
    "condlora": CondLoRA,
}


def build_method(method_cfg: DictConfig, model_cfg: DictConfig) -> Method:
    kind = method_cfg.get("kind")
    if kind not in REGISTRY:
        raise ValueError(
            f"method.kind={kind!r} is not a registered method kind; allowed: {sorted(REGISTRY)} "
            "(see configs/method/*.yaml)"
        )
    return REGISTRY[kind](method_cfg, model_cfg)
