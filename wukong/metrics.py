"""Metrics: accuracy, balanced accuracy, per-class precision / recall / F1, confusion matrix, how well
the probabilities are calibrated (expected calibration error, Brier score), and the worst errors."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

WORST_ERRORS = 12  # kept in metrics.json for the report
ECE_BINS = 15
SNIPPET = 200  # characters of a text input kept with an error


def classification_metrics(
    labels: np.ndarray, proba: np.ndarray, classes: Sequence[str], names: Sequence[str] | None = None
) -> dict[str, Any]:
    """Metrics of predicted probabilities ``proba`` (n, classes) against integer ``labels``; with the
    inputs' ``names`` (paths, texts), the most confident mistakes too (``worst_errors``).

    Example:
        >>> m = classification_metrics(np.array([0, 1]), np.array([[0.9, 0.1], [0.8, 0.2]]), ["a", "b"], ["x", "y"])
        >>> m["accuracy"], m["worst_errors"][0]["input"], m["worst_errors"][0]["predicted"]
        (0.5, 'y', 'a')
    """
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
        # the mean recall of the classes present (scikit-learn's balanced accuracy, without its warning
        # when a class is predicted that the data does not hold)
        "balanced_accuracy": round(float(recall[support > 0].mean()), 4) if len(labels) else None,
        "ece": round(expected_calibration_error(labels, proba), 4) if len(labels) else None,
        "brier": round(brier_score(labels, proba), 4) if len(labels) else None,
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
        **({"worst_errors": worst_errors(labels, proba, classes, names)} if names is not None else {}),
    }


def expected_calibration_error(labels: np.ndarray, proba: np.ndarray, bins: int = ECE_BINS) -> float:
    """How far the top probability is from the accuracy it promises: inputs grouped in ``bins``
    equal-width bins of their top probability, |accuracy - mean top probability| of each bin,
    weighted by its share of the inputs (Guo et al. 2017). Written here: scikit-learn has the
    reliability curve but not this sum.

    Example:
        >>> expected_calibration_error(np.array([0, 1]), np.array([[0.9, 0.1], [0.8, 0.2]]))
        0.45
    """
    rows = reliability(labels, proba, bins)
    total = sum(row["count"] * abs(row["accuracy"] - row["confidence"]) for row in rows)
    return round(float(total / max(1, len(labels))), 10)


def reliability(labels: np.ndarray, proba: np.ndarray, bins: int = ECE_BINS) -> list[dict[str, float]]:
    """The reliability diagram's bins: for each non-empty one of ``bins`` equal-width bins of the top
    probability, its mean top probability, the accuracy of its inputs and their count.

    Example:
        >>> reliability(np.array([0, 1]), np.array([[0.9, 0.1], [0.8, 0.2]]))[0]
        {'confidence': 0.8, 'accuracy': 0.0, 'count': 1}
    """
    confidence = proba.max(axis=1)
    correct = proba.argmax(axis=1) == np.asarray(labels)
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    return [
        {
            "confidence": round(float(confidence[which == b].mean()), 6),
            "accuracy": round(float(correct[which == b].mean()), 6),
            "count": int((which == b).sum()),
        }
        for b in np.unique(which)
    ]


def brier_score(labels: np.ndarray, proba: np.ndarray) -> float:
    """Mean squared distance between the probabilities and the one-hot truth, summed over classes.

    Example:
        >>> brier_score(np.array([0, 1]), np.array([[0.9, 0.1], [0.8, 0.2]]))
        0.65
    """
    truth = np.eye(proba.shape[1])[np.asarray(labels)]
    return round(float(((proba - truth) ** 2).sum(axis=1).mean()), 10)


def worst_errors(
    labels: np.ndarray, proba: np.ndarray, classes: Sequence[str], names: Sequence[str], limit: int = WORST_ERRORS
) -> list[dict[str, Any]]:
    """The wrong predictions made with the highest probability, most confident first."""
    predicted = proba.argmax(axis=1)
    wrong = np.flatnonzero(predicted != labels)
    order = wrong[np.argsort(-proba[wrong, predicted[wrong]], kind="stable")][:limit]
    return [
        {
            "input": str(names[i])[:SNIPPET],
            "true": classes[labels[i]],
            "predicted": classes[predicted[i]],
            "score": round(float(proba[i, predicted[i]]), 4),
            "true_score": round(float(proba[i, labels[i]]), 4),
        }
        for i in order
    ]


def format_metrics(metrics: dict[str, Any], classes: Sequence[str]) -> str:
    """A plain-text table for the terminal."""
    if metrics.get("multi_label"):
        from wukong.multilabel_metrics import format_multilabel

        return format_multilabel(metrics)
    width = max(8, *(len(c) for c in classes))
    lines = [
        f"accuracy {metrics['accuracy']:.4f}  balanced accuracy {metrics['balanced_accuracy']:.4f}  "
        f"macro F1 {metrics['macro_f1']:.4f}  (n={metrics['n']})",
        f"calibration: expected calibration error {metrics['ece']:.4f}  Brier score {metrics['brier']:.4f}",
    ]
    calibration = metrics.get("calibration") or {}
    if calibration.get("temperature", 1.0) != 1.0 and calibration.get("ece_before") is not None:
        lines[-1] += (
            f"  (temperature {calibration['temperature']:g}; before it: ECE {calibration['ece_before']:.4f}, "
            f"Brier {calibration['brier_before']:.4f})"
        )
    lines += [
        "",
    ]
    lines.append(f"{'class':<{width}}  precision  recall     f1  support")
    for name, row in metrics["per_class"].items():
        lines.append(
            f"{name:<{width}}  {row['precision']:9.3f}  {row['recall']:6.3f}  {row['f1']:5.3f}  {row['support']:7d}"
        )
    if len(classes) <= 12:
        lines += ["", "confusion matrix (rows: true, columns: predicted)"]
        lines += ["  ".join(f"{v:4d}" for v in row) for row in metrics["confusion_matrix"]]
    return "\n".join(lines)
