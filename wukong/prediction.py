"""The predicting half of every classifier: ``predict``, ``predict_proba``, ``predict_top_k``,
``predict_records`` (what the CLI and the server print) and ``evaluate``.

A modality supplies four hooks: ``_read_unlabelled`` (inputs -> what ``_features_prepared`` takes,
and the inputs that cannot be used), ``_features_prepared`` (the frozen or tuned network's
features), ``_read_labelled`` and ``_inputs_of`` (labelled data read with the training classes).
Probabilities are the head's logits divided by the fitted temperature (``wukong.calibration``),
plus the prior offsets of ``class_weight="balanced"``, then softmaxed: here and nowhere else.
A multi-label model (trained on several labels per example) has a sigmoid per label instead, and
predicts the set of labels whose probability reaches that label's tuned threshold.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from wukong.calibration import sigmoid, softmax
from wukong.data.label_sets import label_names, label_set
from wukong.data.labelled import origin_of
from wukong.errors import DataError, NotFittedError, ParameterError
from wukong.metrics import brier_score, classification_metrics, expected_calibration_error, reliability
from wukong.multilabel_metrics import binary_decisions, multilabel_metrics
from wukong.openset import OpenSetScore


class Prediction:
    """Mixin of ``TransferClassifier``: needs ``net_`` (with its ``head``), ``classes_`` and
    ``temperature_`` (1.0: uncalibrated)."""

    temperature_: float = 1.0
    logit_offsets_: np.ndarray | None = None  # class_weight="balanced": minus the training log prior
    multi_label_: bool = False  # several labels per example: a sigmoid per label
    thresholds_: np.ndarray | None = None  # multi-label: each label's decision threshold

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
        ``{"input", "label", "score", "top_k", "unknown_score", "unknown"}``, or ``{"input", "error"}``
        for an input that cannot be used (the others are still predicted). ``score`` is the top
        known class's probability; ``unknown_score`` how much the input looks like the training data
        (higher: more familiar; for the default score, the mean of the shares of known validation
        inputs that score lower on the maximum logit and on the similarity to the nearest training
        example); with ``reject_unknown``, ``label`` is ``unknown_label`` where it is below what
        ``unknown_keep`` of the known validation inputs reach. A multi-label model adds ``labels``
        (the input's label set) and their ``scores``, and ``label`` is that set written ``a;b``.

        Example:
            >>> model.predict_records(["cat_dog/test"], top_k=2)[0]["top_k"]   # doctest: +SKIP
            [['cat', 0.97], ['dog', 0.03]]
        """
        self._check_fitted()
        names, prepared, problems = self._read_unlabelled(inputs)
        usable = [name for i, name in enumerate(names) if i not in problems]
        predicted = iter(self._rows(usable, *self._outputs(prepared), top_k) if usable else [])
        return [
            {"input": name, "error": problems[i]} if i in problems else next(predicted) for i, name in enumerate(names)
        ]

    def _outputs(self, prepared: Any) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """(calibrated probabilities, unknown scores, which inputs are rejected as unknown) of prepared inputs."""
        score = self._open_set("reject_unknown") if self.reject_unknown else getattr(self, "open_set_", None)
        features = self._features_prepared(prepared)
        logits = self._logits_from_features(features)
        if score is None:  # a model saved before open-set scores
            return self._proba_from_logits(logits), None, None
        scores = score(features, logits)
        rejected = scores < score.threshold(self.unknown_keep) if self.reject_unknown else None
        return self._proba_from_logits(logits), scores, rejected

    def _open_set(self, wanted_by: str) -> OpenSetScore:
        """The fitted open-set score, or a one-line error for a model saved before there were any."""
        score = getattr(self, "open_set_", None)
        if score is None:
            raise ParameterError(
                f"{wanted_by}: this model was saved by a Wukong without open-set scores; train it again"
            )
        return score

    def unknown_score(self, inputs: Any) -> np.ndarray:
        """How much each input looks like the training data (``wukong.openset``; higher: more
        familiar); an input below what ``unknown_keep`` of the known validation inputs reach is
        "unknown" (``open_set_.threshold(unknown_keep)``)."""
        self._check_fitted()
        score = self._open_set("unknown_score")
        features = self._features_prepared(self._prepare(inputs))
        return score(features, self._logits_from_features(features))

    def _pool_features(self, inputs: Any) -> tuple[list[str], np.ndarray, dict[int, str]]:
        """Unlabelled inputs -> (the name of every input; the network's features of the usable ones,
        from the on-disk cache where the modality keeps one; ``{position: problem}`` of the others)."""
        names, prepared, problems = self._read_unlabelled(inputs)
        return names, self._features_prepared(prepared), problems

    @abstractmethod
    def _features_prepared(self, prepared: Any) -> np.ndarray:
        """The network's features (what its head takes) of prepared inputs, shape (n, dim)."""

    def _logits_prepared(self, prepared: Any) -> np.ndarray:
        return self._logits_from_features(self._features_prepared(prepared))

    def _proba_prepared(self, prepared: Any) -> np.ndarray:
        """Calibrated class probabilities of prepared inputs."""
        return self._proba_from_logits(self._logits_prepared(prepared))

    def _logits_from_features(self, features: np.ndarray) -> np.ndarray:
        """The head's logits (float32) of the network's features."""
        if not len(features):
            return np.empty((0, len(self.classes_)), np.float32)
        head = self.net_.head.eval()
        batch = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))
        with torch.inference_mode():
            return head(batch.to(next(head.parameters()).device)).float().cpu().numpy()

    def _proba_from_logits(self, logits: np.ndarray) -> np.ndarray:
        """``softmax(logits / T + offsets)``: calibrated, and (``class_weight="balanced"``) with the
        training prior divided out; multi-label: ``sigmoid(logits / T)``."""
        if self.multi_label_:
            return sigmoid(logits, self.temperature_)
        offsets = self.logit_offsets_
        shifted = logits if offsets is None else logits + self.temperature_ * np.asarray(offsets, dtype=np.float32)
        return softmax(shifted, self.temperature_)

    def predict_proba(self, inputs: Any) -> np.ndarray:
        """Class probabilities, shape ``(n, len(classes_))``, columns in ``classes_`` order."""
        self._check_fitted()
        return self._proba_prepared(self._prepare(inputs))

    def predict(self, inputs: Any) -> list[Any]:
        """The most probable class name for each input (``unknown_label`` for an input rejected as
        unknown, with ``reject_unknown``); multi-label: the list of labels each input has (those whose
        probability reaches the label's threshold; ``[unknown_label]`` for an input rejected).

        Example:
            >>> model.predict(["card lost, and where is my refund?"])          # doctest: +SKIP
            [['lost_or_stolen_card', 'refund_not_showing_up']]
        """
        self._check_fitted()
        proba, _, rejected = self._outputs(self._prepare(inputs))
        labels: list[Any] = (
            [label_names(row, self.classes_) for row in self._decide(proba)]
            if self.multi_label_
            else [self.classes_[i] for i in proba.argmax(axis=1)]
        )
        unknown = [self.unknown_label] if self.multi_label_ else self.unknown_label
        return labels if rejected is None else [unknown if r else x for x, r in zip(labels, rejected, strict=True)]

    def _decide(self, proba: np.ndarray) -> np.ndarray:
        """Multi-label decisions: (n, classes) booleans, each label's probability against its threshold."""
        return proba >= np.asarray(self.thresholds_, dtype=np.float32)[None, :]

    def score(self, inputs: Any, labels: Sequence[Any], sample_weight: Any = None) -> float:
        """Accuracy (scikit-learn's ``score``); multi-label: subset accuracy, the share of inputs whose
        predicted label set is exactly theirs (labels as lists of names, or ``;``-separated)."""
        if not self.multi_label_:
            return super().score(inputs, labels, sample_weight=sample_weight)  # type: ignore[misc]
        predicted = self.predict(inputs)
        hits = [set(label_set(cell)) == set(names) for cell, names in zip(labels, predicted, strict=True)]
        return float(np.average(hits, weights=sample_weight))

    def predict_top_k(self, inputs: Any, k: int = 1) -> list[list[tuple[str, float]]]:
        """For each input, the ``k`` most probable ``(class, probability)`` pairs."""
        return self._top_k(self.predict_proba(inputs), k)

    def _top_k(self, proba: np.ndarray, k: int) -> list[list[tuple[str, float]]]:
        k = max(1, min(k, proba.shape[1]))
        order = np.argsort(-proba, axis=1)[:, :k]
        return [
            [(self.classes_[j], round(float(row[j]), 6)) for j in idx] for row, idx in zip(proba, order, strict=True)
        ]

    def _rows(
        self, names: Sequence[str], proba: np.ndarray, scores: np.ndarray | None, rejected: np.ndarray | None, k: int
    ) -> list[dict[str, Any]]:
        """Prediction records as the CLI and the server print them."""
        rows = []
        decided = self._decide(proba) if self.multi_label_ else None
        for i, (name, top) in enumerate(zip(names, self._top_k(proba, k), strict=True)):
            row = {"input": name, "label": top[0][0], "score": top[0][1], "top_k": [list(t) for t in top]}
            if decided is not None:  # the label set, each label with its probability
                chosen = np.flatnonzero(decided[i])
                row["labels"] = [self.classes_[j] for j in chosen]
                row["scores"] = {self.classes_[j]: round(float(proba[i, j]), 6) for j in chosen}
                row["label"] = ";".join(row["labels"])
            if scores is not None:
                row["unknown_score"] = round(float(scores[i]), 4)
            if rejected is not None:
                row["unknown"] = bool(rejected[i])
                if rejected[i]:
                    row["label"] = self.unknown_label
                    if decided is not None:
                        row["labels"], row["scores"] = [self.unknown_label], {}
            rows.append(row)
        return rows

    @abstractmethod
    def _inputs_of(self, examples: Any) -> tuple[list[str], Any]:
        """Labelled examples as read by ``_read_labelled`` -> (their names, what ``_proba_prepared`` takes)."""

    def evaluate(self, data: Any, labels: Sequence[Any] | None = None) -> dict[str, Any]:
        """Accuracy, balanced accuracy, per-class precision/recall/F1, the confusion matrix, calibration
        (ECE, Brier score) and the most confident mistakes on labelled data (read as ``fit`` reads
        it, with the training classes)."""
        self._check_fitted()
        labelled, skipped = self._read_known(data, labels, "evaluation")
        if len(labelled.labels) == 0:
            reasons = "; ".join(f"{s['path']}: {s['reason']}" for s in skipped[:3])
            raise DataError(f"{origin_of(data)}: no usable example to evaluate ({len(skipped)} skipped: {reasons})")
        names, prepared = self._inputs_of(labelled.examples)
        metrics = self._metrics_from_logits(labelled.labels, self._logits_prepared(prepared), names)
        metrics["skipped"] = skipped
        return metrics

    def _metrics_from_logits(self, labels: np.ndarray, logits: np.ndarray, names: Sequence[str]) -> dict[str, Any]:
        """``classification_metrics`` of the calibrated probabilities, with the calibration before
        and after the temperature (ECE, Brier score, the reliability diagram's bins)."""
        proba = self._proba_from_logits(logits)
        if self.multi_label_:
            metrics = multilabel_metrics(labels, proba, self._decide(proba), self.classes_, names)
            # the calibration of every (input, label) decision, as a binary classifier's
            indicator = labels
            labels, proba = binary_decisions(indicator, proba)
            raw = binary_decisions(indicator, sigmoid(logits))[1]
        else:
            metrics = classification_metrics(labels, proba, self.classes_, names)
            raw = softmax(logits)
        metrics["calibration"] = {
            "temperature": self.temperature_,
            "ece_before": round(expected_calibration_error(labels, raw), 4) if len(labels) else None,
            "brier_before": round(brier_score(labels, raw), 4) if len(labels) else None,
            "reliability": reliability(labels, proba),
            "reliability_before": reliability(labels, raw),
        }
        return metrics
