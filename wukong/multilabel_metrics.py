"""Metrics of multi-label predictions: micro and macro F1, subset accuracy, mean average precision,
per-label precision / recall / F1 / AP, calibration of every (input, label) decision, the worst errors."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from wukong.metrics import SNIPPET, WORST_ERRORS, brier_score, expected_calibration_error


def binary_decisions(labels: np.ndarray, proba: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every (input, label) pair as one binary prediction: (flat 0/1 truth, two-column probabilities),
    for the calibration measures of single-label classifiers."""
    p = np.asarray(proba, dtype=np.float32).reshape(-1)
    return np.asarray(labels).reshape(-1).astype(np.int64), np.stack([1 - p, p], axis=1)


def multilabel_metrics(
    labels: np.ndarray,
    proba: np.ndarray,
    decided: np.ndarray,
    classes: Sequence[str],
    names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Metrics of label-set predictions ``decided`` (n, classes booleans) and their probabilities
    against indicator ``labels``. ``accuracy`` is the subset accuracy (the whole set right); macro
    figures average the labels present in ``labels``.

    Example:
        >>> y = np.array([[1, 0], [1, 1]])
        >>> p = np.array([[0.9, 0.2], [0.8, 0.4]])
        >>> m = multilabel_metrics(y, p, p >= 0.5, ["a", "b"])
        >>> m["subset_accuracy"], m["micro_f1"], m["mAP"]
        (0.5, 0.8, 1.0)
    """
    from sklearn.metrics import average_precision_score, f1_score, precision_recall_fscore_support

    labels, decided = np.asarray(labels), np.asarray(decided).astype(np.int64)
    n = len(labels)
    precision, recall, f1, support = precision_recall_fscore_support(labels, decided, average=None, zero_division=0)
    present = support > 0
    ap = np.full(len(classes), np.nan)
    for j in np.flatnonzero(present):
        ap[j] = average_precision_score(labels[:, j], proba[:, j])
    flat_labels, flat_proba = binary_decisions(labels, proba)
    subset = float((decided == labels).all(axis=1).mean()) if n else None
    return {
        "multi_label": True,
        "accuracy": round(subset, 4) if n else None,  # the subset accuracy, under the name every model reports
        "subset_accuracy": round(subset, 4) if n else None,
        "micro_f1": round(float(f1_score(labels, decided, average="micro", zero_division=0)), 4),
        "macro_f1": round(float(f1[present].mean()), 4) if present.any() else None,
        "mAP": round(float(np.nanmean(ap)), 4) if present.any() else None,
        "hamming_loss": round(float((decided != labels).mean()), 4) if n else None,
        "mean_labels": round(float(labels.sum(axis=1).mean()), 3) if n else None,
        "mean_predicted_labels": round(float(decided.sum(axis=1).mean()), 3) if n else None,
        "ece": round(expected_calibration_error(flat_labels, flat_proba), 4) if n else None,
        "brier": round(brier_score(flat_labels, flat_proba) / 2, 4) if n else None,  # per decision: (p - y)^2
        "n": int(n),
        "per_class": {
            name: {
                "precision": round(float(precision[j]), 4),
                "recall": round(float(recall[j]), 4),
                "f1": round(float(f1[j]), 4),
                "ap": None if np.isnan(ap[j]) else round(float(ap[j]), 4),
                "support": int(support[j]),
            }
            for j, name in enumerate(classes)
        },
        **({"worst_errors": worst_set_errors(labels, proba, decided, classes, names)} if names is not None else {}),
    }


def worst_set_errors(
    labels: np.ndarray,
    proba: np.ndarray,
    decided: np.ndarray,
    classes: Sequence[str],
    names: Sequence[str],
    limit: int = WORST_ERRORS,
) -> list[dict[str, Any]]:
    """Inputs whose label set is wrong, worst first: by how far the probability of their most
    confidently wrong decision lies on the wrong side (a label given at 0.99, or missed at 0.01)."""
    wrong = decided != labels
    confidence = np.where(wrong, np.where(decided == 1, proba, 1 - proba), -1.0).max(axis=1)
    order = [i for i in np.argsort(-confidence, kind="stable") if wrong[i].any()][:limit]
    return [
        {
            "input": str(names[i])[:SNIPPET],
            "true": _joined(labels[i], classes),
            "predicted": _joined(decided[i], classes),
            "score": round(float(confidence[i]), 4),
        }
        for i in order
    ]


def _joined(row: np.ndarray, classes: Sequence[str]) -> str:
    """A label set as the tables write it: ``a;b``, or ``(none)``."""
    return ";".join(classes[j] for j in np.flatnonzero(row)) or "(none)"


def format_multilabel(metrics: dict[str, Any]) -> str:
    """A plain-text table for the terminal."""
    width = max(8, *(len(c) for c in metrics["per_class"]))
    lines = [
        f"subset accuracy {metrics['subset_accuracy']:.4f}  micro F1 {metrics['micro_f1']:.4f}  "
        f"macro F1 {metrics['macro_f1']:.4f}  mAP {metrics['mAP']:.4f}  (n={metrics['n']})",
        f"labels per input: {metrics['mean_labels']:g} true, {metrics['mean_predicted_labels']:g} predicted; "
        f"calibration of each label's probability: ECE {metrics['ece']:.4f}",
        "",
        f"{'label':<{width}}  precision  recall     f1     AP  support",
    ]
    for name, row in metrics["per_class"].items():
        ap = f"{row['ap']:6.3f}" if row["ap"] is not None else "     -"
        scores = f"{row['precision']:9.3f}  {row['recall']:6.3f}  {row['f1']:5.3f}  {ap}"
        lines.append(f"{name:<{width}}  {scores}  {row['support']:7d}")
    return "\n".join(lines)
