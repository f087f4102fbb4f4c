"""Tables of rows: CSV, TSV, JSON Lines or a JSON array parsed into rows, and which columns hold
the text and the label (by name, or in a two-column file by content: the longer strings are the text)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from wukong.data.labelled import Skipped
from wukong.errors import DataError

TEXT_COLUMN_NAMES = ("text", "sentence", "utterance", "query", "content", "review", "document")
LABEL_COLUMN_NAMES = ("label", "category", "intent", "class", "target", "sentiment", "y")
# The key under which a parsed CSV record carries the last line of a record that spans several lines.
MERGED = "\x00merged_to_line"
FORMAT_HINT = "give a CSV, TSV or JSONL file with a text column and a label column"


# --- parsing -------------------------------------------------------------------------------------

Row = tuple[int, dict[str, Any]]  # (line number in the file, column -> value)


def parse_table(path: Path, content: str) -> tuple[list[str], list[Row], list[Skipped]]:
    if _is_json_lines(path, content):
        return _parse_json(path, content)
    try:
        columns, rows = _parse_delimited(content)
    except csv.Error as exc:  # e.g. a NUL byte, or a quoted field that never ends
        raise DataError(f"{path}: not a readable CSV/TSV ({exc}); {FORMAT_HINT}") from exc
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


# --- columns -------------------------------------------------------------------------------------


def pick_columns(
    path: Path,
    columns: list[str],
    rows: list[Row],
    text_col: str | None,
    label_col: str | None,
    *,
    named_if_present: bool = False,
) -> tuple[str, str]:
    """The text and label columns: those named, else found by name or content. With
    ``named_if_present`` (one of several tables: the labelled suggestions' ``text,label`` beside a
    table whose columns had to be named), a named column this table lacks is found as if not named."""
    named = {"text": text_col, "label": label_col}
    if named_if_present:
        text_col = text_col if _named_column(path, columns, text_col, "", must=False) else None
        label_col = label_col if _named_column(path, columns, label_col, "", must=False) else None
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
        if named[missing] is not None:  # named, absent here, and not found otherwise either
            raise DataError(f"{path}: {missing}_col='{named[missing]}' is not a column; the columns are {columns}")
        raise DataError(
            f"{path}: cannot tell which column holds the {missing} among {columns}; "
            f"rename it to '{missing}' or pass {missing}_col=..."
        )
    if tcol == lcol:
        raise DataError(f"{path}: the text and label columns are both '{tcol}'; name two different columns")
    return tcol, lcol


def _named_column(path: Path, columns: list[str], name: str | None, argument: str, *, must: bool = True) -> str | None:
    """The column the user named: exact match first, then a unique case-insensitive one; ``None``
    for no name, and (unless ``must``: a ``DataError``) for a name that is not a column."""
    if name is None:
        return None
    if name in columns:
        return name
    matches = [c for c in columns if c.lower() == name.lower()]
    if len(matches) == 1:
        return matches[0]
    if not must:
        return None
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
