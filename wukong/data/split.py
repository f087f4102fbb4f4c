"""Seeded, stratified train/validation splits."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def stratified_split(
    labels: Sequence[int], fraction: float, *, seed: int = 0, min_per_class: int = 1
) -> tuple[list[int], list[int]]:
    """Split indices so that about ``fraction`` of each class goes to the second part.

    Every class keeps at least one example on the training side; a class with a single example
    is left out of validation (scikit-learn's splitter would refuse it).
    """
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    first: list[int] = []
    second: list[int] = []
    for cls in np.unique(labels):
        idx = np.flatnonzero(labels == cls)
        rng.shuffle(idx)
        n_val = int(round(len(idx) * fraction))
        n_val = min(max(n_val, min_per_class), len(idx) - 1)
        second.extend(idx[:n_val].tolist())
        first.extend(idx[n_val:].tolist())
    return sorted(first), sorted(second)
