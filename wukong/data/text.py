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

import csv
import io
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from wukong.data.encoding import DecodedText, read_table_text
from wukong.data.images import IMAGE_EXTENSIONS, Skipped, is_image_source
from wukong.errors import DataError, ParameterError

TEXT_SUFFIXES = frozenset({".csv", ".tsv", ".jsonl", ".json", ".txt"})
TEXT_COLUMN_NAMES = ("text", "sentence", "utterance", "query", "content", "review", "document")
LABEL_COLUMN_NAMES = ("label", "category", "intent", "class", "target", "sentiment", "y")
# The key under which a parsed CSV record carries the last line of a record that spans several lines.
MERGED = "\x00merged_to_line"
_FORMAT_HINT = "give a CSV, TSV or JSONL file with a text column and a label column"


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
    labels: list[str]
    classes: list[str]
    skipped: list[Skipped] = field(default_factory=list)
    origin: str = ""
    encoding: str = "utf-8"
    text_col: str = ""
    label_col: str = ""

    def __len__(self) -> int:
        return len(self.texts)

    def label_ids(self, classes: Sequence[str] | None = None) -> np.ndarray:
        """Labels as int64 indices into ``classes`` (default: this source's own classes)."""
        classes = list(self.classes if classes is None else classes)
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
    path = Path(path)
    if not path.is_file():
        what = "is a folder, not a file" if path.is_dir() else "no such file"
        raise DataError(f"{path}: {what}; {_FORMAT_HINT}")
    decoded = read_table_text(path)
    columns, rows, skipped = _parse_table(path, decoded.text)
    skipped.extend(_encoding_notes(path, decoded))
    if not columns:
        problem = "the file is empty"
        if skipped:
            problem = f"no readable rows ({skipped[0].path}: {skipped[0].reason})"
        raise DataError(f"{path}: {problem}; {_FORMAT_HINT}")
    tcol, lcol = _pick_columns(path, columns, rows, text_col, label_col)
    texts, labels, bad_rows = _extract(path, rows, tcol, lcol)
    skipped.extend(bad_rows)
    if not texts:
        reasons = sorted({s.reason for s in skipped})
        raise DataError(
            f"{path}: no usable rows in columns '{tcol}' / '{lcol}' (skipped: {reasons or 'none'}); {_FORMAT_HINT}"
        )
    return TextSource(
        texts=texts,
        labels=labels,
        classes=_resolve_classes(path, labels, classes),
        skipped=skipped,
        origin=str(path),
        encoding=decoded.encoding,
        text_col=tcol,
        label_col=lcol,
    )


def _encoding_notes(path: Path, decoded: DecodedText) -> list[Skipped]:
    """Rows that were read with a fallback encoding: used, and reported."""
    if not decoded.fallback_lines:
        return []
    if not decoded.encoding.startswith("utf-8"):  # the whole file is in another encoding
        return [Skipped(str(path), f"not UTF-8: the file was read as {decoded.encoding}", kept=True)]
    reason = "not valid UTF-8 (the rest of the file is): this line was read as cp1252; check its characters"
    return [Skipped(f"{path}:{n}", reason, kept=True) for n in decoded.fallback_lines]


# --- parsing -------------------------------------------------------------------------------------

Row = tuple[int, dict[str, Any]]  # (line number in the file, column -> value)


def _parse_table(path: Path, content: str) -> tuple[list[str], list[Row], list[Skipped]]:
    if _is_json_lines(path, content):
        return _parse_json(path, content)
    try:
        columns, rows = _parse_delimited(content)
    except csv.Error as exc:  # e.g. a NUL byte, or a quoted field that never ends
        raise DataError(f"{path}: not a readable CSV/TSV ({exc}); {_FORMAT_HINT}") from exc
    return columns, rows, []


def _is_json_lines(path: Path, content: str) -> bool:
    if path.suffix.lower() in (".jsonl", ".json"):
        return True
    return path.suffix.lower() == ".txt" and content.lstrip().startswith("{")


