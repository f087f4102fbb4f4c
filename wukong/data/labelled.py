"""Labelled examples whatever the modality: what ``fit`` splits, checks and hands to a strategy."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from wukong.data.label_sets import label_counts
from wukong.data.sources import Sources
from wukong.errors import DataError


@dataclass(frozen=True)
class Skipped:
    """An input that was not used, and why; with ``kept``, one that was used despite a problem."""

    path: str
    reason: str
    kept: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "reason": self.reason, **({"kept": True} if self.kept else {})}


@dataclass
class Labelled:
    """Labelled examples as a modality keeps them (decoded images, texts), with their label ids."""

    examples: Any  # an ImageStore, a TextSource: anything with ``subset(indices)``
    labels: np.ndarray  # int64 ids into ``classes``; or (multi-label) an (n, classes) indicator matrix
    classes: list[str]
    origin: str  # where they came from, for messages

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, indices: Sequence[int]) -> Labelled:
        idx = np.asarray(indices, dtype=np.int64)
        return Labelled(self.examples.subset(idx.tolist()), self.labels[idx], self.classes, self.origin)


def per_class_counts(labels: np.ndarray, classes: Sequence[str]) -> dict[str, int]:
    counts = label_counts(labels, len(classes))
    return {name: int(counts[i]) for i, name in enumerate(classes)}


def check_every_class_present(labels: np.ndarray, classes: Sequence[str], origin: str) -> None:
    counts = label_counts(labels, len(classes))
    empty = [classes[i] for i in np.flatnonzero(counts == 0)]
    if empty:
        raise DataError(
            f"{origin}: class(es) {empty} have no usable example after skipping bad files; "
            "add examples or remove the class folder"
        )


def data_paths(data: Any) -> list[str]:
    """The files or folders a data argument names, absolute: a path's, ``Sources``' (several); none
    for inputs in memory."""
    paths = data.paths if isinstance(data, Sources) else [data] if isinstance(data, str | Path) else []
    return [str(Path(p).resolve()) for p in paths]


def origin_of(data: Any) -> str:
    """How messages name a data argument: its path (paths, for ``Sources``), or "the given data"."""
    if isinstance(data, Sources):
        return data.origin
    return str(data) if isinstance(data, str | Path) else "the given data"
