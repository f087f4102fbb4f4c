"""L2-regularised softmax regression in PyTorch, with its regularisation chosen by cross-validation.

The same model and objective as scikit-learn's multinomial ``LogisticRegression`` (mean cross-entropy
plus ``||W||^2 / (2 C n)``, intercept not penalised), solved by full-batch L-BFGS in float32 and
warm-started along the path of C values, from the strongest regularisation to the weakest; the path
stops once the held-out loss has risen past its lowest point for ``PATIENCE`` values of C in a row
(the weakest regularisations are the slowest to fit, and on ill-conditioned inputs such as raw pixels
they took most of a search's time for values that could no longer win). Written
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
    cv_loss_se: float | None  # its standard error over the folds (one split: over its examples)
    losses: dict[float, float]  # mean held-out log loss per C
    held_out_logits: np.ndarray | None  # out-of-fold logits at the best C, rows in input order (None without folds)


# Values of C past the lowest held-out loss so far after which the path stops (held-out loss is
# unimodal along the path in practice: it falls while regularisation is relaxed, then overfitting sets in).
PATIENCE = 2

Block = tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]  # features, labels, sample weights or None
Weights = tuple[torch.Tensor, torch.Tensor]  # (classes, features) and (classes,)


def fit_softmax(
    x: torch.Tensor,
    y: torch.Tensor,
    num_classes: int,
    c: float,
    *,
    start: Weights | None = None,
    sample_weight: torch.Tensor | None = None,
    max_iter: int = 500,
) -> Weights:
    """Weights minimising mean (weighted) cross-entropy + ``||W||^2 / (2 c n)``; ``start``: a warm start.
    ``y``: class ids, or (multi-label) float indicator rows: binary cross-entropy summed over labels."""
    return fit_softmax_blocks([(x, y, sample_weight)], num_classes, c, [start], max_iter=max_iter)[0]


def fit_softmax_blocks(
    blocks: Sequence[Block], num_classes: int, c: float, starts: Sequence[Weights | None], *, max_iter: int = 500
) -> list[Weights]:
    """``fit_softmax`` of several independent problems (the folds of a cross-validation) in one L-BFGS
    run: their objectives are summed, and since no weight appears in two of them, each block's
    minimiser is its own problem's. The blocks are packed into one tensor (``Packed``) and the
    gradient is written out (``Packed.closure``): per step, two batched matrix products and one
    parameter for the optimiser, where autograd over a pair of tensors per block spent most of
    the time in per-operation overhead at these sizes."""
    return _minimised(Packed.of(blocks, num_classes, c, starts), max_iter)


def fit_softmax_subsets(
    x: torch.Tensor,
    y: torch.Tensor,
    subsets: Sequence[np.ndarray],
    num_classes: int,
    c: float,
    starts: Sequence[Weights | None],
    *,
    sample_weight: torch.Tensor | None = None,
    max_iter: int = 500,
) -> list[Weights]:
    """``fit_softmax`` on each of several subsets of the rows of one ``x`` (the folds of a
    cross-validation, and all the rows), in one L-BFGS run as ``fit_softmax_blocks`` fits blocks,
    but reading ``x`` once a step for all of them (``Shared``) instead of a copy of each subset's
    rows: with 5 folds, 4 times the rows."""
    return _minimised(Shared.of(x, y, subsets, num_classes, c, starts, sample_weight), max_iter)


def _minimised(problem: Packed | Shared, max_iter: int) -> list[Weights]:
    optimizer = torch.optim.LBFGS(
        [problem.theta],
        lr=1.0,
        max_iter=max_iter,
        tolerance_grad=1e-5,
        tolerance_change=1e-10,
        history_size=20,
        line_search_fn="strong_wolfe",
    )
    optimizer.step(problem.closure)
    return problem.weights()


def _loss_and_residual(
    logits: torch.Tensor, targets: torch.Tensor, multi_label: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's loss (the last dimension kept, of size 1) and the gradient of that loss with
    respect to the logits: cross-entropy, or binary cross-entropy summed over labels."""
    if multi_label:
        losses = (nn.functional.softplus(logits) - logits * targets).sum(-1, keepdim=True)
        return losses, torch.sigmoid(logits) - targets
    log_norm = torch.logsumexp(logits, dim=-1, keepdim=True)
    losses = log_norm - (logits * targets).sum(-1, keepdim=True)
    return losses, torch.exp(logits - log_norm) - targets


