"""The one estimator, ``TransferClassifier``: the ``fit`` template and the parameters every modality
shares; prediction (``wukong.prediction``) and ``save``/``load`` (``wukong.persistence``) are mixed in.

scikit-learn conventions: ``__init__`` only stores parameters (a dataclass writes it); learned
state ends with ``_``; data is validated at the boundary with messages that say what to do. What
differs per modality (reading data, the backbone, embedding) lives in ``wukong.modalities`` and in
the small subclasses ``ImageClassifier`` and ``TextClassifier``; how to transfer, in
``wukong.strategies``.
"""

from __future__ import annotations

import copy
import shutil
import tempfile
import time
import weakref
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import KW_ONLY, dataclass
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from torch import nn

from wukong.calibration import fit_temperature, resolve_class_weight, sigmoid, tune_thresholds
from wukong.choices import STRATEGIES, check_choices
from wukong.data.label_sets import as_model_labels, label_counts, stratify_key
from wukong.data.labelled import Labelled, check_every_class_present, data_paths, per_class_counts
from wukong.data.split import stratified_split
from wukong.errors import DataError, ParameterError
from wukong.heads import final_linear, is_linear
from wukong.openset import DEFAULT_SCORE, KEEP, OpenSetScore, fit_score
from wukong.persistence import Persistence
from wukong.prediction import Prediction
from wukong.progress import status
from wukong.runtime import private_random_state
from wukong.strategies.auto import Choice, choose
from wukong.strategies.features import LinearFit, fit_linear_classifier, write_linear
from wukong.strategies.self_training import self_train
from wukong.training.devices import check_hardware
from wukong.training.plan import TrainPlan
from wukong.training.quiet import quiet_lightning
from wukong.tuning import resolve_tuning


