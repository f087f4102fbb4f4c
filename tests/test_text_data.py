"""Text tables: columns found by name or content, encodings, bad rows reported, bad files refused."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from wukong.data.text import is_text_source, read_text_table, sort_labels
from wukong.errors import DataError

from .conftest import CAT_DOG, DATA

SST2 = DATA / "sst2"
BANKING = DATA / "banking77"


def _banking_rows(n: int, *, start: int = 0) -> list[dict[str, str]]:
    """Real BANKING77 rows, read with the standard library (the oracle for our reader)."""
    with open(BANKING / "train.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    # Rows are grouped by intent: take them spread out, so several classes appear.
    step = len(rows) // n
    return rows[start::step][:n]


def _sst2_lines(name: str = "test.tsv") -> list[list[str]]:
    lines = (SST2 / name).read_text(encoding="utf-8").splitlines()
    return [line.split("\t") for line in lines[1:] if line.strip()]


def test_sst2_tsv_columns_and_rows() -> None:
    source = read_text_table(SST2 / "test.tsv")
    expected = _sst2_lines()
    assert (source.text_col, source.label_col) == ("sentence", "label")
    assert source.texts == [text.strip() for text, _ in expected]
    assert source.labels == [label.strip() for _, label in expected]
    assert source.classes == ["0", "1"]
    assert source.skipped == [] and source.encoding == "utf-8"


def test_banking77_csv_columns_and_quoted_commas() -> None:
    source = read_text_table(BANKING / "train.csv")
    with open(BANKING / "train.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert (source.text_col, source.label_col) == ("text", "category")
    assert source.texts == [r["text"].strip() for r in rows]
    assert source.labels == [r["category"] for r in rows]
    assert len(source.classes) == len({r["category"] for r in rows})
    assert any("," in t for t in source.texts)  # quoted fields with commas stayed whole


def test_two_unnamed_columns_longer_strings_are_the_text(tmp_path: Path) -> None:
    rows = _banking_rows(40)
    path = tmp_path / "odd_names.csv"
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["tag", "words"])
        writer.writerows([r["category"], r["text"]] for r in rows)
    source = read_text_table(path)
    assert (source.text_col, source.label_col) == ("words", "tag")
    assert source.texts == [r["text"] for r in rows]


def test_headerless_tsv_keeps_its_first_row(tmp_path: Path) -> None:
    lines = _sst2_lines()[:30]
    path = tmp_path / "no_header.tsv"
    path.write_text("".join(f"{t}\t{label}\n" for t, label in lines), encoding="utf-8")
    source = read_text_table(path)
    assert len(source) == 30
    assert source.texts[0] == lines[0][0].strip()


def test_explicit_columns_override_detection(tmp_path: Path) -> None:
    rows = _banking_rows(20)
    path = tmp_path / "many.csv"
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", "Utterance_Raw", "gold", "label"])
        writer.writerows([i, r["text"], r["category"], "x"] for i, r in enumerate(rows))
    source = read_text_table(path, text_col="utterance_raw", label_col="gold")
    assert (source.text_col, source.label_col) == ("Utterance_Raw", "gold")
    assert source.labels == [r["category"] for r in rows]


def test_jsonl_with_bad_lines_reports_line_numbers(tmp_path: Path) -> None:
    rows = _banking_rows(12)
    lines = [json.dumps({"utterance": r["text"], "intent": r["category"]}) for r in rows]
    lines.insert(2, '{"utterance": "broken json", "intent": ')  # line 3
    lines.insert(5, json.dumps({"utterance": "   ", "intent": "card_arrival"}))  # line 6
    lines.insert(7, json.dumps({"utterance": "no label here"}))  # line 8
    lines.insert(9, "")  # line 10: blank, not a row
    lines.insert(10, json.dumps(["a", "list"]))  # line 11
    path = tmp_path / "data.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    source = read_text_table(path)
    assert source.texts == [r["text"] for r in rows]
    skipped = {s.path: s.reason for s in source.skipped}
    assert set(skipped) == {f"{path}:{n}" for n in (3, 6, 8, 11)}
    assert "malformed JSON" in skipped[f"{path}:3"]
    assert skipped[f"{path}:6"] == "empty text"
    assert skipped[f"{path}:8"] == "missing label"
    assert all(isinstance(s.to_dict(), dict) for s in source.skipped)


def test_csv_bad_rows_skipped_with_line_numbers(tmp_path: Path) -> None:
    rows = _banking_rows(10)
    path = tmp_path / "gaps.csv"
    body = ["text,category"] + [f'"{r["text"]}",{r["category"]}' for r in rows]
    body[2] = ",card_arrival"  # line 3: no text
    body[4] = f'"{rows[3]["text"]}",'  # line 5: no label
    body[6] = f'"{rows[5]["text"]}"'  # line 7: label cell missing entirely
    path.write_text("\n".join(body) + "\n", encoding="utf-8")
    source = read_text_table(path)
    skipped = {s.path: s.reason for s in source.skipped}
    assert skipped == {f"{path}:3": "empty text", f"{path}:5": "missing label", f"{path}:7": "missing label"}
    assert len(source) == 10 - 3


def test_int_labels_are_strings_sorted_numerically(tmp_path: Path) -> None:
    texts = [t for t, _ in _sst2_lines()[:6]]
    path = tmp_path / "ints.jsonl"
    labels = [10, 2, 1, 10, 2, 1]
    path.write_text("\n".join(json.dumps({"text": t, "y": y}) for t, y in zip(texts, labels, strict=True)))
    source = read_text_table(path)
    assert source.labels == [str(y) for y in labels]
    assert source.classes == ["1", "2", "10"]
    assert source.label_ids().tolist() == [2, 1, 0, 2, 1, 0]
    assert sort_labels(["b", "a", "10"]) == ["10", "a", "b"]


@pytest.mark.parametrize(
    ("extra", "encoding"),
    [("Café crème, déjà vu – “quoted”", "cp1252"), ("byte \x81 is not cp1252: café", "latin-1")],
)
def test_non_utf8_files_fall_back_and_say_so(tmp_path: Path, extra: str, encoding: str) -> None:
    rows = _banking_rows(8)
    path = tmp_path / "legacy.csv"
    lines = ["text,category", f'"{extra}",card_arrival'] + [f'"{r["text"]}",{r["category"]}' for r in rows]
    path.write_bytes("\n".join(lines).encode(encoding))
    source = read_text_table(path)
    assert source.encoding == encoding
    assert source.texts[0] == extra


def test_utf8_bom_is_not_part_of_the_first_column(tmp_path: Path) -> None:
    rows = _banking_rows(8)
    path = tmp_path / "bom.csv"
    lines = ["text,category"] + [f'"{r["text"]}",{r["category"]}' for r in rows]
    path.write_bytes("\n".join(lines).encode("utf-8-sig"))
    source = read_text_table(path)
    assert source.text_col == "text" and source.encoding == "utf-8"


def test_validation_file_uses_training_classes() -> None:
    train = read_text_table(SST2 / "train.tsv")
    test = read_text_table(SST2 / "test.tsv", classes=train.classes)
    assert test.classes == train.classes
    ids = test.label_ids()
    assert [train.classes[i] for i in ids] == test.labels


def test_unknown_labels_in_validation_file_are_listed(tmp_path: Path) -> None:
    path = tmp_path / "val.csv"
    path.write_text("text,label\nfine movie,1\nodd one,7\nanother,9\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"\['7', '9'\]"):
        read_text_table(path, classes=["0", "1"])


def test_subset_keeps_classes() -> None:
    source = read_text_table(SST2 / "test.tsv")
    part = source.subset([3, 1])
    assert part.texts == [source.texts[3], source.texts[1]]
    assert part.labels == [source.labels[3], source.labels[1]]
    assert part.classes == source.classes


def test_missing_file_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no_such.csv: no such file"):
        read_text_table(tmp_path / "no_such.csv")


def test_empty_file_is_a_data_error(tmp_path: Path) -> None:
    path = tmp_path / "empty.tsv"
    path.write_text("")
    with pytest.raises(DataError, match="empty"):
        read_text_table(path)


def test_header_without_rows_is_a_data_error(tmp_path: Path) -> None:
    path = tmp_path / "header_only.csv"
    path.write_text("text,label\n")
    with pytest.raises(DataError, match="no usable rows"):
        read_text_table(path)


def test_one_class_is_a_data_error(tmp_path: Path) -> None:
    path = tmp_path / "one_class.tsv"
    positives = [t for t, label in _sst2_lines() if label.strip() == "1"][:20]
    path.write_text("sentence\tlabel\n" + "".join(f"{t}\t1\n" for t in positives))
    with pytest.raises(DataError, match=r"one_class.tsv: found 1 class"):
        read_text_table(path)


def test_unknown_column_lists_the_columns(tmp_path: Path) -> None:
    expected = r"text_col='body' is not a column; the columns are \['text', 'category'\]"
    with pytest.raises(DataError, match=expected):
        read_text_table(BANKING / "test.csv", text_col="body")


def test_undetectable_columns_say_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "three.csv"
    path.write_text("a,b,c\nx,y,z\nu,v,w\n")
    with pytest.raises(DataError, match="rename it to 'text' or pass text_col"):
        read_text_table(path)


def test_is_text_source(tmp_path: Path) -> None:
    images_csv = tmp_path / "images.csv"
    cats = sorted((CAT_DOG / "train" / "cat").glob("*.jpg"))[:3]
    images_csv.write_text("path,label\n" + "".join(f"{p},cat\n" for p in cats))
    images_jsonl = tmp_path / "images.jsonl"
    images_jsonl.write_text("".join(json.dumps({"path": str(p), "label": "cat"}) + "\n" for p in cats))
    assert is_text_source(SST2 / "dev.tsv")
    assert is_text_source(BANKING / "test.csv")
    assert not is_text_source(images_csv)
    assert not is_text_source(images_jsonl)
    assert not is_text_source(CAT_DOG / "train")
    assert not is_text_source(tmp_path / "missing.csv")
