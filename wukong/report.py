"""Metrics: accuracy, per-class precision / recall / F1, confusion matrix."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def classification_metrics(labels: np.ndarray, proba: np.ndarray, classes: Sequence[str]) -> dict[str, Any]:
    """Metrics of predicted probabilities ``proba`` (n, classes) against integer ``labels``."""
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    labels = np.asarray(labels)
    predicted = proba.argmax(axis=1)
    indices = list(range(len(classes)))
    precision, recall, f1, support = precision_recall_fscore_support(labels, predicted, labels=indices, zero_division=0)
    top = min(5, len(classes))
    top_k = np.argsort(-proba, axis=1)[:, :top]
    return {
        "accuracy": round(float((predicted == labels).mean()), 4) if len(labels) else None,
        f"top{top}_accuracy": round(float((top_k == labels[:, None]).any(axis=1).mean()), 4) if len(labels) else None,
        "macro_f1": round(float(f1.mean()), 4),
        "n": int(len(labels)),
        "per_class": {
            name: {
                "precision": round(float(precision[i]), 4),
                "recall": round(float(recall[i]), 4),
                "f1": round(float(f1[i]), 4),
                "support": int(support[i]),
            }
            for i, name in enumerate(classes)
        },
        "confusion_matrix": confusion_matrix(labels, predicted, labels=indices).tolist(),
    }


def format_metrics(metrics: dict[str, Any], classes: Sequence[str]) -> str:
    """A plain-text table for the terminal."""
    width = max(8, *(len(c) for c in classes))
    lines = [f"accuracy {metrics['accuracy']:.4f}  macro F1 {metrics['macro_f1']:.4f}  (n={metrics['n']})", ""]
    lines.append(f"{'class':<{width}}  precision  recall     f1  support")
    for name, row in metrics["per_class"].items():
        lines.append(
            f"{name:<{width}}  {row['precision']:9.3f}  {row['recall']:6.3f}  {row['f1']:5.3f}  {row['support']:7d}"
        )
    if len(classes) <= 12:
        lines += ["", "confusion matrix (rows: true, columns: predicted)"]
        lines += ["  ".join(f"{v:4d}" for v in row) for row in metrics["confusion_matrix"]]
    return "\n".join(lines)
