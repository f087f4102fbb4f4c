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
import torch
from sklearn.base import BaseEstimator, ClassifierMixin

from wukong.data.split import stratified_split
from wukong.errors import DataError, NotFittedError, ParameterError, WukongError
from wukong.heads import final_linear
from wukong.report import classification_metrics
from wukong.runtime import private_random_state
from wukong.strategies.auto import Choice, choose
from wukong.training.quiet import quiet_lightning

STRATEGIES = ("auto", "features", "head", "finetune")


class TransferClassifier(ClassifierMixin, BaseEstimator, ABC):
    """Base of ``ImageClassifier`` and ``TextClassifier``; not used directly.

    A scikit-learn classifier: ``get_params``/``set_params`` (from ``BaseEstimator``), ``clone``,
    ``score`` (accuracy, from ``ClassifierMixin``), so ``cross_val_score`` and ``GridSearchCV`` work
    on lists or arrays of inputs (paths, texts) with their labels.
    """

    modality: str = ""
    strategies: tuple[str, ...] = STRATEGIES
    load_modules: tuple[str, ...] = ("backbone", "head")  # user modules that ``load`` accepts

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
        with private_random_state(self.seed), quiet_lightning():
            return self._fit(data, labels, val=val, work_dir=work_dir, resume=resume)

    @abstractmethod
    def _fit(self, data: Any, labels: Sequence[Any] | None, *, val: Any, work_dir: Any, resume: bool) -> Self:
        """The modality's training: read, split, choose, run the strategy, record."""

    def _check_params(self) -> None:
        from wukong.strategies.features import LINEAR_MODELS

        if self.strategy not in self.strategies:
            raise ParameterError(f"strategy={self.strategy!r}: choose one of {', '.join(self.strategies)}")
        if self.linear_model not in LINEAR_MODELS:
            raise ParameterError(f"linear_model={self.linear_model!r}: choose one of {', '.join(LINEAR_MODELS)}")

    def _choose(self, labels: np.ndarray, num_classes: int, stages: int) -> Choice:
        counts = np.bincount(labels, minlength=num_classes)
        auto = choose(int(counts.min()), float(np.median(counts)), stages=stages)
        if self.strategy == "auto":
            if auto.strategy == "features" and not _is_linear(self.head):
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
            raise DataError(f"{_origin(data)}: no usable example to evaluate ({len(skipped)} skipped: {reasons})")
        metrics = classification_metrics(label_ids, self._proba_prepared(prepared), self.classes_)
        metrics["skipped"] = skipped
        return metrics

    # --- persistence -------------------------------------------------------------------------------

    def _state_to_save(self) -> dict[str, torch.Tensor]:
        """The tensors written to model.safetensors (subclasses may leave out unchanged weights)."""
        return self.net_.state_dict()

    def _load_saved_state(self, state: dict[str, torch.Tensor]) -> None:
        self.net_.load_state_dict(state, strict=True)

    def save(self, path: str | Path, *, overwrite: bool = True) -> Path:
        """Write the model folder (safetensors + JSON), atomically. Returns its path.

        Only a new or empty folder, or a Wukong model folder (when ``overwrite``), is written: a folder
        holding anything else is refused, never replaced.
        """
        from wukong.artifact import jsonable_params, write_model_folder

        self._check_fitted()
        config = {
            "modality": self.modality,
            "classes": list(self.classes_),
            "strategy": self.strategy_,
            "strategy_reason": self.strategy_reason_,
            "head": self.head_spec_,
            "params": jsonable_params(self.get_params(deep=False)),
            "bf16": self.bf16_,
            **self._config_extra(),
        }
        logs = (self.metrics_.get("history") or {}).get("logs")  # only trained networks have logs
        return write_model_folder(
            Path(path),
            state=self._state_to_save(),
            config=config,
            metrics=self.metrics_,
            skipped=self.skipped_,
            logs=Path(logs) if logs else None,
            overwrite=overwrite,
        )

    @classmethod
    def load(cls, path: str | Path, **modules: torch.nn.Module) -> Self:
        """Load a model folder written by ``save`` (never unpickles). ``backbone=`` / ``head=``: the
        user modules a model was trained with, when it was.

        Example:
            >>> model = ImageClassifier.load("my_model")                        # doctest: +SKIP
        """
        from wukong.artifact import read_model_folder

        saved = read_model_folder(Path(path))
        klass = modality_class(saved.config.get("modality"), saved.config_file)
        if not issubclass(klass, cls):
            raise DataError(f"{path}: holds a {klass.__name__}; load it with {klass.__name__}.load or wukong.load")
        unknown = sorted(set(modules) - set(klass.load_modules))
        if unknown:
            raise ParameterError(
                f"{path}: a {klass.__name__} takes {', '.join(m + '=' for m in klass.load_modules)} when loaded, "
                f"not {', '.join(unknown)}= (its backbone is named in the folder)"
            )
        try:
            model = klass._from_config(saved.config, **modules)
        except WukongError as exc:
            raise DataError(f"{saved.config_file}: {exc}") from None
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            problem = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc).splitlines()[0]
            raise DataError(f"{saved.config_file}: damaged or not written by this Wukong ({problem})") from None
        weights = saved.folder / "model.safetensors"
        try:
            model._load_saved_state(saved.weights())
        except RuntimeError as exc:
            raise DataError(f"{weights}: does not match config.json ({str(exc).strip().splitlines()[0]})") from None
        outputs = final_linear(model.net_.head)
        if outputs is not None and outputs.out_features != len(model.classes_):
            raise DataError(
                f"{saved.config_file}: lists {len(model.classes_)} classes but the head has "
                f"{outputs.out_features} outputs"
            )
        model.net_.eval()
        model.metrics_, model.skipped_ = saved.metrics, saved.skipped
        return model

    @classmethod
    def _saved_params(cls, config: dict[str, Any], *given: str) -> dict[str, Any]:
        """The constructor parameters recorded in ``config``, less those ``given`` as modules."""
        allowed = set(cls._get_param_names()) - set(given)
        return {k: v for k, v in config["params"].items() if k in allowed}


