"""Offline metrics (sklearn / scipy): `evaluate`'s metrics download their scripts from the hub, which is unreachable.

Values are fractions as the metric defines them (accuracy in [0, 1], Matthews / Pearson in [-1, 1]).
"""

from __future__ import annotations

import numpy as np
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef


def _logits(predictions) -> np.ndarray:
    # Trainer hands over a tuple when the model returns more than logits.
    if isinstance(predictions, (tuple, list)):
        predictions = predictions[0]
    return np.asarray(predictions)


def classification_metrics(predictions, labels) -> dict[str, float]:
    """Accuracy, Matthews correlation and binary/macro F1 from logits of shape (n, classes)."""
    predicted = _logits(predictions).argmax(axis=-1)
    labels = np.asarray(labels).astype(int)
    average = "binary" if labels.max(initial=0) <= 1 and predicted.max(initial=0) <= 1 else "macro"
    return {
        "accuracy": float(accuracy_score(labels, predicted)),
        "matthews_correlation": float(matthews_corrcoef(labels, predicted)),
        "f1": float(f1_score(labels, predicted, average=average, zero_division=0)),
    }


def regression_metrics(predictions, labels) -> dict[str, float]:
    """Pearson and Spearman correlation from predictions of shape (n,) or (n, 1)."""
    predicted = _logits(predictions).reshape(-1).astype(np.float64)
    labels = np.asarray(labels, dtype=np.float64).reshape(-1)
    if np.std(predicted) == 0 or np.std(labels) == 0:
        # A constant prediction has no correlation; scipy would warn and return nan.
        return {"pearson": 0.0, "spearman": 0.0}
    return {"pearson": float(pearsonr(predicted, labels)[0]), "spearman": float(spearmanr(predicted, labels)[0])}
