"""Predictions a user can trust, on real BANKING77 texts: the fitted temperature, applied by every
reader of the model folder; class weights for imbalanced data, explained; calibration in ``evaluate``."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest

from wukong import TextClassifier, load
from wukong.calibration import fit_temperature, log_loss, resolve_class_weight, softmax
from wukong.errors import DataError
from wukong.export import export
from wukong.export.check import export_runner

from .test_text_classifier import BANKING, _per_class

# fp32: the fp32 export and a reloaded model are held to float rounding (bf16, where measured faster, moves ~1e-3)
FAST = {"progress": False, "seed": 0, "bf16": False}


@pytest.fixture(scope="module")
def intents() -> dict[str, object]:
    """Twenty BANKING77 intents: ten with 24 training texts, ten with 4 (6x fewer), 15 test texts each."""
    from wukong.data.text import read_text_table

    classes = read_text_table(BANKING / "test.csv").classes[::3][:20]
    common, rare = classes[::2], classes[1::2]
    big, small = _per_class(BANKING / "train.csv", common, 24, 0), _per_class(BANKING / "train.csv", rare, 4, 0)
    return {
        "train": (big[0] + small[0], big[1] + small[1]),
        "balanced_train": _per_class(BANKING / "train.csv", classes, 12, 0),
        "test": _per_class(BANKING / "test.csv", classes, 15, 1),
        "rare": rare,
    }


def test_temperature_is_recovered_from_labels_drawn_at_that_temperature() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(scale=4.0, size=(4000, 5))
    for true_t in (0.5, 2.5):
        proba = softmax(logits, true_t)
        labels = np.array([rng.choice(5, p=p / p.sum()) for p in proba.astype(np.float64)])
        found = fit_temperature(logits, labels)
        assert abs(found - true_t) / true_t < 0.1, (true_t, found)
        assert log_loss(logits, labels, found) <= log_loss(logits, labels, 1.0)


def test_class_weight_auto_balances_only_past_three_to_one() -> None:
    assert resolve_class_weight("auto", np.array([30, 10]))[0] is None  # 3x: not more than 3x
    method, offsets, why = resolve_class_weight("auto", np.array([31, 10]))
    assert method == "balanced" and offsets[1] > offsets[0] and "3.1x" in why
    assert np.isclose(offsets[1] - offsets[0], np.log(31 / 10))  # the log prior ratio, divided out
    method, weights, _ = resolve_class_weight("loss", np.array([31, 10]))
    assert np.isclose((weights * np.array([31, 10])).sum(), 41)  # the total weight stays the number of examples
    assert resolve_class_weight("balanced", np.array([10, 10]))[0] == "balanced"
    assert resolve_class_weight(None, np.array([100, 1]))[0] is None


@pytest.mark.slow  # the default suite stays near 10 minutes; make test-all runs it
def test_timid_head_is_sharpened_and_the_temperature_travels_with_the_model(intents, tmp_path: Path) -> None:
    """A head trained with label smoothing is under-confident; the temperature fitted on the validation
    set lowers the held-out log loss, and save/load, evaluate and the ONNX export all apply it."""
    model = TextClassifier(strategy="head", **FAST).fit(*intents["balanced_train"])
    assert model.temperature_ < 1, model.calibration_
    assert model.calibration_["fitted_on"] == "the validation set"
    texts, labels = intents["test"]
    ids = np.array([model.classes_.index(label) for label in labels])
    logits = model._logits_prepared(model._prepare(texts))
    assert log_loss(logits, ids, model.temperature_) < log_loss(logits, ids)
    np.testing.assert_allclose(model.predict_proba(texts), softmax(logits, model.temperature_), atol=1e-6)

    folder = model.save(tmp_path / "model")
    assert json.loads((folder / "config.json").read_text())["calibration"]["temperature"] == model.temperature_
    again = load(folder)
    np.testing.assert_allclose(again.predict_proba(texts[:10]), model.predict_proba(texts[:10]), atol=1e-6)
    report = again.evaluate(texts, labels)
    assert report["calibration"]["temperature"] == model.temperature_
    assert report["brier"] < report["calibration"]["brier_before"]
    assert sum(b["count"] for b in report["calibration"]["reliability"]) == len(texts)

    written = export(again, tmp_path / "model.onnx", data=texts[:30], labels=labels[:30])
    assert written["parity"]["max_abs_diff"] < 1e-4  # the graph divides by the same temperature


def test_features_are_calibrated_out_of_fold_and_rare_classes_balanced(intents, tmp_path: Path) -> None:
    """``features`` fits the temperature on its out-of-fold logits; with 6x fewer examples in half
    of the classes, ``auto`` divides the training prior out, says so, the balanced model finds the
    rare classes more often than the plain one, and its export gives the same probabilities."""
    texts, labels = intents["test"]
    balanced = TextClassifier(strategy="features", **FAST).fit(*intents["train"])
    plain = TextClassifier(strategy="features", class_weight=None, **FAST).fit(*intents["train"])
    assert "decisions balanced across classes" in balanced.strategy_reason_
    assert balanced.metrics_["class_weight"] == "balanced" and plain.metrics_["class_weight"] is None
    assert "out-of-fold" in balanced.calibration_["fitted_on"] and balanced.calibration_["examples"] > 0
    offsets = np.array(balanced.calibration_["logit_offsets"])
    rare = [balanced.classes_.index(name) for name in intents["rare"]]
    assert (offsets[rare] > 0).all() and np.isclose(offsets.mean(), 0, atol=1e-5)

    def rare_recall(model: TextClassifier) -> float:
        per_class = model.evaluate(texts, labels)["per_class"]
        return float(np.mean([per_class[name]["recall"] for name in intents["rare"]]))

    assert rare_recall(balanced) > rare_recall(plain)
    again = load(balanced.save(tmp_path / "balanced"))
    np.testing.assert_allclose(again.predict_proba(texts[:20]), balanced.predict_proba(texts[:20]), atol=1e-6)
    written = export(again, tmp_path / "balanced.onnx", data=texts[:30], labels=labels[:30])
    assert written["parity"]["max_abs_diff"] < 1e-4  # the offsets are in the graph too


@pytest.fixture(scope="module")
def features_model(intents) -> TextClassifier:
    return TextClassifier(strategy="features", **FAST).fit(*intents["balanced_train"])


def test_a_damaged_temperature_or_open_set_score_is_refused_naming_the_file(features_model, tmp_path: Path) -> None:
    from safetensors.numpy import load_file, save_file

    folder = features_model.save(tmp_path / "m")
    weights = load_file(folder / "model.safetensors")
    save_file({k: v for k, v in weights.items() if k != "open_set.bank"}, folder / "model.safetensors")
    with pytest.raises(DataError, match=r"model\.safetensors: open_set: the weights lack what score"):
        load(folder)
    save_file(weights, folder / "model.safetensors")
    config = json.loads((folder / "config.json").read_text())
    config["calibration"]["temperature"] = -1
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(DataError, match=r"config\.json: .*temperature must be a positive number"):
        load(folder)


def test_texts_of_unseen_intents_score_lower_and_can_be_answered_unknown(
    features_model, intents, tmp_path: Path
) -> None:
    """Trained on 20 intents, the texts of 10 intents it never saw score lower than known ones; with
    ``reject_unknown`` most known texts are kept and many unseen ones are answered "unknown"."""
    from sklearn.metrics import roc_auc_score

    from wukong.data.text import read_text_table

    model = copy.copy(features_model)  # the fitted state, with parameters of its own to set
    known_texts = intents["test"][0]
    others = [c for c in read_text_table(BANKING / "test.csv").classes if c not in model.classes_][:10]
    unseen = _per_class(BANKING / "test.csv", others, 15, 2)[0]
    scores = model.unknown_score(known_texts + unseen)
    is_known = np.r_[np.ones(len(known_texts)), np.zeros(len(unseen))]
    assert roc_auc_score(is_known, scores) > 0.75

    rows = model.predict_records(unseen[:5], top_k=2)
    assert all("unknown_score" in row and "unknown" not in row for row in rows)  # opt-in only
    model.set_params(reject_unknown=True, unknown_label="none of these")
    answers = np.array(model.predict(known_texts + unseen))
    assert (answers[: len(known_texts)] != "none of these").mean() > 0.8
    assert (answers[len(known_texts) :] == "none of these").mean() > 0.3
    rows = model.predict_records(unseen, top_k=2)
    rejected = [row for row in rows if row["unknown"]]
    assert rejected and all(row["label"] == "none of these" and len(row["top_k"]) == 2 for row in rejected)

    again = load(model.save(tmp_path / "model"))
    np.testing.assert_allclose(again.unknown_score(unseen), scores[len(known_texts) :], atol=1e-6)
    assert again.reject_unknown and again.unknown_label == "none of these"  # parameters are saved with the model
    again.set_params(unknown_keep=0.99)  # keep more knowns: fewer answers of "unknown"
    assert (np.array(again.predict(unseen)) == "none of these").sum() <= (
        answers[len(known_texts) :] == "none of these"
    ).sum()

    # the ONNX export has the score as its second output, and the thresholds in its metadata
    known_labels = intents["test"][1]
    written = export(again, tmp_path / "model.onnx", data=known_texts[:40], labels=known_labels[:40])
    assert written["parity"]["unknown_score_max_abs_diff"] < 1e-4 and written["parity"]["unknown_answers_differ"] == 0
    listed = written["unknown_output"]["thresholds"]["keep 0.95 of known inputs"]
    assert listed == round(again.open_set_.threshold(0.95), 6)
    _, from_graph = export_runner(tmp_path / "model.onnx", tmp_path / "model.tokenizer")(unseen)
    np.testing.assert_allclose(from_graph, again.unknown_score(unseen), atol=1e-4)


def test_cli_predict_rejects_unknown_texts_only_when_asked(features_model, intents, tmp_path: Path) -> None:
    import subprocess
    import sys

    folder = features_model.save(tmp_path / "model")
    texts = ["what is the capital of France", intents["test"][0][0]]  # nothing like a bank query; a known intent's
    query = [arg for text in texts for arg in ("--text", text)]
    command = [sys.executable, "-m", "wukong.cli", "predict", str(folder), *query, "--json", "--reject-unknown"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    plain = features_model.predict_records(texts)  # reject_unknown is off on the fitted model
    assert [row["unknown_score"] for row in rows] == [row["unknown_score"] for row in plain]
    assert rows[0]["unknown_score"] < rows[1]["unknown_score"]
    assert rows[0]["label"] == "unknown" and rows[0]["unknown"] is True and rows[1]["unknown"] is False
    assert plain[0]["label"] in features_model.classes_ and "unknown" not in plain[0]


def test_a_sparse_bank_scores_as_the_dense_one_and_survives_the_folder(intents) -> None:
    """TF-IDF n-grams of real texts: few values are not zero, so the ``knn`` bank is kept sparse."""
    from scipy import sparse

    from wukong.backbones.ngrams import NgramEncoder
    from wukong.openset import fit_score, knn_similarity, load_score

    texts = intents["balanced_train"][0]
    ngrams = NgramEncoder.fit(texts)
    train, val, test = ngrams.encode(texts[::2]), ngrams.encode(texts[1::2]), ngrams.encode(intents["test"][0])
    rng = np.random.default_rng(0)
    logits = {n: rng.normal(size=(len(f), 3)) for n, f in (("train", train), ("val", val), ("test", test))}
    score = fit_score("maxlogit+knn", train, logits["train"], val, logits["val"], temperature=1.0)
    assert sparse.issparse(score.bank) and score.bank.shape == (len(train), ngrams.dim)
    dense = (train / np.linalg.norm(train, axis=1, keepdims=True)).astype(np.float16)
    expected = knn_similarity(test, dense.astype(np.float32))
    np.testing.assert_allclose(knn_similarity(test, score.bank), expected, atol=1e-6)
    tensors = score.tensors()
    assert sum(v.nbytes for k, v in tensors.items() if k.startswith("bank")) < dense.nbytes / 5
    again = load_score(score.config(), tensors, 1.0)
    np.testing.assert_array_equal(again(test, logits["test"]), score(test, logits["test"]))
    tensors["bank.indices"] = tensors["bank.indices"] + ngrams.dim  # columns past the end: damaged
    with pytest.raises(ValueError, match="sparse feature bank is damaged"):
        load_score(score.config(), tensors, 1.0)