# The modality registry: a model folder's "modality" -> its estimator class, imported when needed
# (``import wukong`` stays light). A new modality adds its line here and its adapter module.
MODALITIES = {"image": "wukong.image_classifier:ImageClassifier", "text": "wukong.text_classifier:TextClassifier"}


def modality_class(modality: Any, config_file: Path | str = "config.json") -> type[TransferClassifier]:
    """The estimator class registered for ``modality``; ``DataError`` naming ``config_file`` otherwise."""
    import importlib

    if not isinstance(modality, str) or modality not in MODALITIES:
        raise DataError(f"{config_file}: unknown modality {modality!r}")
    module, name = MODALITIES[modality].split(":")
    return getattr(importlib.import_module(module), name)


def _is_linear(head: Any) -> bool:
    return isinstance(head, str) and head == "linear"


def _head_name(head: Any) -> str:
    return head if isinstance(head, str) else type(head).__name__


def per_class_counts(labels: np.ndarray, classes: Sequence[str]) -> dict[str, int]:
    counts = np.bincount(labels, minlength=len(classes))
    return {name: int(counts[i]) for i, name in enumerate(classes)}


def check_every_class_present(labels: np.ndarray, classes: Sequence[str], origin: str) -> None:
    counts = np.bincount(labels, minlength=len(classes))
    empty = [classes[i] for i in np.flatnonzero(counts == 0)]
    if empty:
        raise DataError(
            f"{origin}: class(es) {empty} have no usable example after skipping bad files; "
            "add examples or remove the class folder"
        )


def _origin(data: Any) -> str:
    return str(data) if isinstance(data, str | Path) else "the given data"
