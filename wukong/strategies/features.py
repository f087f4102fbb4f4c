"""Strategy ``features``: the frozen network as a feature extractor + a linear classifier.

Features ("CNN codes", sentence embeddings) are computed once in batches and cached on disk by
content. A scikit-learn linear classifier is fitted on them: multinomial logistic regression
(softmax) by default, or a linear SVM, with its regularisation chosen by cross-validation. The
fitted scaler + classifier are folded into the network's final linear layer, so the saved model
is one network like every other strategy's (no pickles). Where several ways of reading features
are compared (``search_features``), the kept one may be blended with others (``blend_members``):
still one linear layer, over their concatenated features.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from wukong.calibration import example_log_losses, fit_temperature, log_loss, sigmoid, tune_thresholds
from wukong.choices import LINEAR_MODELS
from wukong.data.label_sets import label_counts, stratify_key
from wukong.errors import ParameterError
from wukong.strategies.softmax import cross_validated_softmax

# Inverse regularisation strengths tried by cross-validation (standardised features).
C_GRID = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0)


# The refit policy, for every modality: when the validation examples were held out of the training
# data and its smallest class has fewer than this many examples, they are measured first and then
# added back for the final fit (with few examples every one counts; with many, a second
# cross-validated fit costs minutes for a fraction of a point).
REFIT_BELOW = 50


def refit_with_validation(carved: bool, labels: np.ndarray, below: int = REFIT_BELOW) -> bool:
    """Whether the final linear fit should also use the (carved) validation examples; see ``REFIT_BELOW``."""
    return carved and int(label_counts(labels, 0).min()) < below


@dataclass
class LinearFit:
    weight: np.ndarray  # (classes, features), in the original feature space
    bias: np.ndarray  # (classes,)
    info: dict[str, Any]
    temperature: float = 1.0  # fitted on the out-of-fold logits (1.0 without folds)
    thresholds: np.ndarray | None = None  # multi-label: per-label thresholds tuned on them
    held_out: np.ndarray | None = None  # the out-of-fold logits of the scored rows, in input order
    held_out_labels: np.ndarray | None = None  # the labels of those rows


def fit_linear_classifier(
    features: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    *,
    model: str = "logistic",
    seed: int = 0,
    groups: np.ndarray | None = None,
    c_grid: Sequence[float] = C_GRID,
    class_weight: np.ndarray | None = None,
    every_example_scored: bool = False,
    standardised: bool = True,
    start: tuple[np.ndarray, np.ndarray] | None = None,
) -> LinearFit:
    """Standardise (unless not ``standardised``: features whose scale already means something, such as
    TF-IDF), then a linear classifier with its C chosen by stratified k-fold CV (from
    ``HOLD_OUT_FROM`` examples, on one held-out fifth, unless ``every_example_scored``: folds then,
    and out-of-fold logits for every example).

    ``model="logistic"``: multinomial logistic regression, C chosen by CV log loss;
    ``model="svm"``: linear SVM, C chosen by CV error (hinge scores are not probabilities; the
    model's ``predict_proba`` is then a softmax of the margins: it ranks, it is not calibrated).
    ``groups`` keeps augmented copies of one example (e.g. its mirror image) in the same fold, and
    only the original is scored (``cv_folds``), so the cross-validation score is honest. ``labels``
    as indicator rows (multi-label): one-vs-rest logistic regressions, and per-label thresholds
    tuned on their out-of-fold probabilities.
    ``class_weight`` (one weight per class) weighs the loss (``wukong.calibration.resolve_class_weight``).
    ``start``: a classifier of these raw features fitted before (weights, bias, as returned here),
    where logistic regression's fit with one C starts (``cross_validated_softmax``): the same
    minimum, in a few steps where it is near.
    Returns weights mapping *raw* features to logits, and the temperature that calibrates them,
    fitted on the out-of-fold logits at the chosen C.
    """
    if model not in LINEAR_MODELS:
        raise ParameterError(f"linear_model={model!r}: choose one of {', '.join(LINEAR_MODELS)}")
    multi = np.ndim(labels) == 2
    if multi and model != "logistic":
        raise ParameterError(f"linear_model={model!r} takes one label per example; multi-label data needs 'logistic'")
    width = np.shape(features)[1]
    x, mean, std = standardise(features) if standardised else (features, np.zeros(width), np.ones(width))
    counts = label_counts(labels, num_classes)
    split = cv_folds(labels, groups, seed, hold_out_from=None if every_example_scored else HOLD_OUT_FROM)
    scored = np.sort(np.concatenate([test for _, test in split])) if split else None
    if model == "logistic":  # softmax regression in torch: the same model as sklearn's, many times faster
        rows = class_weight[labels] if class_weight is not None else None
        begin = standardised_linear(*start, mean, std) if start is not None else None
        search = cross_validated_softmax(x, labels, num_classes, c_grid, folds=split, sample_weight=rows, start=begin)
        weight, bias = search.weight.astype(np.float64), search.bias.astype(np.float64)
        present = np.flatnonzero(counts)
        best_c, cv_loss, cv_loss_se, metric = search.best_c, search.cv_loss, search.cv_loss_se, "log_loss"
        held_out = search.held_out_logits
    else:
        balanced = "balanced" if class_weight is not None else None
        weight, bias, present, best_c, cv_loss, cv_loss_se, held_out = _linear_svm(
            x, labels, num_classes, split, seed, c_grid, balanced
        )
        metric = "error"
    raw_weight, raw_bias = raw_linear(weight, bias, mean, std, present)
    held_out = held_out[scored] if held_out is not None else None  # each example once, as it comes
    temperature = fit_temperature(held_out, labels[scored]) if held_out is not None else 1.0
    thresholds = None
    if multi:
        thresholds = np.full(num_classes, 0.5, np.float32)
        if held_out is not None:
            thresholds = tune_thresholds(sigmoid(held_out, temperature), labels[scored])
    kind = "one_vs_rest_logistic_regression" if multi else "logistic_regression"
    info = {
        "classifier": kind if model == "logistic" else "linear_svm",
        "C": best_c,
        "cv_folds": len(split),
        "cv_metric": metric,
        "cv_loss": cv_loss,
        "cv_loss_se": cv_loss_se,
        "class_weight": "balanced" if class_weight is not None else None,
        "temperature": temperature,
        "calibration_examples": int(len(held_out)) if held_out is not None else 0,
    }
    truth = labels[scored] if held_out is not None else None
    return LinearFit(raw_weight, raw_bias, info, temperature, thresholds, held_out, truth)


def standardise(features: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Features scaled to zero mean and unit variance per column, with the mean and scale used."""
    mean = features.mean(axis=0)
    std = features.std(axis=0) + 1e-6
    return (features - mean) / std, mean, std


# The bias of a class absent from the training data: never predicted.
NEVER_PREDICTED = -1e4


def raw_linear(
    weight: np.ndarray, bias: np.ndarray, mean: np.ndarray, std: np.ndarray, present: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """A linear classifier fitted on ``standardise``d features as one on the raw features (float32),
    classes absent from training (not in ``present``) never predicted."""
    weight, bias = np.asarray(weight, np.float64), np.array(bias, np.float64)
    bias[np.setdiff1d(np.arange(len(bias)), present)] = NEVER_PREDICTED
    # logits = W ((f - mean) / std) + b = (W / std) f + (b - W @ (mean / std))
    return (weight / std).astype(np.float32), (bias - weight @ (mean / std)).astype(np.float32)


def standardised_linear(
    weight: np.ndarray, bias: np.ndarray, mean: np.ndarray, std: np.ndarray
) -> tuple[torch.Tensor, torch.Tensor]:
    """``raw_linear`` undone: a classifier of raw features as one of features standardised with
    ``mean`` and ``std`` (the same logits), classes ``raw_linear`` made never predicted at 0."""
    weight, bias = np.asarray(weight, np.float64), np.asarray(bias, np.float64)
    absent = bias <= NEVER_PREDICTED / 10
    scaled, shifted = weight * std, bias + weight @ mean
    scaled[absent], shifted[absent] = 0.0, 0.0
    return torch.from_numpy(scaled.astype(np.float32)), torch.from_numpy(shifted.astype(np.float32))


# From this many examples, one held-out fifth (4,000 examples or more) scores each C instead of
# 5-fold cross-validation: 2 fits per C instead of 6, and one copy of the features instead of five
# (``benchmarks/scale.py`` compares the two searches on 50,000 CIFAR-10 images).
HOLD_OUT_FROM = 20_000


def cv_folds(
    labels: np.ndarray, groups: np.ndarray | None, seed: int, *, hold_out_from: int | None = HOLD_OUT_FROM
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified k-fold (train rows, test rows) pairs, at most 5 folds and no more than the rarest
    class has examples (none where it has one); from ``hold_out_from`` examples, one stratified
    80/20 split (``None``: folds however many, so that every example is scored).

    ``groups`` marks augmented copies of one example (e.g. its mirror image, listed after it): the
    examples are split, and every copy goes with its example. Only the first row of each example
    (the original) is tested, so the score is of data as it will come.

    Example:
        >>> labels, groups = np.array([0, 0, 1, 1, 0, 0, 1, 1]), np.array([0, 1, 2, 3, 0, 1, 2, 3])
        >>> [(train.tolist(), test.tolist()) for train, test in cv_folds(labels, groups, seed=0)]
        [([0, 3, 4, 7], [1, 2]), ([1, 2, 5, 6], [0, 3])]
    """
    from sklearn.model_selection import StratifiedKFold, StratifiedShuffleSplit

    groups = np.arange(len(labels)) if groups is None else np.asarray(groups)
    _, first, member = np.unique(groups, return_index=True, return_inverse=True)
    key = stratify_key(labels[first])
    counts = label_counts(labels[first], 0)
    large = hold_out_from is not None and len(first) >= hold_out_from
    if large and np.unique(key, return_counts=True)[1].min() >= 2:  # one stratified 80/20 split
        _, test = next(StratifiedShuffleSplit(1, test_size=0.2, random_state=seed).split(key, key))
        return [(np.flatnonzero(~np.isin(member, test)), first[np.sort(test)])]
    # multi-label: folds stratified by each example's rarest label; a label seen once cannot be in every fold
    folds = int(min(5, len(first) // 2 if np.ndim(labels) == 2 else counts[counts > 0].min()))
    if folds < 2:
        return []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # multi-label keys rarer than the folds: stratified as far as they go
        parts = StratifiedKFold(folds, shuffle=True, random_state=seed).split(key, key)
        return [(np.flatnonzero(~np.isin(member, test)), first[test]) for _, test in parts]


def _linear_svm(x, labels, num_classes, split, seed, c_grid, class_weight):  # noqa: ANN001, ANN202
    """A linear SVM (one-vs-rest squared hinge) with C chosen by cross-validated error, and its
    out-of-fold margins at that C (to calibrate them; ``None`` without folds)."""
    from sklearn.base import clone
    from sklearn.model_selection import GridSearchCV
    from sklearn.svm import LinearSVC

    # the dual solver: seconds where the primal one takes minutes at large C (measured at 400 x 384)
    base = LinearSVC(dual=True, max_iter=10_000, random_state=seed, class_weight=class_weight)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence chatter on tiny folds
        if split:
            search = GridSearchCV(base, {"C": list(c_grid)}, cv=split, scoring="accuracy", n_jobs=1)
            search.fit(x, labels)
            fitted, best_c = search.best_estimator_, float(search.best_params_["C"])
            score = float(search.cv_results_["mean_test_score"][search.best_index_])
            cv_loss = round(1.0 - score, 4)
            cv_loss_se = round(float(search.cv_results_["std_test_score"][search.best_index_]) / np.sqrt(len(split)), 4)
            held_out = np.zeros((len(labels), num_classes), dtype=np.float32)
            for train, test in split:
                fold = clone(base).set_params(C=best_c).fit(x[train], labels[train])
                margins = fold.decision_function(x[test])
                held_out[np.ix_(test, fold.classes_)] = _two_columns(margins) if margins.ndim == 1 else margins
        else:  # one example in some class: nothing to cross-validate, use a moderate prior
            best_c, cv_loss, cv_loss_se, held_out = 0.1, None, None, None
            fitted = base.set_params(C=best_c).fit(x, labels)
    weight = np.zeros((num_classes, x.shape[1]), dtype=np.float64)
    bias = np.zeros(num_classes, dtype=np.float64)
    coef, intercept = fitted.coef_, np.atleast_1d(fitted.intercept_)
    if len(fitted.classes_) == 2 and coef.shape[0] == 1:  # binary: one row for the positive class
        coef, intercept = _two_columns(coef.T).T, _two_columns(intercept)[0]
    weight[fitted.classes_] = coef
    bias[fitted.classes_] = intercept
    return weight, bias, fitted.classes_, best_c, cv_loss, cv_loss_se, held_out


def _two_columns(score: np.ndarray) -> np.ndarray:
    """A binary classifier's one score per row (positive class) as two logits whose softmax is the same."""
    score = np.asarray(score, dtype=np.float64).reshape(-1)
    return np.stack([-score / 2, score / 2], axis=1)


def one_standard_error_choice(scores: Sequence[tuple[float | None, float | None, int]]) -> int:
    """Index of the candidate to keep: the simplest one whose loss is within one standard error of
    the best loss.

    ``scores`` holds (cross-validated loss, its standard error, the number of features) per candidate.
    The one-standard-error rule (Breiman et al. 1984; Hastie et al., ESL 7.10): among the candidates
    no worse than the best one's loss plus its standard error, keep the most parsimonious, here the
    one with the fewest features (the first listed on a tie). On a few dozen examples the scores
    differ mostly by noise, and the minimum chases that noise; fewer features overfit less.
    """
    scored = [(loss, se or 0.0, i) for i, (loss, se, _) in enumerate(scores) if loss is not None]
    if not scored:
        return 0
    best_loss, best_se, _ = min(scored)
    within = [i for loss, _, i in scored if loss <= best_loss + best_se]
    return min(within, key=lambda i: (scores[i][2], i))


@dataclass
class Candidate:
    """One way of reading features that ``search_features`` compares: ``name`` (e.g. ``final@224px``),
    ``features()`` -> (features, labels, groups or None) of the training data, ``payload``: what the
    modality needs to build the model from it, and ``why``: the sentence that explains it when it wins."""

    name: str
    features: Callable[[], tuple[np.ndarray, np.ndarray, np.ndarray | None]]
    payload: Any = None
    why: str = ""


@dataclass
class Search:
    best: Candidate
    fit: LinearFit
    tried: dict[str, dict[str, Any]]
    explanation: str  # "" when there was one candidate
    fits: list[LinearFit] = field(default_factory=list)  # every candidate's, in their order
    index: int = 0  # the kept candidate's


def search_features(
    candidates: Sequence[Candidate], fit: Callable[[np.ndarray, np.ndarray, np.ndarray | None], LinearFit]
) -> Search:
    """Fit the cross-validated linear classifier on every candidate and keep the simplest within one
    standard error of the best (``one_standard_error_choice``); the explanation lists every score.

    Example:
        >>> x = np.r_[np.zeros((6, 2)), np.ones((6, 2))] + np.arange(12)[:, None] / 100
        >>> y = np.r_[np.zeros(6, int), np.ones(6, int)]
        >>> only = Candidate("final", lambda: (x, y, None))
        >>> search_features([only], lambda f, lab, g: fit_linear_classifier(f, lab, 2)).best.name
        'final'
    """
    fits, widths = [], []
    for candidate in candidates:
        features, labels, groups = candidate.features()
        fits.append(fit(features, labels, groups))
        widths.append(int(features.shape[1]))
    tried = {
        candidate.name: {**result.info, "features": width}
        for candidate, result, width in zip(candidates, fits, widths, strict=True)
    }
    index = one_standard_error_choice(
        [(f.info["cv_loss"], f.info["cv_loss_se"], w) for f, w in zip(fits, widths, strict=True)]
    )
    best = candidates[index]
    explanation = ""
    if len(candidates) > 1:
        scores = ", ".join(f"{name}: {info['cv_loss']} ± {info['cv_loss_se']}" for name, info in tried.items())
        scored = [(info["cv_loss"], name) for name, info in tried.items() if info["cv_loss"] is not None]
        lowest = min(scored)[1] if scored else None
        if lowest is None:
            verdict = f"too few examples to cross-validate: {best.name}"
        elif best.name == lowest:
            verdict = f"{best.name} has the lowest loss"
        else:
            verdict = f"{best.name} ({widths[index]} features) is the simplest within one standard error of {lowest}"
        metric = fits[index].info["cv_metric"].replace("_", " ")
        explanation = f"measured by cross-validated {metric} ({scores}): {verdict}, kept" + (
            f" ({best.why})" if best.why else ""
        )
    return Search(best, fits[index], tried, explanation, fits, index)


def write_linear(layer: nn.Linear, fit: LinearFit) -> None:
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(fit.weight))
        layer.bias.copy_(torch.from_numpy(fit.bias))


# Rounds of greedy selection a blend takes at most (each adds one member, or one more share of one).
BLEND_ROUNDS = 8


@dataclass
class Blend:
    members: list[int]  # indices of the fits blended, with repeats (each one share)
    start_loss: float  # out-of-fold log loss of the start alone, calibrated
    loss: float  # of the blend, before its own calibration


def blend_members(fits: Sequence[LinearFit], start: int, rounds: int = BLEND_ROUNDS) -> Blend | None:
    """A blend of linear classifiers chosen on their out-of-fold logits, or ``None`` where blending
    does not pay: ensemble selection (Caruana et al., ICML 2004), as AutoGluon ensembles its models.

    From ``fits[start]`` (the candidate the one-standard-error rule keeps), each round adds the fit
    (again, for a larger share) whose calibrated logits, averaged with those chosen, lower the
    out-of-fold log loss most. The blend is kept only where its loss is below the start's by more
    than the start's standard error: on easy data a blend of a near-perfect candidate with weaker
    ones costs accuracy. Every fit must be single-label logistic regression, scored out of fold on
    the same examples.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> y = rng.integers(0, 2, 200)
        >>> def fit(noise):  # out-of-fold logits that each see the label through their own noise
        ...     z = (2 * y - 1) + rng.normal(0, noise, 200)
        ...     info = {"classifier": "logistic_regression", "cv_loss_se": 0.01}
        ...     return LinearFit(np.zeros((2, 1)), np.zeros(2), info, 1.0, None, np.c_[-z, z] / 2, y)
        >>> blend_members([fit(1.0), fit(1.0)], start=0).members
        [0, 1]
    """
    first = fits[start]
    usable = [
        i
        for i, f in enumerate(fits)
        if f.held_out is not None
        and f.info["classifier"] == "logistic_regression"
        and np.ndim(f.held_out_labels) == 1
        and np.array_equal(f.held_out_labels, first.held_out_labels)
    ]
    if start not in usable or len(usable) < 2:
        return None
    labels = first.held_out_labels
    scaled = {i: fits[i].held_out / fits[i].temperature for i in usable}
    chosen, total = [start], scaled[start].astype(np.float64)
    loss = start_loss = log_loss(total, labels)
    for _ in range(rounds):
        trials = {i: log_loss((total + scaled[i]) / (len(chosen) + 1), labels) for i in usable}
        best = min(trials, key=trials.get)
        if trials[best] >= loss:
            break
        chosen.append(best)
        total, loss = total + scaled[best], trials[best]
    if len(set(chosen)) < 2 or start_loss - loss <= (first.info["cv_loss_se"] or 0.0):
        return None
    return Blend(chosen, round(start_loss, 4), round(loss, 4))


def blend_fits(
    fits: Sequence[LinearFit], members: Sequence[int], columns: Sequence[np.ndarray], width: int
) -> LinearFit:
    """One linear classifier over the concatenated features of a blend's ``members`` (fit i reads the
    columns ``columns[i]`` of ``width``): the mean of their calibrated logits is linear in those
    features. Its temperature is fitted again on the blended out-of-fold logits (1.0 where a member
    has none: too few examples to cross-validate)."""
    classes = len(fits[members[0]].bias)
    weight, bias = np.zeros((classes, width), np.float64), np.zeros(classes, np.float64)
    scored = all(fits[i].held_out is not None for i in members)
    held_out = np.zeros_like(fits[members[0]].held_out, dtype=np.float64) if scored else None
    for i in members:
        share = 1.0 / (len(members) * fits[i].temperature)
        weight[:, columns[i]] += share * fits[i].weight
        bias += share * fits[i].bias
        if scored:
            held_out += share * fits[i].held_out
    labels = fits[members[0]].held_out_labels if scored else None
    temperature = fit_temperature(held_out, labels) if scored else 1.0
    losses = example_log_losses(held_out, labels, temperature) if scored else None
    info = {
        "classifier": "blend_of_logistic_regressions",
        "C": sorted({fits[i].info["C"] for i in members}),
        "cv_folds": fits[members[0]].info["cv_folds"],
        "cv_metric": "log_loss",
        "cv_loss": round(float(losses.mean()), 4) if scored else None,
        "cv_loss_se": round(float(losses.std() / np.sqrt(len(losses))), 4) if scored else None,
        "class_weight": None,
        "temperature": temperature,
        "calibration_examples": len(labels) if scored else 0,
    }
    return LinearFit(weight.astype(np.float32), bias.astype(np.float32), info, temperature, None, held_out, labels)
