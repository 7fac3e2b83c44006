"""Head only / linear probe (paper key `LP`): the backbone is frozen, only `model.head_modules` train."""
from __future__ import annotations

from pathlib import Path

from safetensors.torch import save_file
from torch import nn

from experiments.atomic import atomic_write
from experiments.methods import Method, _require_head, freeze_all_but_head


def save_trainable(model: nn.Module, out_dir: Path) -> None:
    """Save only the trainable tensors (what differs from the base checkpoint) as safetensors."""
    tensors = {n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad}
    atomic_write(Path(out_dir) / "trainable.safetensors", lambda temporary: save_file(tensors, str(temporary)))


class HeadOnly(Method):
    def apply(self, model):
        if not self.head_modules:
            raise ValueError("method head_only trains only model.head_modules, and this model config names none")
        _require_head(model, self.head_modules)
        freeze_all_but_head(model, self.head_modules)
        return model

    def save(self, model, out_dir):
        save_trainable(model, out_dir)
