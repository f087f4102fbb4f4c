"""In-memory inputs, whatever their container: lists, tuples, NumPy arrays, pandas Series and DataFrames,
Hugging Face ``datasets.Dataset``. Turned into plain lists of items (and labels) at the boundary, so
everything after it sees one form. Duck-typed: neither pandas nor ``datasets`` is imported here.

Example:
    >>> as_items(("a.jpg", "b.jpg"))
    ['a.jpg', 'b.jpg']
    >>> as_labelled([["a.jpg", "cat"], ["b.jpg", "dog"]], None, "image")
    Traceback (most recent call last):
    ...
    wukong.errors.DataError: the given image data: a list of inputs needs labels=[...] of the same length
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from wukong.errors import DataError

# Column names looked for in a table of in-memory data, per modality, most specific first.
INPUT_COLUMNS = {"image": ("image", "img", "path", "file", "filepath", "filename"), "text": ("text", "sentence")}
LABEL_COLUMNS = ("label", "labels", "category", "class", "target", "intent")


def is_table(data: Any) -> bool:
    """A pandas DataFrame or a Hugging Face ``datasets.Dataset`` (named columns of equal length)."""
    return hasattr(data, "columns") and hasattr(data, "iloc") or _is_hf_dataset(data)


def as_items(data: Any) -> list[Any]:
    """A list of the inputs in ``data`` (a list, tuple, array, Series or a one-column table)."""
    if is_table(data):
        columns = _column_names(data)
        if len(columns) != 1:
            raise DataError(f"the given table has columns {columns}: pass its column of inputs, e.g. table['image']")
        return _column(data, columns[0])
    if hasattr(data, "tolist") and not isinstance(data, np.ndarray):  # a pandas Series or Index
        return list(data.tolist())
    if isinstance(data, np.ndarray) and data.dtype.kind in "US":  # an array of paths or texts
        return [str(x) for x in data]
    return list(data)


def as_labelled(
    data: Any,
    labels: Sequence[Any] | None,
    modality: str,
    *,
    input_col: str | None = None,
    label_col: str | None = None,
) -> tuple[list[Any], list[Any]]:
    """``(inputs, labels)`` from inputs + labels, or from a table with an input and a label column."""
    if is_table(data):
        columns = _column_names(data)
        inputs = input_col or _find(columns, INPUT_COLUMNS[modality], "input", modality)
        if labels is None:
            label = label_col or _find(columns, LABEL_COLUMNS, "label", modality)
            labels = _labels_of(data, label)
        data = _column(data, inputs)
    items = as_items(data)
    if labels is None:
        raise DataError(f"the given {modality} data: a list of inputs needs labels=[...] of the same length")
    label_list = as_items(labels)
    if len(label_list) != len(items):
        raise DataError(f"the given {modality} data: {len(items)} inputs but {len(label_list)} labels")
    return items, label_list


def _is_hf_dataset(data: Any) -> bool:
    return hasattr(data, "column_names") and hasattr(data, "features") and not isinstance(data, type)


def _column_names(table: Any) -> list[str]:
    return [str(c) for c in (table.column_names if _is_hf_dataset(table) else table.columns)]


def _column(table: Any, name: str) -> list[Any]:
    return list(table[name]) if _is_hf_dataset(table) else list(table[name].tolist())


def _labels_of(table: Any, name: str) -> list[Any]:
    values = _column(table, name)
    feature = table.features.get(name) if _is_hf_dataset(table) else None
    if feature is not None and hasattr(feature, "int2str"):  # datasets.ClassLabel: ids -> names
        return [feature.int2str(int(v)) for v in values]
    return values


def _find(columns: list[str], wanted: Sequence[str], what: str, modality: str) -> str:
    lowered = {c.lower(): c for c in columns}
    for name in wanted:
        if name in lowered:
            return lowered[name]
    raise DataError(
        f"the given table has columns {columns}: none is a {modality} {what} column "
        f"(looked for {', '.join(wanted)}); rename one or pass labels=... with a single column"
    )


def modality_of(data: Any, labels: Sequence[Any] | None = None) -> str:
    """``"image"`` or ``"text"``: an image folder or CSV of image paths, a text table, several of one
    kind (``Sources``), or inputs (strings that are not files are texts)."""
    from wukong.data.images import is_image_source
    from wukong.data.sources import Sources
    from wukong.data.text import is_text_source

    if isinstance(data, Sources):
        return data.modality()
    if isinstance(data, str | Path) and labels is None:
        path = Path(data)
        if not path.exists():
            raise DataError(f"{path}: no such file or folder")
        if is_image_source(path):
            return "image"
        if is_text_source(path):
            return "text"
        raise DataError(
            f"{path}: neither an image folder (one sub-folder per class) nor a text table (.csv/.tsv/.jsonl)"
        )
    if is_table(data):  # a DataFrame or Dataset: by its columns, as ``as_labelled`` finds them
        return "image" if set(_column_names(data)) & set(INPUT_COLUMNS["image"]) else "text"
    items = list(data)
    texts = all(isinstance(x, str) and not _is_file(x) for x in items[:50])
    return "text" if texts else "image"


def _is_file(text: str) -> bool:
    try:
        return Path(text).is_file()
    except (OSError, ValueError):  # a name too long, a NUL byte: a text
        return False
