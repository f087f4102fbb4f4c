"""The checks of ``wukong.audit``, on what every modality gives: content hashes, the pretrained
network's features, labels. Pure functions of arrays; no reading, no pages.

Label errors are found by confident learning (``cleanlab``) on out-of-fold probabilities of the
same cross-validated linear classifier ``features`` trains (``wukong.strategies.features``), so a
flagged item is one the data's other items, through the pretrained network, say is mislabelled.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from wukong.calibration import sigmoid, softmax
from wukong.data.label_sets import label_counts
from wukong.strategies.features import fit_linear_classifier
from wukong.tuning import DEFAULTS

# Modified z-score (Iglewicz and Hoaglin): an item is an outlier when its similarity to the nearest
# class mean lies more than this many robust standard deviations (1.4826 x the median absolute
# deviation) below the median item's.
OUTLIER_Z = 3.0
# A label is likely wrong when cleanlab finds it and the classifier gives it less than this probability.
GIVEN_BELOW = 0.05
# A class is tiny below this many examples (fewer cannot fill 5 cross-validation folds) or below
# this share of the median class.
TINY_EXAMPLES, TINY_SHARE = 5, 0.1


def normalised(features: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))
    return x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)


def exact_groups(hashes: Sequence[str]) -> list[list[int]]:
    """Indices of items with the same content hash, a list per hash held more than once."""
    seen: dict[str, list[int]] = {}
    for i, digest in enumerate(hashes):
        seen.setdefault(digest, []).append(i)
    return [group for group in seen.values() if len(group) > 1]


def near_pairs(
    a: np.ndarray, b: np.ndarray | None, threshold: float, *, block: int = 1024
) -> list[tuple[int, int, float]]:
    """``(i, j, cosine)`` for every pair at or above ``threshold``: within ``a`` (``b`` None, i < j)
    or from ``a`` to ``b``, most similar first."""
    x = normalised(a)
    y = x if b is None else normalised(b)
    found: list[tuple[int, int, float]] = []
    for start in range(0, len(x), block):
        sims = x[start : start + block] @ y.T
        if b is None:  # each pair once, never an item with itself
            rows = torch.arange(start, start + len(sims)).unsqueeze(1)
            sims = sims.masked_fill(torch.arange(len(y)).unsqueeze(0) <= rows, -1.0)
        for i, j in torch.nonzero(sims >= threshold).tolist():
            found.append((start + i, j, round(float(sims[i, j]), 4)))
    return sorted(found, key=lambda p: -p[2])


def centroid_similarity(features: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Each item's cosine similarity to the nearest class mean of the (unit-length) features, its own
    class's mean taken without it (leave-one-out)."""
    x = normalised(features).double()
    member = torch.from_numpy(np.asarray(labels))
    member = member.double() if member.ndim == 2 else torch.nn.functional.one_hot(member, num_classes).double()
    sums = member.T @ x  # (classes, features)
    dots = x @ sums.T - member  # x_i . (sum_c - x_i) where i is in c; x_i . x_i = 1
    norms = (sums * sums).sum(dim=1).unsqueeze(0) - 2 * member * (x @ sums.T) + member
    cosine = dots / norms.clamp_min(1e-12).sqrt()
    return cosine.masked_fill(norms < 1e-9, -1.0).max(dim=1).values.float().numpy()


