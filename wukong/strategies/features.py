"""Strategy ``features``: the frozen network as a feature extractor + a linear classifier.

Features ("CNN codes", sentence embeddings) are computed once in batches and cached on disk by
content. A scikit-learn linear classifier is fitted on them: multinomial logistic regression
(softmax) by default, or a linear SVM, with its regularisation chosen by cross-validation. The
fitted scaler + classifier are folded into the network's final linear layer, so the saved model
is one network like every other strategy's (no pickles).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from wukong.errors import ParameterError

# Inverse regularisation strengths tried by cross-validation (standardised features).
C_GRID = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0)


@dataclass
class LinearFit:
    weight: np.ndarray  # (classes, features), in the original feature space
    bias: np.ndarray  # (classes,)
    info: dict[str, Any]


# The linear models ``features`` can fit: multinomial logistic regression (softmax), whose outputs
# are calibrated probabilities, or a linear SVM (one-vs-rest squared hinge), whose scores are margins.
LINEAR_MODELS = ("logistic", "svm")


def fit_linear_classifier(
    features: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    *,
    model: str = "logistic",
    seed: int = 0,
    groups: np.ndarray | None = None,
) -> LinearFit:
    """Standardise, then a linear classifier with its C chosen by stratified k-fold CV.

    ``model="logistic"``: multinomial logistic regression, C chosen by CV log loss;
    ``model="svm"``: linear SVM, C chosen by CV error (hinge scores are not probabilities; the
    model's ``predict_proba`` is then a softmax of the margins: it ranks, it is not calibrated).
    ``groups`` keeps augmented copies of one example (e.g. its mirror image) in the same fold, so
    the cross-validation score is honest. Returns weights mapping *raw* features to logits.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, StratifiedGroupKFold, StratifiedKFold
    from sklearn.svm import LinearSVC

    if model not in LINEAR_MODELS:
        raise ParameterError(f"linear_model={model!r}: choose one of {', '.join(LINEAR_MODELS)}")
    mean = features.mean(axis=0)
    std = features.std(axis=0) + 1e-6
    x = (features - mean) / std
    counts = np.bincount(labels, minlength=num_classes)
    folds = int(min(5, counts[counts > 0].min()))
    if model == "logistic":
        base, scoring, metric = LogisticRegression(max_iter=3000, tol=1e-4), "neg_log_loss", "log_loss"
    else:
        # the dual solver: seconds where the primal one takes minutes at large C (measured at 400 x 384)
        base, scoring, metric = LinearSVC(dual=True, max_iter=10_000, random_state=seed), "accuracy", "error"
    if folds >= 2:
        splitter = (
            StratifiedGroupKFold(folds, shuffle=True, random_state=seed)
            if groups is not None
            else StratifiedKFold(folds, shuffle=True, random_state=seed)
        )
        search = GridSearchCV(base, {"C": list(C_GRID)}, cv=splitter, scoring=scoring, n_jobs=1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # convergence chatter on tiny folds
            search.fit(x, labels, groups=groups)
        fitted, best_c = search.best_estimator_, float(search.best_params_["C"])
        score = float(search.cv_results_["mean_test_score"][search.best_index_])
        cv_loss = round(-score if metric == "log_loss" else 1.0 - score, 4)
        # standard error of that mean over the folds: what "clearly better" is measured against
        cv_loss_se = round(float(search.cv_results_["std_test_score"][search.best_index_]) / np.sqrt(folds), 4)
    else:  # one example in some class: nothing to cross-validate, use a moderate prior
        best_c, cv_loss, cv_loss_se = 0.1, None, None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fitted = base.set_params(C=best_c).fit(x, labels)
    weight = np.zeros((num_classes, x.shape[1]), dtype=np.float64)
    bias = np.zeros(num_classes, dtype=np.float64)
    coef, intercept = fitted.coef_, np.atleast_1d(fitted.intercept_)
    if len(fitted.classes_) == 2 and coef.shape[0] == 1:  # binary: one row for the positive class
        coef = np.vstack([-coef / 2, coef / 2])
        intercept = np.array([-intercept[0] / 2, intercept[0] / 2])
    weight[fitted.classes_] = coef
    bias[fitted.classes_] = intercept
    missing = np.setdiff1d(np.arange(num_classes), fitted.classes_)
    bias[missing] = -1e4  # classes absent from training are never predicted
    # logits = W ((f - mean) / std) + b = (W / std) f + (b - W @ (mean / std))
    raw_weight = weight / std
    raw_bias = bias - weight @ (mean / std)
    info = {
        "classifier": "logistic_regression" if model == "logistic" else "linear_svm",
        "C": best_c,
        "cv_folds": folds,
        "cv_metric": metric,
        "cv_loss": cv_loss,
        "cv_loss_se": cv_loss_se,
    }
    return LinearFit(raw_weight.astype(np.float32), raw_bias.astype(np.float32), info)


def one_standard_error_choice(losses: list[tuple[float | None, float | None]]) -> int:
    """Index of the candidate to keep: the first (the default) unless another is clearly better.

    ``losses`` holds (cross-validated loss, its standard error) per candidate, the default first.
    The one-standard-error rule (Breiman et al. 1984; Hastie et al., ESL 7.10): keep the default
    when its loss is within one standard error of the best one. On a few dozen examples the
    candidates' scores differ mostly by noise, and picking the minimum would chase that noise.
    """
    scored = [(loss, se or 0.0, i) for i, (loss, se) in enumerate(losses) if loss is not None]
    if not scored or losses[0][0] is None:
        return 0 if not scored else min(scored)[2]
    best_loss, best_se, best = min(scored)
    return 0 if losses[0][0] <= best_loss + best_se else best


def write_linear(layer: nn.Linear, fit: LinearFit) -> None:
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(fit.weight))
        layer.bias.copy_(torch.from_numpy(fit.bias))
