"""BitFit (Ben Zaken et al., 2022): train every bias term of the backbone plus the task head; nothing else."""
from __future__ import annotations

from baselines.head_only import save_trainable
from experiments.methods import Method, _require_head, freeze_all_but_head


class BitFit(Method):
    def apply(self, model):
        _require_head(model, self.head_modules)
        freeze_all_but_head(model, self.head_modules)
        biases = [p for n, p in model.named_parameters() if n.endswith(".bias")]
        if not biases:
            raise ValueError(f"BitFit needs bias parameters; {type(model).__name__} has none.")
        for param in biases:
            param.requires_grad = True
        return model

    def save(self, model, out_dir):
        save_trainable(model, out_dir)