def outliers(features: np.ndarray, labels: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Items far from every class: (their indices, most isolated first; each item's similarity to
    the nearest class mean, ``centroid_similarity``; the similarity below which an item is flagged)."""
    if len(features) < 3:
        return np.empty(0, np.int64), np.ones(len(features), np.float32), -1.0
    nearest = centroid_similarity(features, labels, num_classes)
    median = float(np.median(nearest))
    spread = 1.4826 * float(np.median(np.abs(nearest - median)))
    cut = median - OUTLIER_Z * max(spread, 1e-6)
    flagged = np.flatnonzero(nearest < cut)
    return flagged[np.argsort(nearest[flagged])], nearest, cut


def label_issues(features: np.ndarray, labels: np.ndarray, num_classes: int, *, seed: int = 0) -> dict[str, Any]:
    """Likely label errors: those ``cleanlab.filter.find_label_issues`` (pruning by noise rate) finds
    in out-of-fold probabilities of the cross-validated, calibrated linear classifier, whose given
    label has a probability (cleanlab's label quality) below ``GIVEN_BELOW`` (multi-label data:
    cleanlab's own set, its quality scores aggregating every label).

    cleanlab counts every confidently misclassified item as a label error; with a weak classifier
    that count holds many hard but right items, which the probability bound leaves out (README,
    "Better data"; ``benchmarks/audit.py``).

    Returns ``indices`` (most likely first), ``suggested`` (the classifier's label for each item:
    a class index, or an indicator row for multi-label data), ``quality`` (cleanlab's label quality
    score of each item, 0 to 1), and ``classifier`` (its C, folds, out-of-fold accuracy); no
    ``indices`` where a class has too few examples for cross-validation."""
    multi = labels.ndim == 2
    fit = fit_linear_classifier(
        features, labels, num_classes, seed=seed, c_grid=DEFAULTS["c_grid"], every_example_scored=True
    )
    info = {k: fit.info[k] for k in ("C", "cv_folds", "cv_loss")}
    if fit.held_out is None or len(fit.held_out) != len(labels):
        return {"indices": None, "classifier": info, "why_not": "a class has fewer than 2 examples to cross-validate"}
    if multi:
        from cleanlab.multilabel_classification.filter import find_label_issues as find_multilabel_issues
        from cleanlab.multilabel_classification.rank import get_label_quality_scores

        proba = sigmoid(fit.held_out, fit.temperature)
        given = [np.flatnonzero(row).tolist() for row in labels]
        found = find_multilabel_issues(given, proba, return_indices_ranked_by="self_confidence", n_jobs=1)
        quality = get_label_quality_scores(given, proba)
        suggested = proba >= fit.thresholds
        info["out_of_fold_subset_accuracy"] = round(float((suggested == labels.astype(bool)).all(axis=1).mean()), 4)
    else:
        from cleanlab.filter import find_label_issues
        from cleanlab.rank import get_label_quality_scores

        proba = softmax(fit.held_out, fit.temperature)
        present = label_counts(labels, num_classes) > 0
        proba = proba[:, present] / proba[:, present].sum(axis=1, keepdims=True)  # cleanlab: classes seen only
        remap = np.cumsum(present) - 1
        found = find_label_issues(remap[labels], proba, return_indices_ranked_by="self_confidence", n_jobs=1)
        quality = get_label_quality_scores(remap[labels], proba, method="self_confidence")
        suggested = np.flatnonzero(present)[proba.argmax(axis=1)]
        info["out_of_fold_accuracy"] = round(float((suggested == labels).mean()), 4)
    info["cleanlab_found"] = len(found)
    if not multi:  # (multi-label quality scores aggregate the labels: cleanlab's own set is kept)
        found = [i for i in found if quality[i] < GIVEN_BELOW]
        info["kept_if_given_label_probability_below"] = GIVEN_BELOW
    issues = np.asarray(found, np.int64)
    return {"indices": issues, "suggested": suggested, "quality": quality, "classifier": info}


def balance(labels: np.ndarray, classes: Sequence[str]) -> dict[str, Any]:
    """Examples per class, the largest-to-smallest ratio, and the tiny classes."""
    counts = label_counts(labels, len(classes))
    median = float(np.median(counts))
    tiny = [c for c, n in zip(classes, counts.tolist(), strict=True) if n < TINY_EXAMPLES or n < TINY_SHARE * median]
    return {
        "counts": dict(zip(classes, counts.tolist(), strict=True)),
        "largest_to_smallest": round(float(counts.max() / max(counts.min(), 1)), 2),
        "tiny_classes": tiny,
        "tiny_rule": f"fewer than {TINY_EXAMPLES} examples or under {TINY_SHARE:.0%} of the median class ({median:g})",
    }
