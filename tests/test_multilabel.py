"""Several labels per example, on real data: BANKING77 queries joined in pairs (the label set is both
intents) and 2x2 mosaics of CIFAR-10 images (the label set is the classes shown), read from files
whose label cells hold ``;``-separated names or JSON lists; fitted, saved, exported and predicted."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from wukong import ImageClassifier, TextClassifier, load
from wukong.calibration import tune_thresholds
from wukong.data.label_sets import indicator, is_multi_label, label_set, stratify_key
from wukong.errors import DataError, ParameterError
from wukong.export import export

from .conftest import FAST_BACKBONE
from .test_text_classifier import BANKING

# fp32: the fp32 export and a reloaded model are held to float rounding (bf16, where measured faster, moves ~1e-3)
FAST = {"progress": False, "seed": 0, "bf16": False}
INTENTS = 8


def _pairs(n: int, seed: int) -> tuple[list[str], list[list[str]]]:
    """``n`` texts, each two BANKING77 queries of two different intents (of the first ``INTENTS``)."""
    rows = list(csv.DictReader(open(BANKING / ("train.csv" if seed == 0 else "test.csv"), encoding="utf-8")))
    intents = sorted({r["category"] for r in rows})[:INTENTS]
    by_intent = {name: [r["text"] for r in rows if r["category"] == name] for name in intents}
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for _ in range(n):
        a, b = rng.choice(intents, 2, replace=False)
        texts.append(f"{rng.choice(by_intent[a])} {rng.choice(by_intent[b])}")
        labels.append(sorted([str(a), str(b)]))
    return texts, labels


@pytest.fixture(scope="module")
def pairs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    folder = tmp_path_factory.mktemp("pairs")
    train, test = _pairs(240, 0), _pairs(80, 1)
    with open(folder / "train.csv", "w", newline="", encoding="utf-8") as fh:  # labels as "a;b"
        writer = csv.writer(fh)
        writer.writerow(["text", "labels"])
        writer.writerows([text, ";".join(names)] for text, names in zip(*train, strict=True))
    with open(folder / "test.jsonl", "w", encoding="utf-8") as fh:  # labels as JSON lists
        fh.writelines(json.dumps({"text": t, "label": names}) + "\n" for t, names in zip(*test, strict=True))
    return {"train": train, "test": test, "train_file": folder / "train.csv", "test_file": folder / "test.jsonl"}


@pytest.fixture(scope="module")
def text_model(pairs) -> TextClassifier:
    return TextClassifier(strategy="features", **FAST).fit(str(pairs["train_file"]))


def test_label_cells_are_read_as_sets() -> None:
    cells = ["b;a", '["c", "a"]', "a", ["b"], " a ; ;b "]
    assert is_multi_label(cells) and not is_multi_label(["a", "b", "a b"])
    assert [label_set(c) for c in cells] == [("b", "a"), ("c", "a"), ("a",), ("b",), ("a", "b")]
    assert indicator([("b", "a"), ()], ["a", "b"], "x").tolist() == [[1, 1], [0, 0]]
    with pytest.raises(DataError, match="x: labels \\['z'\\] are not among"):
        indicator([("z",)], ["a", "b"], "x")
    # the rarest label of each example stratifies splits: label 1 (2 examples) before label 0 (3)
    assert stratify_key(np.array([[1, 1], [1, 0], [1, 1], [0, 0]])).tolist() == [1, 0, 1, 2]


def test_thresholds_maximise_f1_and_lean_on_the_shared_one_with_few_positives() -> None:
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(0)
    truth = rng.random((300, 4)) < [0.1, 0.3, 0.5, 0.01]
    proba = np.clip(truth * 0.35 + rng.random((300, 4)) * 0.65, 0, 1)
    own = tune_thresholds(proba, truth.astype(int), prior=0)  # each label's own F1-maximising cut
    for j in range(4):
        best = max(f1_score(truth[:, j], proba[:, j] >= t) for t in np.unique(proba[:, j]))
        assert f1_score(truth[:, j], proba[:, j] >= own[j]) == pytest.approx(best)
    shared = tune_thresholds(proba, truth.astype(int), prior=1e9)  # the one cut best for micro F1
    assert np.ptp(shared) < 1e-6
    assert f1_score(truth, proba >= shared[0], average="micro") >= f1_score(truth, proba >= 0.5, average="micro")
    # by default each label keeps n / (n + 50) of its own cut: the rarest (3 positives) about 6%
    positives = truth.sum(axis=0)
    weight = positives / (positives + 50)
    np.testing.assert_allclose(
        tune_thresholds(proba, truth.astype(int)), weight * own + (1 - weight) * shared, atol=2e-6
    )


def test_text_pairs_get_both_intents(text_model: TextClassifier, pairs) -> None:
    model = text_model
    assert model.multi_label_ and len(model.classes_) == INTENTS
    assert "several labels per example" in model.strategy_reason_
    assert model.metrics_["classifier"]["classifier"] == "one_vs_rest_logistic_regression"
    thresholds = model.calibration_["thresholds"]
    assert len(thresholds) == INTENTS and all(0 < t < 1 for t in thresholds)
    texts, labels = pairs["test"]
    proba = model.predict_proba(texts)
    assert proba.shape == (len(texts), INTENTS) and not np.allclose(proba.sum(axis=1), 1)  # a sigmoid per label
    predicted = model.predict(texts)
    assert all(isinstance(p, list) for p in predicted)
    metrics = model.evaluate(str(pairs["test_file"]))  # JSON-list labels, read as sets with the training classes
    assert metrics["multi_label"] and metrics["n"] == len(texts)
    assert metrics["micro_f1"] > 0.85 and metrics["mAP"] > 0.9, metrics
    # the naive answer, the two most probable intents, is right less often than the tuned label sets
    top2 = [sorted(model.classes_[j] for j in np.argsort(-row)[:2]) for row in proba]
    naive = np.mean([set(a) == set(b) for a, b in zip(top2, labels, strict=True)])
    assert metrics["subset_accuracy"] == pytest.approx(model.score(texts, labels))
    assert metrics["subset_accuracy"] > 0.5 and metrics["mean_predicted_labels"] > 1.5, (metrics, naive)
    assert metrics["calibration"]["reliability"] and metrics["ece"] < 0.1
    from wukong.metrics import format_metrics

    table = format_metrics(metrics, model.classes_)  # what 'wukong evaluate' prints
    assert table.startswith(f"subset accuracy {metrics['subset_accuracy']:.4f}") and "mAP" in table
    assert all(name in table for name in model.classes_) and "confusion" not in table
    record = model.predict_records(texts[:1])[0]
    assert record["labels"] == predicted[0] and set(record["scores"]) == set(predicted[0])
    assert all(record["scores"][name] >= thresholds[model.classes_.index(name)] for name in record["labels"])


@pytest.mark.slow  # the default suite stays near 10 minutes; make test-all runs it
def test_saved_exported_and_predicted_from_the_cli(text_model: TextClassifier, pairs, tmp_path: Path) -> None:
    texts, _ = pairs["test"]
    folder = text_model.save(tmp_path / "model")
    config = json.loads((folder / "config.json").read_text())
    assert config["multi_label"] is True and len(config["calibration"]["thresholds"]) == INTENTS
    again = load(folder)
    np.testing.assert_allclose(again.predict_proba(texts[:10]), text_model.predict_proba(texts[:10]), atol=1e-6)
    assert again.predict(texts[:10]) == text_model.predict(texts[:10])
    assert "Several labels per input" in (folder / "report.html").read_text()

    written = export(again, tmp_path / "model.onnx", data=str(pairs["test_file"]))
    assert written["parity"]["max_abs_diff"] < 1e-4 and written["parity"]["decision_disagreements"] == 0
    saved = dict(zip(again.classes_, config["calibration"]["thresholds"], strict=True))
    assert written["multi_label"]["thresholds"] == saved

    command = [sys.executable, "-m", "wukong.cli", "predict", str(folder), "--text", texts[0], "--json"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    row = json.loads(done.stdout)
    assert row["labels"] == text_model.predict(texts[:1])[0] and row["label"] == ";".join(row["labels"])

    # a damaged threshold is refused on load, naming the file
    config["calibration"]["thresholds"][0] = 1.5
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(DataError, match="config.json: .*thresholds"):
        load(folder)


def test_served_on_127_0_0_1_with_label_sets(text_model: TextClassifier, pairs) -> None:
    from wukong.serve import BackgroundServer, create_app

    from .test_serve import post

    texts = pairs["test"][0][:4]
    with BackgroundServer(create_app(text_model)) as server:
        status, rows = post(f"{server.url}/predict", json.dumps({"texts": texts}).encode(), "application/json")
    assert status == 200 and [row["labels"] for row in rows] == text_model.predict(texts)
    assert all(set(row["scores"]) == set(row["labels"]) for row in rows)


def test_head_trains_with_binary_cross_entropy(pairs) -> None:
    model = TextClassifier(strategy="head", **FAST).fit(*pairs["train"])
    assert model.multi_label_ and model.calibration_["fitted_on"] == "the validation set"
    history = model.metrics_["history"]["epochs"]
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    metrics = model.evaluate(*pairs["test"])
    assert metrics["micro_f1"] > 0.75, metrics


def test_single_and_multi_label_sets_meet_with_clear_errors(text_model, pairs) -> None:
    texts, labels = pairs["test"]
    # a validation or test set with one label per row is fine for a multi-label model
    single = [names[0] for names in labels]
    assert text_model.evaluate(texts, single)["n"] == len(texts)
    with pytest.raises(ParameterError, match="class_weight='balanced' is for one label per example"):
        TextClassifier(class_weight="balanced", **FAST).fit(*pairs["train"])
    with pytest.raises(ParameterError, match="multi-label data needs 'logistic'"):
        TextClassifier(strategy="features", linear_model="svm", **FAST).fit(*pairs["train"])


def _mosaics(cifar: Path, split: str, n: int, seed: int, out: Path) -> Path:
    """``n`` 2x2 mosaics of CIFAR-10 images of one to three classes, and a CSV of their label sets."""
    files = {c.name: sorted(c.glob("*.jpg")) for c in sorted((cifar / split).iterdir())}
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True)
    lines = ["path,label"]
    for i in range(n):
        chosen = list(rng.choice(sorted(files), rng.integers(1, 4), replace=False))
        tiles_of = chosen + list(rng.choice(chosen, 4 - len(chosen)))
        rng.shuffle(tiles_of)
        tiles = [np.asarray(Image.open(rng.choice(files[c])).convert("RGB")) for c in tiles_of]
        grid = np.concatenate([np.concatenate(tiles[:2], axis=1), np.concatenate(tiles[2:], axis=1)])
        Image.fromarray(grid).save(out / f"{i}.png")
        lines.append(f"{i}.png," + ";".join(sorted(chosen)))
    (out / "labels.csv").write_text("\n".join(lines) + "\n")
    return out / "labels.csv"


@pytest.mark.slow  # the default suite stays near 10 minutes; make test-all runs it
def test_image_mosaics_get_the_classes_they_show(cifar_small: Path, tmp_path: Path) -> None:
    train = _mosaics(cifar_small, "train", 150, 0, tmp_path / "train")
    test = _mosaics(cifar_small, "test", 50, 1, tmp_path / "test")
    model = ImageClassifier(FAST_BACKBONE, strategy="features", **FAST).fit(str(train))  # 64px: quick
    assert model.multi_label_ and len(model.classes_) == 10
    metrics = model.evaluate(str(test))
    truth = np.array([[name in row.split(";") for name in model.classes_] for row in _column(test)])
    # above labelling every mosaic with every class (micro F1), and ranking far above chance (whose
    # average precision is the share of mosaics with the label)
    always = 2 * truth.mean() / (1 + truth.mean())
    assert metrics["micro_f1"] > always + 0.1 and metrics["mAP"] > 2 * truth.mean(), (metrics, truth.mean())
    written = export(model, tmp_path / "model.onnx", data=str(test))
    assert written["parity"]["max_abs_diff"] < 1e-4 and written["parity"]["decision_disagreements"] == 0


def _column(csv_file: Path) -> list[str]:
    return [row["label"] for row in csv.DictReader(open(csv_file, encoding="utf-8"))]


def test_fewshot_pairs_share_a_label() -> None:
    """SetFit's rule for several labels: two texts make a positive pair when they share a label."""
    import torch

    from wukong.strategies.fewshot import same_label

    rows = torch.tensor([[1, 1, 0], [0, 1, 0], [0, 0, 1]])
    expected = [[True, True, False], [True, True, False], [False, False, True]]
    assert same_label(rows).tolist() == expected
    assert same_label(torch.tensor([2, 2, 0])).tolist() == expected  # one class per text: the same class


@pytest.mark.slow  # 9 s; benchmarks/multilabel.py runs fewshot on 2,000 BANKING77 pairs
def test_fewshot_tunes_on_pairs_that_share_a_label(pairs) -> None:
    texts, labels = pairs["train"]
    model = TextClassifier(strategy="fewshot", pair_steps=8, **FAST).fit(texts[:120], labels[:120])
    assert model.metrics_["contrastive"]["steps"] == 8 and model.multi_label_
    assert model.evaluate(*pairs["test"])["micro_f1"] > 0.8
