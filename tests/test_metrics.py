"""The evaluation metrics against scikit-learn where it has them, and calibration error where it
must tell a calibrated model from an overconfident one."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import balanced_accuracy_score, brier_score_loss

from wukong.metrics import classification_metrics, expected_calibration_error


def _softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_calibration_error_tells_calibrated_from_overconfident() -> None:
    rng = np.random.default_rng(0)
    proba = _softmax(rng.normal(0, 1.5, (20000, 4)))
    labels = np.array([rng.choice(4, p=p) for p in proba])  # drawn from the probabilities: calibrated
    sharpened = _softmax(np.log(proba) * 3)  # the same ranking, overconfident
    assert expected_calibration_error(labels, proba) < 0.02
    assert expected_calibration_error(labels, sharpened) > 0.1
    calibrated, overconfident = (
        classification_metrics(labels, proba, list("abcd")),
        classification_metrics(labels, sharpened, list("abcd")),
    )
    assert calibrated["accuracy"] == overconfident["accuracy"]  # calibration is not accuracy
    assert calibrated["brier"] < overconfident["brier"]


def test_balanced_accuracy_and_brier_agree_with_scikit_learn_on_imbalanced_labels() -> None:
    rng = np.random.default_rng(1)
    labels = np.array([0] * 90 + [1] * 10)
    proba = _softmax(rng.normal(0, 1, (100, 2)) + np.eye(2)[labels] * 1.0)
    m = classification_metrics(labels, proba, ["common", "rare"])
    assert m["balanced_accuracy"] == round(balanced_accuracy_score(labels, proba.argmax(1)), 4)
    assert m["balanced_accuracy"] != m["accuracy"]
    assert m["brier"] == round(2 * brier_score_loss(labels, proba[:, 1]), 4)  # binary: twice sklearn's
