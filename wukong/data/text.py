"""Labelled text tables: CSV, TSV and JSON Lines with a text column and a label column.

The columns are found by name (``text``, ``sentence``, ... and ``label``, ``category``, ...), or, in a
two-column file, by content (the longer strings are the text). Rows that cannot be used are skipped
and reported with ``file:line`` and a reason, never silently dropped and never fatal on their own.

Example:
    >>> source = read_text_table("data/banking77/train.csv")          # doctest: +SKIP
    >>> source.texts[0], source.labels[0], len(source.classes)        # doctest: +SKIP
    ('I am still waiting on my card?', 'card_arrival', 77)
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from wukong.data.encoding import DecodedText, read_table_text
from wukong.data.images import IMAGE_EXTENSIONS, is_image_source
from wukong.data.label_sets import indicator, read_label_cells
from wukong.data.labelled import Skipped
from wukong.data.tables import FORMAT_HINT, MERGED, Row, parse_table, pick_columns
from wukong.errors import DataError, ParameterError

TEXT_SUFFIXES = frozenset({".csv", ".tsv", ".jsonl", ".json", ".txt"})


@dataclass
class TextSource:
    """Labelled texts: ``texts[i]`` has label ``labels[i]``, one of ``classes``.

    Example:
        >>> src = TextSource(["good", "bad", "fine"], ["1", "0", "1"], ["0", "1"])
        >>> src.label_ids().tolist()
        [1, 0, 1]
        >>> src.subset([1]).texts
        ['bad']
    """

    texts: list[str]
    labels: list[Any]  # a name per text; a tuple of names with ``multi_label``
    classes: list[str]
    skipped: list[Skipped] = field(default_factory=list)
    origin: str = ""
    encoding: str = "utf-8"
    text_col: str = ""
    label_col: str = ""
    multi_label: bool = False

    def __len__(self) -> int:
        return len(self.texts)

    def label_ids(self, classes: Sequence[str] | None = None) -> np.ndarray:
        """Labels as int64 indices into ``classes`` (default: this source's own classes), or with
        ``multi_label`` an (n, classes) indicator matrix."""
        classes = list(self.classes if classes is None else classes)
        if self.multi_label:
            return indicator(self.labels, classes, self.origin)
        index = {name: i for i, name in enumerate(classes)}
        unknown = sorted(set(self.labels) - index.keys())
        if unknown:
            raise DataError(f"{self.origin}: labels {unknown} are not among the classes {classes}")
        return np.asarray([index[label] for label in self.labels], dtype=np.int64)

    def subset(self, indices: Sequence[int]) -> TextSource:
        """The rows at ``indices``, same classes (skipped rows stay with the full source)."""
        return TextSource(
            texts=[self.texts[i] for i in indices],
            labels=[self.labels[i] for i in indices],
            classes=self.classes,
            origin=self.origin,
            encoding=self.encoding,
            text_col=self.text_col,
            label_col=self.label_col,
            multi_label=self.multi_label,
        )


def is_text_source(path: str | Path) -> bool:
    """True when ``path`` is a text table file: a text suffix, and not a CSV/JSONL of image paths.

    Example:
        >>> is_text_source("data/sst2/train.tsv")                       # doctest: +SKIP
        True
    """
    path = Path(path)
    if not path.is_file() or path.suffix.lower() not in TEXT_SUFFIXES:
        return False
    if path.suffix.lower() == ".csv":
        return not is_image_source(path)
    return not _first_column_is_image_paths(path)


def read_text_table(
    path: str | Path,
    text_col: str | None = None,
    label_col: str | None = None,
    *,
    classes: Sequence[str] | None = None,
) -> TextSource:
    """Read a labelled CSV, TSV or JSONL file.

    ``text_col`` / ``label_col`` name the columns when they cannot be found automatically.
    ``classes`` (for validation and test files) are the training classes: a label outside them is
    an error, and the result keeps exactly that class order. Without it at least two classes are needed.

    Example:
        >>> train = read_text_table("sst2/train.tsv")                    # doctest: +SKIP
        >>> test = read_text_table("sst2/test.tsv", classes=train.classes)  # doctest: +SKIP
    """
    table = _table(Path(path), text_col, label_col)
    labels, multi = read_label_cells(table.cells)
    classes = _resolve_classes(str(path), labels, classes, multi)
    return TextSource(
        texts=table.texts,
        labels=labels,
        classes=classes,
        skipped=table.skipped,
        origin=str(path),
        encoding=table.encoding,
        text_col=table.text_col,
        label_col=table.label_col,
        multi_label=multi,
    )


def read_text_tables(
    paths: Sequence[str | Path],
    text_col: str | None = None,
    label_col: str | None = None,
    *,
    classes: Sequence[str] | None = None,
) -> TextSource:
    """Several labelled tables as one (``wukong.data.sources``), each read as ``read_text_table``
    reads it, but that a column named here is looked for only in the tables that have it; the
    classes are those of all of them (one may hold only some)."""
    tables = [_table(Path(p), text_col, label_col, named_if_present=True) for p in paths]
    labels, multi = read_label_cells([cell for t in tables for cell in t.cells])
    origin = " + ".join(str(p) for p in paths)
    for argument, name, used in (
        ("text_col", text_col, [t.text_col for t in tables]),
        ("label_col", label_col, [t.label_col for t in tables]),
    ):
        if name is not None and name.lower() not in {c.lower() for c in used}:
            raise DataError(f"{origin}: {argument}='{name}' is a column of none of them")
    return TextSource(
        texts=[text for t in tables for text in t.texts],
        labels=labels,
        classes=_resolve_classes(origin, labels, classes, multi),
        skipped=[s for t in tables for s in t.skipped],
        origin=origin,
        encoding=tables[0].encoding,
        text_col=tables[0].text_col,
        label_col=tables[0].label_col,
        multi_label=multi,
    )


@dataclass
class _Table:
    """One table's usable rows: texts and raw label cells; what was skipped; how it was read."""

    texts: list[str]
    cells: list[Any]
    skipped: list[Skipped]
    encoding: str
    text_col: str
    label_col: str


def _table(path: Path, text_col: str | None, label_col: str | None, *, named_if_present: bool = False) -> _Table:
    if not path.is_file():
        what = "is a folder, not a file" if path.is_dir() else "no such file"
        raise DataError(f"{path}: {what}; {FORMAT_HINT}")
    decoded = read_table_text(path)
    columns, rows, skipped = parse_table(path, decoded.text)
    skipped.extend(_encoding_notes(path, decoded))
    if not columns:
        problem = "the file is empty"
        if skipped:
            problem = f"no readable rows ({skipped[0].path}: {skipped[0].reason})"
        raise DataError(f"{path}: {problem}; {FORMAT_HINT}")
    tcol, lcol = pick_columns(path, columns, rows, text_col, label_col, named_if_present=named_if_present)
    texts, cells, bad_rows = _extract(path, rows, tcol, lcol)
    skipped.extend(bad_rows)
    if not texts:
        reasons = sorted({s.reason for s in skipped})
        raise DataError(
            f"{path}: no usable rows in columns '{tcol}' / '{lcol}' (skipped: {reasons or 'none'}); {FORMAT_HINT}"
        )
    return _Table(texts, cells, skipped, decoded.encoding, tcol, lcol)


def _encoding_notes(path: Path, decoded: DecodedText) -> list[Skipped]:
    """Rows that were read with a fallback encoding: used, and reported."""
    if not decoded.fallback_lines:
        return []
    if not decoded.encoding.startswith("utf-8"):  # the whole file is in another encoding
        return [Skipped(str(path), f"not UTF-8: the file was read as {decoded.encoding}", kept=True)]
    reason = "not valid UTF-8 (the rest of the file is): this line was read as cp1252; check its characters"
    return [Skipped(f"{path}:{n}", reason, kept=True) for n in decoded.fallback_lines]


def _first_column_is_image_paths(path: Path) -> bool:
    """Peek at a few rows: is this a list of image files rather than texts?"""
    with open(path, encoding="utf-8", errors="replace") as fh:
        head = "".join(fh.readline() for _ in range(6))
    try:
        columns, rows, _ = parse_table(path, head)
    except DataError:
        return False
    values = [str(record.get(columns[0], "")) for _, record in rows] if columns else []
    return bool(values) and all(Path(v.strip()).suffix.lower() in IMAGE_EXTENSIONS for v in values)


# --- rows ----------------------------------------------------------------------------------------


def _extract(path: Path, rows: list[Row], tcol: str, lcol: str) -> tuple[list[str], list[Any], list[Skipped]]:
    texts: list[str] = []
    labels: list[Any] = []
    skipped: list[Skipped] = []
    for number, record in rows:
        text, label = record.get(tcol), record.get(lcol)
        reason = _row_problem(text, label)
        merged = record.get(MERGED)
        if merged is not None:
            spans = f"lines {number}-{merged} were read as one row: a quoted field never closes, or holds line breaks"
            reason = f"{reason} ({spans})" if reason else None
            if reason is None:
                skipped.append(Skipped(f"{path}:{number}", f"{spans}; used as one text, check the quotes", kept=True))
        if reason:
            skipped.append(Skipped(f"{path}:{number}", reason))
            continue
        texts.append(str(text).strip())
        labels.append(label)
    return texts, labels, skipped


def _row_problem(text: Any, label: Any) -> str | None:
    if text is None or (isinstance(text, str) and not text.strip()):
        return "empty text"
    if isinstance(text, dict | list):
        return "text is not a string"
    if label is None or (isinstance(label, str) and not label.strip()):
        return "missing label"
    if isinstance(label, dict):
        return "label is not a name or a list of names"
    return None


def _resolve_classes(path: str, labels: list[Any], classes: Sequence[str] | None, multi: bool) -> list[str]:
    found = sort_labels({name for names in labels for name in names} if multi else set(labels))
    if classes is None:
        if len(found) < 2:
            raise DataError(
                f"{path}: found {len(found)} class(es) {found}; need at least two different labels in the label column"
            )
        return found
    unknown = sort_labels(set(found) - set(classes))
    if unknown:
        raise DataError(f"{path}: labels {unknown} are not among the training classes {list(classes)}")
    return list(classes)


def sort_labels(labels: set[str] | Sequence[str]) -> list[str]:
    """Sorted label names; numerically when every label is an integer ("2" before "10").

    Example:
        >>> sort_labels({"10", "2", "-1"})
        ['-1', '2', '10']
    """
    labels = set(labels)
    try:
        return sorted(labels, key=int)
    except ValueError:
        return sorted(labels)


def label_name_texts(classes: Sequence[str], descriptions: Mapping[Any, str] | None = None) -> list[str] | None:
    """A text per class that says what it is: its description in ``descriptions`` (keys: labels),
    else its name (``card_arrival`` -> "card arrival"). ``None`` when some class has neither: a name
    with no letter in it (``0``/``1``, ``3.5``) carries no meaning to an encoder.

    Example:
        >>> label_name_texts(["card_arrival", "lost-or-stolen card"])
        ['card arrival', 'lost or stolen card']
        >>> label_name_texts(["0", "1"]) is None
        True
        >>> label_name_texts(["0", "1"], {0: "negative review", 1: "positive review"})
        ['negative review', 'positive review']
    """
    given = {str(key).strip(): str(text).strip() for key, text in (descriptions or {}).items()}
    unknown = sorted(set(given) - set(classes))
    if unknown:
        raise ParameterError(f"label_names names labels {unknown} that are not among the classes {list(classes)[:10]}")
    empty = sorted(key for key, text in given.items() if not text)
    if empty:
        raise ParameterError(f"label_names: empty description for {empty}")
    texts = [given.get(name) or " ".join(re.split(r"[_\-\s]+", str(name))).strip() for name in classes]
    return texts if all(any(ch.isalpha() for ch in text) for text in texts) else None


# --- the estimator ----------------------------------------------------------------------------------


def texts_source(texts: Sequence[Any], labels: Sequence[Any] | None, classes: Sequence[str] | None) -> TextSource:
    """``texts`` + ``labels`` lists as a ``TextSource``; unusable rows are skipped with their index."""
    if isinstance(texts, str) or labels is None or len(labels) != len(texts):
        raise ValueError("give a data file, or a list of texts and a list of labels of the same length")
    kept_texts: list[str] = []
    kept_labels: list[Any] = []
    skipped: list[Skipped] = []
    for i, (text, label) in enumerate(zip(texts, labels, strict=True)):
        if not isinstance(text, str) or not text.strip():
            skipped.append(
                Skipped(
                    f"texts[{i}]",
                    "empty text" if isinstance(text, str) or text is None else f"not a string ({type(text).__name__})",
                )
            )
        elif _missing_label(label):
            skipped.append(Skipped(f"texts[{i}]", "missing label"))
        else:
            kept_texts.append(text.strip())
            kept_labels.append(label)
    cells, multi = read_label_cells(kept_labels)
    found = _resolve_classes("the given texts", cells, classes, multi)
    return TextSource(kept_texts, cells, found, skipped, origin="the given texts", multi_label=multi)


def _missing_label(label: Any) -> bool:
    if label is None or (isinstance(label, float) and math.isnan(label)):
        return True
    return isinstance(label, str) and not label.strip()