@dataclass
class Packed:
    """Blocks padded to one shape: ``x`` (blocks, rows, features + 1), the last column 1 (the bias);
    padded rows weigh 0, padded features are 0 (their weights stay at 0)."""

    x: torch.Tensor
    targets: torch.Tensor  # (blocks, rows, classes): one-hot rows, or indicator rows (multi-label)
    row_weight: torch.Tensor  # (blocks, rows, 1): each row's weight over its block's weight total
    penalty: torch.Tensor  # (blocks, 1, features + 1): 1 / (2 c n), 0 on the bias column
    theta: torch.Tensor  # (blocks, classes, features + 1): weights, then the bias
    widths: list[int]
    multi_label: bool

    @classmethod
    def of(cls, blocks: Sequence[Block], num_classes: int, c: float, starts: Sequence[Weights | None]) -> Packed:
        widths = [x.shape[1] for x, _, _ in blocks]
        rows, width, k = max(len(x) for x, _, _ in blocks), max(widths), len(blocks)
        multi_label = blocks[0][1].dim() == 2  # every block has the same kind of labels
        x_all = torch.zeros(k, rows, width + 1)
        targets = torch.zeros(k, rows, num_classes)
        row_weight = torch.zeros(k, rows, 1)
        penalty = torch.zeros(k, 1, width + 1)
        theta = torch.zeros(k, num_classes, width + 1)
        for i, ((x, y, sample_weight), start) in enumerate(zip(blocks, starts, strict=True)):
            n, d = x.shape
            x_all[i, :n, :d], x_all[i, :n, width] = x, 1.0
            targets[i, :n] = y if multi_label else nn.functional.one_hot(y, num_classes).float()
            weights = sample_weight / sample_weight.sum() if sample_weight is not None else torch.full((n,), 1.0 / n)
            row_weight[i, :n, 0] = weights
            penalty[i, 0, :d] = 0.5 / (c * n)
            if start is not None:
                theta[i, :, :d], theta[i, :, width] = start
        return cls(x_all, targets, row_weight, penalty, theta.requires_grad_(True), widths, multi_label)

    @torch.no_grad()
    def closure(self) -> torch.Tensor:
        """The summed objective; its gradient written to ``theta.grad``."""
        theta = self.theta
        logits = torch.bmm(self.x, theta.transpose(1, 2))
        losses, residual = _loss_and_residual(logits, self.targets, self.multi_label)
        loss = (losses * self.row_weight).sum() + (self.penalty * theta.pow(2)).sum()
        theta.grad = torch.bmm((residual * self.row_weight).transpose(1, 2), self.x) + 2 * self.penalty * theta
        return loss

    def weights(self) -> list[Weights]:
        theta = self.theta.detach()
        bias = theta.shape[2] - 1
        return [(theta[i, :, :d].clone(), theta[i, :, bias].clone()) for i, d in enumerate(self.widths)]


@dataclass
class Shared:
    """Problems on subsets of the rows of one ``x``, all its features: ``x`` (rows, features + 1), the
    last column 1 (the bias); a row outside a subset weighs 0 in its problem. A step's logits of every
    problem are one matrix product, ``x`` times all the weights side by side, and so is the gradient."""

    x: torch.Tensor
    targets: torch.Tensor  # (rows, 1, classes): one-hot rows, or indicator rows (multi-label)
    row_weight: torch.Tensor  # (rows, subsets, 1): each row's weight over its subset's weight total
    penalty: torch.Tensor  # (subsets, 1, features + 1): 1 / (2 c n), 0 on the bias column
    theta: torch.Tensor  # (subsets, classes, features + 1): weights, then the bias
    multi_label: bool

    @classmethod
    def of(
        cls,
        x: torch.Tensor,
        y: torch.Tensor,
        subsets: Sequence[np.ndarray],
        num_classes: int,
        c: float,
        starts: Sequence[Weights | None],
        sample_weight: torch.Tensor | None = None,
    ) -> Shared:
        (rows, width), k = x.shape, len(subsets)
        multi_label = y.dim() == 2
        targets = y if multi_label else nn.functional.one_hot(y, num_classes).float()
        row_weight = torch.zeros(rows, k, 1)
        penalty = torch.zeros(k, 1, width + 1)
        theta = torch.zeros(k, num_classes, width + 1)
        for i, (subset, start) in enumerate(zip(subsets, starts, strict=True)):
            index = torch.from_numpy(np.asarray(subset, dtype=np.int64))
            weights = sample_weight[index] if sample_weight is not None else torch.ones(len(index))
            row_weight[index, i, 0] = weights / weights.sum()
            penalty[i, 0, :width] = 0.5 / (c * len(index))
            if start is not None:
                theta[i, :, :width], theta[i, :, width] = start
        x_one = torch.cat([x, torch.ones(rows, 1)], dim=1)
        return cls(x_one, targets.unsqueeze(1), row_weight, penalty, theta.requires_grad_(True), multi_label)

    @torch.no_grad()
    def closure(self) -> torch.Tensor:
        """The summed objective; its gradient written to ``theta.grad``."""
        theta = self.theta
        k, classes, width = theta.shape
        logits = (self.x @ theta.reshape(k * classes, width).T).view(-1, k, classes)
        losses, residual = _loss_and_residual(logits, self.targets, self.multi_label)
        loss = (losses * self.row_weight).sum() + (self.penalty * theta.pow(2)).sum()
        gradient = (residual * self.row_weight).reshape(-1, k * classes).T @ self.x
        theta.grad = gradient.view(k, classes, width) + 2 * self.penalty * theta
        return loss

    def weights(self) -> list[Weights]:
        theta = self.theta.detach()
        return [(theta[i, :, :-1].clone(), theta[i, :, -1].clone()) for i in range(len(theta))]