def _parse_json(path: Path, content: str) -> tuple[list[str], list[Row], list[Skipped]]:
    """JSON Lines (one object per line), or a JSON array of objects in a ``.json`` file."""
    if content.lstrip().startswith("["):
        return _parse_json_array(path, content)
    rows: list[Row] = []
    skipped: list[Skipped] = []
    for number, line in enumerate(content.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            skipped.append(Skipped(f"{path}:{number}", f"malformed JSON ({exc.msg})"))
            continue
        if not isinstance(record, dict):
            skipped.append(Skipped(f"{path}:{number}", "not a JSON object"))
            continue
        rows.append((number, record))
    return _columns_of(rows), rows, skipped


def _parse_json_array(path: Path, content: str) -> tuple[list[str], list[Row], list[Skipped]]:
    try:
        records = json.loads(content)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON ({exc}); write one JSON object per line (JSONL)") from exc
    rows: list[Row] = []
    skipped: list[Skipped] = []
    # A JSON array has no useful line numbers: the item's position (from 1) stands in for them.
    for number, record in enumerate(records, start=1):
        if isinstance(record, dict):
            rows.append((number, record))
        else:
            skipped.append(Skipped(f"{path}:{number}", "not a JSON object"))
    return _columns_of(rows), rows, skipped


def _columns_of(rows: list[Row]) -> list[str]:
    columns: dict[str, None] = {}  # a dict keeps first-seen order
    for _, record in rows:
        columns.update(dict.fromkeys(record))
    return list(columns)


def _parse_delimited(content: str) -> tuple[list[str], list[Row]]:
    """CSV/TSV with a header row. A first row that looks like data gets names ``column_1``, ..."""
    first_line = content.split("\n", 1)[0]
    delimiter = max((",", "\t", ";"), key=first_line.count)
    # TSV has no quoting convention (GLUE's SST-2 has bare quotes in sentences): read it verbatim.
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    reader = csv.reader(io.StringIO(content, newline=""), delimiter=delimiter, quoting=quoting)
    header = next(reader, None)
    if header is None:
        return [], []
    rows: list[Row] = []
    columns = [name.strip() for name in header]
    if any(_looks_like_data(cell) for cell in columns):
        columns = [f"column_{i}" for i in range(1, len(header) + 1)]
        rows.append((1, dict(zip(columns, header, strict=True))))
    start = reader.line_num + 1
    for values in reader:
        if values:  # a blank line is no row at all
            record = dict(zip(columns, values, strict=False))
            if reader.line_num > start and quoting != csv.QUOTE_NONE:
                record[MERGED] = reader.line_num  # one record over several lines: a quote left open?
            rows.append((start, record))
        start = reader.line_num + 1
    return columns, rows


def _looks_like_data(cell: str) -> bool:
    """A header cell is a short name: a number or a phrase of several words is a data value."""
    cell = cell.strip()
    try:
        float(cell)
        return True
    except ValueError:
        return len(cell.split()) > 4


def _first_column_is_image_paths(path: Path) -> bool:
    """Peek at a few rows: is this a list of image files rather than texts?"""
    with open(path, encoding="utf-8", errors="replace") as fh:
        head = "".join(fh.readline() for _ in range(6))
    try:
        columns, rows, _ = _parse_table(path, head)
    except DataError:
        return False
    values = [str(record.get(columns[0], "")) for _, record in rows] if columns else []
    return bool(values) and all(Path(v.strip()).suffix.lower() in IMAGE_EXTENSIONS for v in values)


# --- columns -------------------------------------------------------------------------------------


def _pick_columns(
    path: Path, columns: list[str], rows: list[Row], text_col: str | None, label_col: str | None
) -> tuple[str, str]:
    tcol = _named_column(path, columns, text_col, "text_col") or _find_column(columns, TEXT_COLUMN_NAMES)
    lcol = _named_column(path, columns, label_col, "label_col") or _find_column(columns, LABEL_COLUMN_NAMES)
    if tcol is None and lcol is None and len(columns) == 2:
        tcol, lcol = _by_content(columns, rows)
    others = [c for c in columns if c not in (tcol, lcol)]
    # One column known and exactly one other left: that other one is the missing column.
    if tcol is None and lcol is not None and len(others) == 1:
        tcol = others[0]
    if lcol is None and tcol is not None and len(others) == 1:
        lcol = others[0]
    if tcol is None or lcol is None:
        missing = "text" if tcol is None else "label"
        raise DataError(
            f"{path}: cannot tell which column holds the {missing} among {columns}; "
            f"rename it to '{missing}' or pass {missing}_col=..."
        )
    if tcol == lcol:
        raise DataError(f"{path}: the text and label columns are both '{tcol}'; name two different columns")
    return tcol, lcol


def _named_column(path: Path, columns: list[str], name: str | None, argument: str) -> str | None:
    """The column the user named: exact match first, then a unique case-insensitive one."""
    if name is None:
        return None
    if name in columns:
        return name
    matches = [c for c in columns if c.lower() == name.lower()]
    if len(matches) == 1:
        return matches[0]
    raise DataError(f"{path}: {argument}='{name}' is not a column; the columns are {columns}")


def _find_column(columns: list[str], names: Sequence[str]) -> str | None:
    lowered = {c.strip().lower(): c for c in reversed(columns)}  # reversed: the first one wins
    return next((lowered[n] for n in names if n in lowered), None)


def _by_content(columns: list[str], rows: list[Row]) -> tuple[str, str]:
    """Of two columns, the one with the longer strings on average is the text."""
    sample = [record for _, record in rows[:500]]

    def mean_length(column: str) -> float:
        return float(np.mean([len(str(r.get(column) or "")) for r in sample])) if sample else 0.0

    first, second = columns
    return (first, second) if mean_length(first) >= mean_length(second) else (second, first)


# --- rows ----------------------------------------------------------------------------------------


def _extract(path: Path, rows: list[Row], tcol: str, lcol: str) -> tuple[list[str], list[str], list[Skipped]]:
    texts: list[str] = []
    labels: list[str] = []
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
        labels.append(str(label).strip())
    return texts, labels, skipped


def _row_problem(text: Any, label: Any) -> str | None:
    if text is None or (isinstance(text, str) and not text.strip()):
        return "empty text"
    if isinstance(text, dict | list):
        return "text is not a string"
    if label is None or (isinstance(label, str) and not label.strip()):
        return "missing label"
    if isinstance(label, dict | list):
        return "label is not a single value"
    return None


def _resolve_classes(path: Path, labels: list[str], classes: Sequence[str] | None) -> list[str]:
    found = sort_labels(set(labels))
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
    kept_labels: list[str] = []
    skipped: list[Skipped] = []
    for i, (text, label) in enumerate(zip(texts, labels, strict=True)):
        if not isinstance(text, str) or not text.strip():
            skipped.append(
                Skipped(
                    f"texts[{i}]",
                    "empty text" if isinstance(text, str) or text is None else f"not a string ({type(text).__name__})",
                )
            )
        elif label is None or (isinstance(label, float) and math.isnan(label)) or not str(label).strip():
            skipped.append(Skipped(f"texts[{i}]", "missing label"))
        else:
            kept_texts.append(text.strip())
            kept_labels.append(str(label).strip())
    found = sort_labels(set(kept_labels))
    if classes is None:
        if len(found) < 2:
            raise DataError(f"the given texts: found {len(found)} class(es) {found}; need at least two labels")
        classes = found
    unknown = sorted(set(found) - set(classes))
    if unknown:
        raise DataError(f"the given texts: labels {unknown} are not among the training classes {list(classes)}")
    return TextSource(kept_texts, kept_labels, list(classes), skipped, origin="the given texts")
