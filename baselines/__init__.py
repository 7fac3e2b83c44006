"""Baselines PEFT does not ship: BitFit (biases + head) and head-only (linear probe, paper key `LP`)."""
from baselines.bitfit import BitFit
from baselines.head_only import HeadOnly

__all__ = ["BitFit", "HeadOnly"]
