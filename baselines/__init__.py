"""Peers PEFT does not ship, as plain torch: BitFit's bias switch and three low-rank adapters.

Each adapter is a function ``apply_<name>(model, target_modules, **config)`` that freezes the model and swaps each
targeted ``nn.Linear`` for a :class:`LowRankLinear`. Nothing here knows about the runner: the method registry
(`experiments/methods.py`) wraps these functions, so the dependency runs one way, experiments -> baselines.
"""

from baselines.bitfit import train_biases
from baselines.condlora import CondLoRALinear, apply_condlora
from baselines.lora_xs import LoRAXSLinear, apply_lora_xs
from baselines.low_rank import LowRankLinear
from baselines.tied_lora import TiedLoRALinear, apply_tied_lora

__all__ = [
    "LowRankLinear",
    "TiedLoRALinear",
    "LoRAXSLinear",
    "CondLoRALinear",
    "apply_tied_lora",
    "apply_lora_xs",
    "apply_condlora",
    "train_biases",
]
