"""Semi-supervised ``features``: unlabelled examples pseudo-labelled by the linear classifier, kept
only where cross-validation says they help.

Self-training (Yarowsky 1995; "pseudo-labelling", Lee 2013) on the frozen features: the
cross-validated classifier labels the unlabelled pool; for each class, the pool items it predicts
most confidently for that class join the training data (the same number per class, so a classifier
that leans towards one class does not pull the pool further that way); the classifier is fitted
again, and the pool labelled again, for ``rounds`` rounds, taking more each round.

Whether it helps depends on the data (on SST-2 with 8 labels per class it helps on some samples and
harms on others), so it is measured, never assumed: every cross-validation fold runs the same rounds
from its own training part alone (the pool labelled by that fold's classifier, so no held-out label
leaks in), and the held-out examples are scored with and without. The pseudo-labels are kept when
the calibrated held-out log loss with them is lower than without by more than one standard error
of the paired difference (the one-standard-error rule ``features`` uses everywhere, the plain
classifier being the simpler model: with a few dozen labels, smaller differences are mostly
noise); the final model is then the same rounds run on every labelled example.

Written here rather than taken from scikit-learn's ``SelfTrainingClassifier``: the pseudo-labels
must come from Wukong's cross-validated, calibrated classifier (at the regularisation it chose),
be balanced per class, and be measured fold by fold against the plain classifier, none of which
that wrapper does.

Example:
    >>> rng = np.random.default_rng(0)
    >>> centres = np.array([[3.0, 0.0], [-3.0, 0.0]])
    >>> y = np.repeat([0, 1], 6)
    >>> x = centres[y] + rng.normal(size=(12, 2))
    >>> pool = centres[rng.integers(0, 2, 200)] + rng.normal(size=(200, 2))
    >>> from wukong.strategies.features import fit_linear_classifier
    >>> plain = fit_linear_classifier(x, y, 2)
    >>> result = self_train(x, y, pool, plain, 2)
    >>> result.info["pseudo_labels"] > 0
    True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from wukong.calibration import example_log_losses, fit_temperature
from wukong.strategies.features import LinearFit, cv_folds, raw_linear, standardise
from wukong.strategies.softmax import fit_softmax_blocks

# Rounds of pseudo-labelling, and how many pool items per class each round adds, as a multiple of
# the labelled examples per class (round r takes r times as many, from the whole pool again). A
# count rather than a probability threshold: a weak classifier is sure of few items and a strong
# one of nearly all, so one threshold takes too few from the first or too many from the second.
ROUNDS = 2
PER_CLASS_RATIO = 2
# The weight of a pseudo-labelled row against a labelled one in the loss.
PSEUDO_WEIGHT = 1.0


@dataclass
class SelfTraining:
    fit: LinearFit  # the classifier to use: with the pseudo-labels where they helped, else ``plain``
    info: dict[str, Any]  # what was measured and decided, for the explanation and metrics.json
    forced: LinearFit | None = None  # the classifier with the pseudo-labels, kept or not (None: not run)


def self_train(
    features: np.ndarray,
    labels: np.ndarray,
    pool: np.ndarray,
    plain: LinearFit,
    num_classes: int,
    *,
    groups: np.ndarray | None = None,
    seed: int = 0,
    class_weight: np.ndarray | None = None,
    rounds: int = ROUNDS,
    ratio: float = PER_CLASS_RATIO,
    weight: float = PSEUDO_WEIGHT,
) -> SelfTraining:
    """Self-train the linear classifier ``plain`` (fitted on ``features``, ``labels`` by
    ``fit_linear_classifier`` with the same ``groups``, ``seed`` and ``class_weight``) on the
    unlabelled ``pool`` features, and keep the result only where cross-validation says it helps.

    Returns the classifier to use and an ``info`` dict: ``used``, the held-out log losses with and
    without, their paired difference and its standard error, the number of pseudo-labels and a
    sentence saying what was decided and why.
    """
    base = {"pool": int(len(pool)), "rounds": rounds, "per_class_ratio": ratio}
    if plain.held_out is None or plain.info["classifier"] != "logistic_regression" or not len(pool):
        why = (
            "no usable unlabelled example"
            if not len(pool)
            else "too few labelled examples to measure whether pseudo-labels help"
            if plain.held_out is None
            else "pseudo-labels are used by the logistic classifier of one label per example only"
        )
        return SelfTraining(plain, {**base, "used": False, "why": f"unlabelled data not used: {why}"})
    scaled, mean, std = standardise(features)
    x = torch.from_numpy(scaled.astype(np.float32))
    p = torch.from_numpy(((pool - mean) / std).astype(np.float32))
    y = torch.from_numpy(np.asarray(labels, dtype=np.int64))
    rows = torch.ones(len(y)) if class_weight is None else torch.from_numpy(class_weight[labels].astype(np.float32))
    split = cv_folds(labels, groups, seed)
    originals = labels if groups is None else labels[np.unique(groups, return_index=True)[1]]
    counts = np.bincount(originals, minlength=num_classes)
    per_class = max(1, int(round(ratio * np.median(counts[counts > 0]))))
    problems = [train for train, _ in split] + [np.arange(len(y))]
    c = float(plain.info["C"])
    models, taken = _rounds(x, y, rows, p, problems, num_classes, c, per_class, rounds, weight, class_weight)
    scored = np.sort(np.concatenate([test for _, test in split]))
    held_out = np.zeros((len(y), num_classes), dtype=np.float32)
    with torch.no_grad():
        for (_, test), (w, b) in zip(split, models, strict=False):
            held_out[test] = (x[test] @ w.T + b).numpy()
    held_out = held_out[scored]
    truth = labels[scored]
    temperature = fit_temperature(held_out, truth)
    with_pseudo = example_log_losses(held_out, truth, temperature)
    without = example_log_losses(plain.held_out, truth, plain.temperature)
    diff = with_pseudo - without
    gain, gain_se = float(-diff.mean()), float(diff.std(ddof=1) / np.sqrt(len(diff)))
    used = gain > gain_se  # the one-standard-error rule: the plain classifier is the simpler one
    accuracy = {
        "with": round(float((held_out.argmax(1) == truth).mean()), 4),
        "without": round(float((plain.held_out.argmax(1) == truth).mean()), 4),
    }
    measured = (
        f"held-out log loss {with_pseudo.mean():.4f} with {taken[-1]} pseudo-labelled examples, "
        f"{without.mean():.4f} without ({len(split)}-fold cross-validation, each fold pseudo-labelling "
        f"the pool from its own training part); "
        + (
            "lower by more than one standard error"
            if used
            else f"not lower by more than one standard error ({gain_se:.4f}), so the plain classifier is kept"
        )
    )
    info = {
        **base,
        "used": used,
        "pseudo_labels": int(taken[-1]),
        "per_class": per_class * rounds,
        "cv_log_loss": {"with": round(float(with_pseudo.mean()), 4), "without": round(float(without.mean()), 4)},
        "cv_accuracy": accuracy,
        "log_loss_gain": round(gain, 4),
        "log_loss_gain_se": round(gain_se, 4),
        "why": f"unlabelled data {'used' if used else 'not used'}: {measured}",
    }
    w, b = models[-1]
    raw = raw_linear(w.numpy(), b.numpy(), mean, std, np.unique(labels))
    fit_info = {**plain.info, "temperature": temperature, "cv_loss": info["cv_log_loss"]["with"], "self_training": True}
    fitted = LinearFit(*raw, fit_info, temperature, None, held_out)
    return SelfTraining(fitted if used else plain, info, fitted)


def _rounds(x, y, rows, pool, problems, num_classes, c, per_class, rounds, weight, class_weight):  # noqa: ANN001, ANN202
    """Fit each problem's rows (a fold's training part, then all), then ``rounds`` times: label the
    pool with that problem's classifier, add each class's ``per_class * round`` most confident
    items, fit again (warm-started). Returns each problem's final weights and the pseudo-labels
    added to each."""
    blocks = [(x[r], y[r], rows[r]) for r in problems]
    models = fit_softmax_blocks(blocks, num_classes, c, [None] * len(blocks))
    taken = [0] * len(problems)
    for round_ in range(1, rounds + 1):
        blocks = []
        for i, (r, (w, b)) in enumerate(zip(problems, models, strict=True)):
            with torch.no_grad():
                index, pseudo = pick(pool @ w.T + b, per_class * round_)
            extra = torch.full((len(index),), weight)
            if class_weight is not None:
                extra = extra * torch.from_numpy(class_weight.astype(np.float32))[pseudo]
            blocks.append((torch.cat([x[r], pool[index]]), torch.cat([y[r], pseudo]), torch.cat([rows[r], extra])))
            taken[i] = len(index)
        models = fit_softmax_blocks(blocks, num_classes, c, models)
    return models, taken


def pick(logits: torch.Tensor, per_class: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The pool rows to pseudo-label and their labels: for each class, the (at most) ``per_class``
    rows predicted as that class with the highest probability.

    Example:
        >>> logits = torch.tensor([[3.0, 0.0], [1.0, 0.0], [0.0, 2.0], [2.0, 0.0]])
        >>> [t.tolist() for t in pick(logits, 1)]
        [[0, 2], [0, 1]]
    """
    confidence, predicted = torch.softmax(logits, dim=1).max(dim=1)
    index = []
    for k in predicted.unique():
        members = torch.nonzero(predicted == k).flatten()
        index.append(members[confidence[members].argsort(descending=True)[:per_class]])
    index = torch.cat(index).sort().values if index else torch.zeros(0, dtype=torch.long)
    return index, predicted[index]
