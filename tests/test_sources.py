"""Several labelled sources trained on as one set (``wukong.Sources``, ``wukong train DATA MORE``): the
labelling loop's last step, the class folders joined by the suggestions file once it is labelled."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from wukong import ImageClassifier, Sources, TextClassifier
from wukong.data.images import read_image_source, read_image_sources
from wukong.data.text import read_text_tables
from wukong.errors import DataError

from .conftest import CAT_DOG, DATA, FAST_BACKBONE


def _table(path: Path, rows: list[tuple[str, str]], first: str = "path") -> Path:
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow([first, "label", "predicted"])
        writer.writerows([(a, b, "x") for a, b in rows])
    return path


@pytest.fixture
def labelled_suggestions(tmp_path: Path) -> Path:
    """Suggestions as a person leaves them: three new photos of one class labelled, one left blank, and
    a photo already in the class folders listed again with its label."""
    new = sorted((CAT_DOG / "test" / "cat").glob("*.jpg"))[:4]
    again = sorted((CAT_DOG / "train" / "cat").glob("*.jpg"))[0]
    rows = [(str(p), "cat") for p in new[:3]] + [(str(new[3]), ""), (str(again), "cat")]
    return _table(tmp_path / "to_label.csv", rows)


def test_class_folders_and_labelled_suggestions_train_as_one_set(labelled_suggestions: Path) -> None:
    folder = read_image_source(CAT_DOG / "train")
    joined = read_image_sources([CAT_DOG / "train", labelled_suggestions])
    assert joined.classes == ["cat", "dog"]  # the suggestions hold one class: the classes are all the sources'
    assert len(joined) == len(folder) + 3 and joined.paths[: len(folder)] == folder.paths
    assert [joined.classes[i] for i in joined.labels[len(folder) :]] == ["cat"] * 3
    reasons = {Path(s.path).name if s.kept else s.path: s.reason for s in joined.skipped}
    assert reasons[f"{labelled_suggestions}:5"] == "empty path or label"
    assert "listed again" in reasons[sorted((CAT_DOG / "train" / "cat").glob("*.jpg"))[0].name]
    # fitting on the sources is fitting on the same images and labels given as lists
    given = ([str(p) for p in joined.paths], [joined.classes[i] for i in joined.labels])
    make = lambda: ImageClassifier(FAST_BACKBONE, strategy="features", progress=False)  # noqa: E731
    from_sources = make().fit(Sources(CAT_DOG / "train", labelled_suggestions))
    from_lists = make().fit(*given)
    assert sum(from_sources.metrics_["train_examples"].values()) + from_sources.metrics_["val_examples"] == len(joined)
    assert any("listed again" in s["reason"] for s in from_sources.skipped_)
    test = CAT_DOG / "test"
    np.testing.assert_allclose(from_sources.predict_proba(test), from_lists.predict_proba(test), atol=1e-6)


def test_tables_of_texts_train_as_one_set(tmp_path: Path) -> None:
    frame = pd.read_csv(DATA / "banking77" / "train.csv")
    intents = sorted(frame.category.unique())[:4]
    first = pd.concat([frame[frame.category == c].head(6) for c in intents])
    more = frame[frame.category == intents[0]].iloc[6:9]  # one intent only, as labelled suggestions may be
    first.to_csv(tmp_path / "train.csv", index=False)
    rows = [*zip(more.text, more.category, strict=True), ("what about this one?", "")]
    _table(tmp_path / "to_label.csv", rows, first="text")
    joined = read_text_tables([tmp_path / "train.csv", tmp_path / "to_label.csv"])
    assert joined.classes == intents and len(joined) == 27 and joined.texts[24:] == list(more.text)
    assert [s.reason for s in joined.skipped] == ["missing label"]
    model = TextClassifier(strategy="features", progress=False).fit(
        Sources(tmp_path / "train.csv", tmp_path / "to_label.csv")
    )
    by_hand = TextClassifier(strategy="features", progress=False).fit(joined.texts, joined.labels)
    assert model.classes_ == intents
    np.testing.assert_allclose(model.predict_proba(list(more.text)), by_hand.predict_proba(list(more.text)), atol=1e-5)


def test_columns_named_for_one_table_leave_the_suggestions_columns_to_be_found(tmp_path: Path) -> None:
    rows = [("1", "my card has not come", "card_arrival"), ("2", "refund please", "refund")] * 3
    main = tmp_path / "main.csv"
    pd.DataFrame(rows, columns=["id", "utterance", "intent_name"]).to_csv(main, index=False)
    more = _table(tmp_path / "to_label.csv", [("where is my card", "card_arrival")], first="text")
    joined = read_text_tables([main, more], "utterance", "intent_name")
    assert joined.texts[-1] == "where is my card" and joined.labels[-1] == "card_arrival" and len(joined) == 7
    with pytest.raises(DataError, match=r"main.csv: label_col='intent' is not a column; the columns are \['id'"):
        read_text_tables([main, more], "utterance", "intent")  # a name misspelt: not silently found
    with pytest.raises(DataError, match="label_col='intent' is a column of none of them"):
        read_text_tables([more, more], None, "intent")  # every table's columns found: still not silent


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("clash", "labelled 'cat' in {train} and 'dog' in {extra}; keep one label"),
        ("blank", "{extra}: no labelled image (1 row(s) with an empty path or label); label some"),
        ("text", "{extra}: text data, but {train} holds image data; join sources of one kind"),
        ("missing", "{extra}: no such file or folder"),
    ],
)
def test_sources_that_cannot_join_name_the_file_and_the_problem(tmp_path: Path, extra: str, message: str) -> None:
    cat = sorted((CAT_DOG / "train" / "cat").glob("*.jpg"))[0]
    path = {
        "clash": _table(tmp_path / "clash.csv", [(str(cat), "dog")]),
        "blank": _table(tmp_path / "blank.csv", [(str(cat), "")]),
        "text": DATA / "sst2" / "dev.tsv",
        "missing": tmp_path / "nothing.csv",
    }[extra]
    train = CAT_DOG / "train"
    with pytest.raises(DataError) as caught:
        ImageClassifier(FAST_BACKBONE, progress=False).check_data(Sources(train, path))
    assert message.format(train=train, extra=path) in str(caught.value)


def test_a_recorded_set_is_read_back_only_while_every_source_is_there(tmp_path: Path) -> None:
    """``metrics.json``'s ``test_data`` (what ``wukong export`` checks an export against): one path,
    or the list of several sources; read back as the set it names, or nothing once one is gone."""
    from wukong.data.sources import record_of, set_of_record

    first, second = tmp_path / "a.csv", tmp_path / "b.csv"
    first.write_text("path,label\n")
    second.write_text("path,label\n")
    assert record_of(first) == str(first.resolve())
    assert set_of_record(record_of(first)) == first.resolve()
    both = set_of_record(record_of(Sources(first, second)))
    assert isinstance(both, Sources) and both.paths == (first.resolve(), second.resolve())
    second.unlink()
    assert set_of_record(record_of(Sources(first, second))) is None and set_of_record(None) is None
