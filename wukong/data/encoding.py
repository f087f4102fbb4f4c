"""Reading table files whatever their encoding, line by line, without hiding what was guessed.

A file that is UTF-8 throughout is read as UTF-8. A file with bytes that are not UTF-8 is decoded
line by line: lines that are valid UTF-8 stay UTF-8 (a valid ``café`` never becomes ``cafÃ©``), and
only the lines that are not fall back to cp1252 (what spreadsheets on Windows write), else latin-1
(which decodes any byte). Every line that needed the fallback is reported.

Example:
    >>> decoded = decode_table_bytes(b"caf\\xc3\\xa9,1\\nna\\xefve,0\\n")   # UTF-8, then one cp1252 line
    >>> decoded.text.splitlines(), decoded.encoding, decoded.fallback_lines
    (['café,1', 'naïve,0'], 'utf-8 (1 line cp1252)', [2])
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from wukong.errors import DataError

# Tried in order after UTF-8: cp1252 is what spreadsheets on Windows write; latin-1 decodes any byte.
FALLBACK_ENCODINGS = ("cp1252", "latin-1")
# Table files larger than this are refused rather than read into memory whole.
MAX_TABLE_BYTES = 2 * 1024**3


@dataclass
class DecodedText:
    """A file's text, the encoding that read it, and the (1-based) lines that needed a fallback."""

    text: str
    encoding: str
    fallback_lines: list[int] = field(default_factory=list)


def decode_table_bytes(data: bytes) -> DecodedText:
    """Decode a whole table (see the module docstring)."""
    try:
        return DecodedText(data.decode("utf-8-sig"), "utf-8")
    except UnicodeDecodeError:
        pass
    lines = data.split(b"\n")
    if lines and lines[0].startswith(b"\xef\xbb\xbf"):
        lines[0] = lines[0][3:]
    decoded: list[str] = []
    fallback: list[int] = []
    used: dict[str, int] = {}
    for number, raw in enumerate(lines, start=1):
        try:
            decoded.append(raw.decode("utf-8"))
            continue
        except UnicodeDecodeError:
            pass
        for encoding in FALLBACK_ENCODINGS:
            try:
                decoded.append(raw.decode(encoding))
            except UnicodeDecodeError:
                continue
            used[encoding] = used.get(encoding, 0) + 1
            fallback.append(number)
            break
    non_ascii = sum(1 for raw in lines if not raw.isascii())
    if len(fallback) == non_ascii and len(used) == 1:  # every non-ASCII line: the file's own encoding
        return DecodedText("\n".join(decoded), next(iter(used)), fallback)
    counts = ", ".join(f"{n} line{'s' if n > 1 else ''} {enc}" for enc, n in used.items())
    return DecodedText("\n".join(decoded), f"utf-8 ({counts})", fallback)


def read_table_text(path: Path) -> DecodedText:
    """The decoded text of a table file; an unreadable or oversized file is one ``DataError`` line."""
    try:
        size = path.stat().st_size
        if size > MAX_TABLE_BYTES:
            raise DataError(f"{path}: {size / 1e9:.1f} GB is over the {MAX_TABLE_BYTES / 1e9:.0f} GB limit for a table")
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    return decode_table_bytes(data)