def cross_validated_softmax(
    features: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    c_grid: Sequence[float],
    *,
    folds: Sequence[tuple[np.ndarray, np.ndarray]],
    sample_weight: np.ndarray | None = None,
    default_c: float = 0.1,
    patience: int = PATIENCE,
    start: Weights | None = None,
) -> SoftmaxSearch:
    """Pick C by mean held-out log loss over ``folds`` (train, test index pairs), then fit on everything.

    ``features`` should be standardised. ``sample_weight`` weighs the training loss and the held-out
    one alike. Without folds, ``default_c`` is used and no loss is reported. The path over ``c_grid``
    (strongest regularisation first) stops after ``patience`` values in a row whose held-out loss is
    above the lowest so far; ``losses`` holds the values fitted. ``start``: weights to start the fit on
    every row from, with one C or none (a model fitted before on these features: the same minimum,
    reached in a few steps; not in the row space); with several, the folds' mean at the chosen C starts it.
    """
    x = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))
    y = torch.from_numpy(np.asarray(labels, dtype=np.float32 if np.ndim(labels) == 2 else np.int64))
    w = torch.from_numpy(np.asarray(sample_weight, dtype=np.float32)) if sample_weight is not None else None
    grid = sorted(c_grid)
    held_out = np.zeros((len(grid), len(y), num_classes), dtype=np.float32)
    # With many more features than rows, every fold's problem in the coordinates of its training rows
    # (``RowSpace``), the blocks fitted together; otherwise the folds are subsets of the rows of x
    # (``fit_softmax_subsets``).
    gram = gram_matrix(x)
    everything = np.arange(len(x))
    blocks, tests = [], []
    for train, test in folds:
        space = RowSpace.of(gram, train)
        if space is not None:
            blocks.append((space.coordinates(train), y[train], _take(w, train)))
        tests.append((_coordinates(x, space, test), test))
    final: Weights | None = None
    starts: list[Weights | None] = [None] * len(folds)
    if gram is None and len(grid) == 1 and folds:  # one C: the fit on every row first, and it starts each fold's
        final = fit_softmax(x, y, num_classes, grid[0], sample_weight=w, start=start)
        starts = [final] * len(folds)
    lowest: list[Weights | None] = starts  # the folds' solutions at the lowest mean held-out loss so far
    table = np.zeros((len(folds), len(grid)))  # held-out loss per fold and C
    fitted = 0
    for i, c in enumerate(grid if folds else []):  # strongest regularisation first: each solution starts the next
        if gram is None:
            starts = fit_softmax_subsets(x, y, [train for train, _ in folds], num_classes, c, starts, sample_weight=w)
        else:
            starts = fit_softmax_blocks(blocks, num_classes, c, starts)
        with torch.no_grad():
            for f, ((x_test, test), (weight, bias)) in enumerate(zip(tests, starts, strict=True)):
                logits = x_test @ weight.T + bias
                held_out[i, test] = logits.numpy()
                table[f, i] = _mean_loss(logits, y[test], _take(w, test))
        fitted = i + 1
        if table[:, i].mean() <= table[:, :fitted].mean(axis=0).min():
            lowest = starts
        if past_the_lowest(table[:, :fitted].mean(axis=0), patience):
            break
    grid, table = grid[:fitted], table[:, :fitted]
    if folds:
        mean = table.mean(axis=0)
        best = int(np.argmin(mean))
        best_c = grid[best]
        cv_loss = round(float(mean[best]), 4)
        if len(folds) > 1:
            cv_loss_se = round(float(table[:, best].std() / np.sqrt(len(folds))), 4)
        else:  # one held-out split: the standard error of the mean over its examples
            test = folds[0][1]
            losses_at_best = per_example_loss(torch.from_numpy(held_out[best, test]), y[test]).numpy()
            cv_loss_se = round(float(losses_at_best.std() / np.sqrt(len(test))), 4)
        losses = {c: round(float(v), 4) for c, v in zip(grid, mean, strict=True)}
        logits_at_best = held_out[best]
    else:
        best_c, cv_loss, cv_loss_se, losses, logits_at_best = default_c, None, None, {}, None
    if final is not None:
        weight, bias = final
    elif gram is None:  # in the features' coordinates: the mean of the folds' solutions at that C starts it
        if folds:
            start = tuple(torch.stack(part).mean(0) for part in zip(*lowest, strict=True))
        weight, bias = fit_softmax(x, y, num_classes, best_c, sample_weight=w, start=start)
    else:
        space = RowSpace.of(gram, everything)
        weight, bias = fit_softmax(space.coordinates(everything), y, num_classes, best_c, sample_weight=w)
        weight = space.to_features(weight, x)
    return SoftmaxSearch(weight.numpy(), bias.numpy(), best_c, cv_loss, cv_loss_se, losses, logits_at_best)


