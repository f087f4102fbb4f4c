"""The predicting half of every classifier: ``predict``, ``predict_proba``, ``predict_top_k``,
``predict_records`` (what the CLI and the server print) and ``evaluate``.

A modality supplies three hooks: ``_read_unlabelled`` (inputs -> what ``_proba_prepared`` takes,
and the inputs that cannot be used), ``_proba_prepared`` and ``_labelled`` (labelled data read with
the training classes).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from wukong.data.labelled import origin_of
from wukong.errors import DataError, NotFittedError
from wukong.metrics import classification_metrics


class Prediction:
    """Mixin of ``TransferClassifier``: needs ``net_`` (with its ``head``) and ``classes_``."""

    # --- prediction ------------------------------------------------------------------------------

    def _check_fitted(self) -> None:
        if getattr(self, "net_", None) is None:
            raise NotFittedError(
                f"this {type(self).__name__} is not fitted yet: call fit(...) first, or wukong.load(folder)"
            )

    @abstractmethod
    def _read_unlabelled(self, inputs: Any) -> tuple[list[str], Any, dict[int, str]]:
        """Inputs to predict on -> (the name of every input, in order; what ``_proba_prepared`` takes,
        for the usable ones in that order; ``{position: problem}`` of each input that cannot be used)."""

    def _prepare(self, inputs: Any) -> Any:
        names, prepared, problems = self._read_unlabelled(inputs)
        if problems:
            bad = "; ".join(f"{names[i]}: {reason}" for i, reason in problems.items())
            raise DataError(f"cannot predict on unusable input(s): {bad}")
        return prepared

    def predict_records(self, inputs: Any, top_k: int = 1) -> list[dict[str, Any]]:
        """One record per input, in the order of the inputs, as the CLI and the server give them:
        ``{"input", "label", "score", "top_k"}``, or ``{"input", "error"}`` for an input that cannot
        be used (the others are still predicted).

        Example:
            >>> model.predict_records(["cat_dog/test"], top_k=2)[0]["top_k"]   # doctest: +SKIP
            [['cat', 0.97], ['dog', 0.03]]
        """
        self._check_fitted()
        names, prepared, problems = self._read_unlabelled(inputs)
        usable = [name for i, name in enumerate(names) if i not in problems]
        predicted = iter(self._rows(usable, self._proba_prepared(prepared), top_k) if usable else [])
        return [
            {"input": name, "error": problems[i]} if i in problems else next(predicted) for i, name in enumerate(names)
        ]

    @abstractmethod
    def _proba_prepared(self, prepared: Any) -> np.ndarray:
        """Class probabilities of prepared inputs."""

    def _proba_from_features(self, features: np.ndarray) -> np.ndarray:
        """Class probabilities from the frozen network's features: the head, then softmax."""
        head = self.net_.head.eval()
        batch = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))
        with torch.inference_mode():
            logits = head(batch.to(next(head.parameters()).device)).float()
        return torch.softmax(logits, dim=1).cpu().numpy()

    def predict_proba(self, inputs: Any) -> np.ndarray:
        """Class probabilities, shape ``(n, len(classes_))``, columns in ``classes_`` order."""
        self._check_fitted()
        return self._proba_prepared(self._prepare(inputs))

    def predict(self, inputs: Any) -> list[str]:
        """The most probable class name for each input."""
        proba = self.predict_proba(inputs)
        return [self.classes_[i] for i in proba.argmax(axis=1)]

    def predict_top_k(self, inputs: Any, k: int = 1) -> list[list[tuple[str, float]]]:
        """For each input, the ``k`` most probable ``(class, probability)`` pairs."""
        return self._top_k(self.predict_proba(inputs), k)

    def _top_k(self, proba: np.ndarray, k: int) -> list[list[tuple[str, float]]]:
        k = max(1, min(k, proba.shape[1]))
        order = np.argsort(-proba, axis=1)[:, :k]
        return [
            [(self.classes_[j], round(float(row[j]), 6)) for j in idx] for row, idx in zip(proba, order, strict=True)
        ]

    def _rows(self, names: Sequence[str], proba: np.ndarray, k: int) -> list[dict[str, Any]]:
        """Prediction records as the CLI and the server print them."""
        return [
            {"input": name, "label": top[0][0], "score": top[0][1], "top_k": [list(t) for t in top]}
            for name, top in zip(names, self._top_k(proba, k), strict=True)
        ]

    @abstractmethod
    def _inputs_of(self, examples: Any) -> tuple[list[str], Any]:
        """Labelled examples as read by ``_read_labelled`` -> (their names, what ``_proba_prepared`` takes)."""

    def evaluate(self, data: Any, labels: Sequence[Any] | None = None) -> dict[str, Any]:
        """Accuracy, balanced accuracy, per-class precision/recall/F1, the confusion matrix, calibration
        (ECE, Brier score) and the most confident mistakes on labelled data (read as ``fit`` reads
        it, with the training classes)."""
        self._check_fitted()
        labelled, skipped = self._read_labelled(data, labels, self.classes_, "evaluation")
        if len(labelled.labels) == 0:
            reasons = "; ".join(f"{s['path']}: {s['reason']}" for s in skipped[:3])
            raise DataError(f"{origin_of(data)}: no usable example to evaluate ({len(skipped)} skipped: {reasons})")
        names, prepared = self._inputs_of(labelled.examples)
        metrics = classification_metrics(labelled.labels, self._proba_prepared(prepared), self.classes_, names)
        metrics["skipped"] = skipped
        return metrics
