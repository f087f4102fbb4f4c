"""Several labels per example (multi-label data): reading label cells, and label sets as indicator rows.

A label cell holds several labels when it is a list (a JSON list in a JSONL file or in a CSV cell,
a Python list or tuple in memory) or a string with ``;`` between labels. One such cell makes the
whole set multi-label; its other cells are then sets too (``cat`` is the set of one label, an empty
list the set of none). Labels are kept as an indicator matrix: ``labels[i, j]`` is 1 when example
``i`` has ``classes[j]``.

Example:
    >>> cells = ["cat;dog", '["dog"]', "cat"]
    >>> is_multi_label(cells)
    True
    >>> sets = [label_set(c) for c in cells]
    >>> sets
    [('cat', 'dog'), ('dog',), ('cat',)]
    >>> indicator(sets, ["cat", "dog"], "x.csv").tolist()
    [[1, 1], [0, 1], [1, 0]]
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from wukong.errors import DataError

SEPARATOR = ";"
SETS = (list, tuple, set, frozenset, np.ndarray)  # in-memory cells that hold several labels


def _json_list(cell: str) -> list[Any] | None:
    text = cell.strip()
    if not (text.startswith("[") and text.endswith("]")):
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, list) else None


def holds_several(cell: Any) -> bool:
    """Whether one label cell is written as a set of labels (a list, or ``;`` between labels)."""
    if isinstance(cell, SETS):
        return True
    return isinstance(cell, str) and (SEPARATOR in cell or _json_list(cell) is not None)


def is_multi_label(cells: Sequence[Any]) -> bool:
    """Whether a column of label cells is multi-label: some cell holds a set of labels."""
    return any(holds_several(cell) for cell in cells)


def label_set(cell: Any) -> tuple[str, ...]:
    """The labels of one cell of a multi-label column, in first-seen order, without repeats or blanks."""
    if isinstance(cell, str):
        parsed = _json_list(cell)
        items: Any = parsed if parsed is not None else cell.split(SEPARATOR)
    elif isinstance(cell, SETS):
        items = sorted(cell, key=str) if isinstance(cell, set | frozenset) else list(cell)
    else:
        items = [cell]
    names = (str(item).strip() for item in items if item is not None)
    return tuple(dict.fromkeys(name for name in names if name))


def read_label_cells(cells: Sequence[Any]) -> tuple[list[Any], bool]:
    """Label cells as names (``str``), or as tuples of names when the column is multi-label; and whether it is."""
    if is_multi_label(cells):
        return [label_set(cell) for cell in cells], True
    return [str(cell).strip() for cell in cells], False


def indicator(sets: Sequence[Sequence[str]], classes: Sequence[str], origin: str) -> np.ndarray:
    """Label sets as an (n, len(classes)) int64 indicator matrix; a label outside ``classes`` is an error."""
    index = {name: j for j, name in enumerate(classes)}
    unknown = sorted({name for labels in sets for name in labels} - index.keys())
    if unknown:
        raise DataError(f"{origin}: labels {unknown[:10]} are not among the training classes {list(classes)[:10]}")
    rows = np.zeros((len(sets), len(classes)), dtype=np.int64)
    for i, labels in enumerate(sets):
        rows[i, [index[name] for name in labels]] = 1
    return rows


def label_counts(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Examples per class: of class ids, or (multi-label) of an indicator matrix's columns."""
    labels = np.asarray(labels)
    if labels.ndim == 2:
        return labels.sum(axis=0).astype(np.int64)
    return np.bincount(labels, minlength=num_classes)


def stratify_key(labels: np.ndarray) -> np.ndarray:
    """One class id per example to stratify splits by: the class itself, or (multi-label) the
    example's rarest label (the number of classes for an example with none), so that every label,
    rare ones first, is spread over the parts (a simple form of iterative stratification).

    Example:
        >>> stratify_key(np.array([[1, 1, 0], [1, 0, 0], [0, 0, 0], [1, 0, 1]])).tolist()
        [1, 0, 3, 2]
    """
    labels = np.asarray(labels)
    if labels.ndim == 1:
        return labels
    counts = labels.sum(axis=0)
    rarity = np.where(labels > 0, counts[None, :], np.iinfo(np.int64).max)
    key = rarity.argmin(axis=1)
    key[labels.sum(axis=1) == 0] = labels.shape[1]
    return key


def as_model_labels(labels: np.ndarray, num_classes: int, multi_label: bool, origin: str) -> np.ndarray:
    """Labels read from a validation or test set, in the form of the model's: a single-label set
    read for a multi-label model becomes indicator rows; several labels per row for a
    single-label model is an error."""
    labels = np.asarray(labels)
    if labels.ndim == 2 and not multi_label:
        raise DataError(f"{origin}: has several labels per example, but the model was trained with one per example")
    if labels.ndim == 1 and multi_label:
        return np.eye(num_classes, dtype=np.int64)[labels]
    return labels


def label_names(row: np.ndarray, classes: Sequence[str]) -> list[str]:
    """The class names of one indicator row (or boolean decision row)."""
    return [classes[j] for j in np.flatnonzero(row)]