def past_the_lowest(losses: np.ndarray, patience: int) -> bool:
    """Whether the last ``patience`` losses all lie above the lowest one before them.

    Example:
        >>> past_the_lowest(np.array([0.9, 0.8, 0.85, 0.95]), 2), past_the_lowest(np.array([0.9, 0.8, 0.85]), 2)
        (True, False)
    """
    if len(losses) <= patience:
        return False
    return bool(np.all(losses[-patience:] > losses[:-patience].min()))


# Features per row from which the folds are solved in their rows' span (``RowSpace``): below it,
# the eigendecomposition of each fold's Gram block (rows cubed) costs more than the fewer unknowns
# save (measured on the search's own inputs: README, Speed).
ROW_SPACE_FROM = 2.25


def gram_matrix(x: torch.Tensor) -> torch.Tensor | None:
    """``x @ x.T`` in float64 where there are ``ROW_SPACE_FROM`` times as many features as rows or
    more (``RowSpace``); ``None`` otherwise."""
    rows, features = x.shape
    if features < ROW_SPACE_FROM * rows:
        return None
    wide = x.double()
    return wide @ wide.T


@dataclass
class RowSpace:
    """Orthonormal coordinates of the span of some rows of ``x``, from their Gram matrix alone.

    The L2-regularised solution lies in that span (a weight component orthogonal to every row leaves
    the loss unchanged and only adds to the penalty), so solving in its coordinates gives exactly the
    same model, with ``rank <= rows`` instead of ``features`` unknowns per class: with a few dozen
    to a few thousand examples of thousands of features (raw pixels, concatenated stages, TF-IDF
    n-grams), many times fewer. With the Gram matrix ``G = U diag(s) U.T`` of the rows, the basis is
    ``x[rows].T @ U diag(s)^-1/2`` (directions of ``s`` below the numerical rank dropped: duplicate
    rows add none), and the coordinates of any row ``i`` are ``G[i, rows] @ U diag(s)^-1/2``: one
    Gram matrix serves every fold of a cross-validation, each fold then one eigendecomposition of its
    block (``rows^3``) where a QR factorisation of its features took ``features x rows^2``.
    """

    gram: torch.Tensor  # ``x @ x.T`` of every row (``gram_matrix``), float64
    rows: np.ndarray  # the rows that span it
    mix: torch.Tensor  # (len(rows), rank), float64: ``U diag(s)^-1/2``

    @classmethod
    def of(cls, gram: torch.Tensor | None, rows: np.ndarray) -> RowSpace | None:
        """The span of ``rows`` (``None`` without a Gram matrix: as many rows as features or more)."""
        if gram is None:
            return None
        values, vectors = torch.linalg.eigh(gram[rows][:, rows])
        kept = values > values[-1].clamp(min=0) * len(rows) * torch.finfo(torch.float64).eps
        return cls(gram, np.asarray(rows), vectors[:, kept] / values[kept].sqrt())

    def coordinates(self, index: np.ndarray) -> torch.Tensor:
        """Rows ``index`` of ``x`` in this basis (float32)."""
        return (self.gram[index][:, self.rows] @ self.mix).float()

    def to_features(self, weight: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Weights in this basis, (classes, rank), as weights of ``x``'s features, (classes, features)."""
        return ((weight.double() @ self.mix.T) @ x[self.rows].double()).float()


def _coordinates(x: torch.Tensor, space: RowSpace | None, index: np.ndarray) -> torch.Tensor:
    return x[index] if space is None else space.coordinates(index)


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
