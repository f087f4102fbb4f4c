"""L2-regularised softmax regression in PyTorch, with its regularisation chosen by cross-validation.

The same model and objective as scikit-learn's multinomial ``LogisticRegression`` (mean cross-entropy
plus ``||W||^2 / (2 C n)``, intercept not penalised), solved by full-batch L-BFGS in float32 and
warm-started along the path of C values, from the strongest regularisation to the weakest. Written
here rather than taken from scikit-learn for speed: on 1,600 x 1,280 features the 45 fits of a
5-fold, 9-value search took 82 s with scikit-learn's lbfgs and take about 2 s here, since each step
is two matrix products that use every core.

With indicator rows for labels (multi-label), the same code fits one-vs-rest logistic regressions,
one per label, sharing C: the loss is then each label's binary cross-entropy, summed over labels.

Example:
    >>> import numpy as np
    >>> x = np.random.default_rng(0).normal(size=(60, 5)).astype(np.float32)
    >>> y = (x[:, 0] > 0).astype(np.int64)
    >>> search = cross_validated_softmax(x, y, 2, [0.1, 1.0], folds=[(np.arange(30), np.arange(30, 60))])
    >>> search.best_c in (0.1, 1.0), search.weight.shape
    (True, (2, 5))
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn


@dataclass
class SoftmaxSearch:
    weight: np.ndarray  # (classes, features), fitted on all the data at the best C
    bias: np.ndarray  # (classes,)
    best_c: float
    cv_loss: float | None  # mean held-out log loss at the best C (None without folds)
    cv_loss_se: float | None  # its standard error over the folds
    losses: dict[float, float]  # mean held-out log loss per C
    held_out_logits: np.ndarray | None  # out-of-fold logits at the best C, rows in input order (None without folds)


def fit_softmax(
    x: torch.Tensor,
    y: torch.Tensor,
    num_classes: int,
    c: float,
    *,
    start: tuple[torch.Tensor, torch.Tensor] | None = None,
    sample_weight: torch.Tensor | None = None,
    max_iter: int = 500,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights minimising mean (weighted) cross-entropy + ``||W||^2 / (2 c n)``; ``start``: a warm start.
    ``y``: class ids, or (multi-label) float indicator rows: binary cross-entropy summed over labels."""
    n, d = x.shape
    weight = (start[0].clone() if start else torch.zeros(num_classes, d)).requires_grad_(True)
    bias = (start[1].clone() if start else torch.zeros(num_classes)).requires_grad_(True)
    penalty = 0.5 / (c * n)
    weights = sample_weight / sample_weight.mean() if sample_weight is not None else None
    optimizer = torch.optim.LBFGS(
        [weight, bias],
        lr=1.0,
        max_iter=max_iter,
        tolerance_grad=1e-5,
        tolerance_change=1e-10,
        history_size=20,
        line_search_fn="strong_wolfe",
    )

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        losses = per_example_loss(x @ weight.T + bias, y)
        loss = (losses * weights).mean() if weights is not None else losses.mean()
        loss = loss + penalty * weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return weight.detach(), bias.detach()


def cross_validated_softmax(
    features: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    c_grid: Sequence[float],
    *,
    folds: Sequence[tuple[np.ndarray, np.ndarray]],
    sample_weight: np.ndarray | None = None,
    default_c: float = 0.1,
) -> SoftmaxSearch:
    """Pick C by mean held-out log loss over ``folds`` (train, test index pairs), then fit on everything.

    ``features`` should be standardised. ``sample_weight`` weighs the training loss and the held-out
    one alike. Without folds, ``default_c`` is used and no loss is reported.
    """
    x = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))
    y = torch.from_numpy(np.asarray(labels, dtype=np.float32 if np.ndim(labels) == 2 else np.int64))
    w = torch.from_numpy(np.asarray(sample_weight, dtype=np.float32)) if sample_weight is not None else None
    grid = sorted(c_grid)
    per_fold: list[list[float]] = []
    held_out = np.zeros((len(grid), len(y), num_classes), dtype=np.float32)
    for train, test in folds:
        start = None
        row = []
        for i, c in enumerate(grid):  # strongest regularisation first: each solution starts the next
            start = fit_softmax(x[train], y[train], num_classes, c, start=start, sample_weight=_take(w, train))
            with torch.no_grad():
                logits = x[test] @ start[0].T + start[1]
                held_out[i, test] = logits.numpy()
                row.append(_mean_loss(logits, y[test], _take(w, test)))
        per_fold.append(row)
    if per_fold:
        table = np.asarray(per_fold)
        mean = table.mean(axis=0)
        best = int(np.argmin(mean))
        best_c = grid[best]
        cv_loss = round(float(mean[best]), 4)
        cv_loss_se = round(float(table[:, best].std() / np.sqrt(len(per_fold))), 4)
        losses = {c: round(float(v), 4) for c, v in zip(grid, mean, strict=True)}
        logits_at_best = held_out[best]
    else:
        best_c, cv_loss, cv_loss_se, losses, logits_at_best = default_c, None, None, {}, None
    weight, bias = fit_softmax(x, y, num_classes, best_c, sample_weight=w)
    return SoftmaxSearch(weight.numpy(), bias.numpy(), best_c, cv_loss, cv_loss_se, losses, logits_at_best)


def per_example_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of each example; of indicator rows, the binary cross-entropy summed over labels."""
    if labels.dim() == 2:
        return nn.functional.binary_cross_entropy_with_logits(logits, labels, reduction="none").sum(dim=1)
    return nn.functional.cross_entropy(logits, labels, reduction="none")


def _mean_loss(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor | None) -> float:
    losses = per_example_loss(logits, labels)
    return float((losses * weights).sum() / weights.sum() if weights is not None else losses.mean())


def _take(weights: torch.Tensor | None, index: np.ndarray) -> torch.Tensor | None:
    return None if weights is None else weights[index]