@dataclass(eq=False, repr=False)  # scikit-learn's repr; identity for equality and hashing
class TransferClassifier(Prediction, Persistence, ClassifierMixin, BaseEstimator, ABC):
    """Base of ``ImageClassifier`` and ``TextClassifier``; not used directly.

    A scikit-learn classifier: ``get_params``/``set_params`` (from ``BaseEstimator``), ``clone``,
    ``score`` (accuracy, from ``ClassifierMixin``), so ``cross_val_score`` and ``GridSearchCV`` work
    on lists or arrays of inputs (paths, texts) with their labels.

    Parameters every modality shares for predictions a user can trust (``wukong.calibration``,
    ``wukong.openset``); probabilities are always calibrated (a temperature fitted on held-out
    predictions):
        class_weight: ``"auto"`` (``"balanced"`` when the largest class has more than 3x the
            smallest's examples), ``"balanced"`` (the training prior divided out of the
            probabilities: decisions that weigh every class the same), ``"loss"`` (the classes
            weighted inversely to their counts in the loss, of the linear classifier and of
            training, as scikit-learn's ``class_weight="balanced"``) or ``None``.
        reject_unknown: ``predict`` answers ``unknown_label`` for an input unlike the training data
            (its ``unknown_score`` below what ``unknown_keep`` of the known validation inputs reach).
        unknown_label: the answer for such an input (default ``"unknown"``).
        unknown_keep: the share of known inputs kept (default 0.95); may change after fitting.

    Several labels per example (a list of labels each, or label cells like ``"cat;dog"`` or a JSON
    list in a file: ``wukong.data.label_sets``) train a multi-label model (``multi_label_``): a
    sigmoid per label, thresholds tuned per label on held-out predictions, ``predict`` giving lists
    of labels and ``score`` the subset accuracy.
    """

    modality: ClassVar[str] = ""
    strategies: ClassVar[tuple[str, ...]] = STRATEGIES
    # During ``fit`` only: the unlabelled inputs as the modality reads them, and what self-training decided.
    _pool: ClassVar[Any] = None
    _semi: ClassVar[dict[str, Any] | None] = None

    # The parameters every modality takes (documented in each subclass); a subclass adds its own
    # and may change a default. A dataclass writes ``__init__``, which only stores them, and its
    # signature is what scikit-learn's ``get_params`` reads.
    backbone: Any = None
    _: KW_ONLY
    strategy: str = "auto"
    head: str | nn.Module = "linear"
    linear_model: str = "logistic"
    class_weight: str | None = "auto"
    reject_unknown: bool = False
    unknown_label: str = "unknown"
    unknown_keep: float = KEEP
    unfreeze: int | str | None = None
    epochs: int | None = None
    head_epochs: int | None = None
    lr: float = 2e-3
    backbone_lr_ratio: float = 0.1
    batch_size: int = 64
    val_fraction: float = 0.2
    bf16: bool | None = None
    tuning: dict[str, Any] | None = None
    seed: int = 0
    progress: bool = True
    accelerator: str = "auto"
    devices: int | str = 1
    num_nodes: int = 1
    num_workers: int | None = None

    def __sklearn_is_fitted__(self) -> bool:
        return getattr(self, "net_", None) is not None

    # --- fitting -------------------------------------------------------------------------------

    def fit(
        self,
        data: Any,
        labels: Sequence[Any] | None = None,
        *,
        val: Any = None,
        unlabeled: Any = None,
        work_dir: str | Path | None = None,
        resume: bool = False,
    ) -> Self:
        """Train on labelled data; returns ``self``.

        ``data``: a folder or table file whose labels it holds (image class folders, a CSV of
        ``path,label``, a CSV/TSV/JSONL of texts), several of one kind as one set
        (``wukong.Sources(folder, "to_label.csv")``), or a list or array of inputs (image paths,
        texts) with ``labels``. ``val``: a validation set in the same forms (a path or an ``(inputs, labels)``
        pair); without it a seeded stratified ``val_fraction`` is held out. ``unlabeled``: inputs
        without labels (image files or folders, texts): the linear classifier of ``features``
        pseudo-labels them and trains again, kept only where cross-validation says it helps
        (``wukong.strategies.self_training``; ``metrics_["semi_supervised"]`` says what was
        decided, and why). ``work_dir`` keeps
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
            try:
                return self._fit(data, labels, val=val, unlabeled=unlabeled, work_dir=work_dir, resume=resume)
            finally:
                self._pool = None  # the unlabelled inputs are not kept with the model

    def _fit(
        self, data: Any, labels: Sequence[Any] | None, *, val: Any, unlabeled: Any, work_dir: Any, resume: bool
    ) -> Self:
        """One way for every modality: read -> split -> choose -> run the strategy -> record."""
        started = time.time()
        self._start_fit()
        train, skipped = self._read_labelled(data, labels, None, "training")
        self._pool, self._semi = None, None
        if unlabeled is not None:
            self._pool, more = self._read_pool(unlabeled)
            skipped += more
        self.classes_ = list(train.classes)
        self.multi_label_ = train.labels.ndim == 2
        check_every_class_present(train.labels, self.classes_, train.origin)
        if val is not None:
            pair = val if isinstance(val, tuple) else (val, None)
            val_set, more = self._read_known(*pair, "validation")
            skipped += more
            carved = False
        else:
            train_idx, val_idx = self._hold_out(train.labels, train.origin)
            train, val_set, carved = train.subset(train_idx), train.subset(val_idx), True
        if len(val_set) == 0:
            raise DataError(f"{val_set.origin}: no usable validation example")
        choice = self._choose(train.labels, len(self.classes_), self._stages())
        counts = label_counts(train.labels, len(self.classes_))
        self.balance_, values, why = self._balance(counts)
        self._label_prior = counts / max(1, len(train))  # multi-label: where a trained head's biases start
        self.class_weights_ = values if self.balance_ == "loss" else None  # in the losses
        self.logit_offsets_ = values if self.balance_ == "balanced" else None  # in the probabilities
        if why:
            choice = Choice(choice.strategy, choice.unfreeze, f"{choice.reason}; {why}")
        self.thresholds_ = np.full(len(self.classes_), 0.5, np.float32) if self.multi_label_ else None
        self._set_temperature(1.0, "nothing yet", 0)
        work = self._work_dir(work_dir)
        choice, extra = self._run_strategy(choice, train, val_set, work=work, resume=resume, carved=carved)
        if unlabeled is not None:
            choice, extra["semi_supervised"] = self._semi_supervised(choice)
        skipped += extra.pop("skipped_in_training", [])  # streamed images unusable since they were listed
        # measured before any refit on train + val, so it is an honest held-out figure
        val_metrics = extra.pop("val")
        sets = extra.pop("sets", (train.examples, val_set.examples))
        self.open_set_ = self._fit_open_set(*sets, val_logits=extra.pop("val_logits", None))
        extra["open_set"] = self.open_set_.config()
        for key, given in (("train_data", data), ("val_data", val)):
            if paths := data_paths(given):  # where the data came from: 'wukong suggest' leaves these items out
                extra[key] = paths
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

    @abstractmethod
    def _embedded(
        self, data: Any, labels: Sequence[Any] | None, classes: Sequence[str] | None, role: str
    ) -> tuple[Labelled, list[dict[str, Any]], np.ndarray]:
        """``_read_labelled``, and the pretrained network's features of every example (``wukong.audit``)."""

    def _read_pool(self, inputs: Any) -> tuple[Any, list[dict[str, Any]]]:
        """Unlabelled inputs for ``fit(unlabeled=...)``, read as the training inputs are, and what had
        to be skipped."""
        raise ParameterError(f"{type(self).__name__} does not take unlabelled data")

    def _balance(self, counts: np.ndarray) -> tuple[str | None, np.ndarray | None, str]:
        """How imbalance is treated (``wukong.calibration.resolve_class_weight``); multi-label
        models tune a threshold per label instead."""
        if not self.multi_label_:
            return resolve_class_weight(self.class_weight, counts)
        if self.class_weight not in ("auto", None):
            raise ParameterError(
                f"class_weight={self.class_weight!r} is for one label per example; a multi-label model tunes "
                "a threshold per label instead: leave class_weight='auto'"
            )
        why = (
            "several labels per example: one sigmoid output per label, and a threshold per label tuned "
            "on held-out predictions (pulled towards one shared threshold for labels with few of them)"
        )
        return None, None, why

    def _read_known(self, data: Any, labels: Sequence[Any] | None, role: str) -> tuple[Labelled, list[dict[str, Any]]]:
        """``_read_labelled`` of a validation or test set: with the training classes, and its labels
        in the fitted model's form (``as_model_labels``)."""
        labelled, skipped = self._read_labelled(data, labels, self.classes_, role)
        converted = as_model_labels(labelled.labels, len(self.classes_), self.multi_label_, labelled.origin)
        if converted is not labelled.labels:
            labelled.labels = converted
            if isinstance(getattr(labelled.examples, "labels", None), np.ndarray):  # an ImageStore's own copy
                labelled.examples.labels = converted
        return labelled, skipped

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
        check_choices(self.strategy, self.linear_model, self.class_weight, self.strategies)
        if not (isinstance(self.unknown_keep, float | int) and 0.5 <= self.unknown_keep < 1):
            raise ParameterError(
                f"unknown_keep={self.unknown_keep!r}: give the share of known inputs to keep, in [0.5, 1)"
            )
        check_hardware(self.accelerator, self.devices, self.num_nodes, self.num_workers)

    def _auto_choice(self, per_class_min: int, per_class_median: float, stages: int) -> Choice:
        """The modality's ``auto`` rule (``wukong.strategies.auto``) with this estimator's tuning."""
        small, large = self.tuning_["small"], self.tuning_["large"]
        return choose(per_class_min, per_class_median, stages=stages, small=small, large=large)

    def _choose(self, labels: np.ndarray, num_classes: int, stages: int) -> Choice:
        """The strategy: ``auto``'s, or the one asked for, with the blocks ``finetune`` unfreezes."""
        counts = label_counts(labels, num_classes)
        auto = self._auto_choice(int(counts.min()), float(np.median(counts)), stages)
        linear = is_linear(self.head)
        if self.strategy == "auto":
            if auto.strategy == "features" and not linear:
                head = self.head if isinstance(self.head, str) else type(self.head).__name__
                return Choice(
                    "head", 0, f"{auto.reason}; the given {head} head is trained on the frozen network instead"
                )
            return auto
        if self.strategy == "features" and not linear:
            raise ParameterError("strategy 'features' fits a linear classifier; use 'head' or 'finetune' for this head")
        unfreeze: int | str = 0
        if self.strategy == "finetune":
            unfreeze = self.unfreeze if self.unfreeze is not None else (auto.unfreeze or min(2, stages) or "all")
        return Choice(self.strategy, unfreeze, f"strategy '{self.strategy}' asked for")

    def _linear(
        self, feats: np.ndarray, labels: np.ndarray, groups: np.ndarray | None = None, **options: Any
    ) -> LinearFit:
        """The cross-validated linear classifier of ``features``, as this estimator's parameters and
        tuning say (``groups``: augmented copies of one example, kept in one fold; ``options``: what
        the features need instead, e.g. TF-IDF's, ``backbones.ngrams.FIT_OPTIONS``)."""
        how = {"model": self.linear_model, "seed": self.seed, "c_grid": self.tuning_["c_grid"]}
        how["class_weight"] = self.class_weights_
        start = getattr(self, "_linear_start", None)  # a warm start's: the fitted classifier, of the same shape
        if start is not None and start[0].shape == (len(self.classes_), feats.shape[1]):
            how["start"] = start
        how.update(options)
        desc = f"Cross-validating the linear classifier on {len(feats)} x {feats.shape[1]} features"
        with status(desc, enabled=self.progress):
            return fit_linear_classifier(feats, labels, len(self.classes_), groups=groups, **how)

    def _self_trained(
        self, fit: LinearFit, feats: np.ndarray, labels: np.ndarray, groups: np.ndarray | None, *, pool: np.ndarray
    ) -> LinearFit:
        """``fit`` trained again with the unlabelled ``pool`` features pseudo-labelled, where
        cross-validation says that helps (or always, with ``tuning={"pseudo_labels": "always"}``);
        what was decided is kept for ``metrics_``."""
        desc = f"Pseudo-labelling {len(pool)} unlabelled examples"
        with status(desc, enabled=self.progress):
            how = {"groups": groups, "seed": self.seed, "class_weight": self.class_weights_}
            result = self_train(feats, labels, pool, fit, len(self.classes_), **how)
        if self.tuning_["pseudo_labels"] == "always" and result.forced is not None:
            result.info["used"] = True
            result.info["why"] += " (used: tuning pseudo_labels='always')"
            result.fit = result.forced
        self._semi = result.info
        return result.fit

    def _semi_supervised(self, choice: Choice) -> tuple[Choice, dict[str, Any]]:
        """What became of the unlabelled data, said in the strategy's reason too."""
        info = self._semi or {
            "used": False,
            "why": f"unlabelled data not used: strategy '{choice.strategy}' trains a network, and only the linear "
            "classifier of 'features' pseudo-labels",
        }
        return Choice(choice.strategy, choice.unfreeze, f"{choice.reason}; {info['why']}"), info

    def _write_linear(self, fit: LinearFit, *, calibrate: bool = True) -> None:
        """Put a fitted linear classifier in the head's final layer, with (``calibrate``) its
        calibration: the temperature fitted on its out-of-fold logits."""
        write_linear(final_linear(self.net_.head), fit)
        if not calibrate:
            return
        if fit.info["calibration_examples"]:
            source = f"out-of-fold predictions of the linear classifier ({fit.info['cv_folds']} folds)"
            self.thresholds_ = fit.thresholds if self.multi_label_ else None
            self._set_temperature(fit.temperature, source, fit.info["calibration_examples"])
        else:
            self._set_temperature(1.0, "nothing: too few examples to hold any out", 0)

    def _calibrate(self, logits: np.ndarray, labels: np.ndarray, source: str) -> None:
        """Fit the temperature (and, multi-label, the thresholds) on held-out ``logits`` (``wukong.calibration``)."""
        temperature = fit_temperature(logits, labels)
        if self.multi_label_:
            self.thresholds_ = tune_thresholds(sigmoid(logits, temperature), labels)
        self._set_temperature(temperature, source, len(labels))

    def _set_temperature(self, temperature: float, source: str, examples: int | None) -> None:
        self.temperature_ = float(temperature)
        self.calibration_ = {"temperature": self.temperature_, "fitted_on": source, "examples": examples}
        if self.logit_offsets_ is not None:
            self.calibration_["logit_offsets"] = [round(float(v), 6) for v in self.logit_offsets_]
        if self.multi_label_:
            self.calibration_["thresholds"] = [round(float(v), 6) for v in self.thresholds_]

    def _fit_open_set(self, train_examples: Any, val_examples: Any, val_logits: np.ndarray | None) -> OpenSetScore:
        """The score of how much an input looks like the training data, and its reference among known
        validation inputs (``wukong.openset``): features of both sets through the fitted network.
        ``val_logits``: the validation logits of the classifier before it was refitted on them too
        (in-sample logits would set the reference too high)."""
        with status("Scoring known inputs (for 'none of these')", enabled=self.progress):
            train_features, val_features = self._features_of(train_examples), self._features_of(val_examples)
            train_logits = self._logits_from_features(train_features)
            if val_logits is None:
                val_logits = self._logits_from_features(val_features)
            how = {"temperature": self.temperature_, "seed": self.seed}
            return fit_score(DEFAULT_SCORE, train_features, train_logits, val_features, val_logits, **how)

    def _features_of(self, examples: Any) -> np.ndarray:
        """The fitted network's features of labelled examples (as ``_read_labelled`` gives them)."""
        return self._features_prepared(self._inputs_of(examples)[1])

    def _train_plan(self, blocks: list[nn.Module], epochs: int, head_epochs: int, **more: Any) -> TrainPlan:
        """A training plan with this estimator's rates, precision, class weights and seed
        (``strategies.finetune``). A multi-label head about to be trained starts with each label's
        training log-odds as its bias: its first sigmoid outputs are then the label frequencies, not
        0.5 for every label, which trains many times faster (the usual prior initialisation)."""
        layer = final_linear(self.net_.head)
        if self.multi_label_ and layer is not None and not getattr(self, "_warm", False):
            prior = np.clip(self._label_prior, 1e-4, 1 - 1e-4)
            with torch.no_grad():
                layer.bias.copy_(torch.from_numpy(np.log(prior / (1 - prior)).astype(np.float32)))
        how = {"lr": self.lr, "backbone_lr_ratio": self.backbone_lr_ratio, "bf16": self.bf16_, "seed": self.seed}
        how |= {"accelerator": self.accelerator, "devices": self.devices, "num_nodes": self.num_nodes}
        how |= {"num_workers": self.num_workers}
        weights = tuple(float(w) for w in self.class_weights_) if self.class_weights_ is not None else None
        return TrainPlan(blocks=blocks, epochs=epochs, head_epochs=head_epochs, class_weight=weights, **how, **more)

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
        train_idx, val_idx = stratified_split(stratify_key(labels), self.val_fraction, seed=self.seed)
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
        # Strategies without epochs have no logs: name the (absent) folder all the same (save puts
        # the report's TensorBoard figures there, and points metrics.json at it)
        extra.setdefault("history", {"epochs": [], "logs": str(work / "logs")})
        if choice.strategy == "finetune":  # the blocks tuned (``chosen_params``)
            extra.setdefault("unfreeze", choice.unfreeze)
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
            "class_weight": self.balance_,
            "multi_label": self.multi_label_,
            "calibration": self.calibration_,
            **extra,
        }

    @abstractmethod
    def _source(self, data: Any, labels: Sequence[Any] | None, classes: Sequence[str] | None = None) -> Any:
        """Read labelled data (files are listed, not decoded): an object with ``classes``."""

    def chosen_params(self) -> dict[str, Any]:
        """This model's parameters with the choices its fit made written in: the backbone, the
        strategy, the blocks it tuned, the classifier's C and the modality's own (``_chosen``; for
        images under ``features``, the features read, the input size and mirror images). A new
        estimator made with them fits again without searching: a quick re-train after more labels
        (``wukong train --like MODEL``; README, "Training again"). A blend of classifiers
        (``strategies.features.blend_members``) becomes one, on all its members' features, with
        their values of C to choose from.

        Example:
            >>> model = wukong.load("runs/cat_dog")                                   # doctest: +SKIP
            >>> again = type(model)(**model.chosen_params()).fit("more_photos/")       # doctest: +SKIP
        """
        self._check_fitted()
        params = {**self.get_params(deep=False), "strategy": self.strategy_}
        if params["backbone"] is None:  # a loaded model: the name or path it was trained from, where one was
            params["backbone"] = getattr(self, "backbone_given_", None)
        unfreeze = self.metrics_.get("unfreeze")
        if self.strategy_ == "finetune" and unfreeze:
            params["unfreeze"] = unfreeze
        c = (self.metrics_.get("classifier") or {}).get("C")
        if c is not None:  # cross-validated still (the out-of-fold logits calibrate it); a blend's: its members'
            params["tuning"] = {**(params["tuning"] or {}), "c_grid": list(c) if isinstance(c, list) else [c]}
        return {**params, **self._chosen()}

    def _chosen(self) -> dict[str, Any]:
        """The modality's part of ``chosen_params``: parameters that fix what its fit searched."""
        return {}

    def retraining(self, **params: Any) -> TransferClassifier:
        """An estimator to train again with this model's choices (``chosen_params``), ``params`` on top
        (how to run it: progress, hardware, engine): what ``wukong train --like`` fits. Where this
        model's solution can start the new fit (``_starts_retraining``: an image model's linear
        classifier on frozen features), a copy of this model with ``warm_start``: its classifier
        starts from this one's weights, where the features and classes have their shapes, and
        reaches the same minimum in fewer steps. This model is left as it is.

        Example:
            >>> model = wukong.load("runs/cat_dog")                                   # doctest: +SKIP
            >>> again = model.retraining(progress=False).fit("cat_dog_more/train")    # doctest: +SKIP
        """
        params = {**self.chosen_params(), **params}
        if not self._starts_retraining(params):
            return type(self)(**params)
        return copy.deepcopy(self, self._shared_when_retrained()).set_params(**{**params, "warm_start": True})

    def _starts_retraining(self, params: dict[str, Any]) -> bool:
        """Whether ``retraining`` with ``params`` starts from this model (``warm_start``) rather than
        from nothing."""
        return False

    def _shared_when_retrained(self) -> dict[int, Any]:
        """What ``retraining``'s copy shares with this model (``copy.deepcopy``'s memo): parts its fit
        leaves as they are."""
        return {}

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
