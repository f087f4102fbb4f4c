"""The shared estimator: ``fit`` / ``predict`` / ``predict_proba`` / ``evaluate`` / ``save`` / ``load``.

scikit-learn conventions: ``__init__`` only stores parameters; learned state ends with ``_``;
data is validated at the boundary with messages that say what to do. Modality-specific work
(reading data, building the network, embedding inputs) lives in the subclasses.
"""

from __future__ import annotations

import shutil
import tempfile
import time
import weakref
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Self

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

from wukong.data.labelled import Labelled, check_every_class_present, origin_of, per_class_counts
from wukong.data.split import stratified_split
from wukong.errors import DataError, NotFittedError, ParameterError
from wukong.heads import is_linear
from wukong.persistence import Persistence
from wukong.report import classification_metrics
from wukong.runtime import private_random_state
from wukong.strategies.auto import Choice, choose
from wukong.training.quiet import quiet_lightning
from wukong.tuning import resolve_tuning

STRATEGIES = ("auto", "features", "head", "finetune")


class TransferClassifier(Persistence, ClassifierMixin, BaseEstimator, ABC):
    """Base of ``ImageClassifier`` and ``TextClassifier``; not used directly.

    A scikit-learn classifier: ``get_params``/``set_params`` (from ``BaseEstimator``), ``clone``,
    ``score`` (accuracy, from ``ClassifierMixin``), so ``cross_val_score`` and ``GridSearchCV`` work
    on lists or arrays of inputs (paths, texts) with their labels.
    """

    modality: str = ""
    strategies: tuple[str, ...] = STRATEGIES

    def __sklearn_is_fitted__(self) -> bool:
        return getattr(self, "net_", None) is not None

    # --- fitting -------------------------------------------------------------------------------

    def fit(
        self,
        data: Any,
        labels: Sequence[Any] | None = None,
        *,
        val: Any = None,
        work_dir: str | Path | None = None,
        resume: bool = False,
    ) -> Self:
        """Train on labelled data; returns ``self``.

        ``data``: a folder or table file whose labels it holds (image class folders, a CSV of
        ``path,label``, a CSV/TSV/JSONL of texts), or a list or array of inputs (image paths, texts)
        with ``labels``. ``val``: a validation set in the same forms (a path or an ``(inputs, labels)``
        pair); without it a seeded stratified ``val_fraction`` is held out. ``work_dir`` keeps
        checkpoints and logs; ``resume=True`` continues a killed run there. The run is seeded by
        ``seed``; the caller's random generators, warning filters and log levels are left as they were.

        Example:
            >>> model = ImageClassifier().fit("cat_dog/train")                 # doctest: +SKIP
            >>> model.score(["cat_dog/test/cat/1.jpg"], ["cat"])              # doctest: +SKIP
            1.0
        """
        self._check_params()
        self.tuning_ = resolve_tuning(self.tuning)
        with private_random_state(self.seed), quiet_lightning():
            return self._fit(data, labels, val=val, work_dir=work_dir, resume=resume)

    def _fit(self, data: Any, labels: Sequence[Any] | None, *, val: Any, work_dir: Any, resume: bool) -> Self:
        """One way for every modality: read -> split -> choose -> run the strategy -> record."""
        started = time.time()
        self._start_fit()
        train, skipped = self._read_labelled(data, labels, None, "training")
        self.classes_ = list(train.classes)
        check_every_class_present(train.labels, self.classes_, train.origin)
        if val is not None:
            pair = val if isinstance(val, tuple) else (val, None)
            val_set, more = self._read_labelled(*pair, self.classes_, "validation")
            skipped += more
            carved = False
        else:
            train_idx, val_idx = self._hold_out(train.labels, train.origin)
            train, val_set, carved = train.subset(train_idx), train.subset(val_idx), True
        if len(val_set) == 0:
            raise DataError(f"{val_set.origin}: no usable validation example")
        choice = self._choose(train.labels, len(self.classes_), self._stages())
        work = self._work_dir(work_dir)
        choice, extra = self._run_strategy(choice, train, val_set, work=work, resume=resume, carved=carved)
        # measured before any refit on train + val, so it is an honest held-out figure
        val_metrics = extra.pop("val")
        self._record_fit(
            started,
            choice,
            val_metrics,
            train_labels=train.labels,
            val_examples=len(val_set),
            skipped=skipped,
            work=work,
            extra=extra,
        )
        self.net_.eval()
        return self

    # The modality's part of ``fit`` (see ``wukong.image_classifier`` and ``wukong.text_classifier``).

    def _start_fit(self) -> None:
        """Set-up before any data is read (the image backbone: its input size decides the decoding)."""

    @abstractmethod
    def _read_labelled(
        self, data: Any, labels: Sequence[Any] | None, classes: Sequence[str] | None, role: str
    ) -> tuple[Labelled, list[dict[str, Any]]]:
        """Read a labelled set (``classes``: the training classes, for a validation set) and report
        what had to be skipped."""

    def _stages(self) -> int:
        """How many blocks the backbone has (for the auto rule's unfreezing); 0 where it does not say."""
        return 0

    @abstractmethod
    def _run_strategy(
        self, choice: Choice, train: Labelled, val: Labelled, *, work: Path, resume: bool, carved: bool
    ) -> tuple[Choice, dict[str, Any]]:
        """Build ``net_`` and train it as ``choice`` says; returns the choice (its reason may grow)
        and what to record, including ``"val"``, the validation metrics before any refit.
        ``carved``: the validation set was held out of the training data (so it may be added back)."""

    def _check_params(self) -> None:
        from wukong.strategies.features import LINEAR_MODELS

        if self.strategy not in self.strategies:
            raise ParameterError(f"strategy={self.strategy!r}: choose one of {', '.join(self.strategies)}")
        if self.linear_model not in LINEAR_MODELS:
            raise ParameterError(f"linear_model={self.linear_model!r}: choose one of {', '.join(LINEAR_MODELS)}")

    def _choose(self, labels: np.ndarray, num_classes: int, stages: int) -> Choice:
        counts = np.bincount(labels, minlength=num_classes)
        small, large = self.tuning_["small"], self.tuning_["large"]
        auto = choose(int(counts.min()), float(np.median(counts)), stages=stages, small=small, large=large)
        if self.strategy == "auto":
            if auto.strategy == "features" and not is_linear(self.head):
                return Choice(
                    "head",
                    0,
                    auto.reason.split(":")[0] + f": train the given {_head_name(self.head)} head on the frozen network",
                )
            return auto
        unfreeze = self.unfreeze if self.unfreeze is not None else (auto.unfreeze or min(2, stages) or "all")
        if self.strategy == "head":
            unfreeze = 0
        if self.strategy == "features":
            unfreeze = 0
        return Choice(self.strategy, unfreeze, f"strategy '{self.strategy}' asked for")

    def _work_dir(self, work_dir: str | Path | None) -> Path:
        if work_dir is not None:
            path = Path(work_dir)
            path.mkdir(parents=True, exist_ok=True)
            return path
        path = Path(tempfile.mkdtemp(prefix="wukong-"))
        weakref.finalize(self, shutil.rmtree, path, True)
        return path

    def _hold_out(self, labels: np.ndarray, origin: str) -> tuple[np.ndarray, np.ndarray]:
        """Train and validation indices: a seeded stratified ``val_fraction`` of the data."""
        train_idx, val_idx = stratified_split(labels, self.val_fraction, seed=self.seed)
        if len(val_idx) == 0:
            raise DataError(f"{origin}: too few examples to hold out a validation set; pass val=...")
        return train_idx, val_idx

    def _record_fit(
        self,
        started: float,
        choice: Choice,
        val_metrics: dict[str, Any] | None,
        *,
        train_labels: np.ndarray,
        val_examples: int,
        skipped: list[dict[str, Any]],
        work: Path,
        extra: dict[str, Any],
    ) -> None:
        """What every fit ends with: the strategy and its reason, the skipped inputs, ``metrics.json``."""
        self.strategy_, self.strategy_reason_ = choice.strategy, choice.reason
        self.skipped_ = skipped
        self.work_dir_ = work
        self.metrics_ = {
            "val_accuracy": val_metrics["accuracy"] if val_metrics else None,
            "strategy": choice.strategy,
            "strategy_reason": choice.reason,
            "backbone": self.backbone_name_,
            "classes": list(self.classes_),
            "train_seconds": round(time.time() - started, 2),
            "train_examples": per_class_counts(train_labels, self.classes_),
            "val_examples": int(val_examples),
            "val": val_metrics,
            "skipped": sum(1 for s in skipped if not s.get("kept")),
            "notes": sum(1 for s in skipped if s.get("kept")),
            "bf16": self.bf16_,
            **extra,
        }

    @abstractmethod
    def _source(self, data: Any, labels: Sequence[Any] | None, classes: Sequence[str] | None = None) -> Any:
        """Read labelled data (files are listed, not decoded): an object with ``classes``."""

    def check_data(self, data: Any, *others: Any) -> list[str]:
        """The classes of ``data``, after checking that every other labelled set (validation, test;
        ``None`` is skipped) holds only those: found before training, not after it.

        Example:
            >>> ImageClassifier().check_data("cat_dog/train", "cat_dog/test")   # doctest: +SKIP
            ['cat', 'dog']
        """
        classes = list(self._source(data, None).classes)
        for other in others:
            if other is not None:
                self._source(other, None, classes=classes)
        return classes

    # --- prediction ------------------------------------------------------------------------------

    def _check_fitted(self) -> None:
        if getattr(self, "net_", None) is None:
            raise NotFittedError(
                f"this {type(self).__name__} is not fitted yet: call fit(...) first, or wukong.load(folder)"
            )

    @abstractmethod
    def _read_unlabelled(self, inputs: Any) -> tuple[list[str], Any, list[tuple[str, str]]]:
        """Inputs to predict on -> (their names, what ``_proba_prepared`` takes, (name, problem) of
        each input that cannot be used)."""

    def _prepare(self, inputs: Any) -> Any:
        _, prepared, problems = self._read_unlabelled(inputs)
        if problems:
            bad = "; ".join(f"{name}: {reason}" for name, reason in problems)
            raise DataError(f"cannot predict on unusable input(s): {bad}")
        return prepared

    def predict_records(self, inputs: Any, top_k: int = 1) -> list[dict[str, Any]]:
        """One record per input, as the CLI and the server give them: ``{"input", "label", "score",
        "top_k"}``, or ``{"input", "error"}`` for an input that cannot be used (the others are still
        predicted).

        Example:
            >>> model.predict_records(["cat_dog/test"], top_k=2)[0]["top_k"]   # doctest: +SKIP
            [['cat', 0.97], ['dog', 0.03]]
        """
        self._check_fitted()
        names, prepared, problems = self._read_unlabelled(inputs)
        rows: list[dict[str, Any]] = [{"input": name, "error": reason} for name, reason in problems]
        if names:
            rows += self._rows(names, self._proba_prepared(prepared), top_k)
        return rows

    @abstractmethod
    def _proba_prepared(self, prepared: Any) -> np.ndarray:
        """Class probabilities of prepared inputs."""

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
    def _labelled(self, data: Any, labels: Sequence[Any] | None) -> tuple[Any, np.ndarray, list[dict]]:
        """Read labelled data with the training classes: (prepared inputs, label ids, skipped)."""

    def evaluate(self, data: Any, labels: Sequence[Any] | None = None) -> dict[str, Any]:
        """Accuracy, per-class precision/recall/F1 and the confusion matrix on labelled data."""
        self._check_fitted()
        prepared, label_ids, skipped = self._labelled(data, labels)
        if len(label_ids) == 0:
            reasons = "; ".join(f"{s['path']}: {s['reason']}" for s in skipped[:3])
            raise DataError(f"{origin_of(data)}: no usable example to evaluate ({len(skipped)} skipped: {reasons})")
        metrics = classification_metrics(label_ids, self._proba_prepared(prepared), self.classes_)
        metrics["skipped"] = skipped
        return metrics


def _head_name(head: Any) -> str:
    return head if isinstance(head, str) else type(head).__name__
