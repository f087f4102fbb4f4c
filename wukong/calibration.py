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


def sigmoid(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Element-wise logistic function of ``logits / temperature``, in float32 (multi-label outputs)."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    return (0.5 * (1.0 + np.tanh(0.5 * z))).astype(np.float32)  # tanh form: no overflow


def example_log_losses(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Each example's negative log-likelihood of its ``labels`` under ``softmax(logits / temperature)``;
    of indicator rows (multi-label), its binary cross-entropy summed over labels."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    if np.ndim(labels) == 2:  # log(1 + e^z) - y z, stably
        return (np.logaddexp(0.0, z) - np.asarray(labels) * z).sum(axis=1)
    top = z.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(z - top).sum(axis=1)) + top[:, 0]
    return log_norm - z[np.arange(len(labels)), labels]


def log_loss(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean of ``example_log_losses``."""
    return float(example_log_losses(logits, labels, temperature).mean())


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature minimising the log loss of held-out ``logits`` against their ``labels``
    (class ids, or indicator rows: then one temperature for every label's sigmoid), with a standard
    normal prior on ``log T`` (a maximum a posteriori fit): where every held-out prediction is right,
    the log loss alone keeps falling as ``T`` goes to 0 and would make every probability 0 or 1 (a
    few dozen easy examples did); the prior keeps ``T`` near 1 there and weighs as one example
    where there are many."""
    from scipy.optimize import minimize_scalar

    labels = np.asarray(labels, dtype=np.int64)
    if len(labels) == 0:
        return 1.0
    low, high = np.log(T_BOUNDS[0]), np.log(T_BOUNDS[1])

    def objective(log_t: float) -> float:
        return len(labels) * log_loss(logits, labels, np.exp(log_t)) + 0.5 * log_t**2

    found = minimize_scalar(objective, bounds=(low, high), method="bounded")
    return round(float(np.exp(found.x)), 4)


# Each label's own threshold is pulled towards the one shared threshold with the weight of this many
# held-out positives: a label with n of them keeps n / (n + THRESHOLD_PRIOR) of its own.
THRESHOLD_PRIOR = 50


def best_cut(scores: np.ndarray, hits: np.ndarray) -> float:
    """The threshold on ``scores`` that maximises F1 against boolean ``hits``: halfway between the
    lowest score it keeps and the next one down (0.5 when there is no positive)."""
    positives = int(hits.sum())
    if positives == 0:
        return 0.5
    order = np.argsort(-scores, kind="stable")
    scores, hits = scores[order], hits[order]
    f1 = 2 * np.cumsum(hits) / (np.arange(1, len(scores) + 1) + positives)
    f1[:-1][scores[:-1] == scores[1:]] = -1  # a cut between equal scores keeps both
    k = int(np.argmax(f1))
    below = scores[k + 1] if k + 1 < len(scores) else 0.0
    return float(np.clip((scores[k] + below) / 2, 1e-6, 1 - 1e-6))


def tune_thresholds(proba: np.ndarray, labels: np.ndarray, prior: float = THRESHOLD_PRIOR) -> np.ndarray:
    """Per-label decision thresholds of multi-label probabilities, from held-out ``proba`` and
    indicator ``labels``: the one threshold that maximises F1 over every (input, label) pair (micro
    F1), and each label's own F1-maximising one, mixed by how many held-out positives the label has
    (``n / (n + prior)`` of its own): a label's own cut from a handful of positives is mostly noise.
    ``prior=0`` keeps each label's own (the shared one for a label with no held-out positive).

    Example:
        >>> proba = np.array([[0.9, 0.2], [0.4, 0.3], [0.1, 0.6]])
        >>> tune_thresholds(proba, np.array([[1, 0], [1, 0], [0, 0]]), prior=0).tolist()
        [0.25, 0.35]
    """
    proba = np.asarray(proba, dtype=np.float64)
    truth = np.asarray(labels) > 0
    shared = best_cut(proba.reshape(-1), truth.reshape(-1))
    thresholds = np.empty(proba.shape[1])
    for j in range(proba.shape[1]):
        positives = int(truth[:, j].sum())
        own = best_cut(proba[:, j], truth[:, j]) if positives else shared
        weight = positives / (positives + prior) if positives + prior > 0 else 1.0
        thresholds[j] = round(weight * own + (1 - weight) * shared, 6)
    return thresholds


def _per_class(value: Any, classes: int, name: str, what: str, valid: Any) -> np.ndarray:
    """A saved list of one number per class, checked by ``valid`` (``ValueError`` naming ``name`` otherwise)."""
    numbers = np.asarray(value, dtype=np.float64) if isinstance(value, list) else None
    if numbers is None or numbers.shape != (classes,) or not valid(numbers).all():
        raise ValueError(f"calibration: {name} must be a list of {classes} {what}, not {value!r}"[:200])
    return numbers.astype(np.float32)


def check_thresholds(value: Any, classes: int) -> np.ndarray:
    """Saved per-label thresholds, checked: one number in (0, 1) per class (``ValueError`` otherwise)."""
    return _per_class(value, classes, "thresholds", "numbers in (0, 1)", lambda t: (t > 0) & (t < 1))


def check_temperature(value: Any, where: str) -> float:
    """A saved temperature, checked: a positive finite number (``ValueError`` naming ``where``)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not np.isfinite(value) or value <= 0:
        raise ValueError(f"{where}: temperature must be a positive number, not {value!r}")
    return float(value)


def check_offsets(value: Any, classes: int) -> np.ndarray | None:
    """Saved logit offsets, checked: ``None``, or one finite number per class (``ValueError`` otherwise)."""
    return None if value is None else _per_class(value, classes, "logit_offsets", "numbers", np.isfinite)


def resolve_class_weight(setting: str | None, counts: np.ndarray) -> tuple[str | None, np.ndarray | None, str]:
    """How to treat imbalanced classes: (the method, per-class values, the sentence explaining it).

    - ``"balanced"``: logit adjustment (Menon et al. 2021): the model is trained as it is, then the
      training prior is divided out of its probabilities, ``softmax(logits / T - log prior)``, so
      that its decisions weigh every class the same; the values are the offsets ``-log prior``
      (centred). Measured better than weighting the loss on both imbalance tasks of
      ``benchmarks/trust.py``.
    - ``"loss"``: the loss weighted by ``n / (classes * count)`` per class, as scikit-learn's
      ``class_weight="balanced"`` does; the values are those weights.
    - ``"auto"``: ``"balanced"`` when the largest class has more than ``IMBALANCE_RATIO`` times the
      examples of the smallest; ``None``: neither.

    Example:
        >>> method, offsets, why = resolve_class_weight("auto", np.array([100, 10]))
        >>> method, offsets.round(2).tolist(), why.startswith("decisions balanced")
        ('balanced', [-1.15, 1.15], True)
    """
    counts = np.asarray(counts, dtype=np.float64)
    present = counts[counts > 0]
    ratio = float(present.max() / present.min()) if len(present) else 1.0
    method = "balanced" if setting == "auto" and ratio > IMBALANCE_RATIO else setting
    if method not in ("balanced", "loss"):
        return None, None, ""
    cause = "asked for" if setting != "auto" else f"more than {IMBALANCE_RATIO:g}x"
    sizes = f"the largest class has {ratio:.1f}x the smallest's examples, {cause}"
    if method == "loss":
        weights = np.where(counts > 0, counts.sum() / (len(present) * np.maximum(counts, 1)), 0.0)
        return method, weights, f"classes weighted inversely to their counts in the loss ({sizes})"
    log_prior = np.log(np.maximum(counts, 0.5) / counts.sum())
    offsets = -(log_prior - log_prior.mean())
    why = f"decisions balanced across classes: the training prior divided out of the probabilities ({sizes})"
    return method, offsets, why
