"""``wukong suggest``: uncertain items, spread over the feature space, written ready to label."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import CAT_DOG, DATA, FAST_BACKBONE
from wukong.errors import DataError
from wukong.quality.suggest import pick, suggest, uncertainty


def test_uncertainty_is_one_minus_the_margin() -> None:
    proba = np.array([[0.5, 0.5, 0.0], [0.9, 0.05, 0.05], [0.2, 0.3, 0.5]], np.float32)
    assert np.allclose(uncertainty(proba), [1.0, 0.15, 0.8])
    multi = np.array([[0.45, 0.9], [0.1, 0.95]], np.float32)
    assert np.allclose(uncertainty(multi, np.array([0.5, 0.5], np.float32)), [0.9, 0.2])


def test_pick_spreads_the_labels_over_clusters() -> None:
    """The ten most uncertain items are near copies of one another; clustering takes the most
    uncertain of them and of the other group, where uncertainty alone takes two of the copies."""
    rng = np.random.default_rng(0)
    features = np.r_[rng.normal(0, 0.01, (10, 8)) + 1.0, rng.normal(0, 0.01, (10, 8)) - 1.0]
    features[:, 0] += np.r_[np.zeros(10), np.full(10, 3.0)]
    scores = np.r_[np.linspace(0.99, 0.9, 10), np.linspace(0.89, 0.8, 10)]
    assert pick(features, scores, 2).tolist() == [0, 10]
    assert pick(features, scores, 2, diverse=False).tolist() == [0, 1]


@pytest.fixture(scope="module")
def cat_dog_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from wukong import ImageClassifier

    folder = tmp_path_factory.mktemp("model") / "cat_dog"
    ImageClassifier(FAST_BACKBONE, strategy="features", progress=False).fit(CAT_DOG / "train").save(folder)
    return folder


def test_the_next_round_leaves_out_what_was_asked_before(cat_dog_model: Path, tmp_path: Path) -> None:
    from wukong import load
    from wukong.quality.suggest import write_csv

    model = load(cat_dog_model)
    first = suggest(model, CAT_DOG / "test", n=5)
    earlier = write_csv(first, tmp_path / "to_label.csv", "image")  # left blank: asked all the same
    second = suggest(model, CAT_DOG / "test", n=5, exclude=[earlier])
    assert len(second) == 5 and not {r["input"] for r in first} & {r["input"] for r in second}
    pool = len(list((CAT_DOG / "test").rglob("*.jpg")))
    assert len(suggest(model, CAT_DOG / "test", n=pool, exclude=[earlier])) == pool - 5
    with pytest.raises(DataError, match=rf"every usable unlabelled input \({pool}\) is in the model's training"):
        suggest(model, CAT_DOG / "test", n=5, exclude=[earlier, CAT_DOG / "test"])
    with pytest.raises(DataError, match="no/such.csv: no such file or folder"):
        suggest(model, CAT_DOG / "test", n=5, exclude=["no/such.csv"])
    # trained on the earlier round's file (two of five rows labelled): all five stay out unasked, as the
    # training folder's photos do when the pool holds them
    rows = list(csv.reader(earlier.open()))
    for row in rows[1:3]:
        row[1] = Path(row[0]).parent.name
    csv.writer(earlier.open("w", newline="")).writerows(rows)
    from wukong import ImageClassifier, Sources

    again = ImageClassifier(FAST_BACKBONE, strategy="features", progress=False).fit(Sources(CAT_DOG / "train", earlier))
    assert again.metrics_["train_data"] == [str((CAT_DOG / "train").resolve()), str(earlier.resolve())]
    inputs = [r["input"] for r in suggest(again, [CAT_DOG / "test", CAT_DOG / "train"], n=pool + 40)]
    assert len(inputs) == pool - 5 and all(Path(i).is_relative_to(CAT_DOG / "test") for i in inputs)


def test_texts_listed_before_are_every_row_of_the_text_column(tmp_path: Path) -> None:
    from wukong.quality.suggest import listed, write_csv

    rows = [{"rank": 1, "input": " a card? ", "predicted": "x", "score": 0.5, "uncertainty": 1.0}]
    rows.append({**rows[0], "rank": 2, "input": "a refund"})
    earlier = write_csv(rows, tmp_path / "to_label.csv", "text")
    (tmp_path / "more.txt").write_text("one more\n\n")
    assert listed([earlier, tmp_path / "more.txt"], "text") == {"a card?", "a refund", "one more"}


@pytest.mark.slow  # the default suite stays near 10 minutes; make test-all runs it
def test_suggest_command_writes_a_csv_that_trains_once_labelled(cat_dog_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "to_label.csv"
    command = [sys.executable, "-m", "wukong.cli", "suggest", str(cat_dog_model), str(CAT_DOG / "test")]
    done = subprocess.run(
        [*command, "--n", "8", "--out", str(out), "--json"], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["rank"] for r in rows] == list(range(1, 9)) and len({r["input"] for r in rows}) == 8
    assert all(Path(r["input"]).is_relative_to(CAT_DOG / "test") for r in rows)
    assert [r["uncertainty"] for r in rows] == sorted((r["uncertainty"] for r in rows), reverse=True)
    with open(out, newline="") as fh:
        table = list(csv.DictReader(fh))
    assert list(table[0]) == ["path", "label", "predicted", "score", "uncertainty", "rank"]
    assert [t["path"] for t in table] == [r["input"] for r in rows] and not any(t["label"] for t in table)
    for t in table[:6]:  # the person labelling fills in six of the eight
        t["label"] = Path(t["path"]).parent.name
    with open(out, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(table[0]))
        writer.writeheader()
        writer.writerows(table)
    labelled = out.read_text()
    again = subprocess.run([*command, "--n", "8", "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert again.returncode == 2 and "exists" in again.stderr and out.read_text() == labelled  # the labels kept
    model = tmp_path / "again"
    train = [sys.executable, "-m", "wukong.cli", "train", str(out), "--backbone", FAST_BACKBONE, "--out", str(model)]
    done = subprocess.run([*train, "--strategy", "features", "--quiet"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert sum(json.loads((model / "metrics.json").read_text())["train_examples"].values()) <= 6
    assert "empty path or label" in (model / "skipped.json").read_text()
    # the loop: the first model's folders and the six new labels, trained with its choices
    joined = tmp_path / "round2"
    train = [sys.executable, "-m", "wukong.cli", "train", str(CAT_DOG / "train"), str(out), "--like"]
    done = subprocess.run(
        [*train, str(cat_dog_model), "--out", str(joined), "--quiet"], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    metrics = json.loads((joined / "metrics.json").read_text())
    photos = len(list((CAT_DOG / "train").glob("*/*.jpg")))
    assert f"examples: {photos + 6} from {CAT_DOG / 'train'} + {out}" in done.stdout
    assert sum(metrics["train_examples"].values()) + metrics["val_examples"] == photos + 6
    assert metrics["strategy_reason"].startswith(f"the choices of {cat_dog_model} (--like)")


@pytest.mark.slow  # the default suite stays near 10 minutes; make test-all runs it
def test_suggest_on_texts_leaves_out_nothing_it_could_use() -> None:
    import pandas as pd

    from wukong import TextClassifier

    frame = pd.read_csv(DATA / "banking77" / "train.csv")
    intents = sorted(frame.category.unique())[:4]
    part = pd.concat([frame[frame.category == c].head(8) for c in intents])
    model = TextClassifier(strategy="features", progress=False).fit(list(part.text), list(part.category))
    pool = list(frame[frame.category.isin(intents)].text.iloc[200:260])
    rows = suggest(model, pool, n=10)
    assert len(rows) == 10 and {r["input"] for r in rows} <= set(pool)
    assert all(r["predicted"] in intents and 0 <= r["uncertainty"] <= 1 for r in rows)
    everything = {r["input"] for r in suggest(model, pool, n=100)}
    assert everything == set(pool)
