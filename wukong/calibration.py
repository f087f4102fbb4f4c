"""Calibrated probabilities: temperature scaling (Guo et al. 2017), and class weights for imbalanced data.

One positive number ``T`` divides the logits before the softmax: ``T > 1`` softens over-confident
scores, ``T < 1`` sharpens timid ones (a model trained with label smoothing is timid), and the order
of the classes, hence every prediction, is unchanged. ``T`` is fitted by minimising the log loss of
predictions the model did not train on: the validation split, or out-of-fold predictions of the
cross-validated linear classifier. Written here rather than taken from a library: it is a
one-dimensional convex minimisation, and the libraries that offer it bring far more than it.

Example:
    >>> logits = np.array([[4.0, 0.0], [4.0, 0.0], [0.0, 4.0], [0.0, 4.0]])
    >>> fit_temperature(logits, np.array([0, 1, 1, 0])) > 1  # right half the time at 98%: softened
    True
"""

from __future__ import annotations

from typing import Any

import numpy as np

# The temperatures considered: from 20x sharper to 20x softer.
T_BOUNDS = (0.05, 20.0)
# ``class_weight="auto"`` weighs the classes when the largest has more than this many times the
# examples of the smallest.
IMBALANCE_RATIO = 3.0


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of ``logits / temperature``, in float32 (stable for any scale)."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return (z / z.sum(axis=1, keepdims=True)).astype(np.float32)


def log_loss(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of ``labels`` under ``softmax(logits / temperature)``."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    top = z.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(z - top).sum(axis=1)) + top[:, 0]
    return float((log_norm - z[np.arange(len(labels)), labels]).mean())


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature minimising the log loss of held-out ``logits`` against their ``labels``."""
    from scipy.optimize import minimize_scalar

    labels = np.asarray(labels, dtype=np.int64)
    if len(labels) == 0:
        return 1.0
    low, high = np.log(T_BOUNDS[0]), np.log(T_BOUNDS[1])
    found = minimize_scalar(lambda log_t: log_loss(logits, labels, np.exp(log_t)), bounds=(low, high), method="bounded")
    return round(float(np.exp(found.x)), 4)


def check_temperature(value: Any, where: str) -> float:
    """A saved temperature, checked: a positive finite number (``ValueError`` naming ``where``)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not np.isfinite(value) or value <= 0:
        raise ValueError(f"{where}: temperature must be a positive number, not {value!r}")
    return float(value)


def resolve_class_weight(setting: str | None, counts: np.ndarray) -> tuple[np.ndarray | None, str]:
    """Per-class loss weights (``None``: every example weighs the same) and the sentence explaining them.

    ``"balanced"`` weighs each class by ``n / (classes * count)``, as scikit-learn does, so every
    class weighs the same in the loss; ``"auto"`` does so when the largest class has more than
    ``IMBALANCE_RATIO`` times the examples of the smallest; ``None`` never.

    Example:
        >>> weights, why = resolve_class_weight("auto", np.array([100, 10]))
        >>> weights.round(2).tolist(), why.startswith("classes weighted")
        ([0.55, 5.5], True)
    """
    counts = np.asarray(counts, dtype=np.float64)
    present = counts[counts > 0]
    ratio = float(present.max() / present.min()) if len(present) else 1.0
    balanced = setting == "balanced" or (setting == "auto" and ratio > IMBALANCE_RATIO)
    if not balanced:
        return None, ""
    weights = np.where(counts > 0, counts.sum() / (len(present) * np.maximum(counts, 1)), 0.0)
    cause = "asked for" if setting == "balanced" else f"more than {IMBALANCE_RATIO:g}x"
    why = (
        f"classes weighted inversely to their counts (the largest has {ratio:.1f}x the smallest's examples, "
        f"{cause}), so that every class counts the same in the loss"
    )
    return weights, why
