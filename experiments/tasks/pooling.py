"""A sequence head that reads an encoder the way a sentence-embedding checkpoint was trained: mean pooling.

sentence-transformers checkpoints such as all-MiniLM-L6-v2 were trained on the mean of their token states over the
attention mask; their BERT pooler (dense + tanh on [CLS]) was never trained. A [CLS] head on such a checkpoint
measures how fast a method repurposes [CLS], not how well it adapts the encoder, so these models get this head:
mean pooling, dropout, one linear layer (`classifier`), the same for every method.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers.modeling_outputs import SequenceClassifierOutput


class MeanPooledClassifier(nn.Module):
    """encoder -> masked mean of the last hidden states -> dropout -> `classifier` (a linear layer).

    `problem_type` is "regression" (one output, mean-squared error) or "single_label_classification" (cross-entropy).
    """

    def __init__(self, encoder: nn.Module, num_labels: int, problem_type: str):
        super().__init__()
        if problem_type not in ("regression", "single_label_classification"):
            raise ValueError(f"problem_type={problem_type!r}; allowed: 'regression', 'single_label_classification'")
        if getattr(encoder, "pooler", None) is not None:
            encoder.pooler = None  # the [CLS] pooler is never read here; kept, it would count as trainable in FT
        self.encoder = encoder
        self.config = encoder.config
        self.config.num_labels, self.config.problem_type = num_labels, problem_type
        dropout = getattr(self.config, "classifier_dropout", None) or self.config.hidden_dropout_prob
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(self.config.hidden_size, num_labels)
        nn.init.normal_(self.classifier.weight, std=self.config.initializer_range)  # as BERT initialises its heads
        nn.init.zeros_(self.classifier.bias)

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, labels=None, **_):
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        segments = {} if token_type_ids is None else {"token_type_ids": token_type_ids}  # MPNet has none
        states = self.encoder(input_ids=input_ids, attention_mask=attention_mask, **segments).last_hidden_state
        logits = self.classifier(self.dropout(mean_pool(states, attention_mask)))
        return SequenceClassifierOutput(loss=None if labels is None else self.loss(logits, labels), logits=logits)

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if self.config.problem_type == "regression":
            return nn.functional.mse_loss(logits.squeeze(-1), labels.to(logits.dtype))
        return nn.functional.cross_entropy(logits, labels)


def mean_pool(states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean of the token states that the attention mask keeps (sentence-transformers' pooling)."""
    mask = attention_mask.unsqueeze(-1).to(states.dtype)
    return (states * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1e-9)
