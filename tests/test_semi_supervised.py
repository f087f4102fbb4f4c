"""Unlabelled data in ``fit`` / ``wukong train --unlabeled``: pseudo-labels, kept where they help."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import CAT_DOG, DATA, FAST_BACKBONE
from wukong.strategies.features import fit_linear_classifier
from wukong.strategies.self_training import pick, self_train


def _blobs(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Two classes of ``n // 2`` examples, apart along one of 20 directions."""
    y = np.repeat([0, 1], n // 2)
    x = rng.normal(0, 1, (n, 20))
    x[:, 0] += np.where(y == 1, 1.0, -1.0)
    return x, y


def test_pick_takes_the_same_number_per_class() -> None:
    logits = np.array([[5.0, 0.0], [4.0, 0.0], [3.0, 0.0], [0.0, 1.0], [2.0, 0.0]])
    import torch

    index, labels = pick(torch.from_numpy(logits), 2)
    assert index.tolist() == [0, 1, 3] and labels.tolist() == [0, 0, 1]  # class 1 has one candidate only


def test_self_training_decides_by_one_standard_error() -> None:
    """The pseudo-labelled classifier is fitted either way (``forced``); it is the one used exactly
    where its held-out loss is lower than the plain classifier's by more than one standard error."""
    rng = np.random.default_rng(3)
    decisions = []
    for _ in range(4):
        x, y = _blobs(rng, 16)
        pool, _ = _blobs(rng, 2000)
        plain = fit_linear_classifier(x, y, 2)
        result = self_train(x, y, pool, plain, 2)
        assert result.info["pseudo_labels"] == 2 * 2 * 2 * 8  # round 2 takes 2 x 2 x the 8 per class, of both classes
        assert not np.allclose(result.forced.weight, plain.weight)
        gain, se = result.info["log_loss_gain"], result.info["log_loss_gain_se"]
        assert result.info["used"] == (gain > se) and se > 0
        assert result.fit is (result.forced if result.info["used"] else plain)
        assert ("not used" in result.info["why"]) != result.info["used"]
        decisions.append(result.info["used"])
    assert len(set(decisions)) == 2, decisions  # on this data it goes both ways


def test_pseudo_labels_come_from_each_folds_own_training_part() -> None:
    """The pool holds the labelled examples themselves: a fold that saw its held-out examples'
    labels through the pool would score them far better than the plain classifier does; measured
    honestly, the pseudo-labels can only repeat what the fold's own classifier predicted."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 40))
    y = np.repeat([0, 1, 2], 10)  # labels unrelated to the features: nothing to learn
    plain = fit_linear_classifier(x, y, 3)
    result = self_train(x, y, x.copy(), plain, 3)
    assert result.info["cv_accuracy"]["with"] < 0.6  # chance is 1/3; a leak would give ~1.0
    assert not result.info["used"]


@pytest.fixture(scope="module")
def banking_texts() -> dict[str, list[str]]:
    """Ten BANKING77 intents: 6 labelled texts each, 60 more of each as the unlabelled pool, 20 of
    each to test on (test.csv)."""
    import pandas as pd

    train = pd.read_csv(DATA / "banking77" / "train.csv")
    test = pd.read_csv(DATA / "banking77" / "test.csv")
    intents = sorted(train["category"].unique())[::7][:10]
    rows = {"texts": [], "labels": [], "pool": [], "pool_labels": [], "test": [], "test_labels": []}
    for intent in intents:
        group = train[train["category"] == intent].sample(frac=1.0, random_state=0)
        rows["texts"] += group["text"][:6].tolist()
        rows["labels"] += [intent] * 6
        rows["pool"] += group["text"][6:66].tolist()
        rows["pool_labels"] += [intent] * 60
        chosen = test[test["category"] == intent]["text"][:20].tolist()
        rows["test"] += chosen
        rows["test_labels"] += [intent] * len(chosen)
    return rows


def test_text_fit_with_unlabelled_texts(banking_texts: dict[str, list[str]]) -> None:
    from wukong import TextClassifier

    data = banking_texts
    plain = TextClassifier(strategy="features", progress=False).fit(data["texts"], data["labels"])
    model = TextClassifier(strategy="features", progress=False, tuning={"pseudo_labels": "always"})
    model.fit(data["texts"], data["labels"], unlabeled=data["pool"])
    info = model.metrics_["semi_supervised"]
    assert info["used"] and info["pool"] == 600 and "pseudo_labels='always'" in info["why"]
    assert info["why"] in model.strategy_reason_
    assert model._pool is None  # the unlabelled texts are not kept with the model
    # pseudo-labels from 600 texts of these intents: the model changes, and is no worse on test texts
    assert not np.allclose(model.predict_proba(data["test"]), plain.predict_proba(data["test"]))
    assert model.score(data["test"], data["test_labels"]) >= plain.score(data["test"], data["test_labels"]) - 0.02
    decided = TextClassifier(strategy="features", progress=False).fit(
        data["texts"], data["labels"], unlabeled=data["pool"]
    )
    auto = decided.metrics_["semi_supervised"]
    assert auto["used"] == (auto["log_loss_gain"] > auto["log_loss_gain_se"])
    # the decision recorded is the one the final model was made by
    same = np.allclose(decided.predict_proba(data["test"]), plain.predict_proba(data["test"]), atol=1e-5)
    assert same == (not auto["used"])


@pytest.mark.slow  # the default suite stays near 10 minutes; make test-all runs it
def test_image_fit_records_the_final_models_decision() -> None:
    """Small data: the classifier measured on the carved validation images and the final one (on
    all the labelled images) are each pseudo-labelled and decided; the recorded decision is the
    final one's."""
    from wukong import ImageClassifier

    test = sorted(str(p) for p in (CAT_DOG / "test").rglob("*.jpg"))
    how = {"strategy": "features", "progress": False}
    plain = ImageClassifier(FAST_BACKBONE, **how).fit(CAT_DOG / "train")
    for tuning in (None, {"pseudo_labels": "always"}):
        model = ImageClassifier(FAST_BACKBONE, tuning=tuning, **how).fit(CAT_DOG / "train", unlabeled=test)
        info = model.metrics_["semi_supervised"]
        assert info["pool"] == 22 and model.metrics_["refit_on_train_and_val"]
        same = np.allclose(model.predict_proba(test), plain.predict_proba(test), atol=1e-5)
        assert same == (not info["used"])
        assert info["used"] or tuning is None


def test_a_trained_head_says_the_unlabelled_data_was_not_used(
    banking_texts: dict[str, list[str]], tmp_path: Path
) -> None:
    """A head trained by gradient descent takes no pseudo-labels, and says so; the unlabelled
    texts may be a file (one per line), as a ``Path``."""
    from wukong import TextClassifier

    data = banking_texts
    pool = tmp_path / "pool.txt"
    pool.write_text("\n".join(data["pool"][:20]) + "\n\n", encoding="utf-8")
    model = TextClassifier(strategy="head", epochs=2, progress=False)
    model.fit(data["texts"], data["labels"], unlabeled=pool)
    info = model.metrics_["semi_supervised"]
    assert not info["used"] and "only the linear classifier of 'features' pseudo-labels" in info["why"]
    assert info["why"] in model.strategy_reason_
    features = TextClassifier(strategy="features", progress=False).fit(data["texts"], data["labels"], unlabeled=pool)
    assert features.metrics_["semi_supervised"]["pool"] == 20  # the blank lines are not texts


@pytest.mark.slow  # the default suite stays near 10 minutes; make test-all runs it
def test_train_command_with_unlabelled_images(tmp_path: Path) -> None:
    out = tmp_path / "model"
    command = [sys.executable, "-m", "wukong.cli", "train", str(CAT_DOG / "train"), "--out", str(out)]
    done = subprocess.run(
        [*command, "--backbone", FAST_BACKBONE, "--unlabeled", str(CAT_DOG / "test"), "--json", "--quiet"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    info = summary["semi_supervised"]
    assert info["pool"] == 22 and info["why"] in summary["strategy_reason"]
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["semi_supervised"] == info


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda tmp: tmp / "nowhere", "--unlabeled {}: no such file or folder"),
        (lambda tmp: _made(tmp / "empty"), "--unlabeled {}: no image files in it"),
        (lambda tmp: _made(tmp / "corrupt", "x.jpg"), "unlabeled: none of the 1 images is readable ({}/x.jpg: "),
    ],
)
def test_train_command_refuses_unusable_unlabelled_images(make, message, tmp_path: Path) -> None:  # noqa: ANN001
    out = tmp_path / "model"
    given = make(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "wukong.cli", "train", str(CAT_DOG / "train"), "--out", str(out)]
        + ["--backbone", FAST_BACKBONE, "--unlabeled", str(given), "--quiet"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
    assert message.format(given) in done.stderr
    assert not out.exists()


def test_train_command_refuses_an_empty_text_file_before_training(tmp_path: Path) -> None:
    out, empty = tmp_path / "model", tmp_path / "empty.txt"
    empty.write_text("\n\n", encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "wukong.cli", "train", str(DATA / "sst2" / "test.tsv"), "--out", str(out)]
        + ["--unlabeled", str(empty)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2 and f"--unlabeled {empty}: no text in it" in done.stderr
    assert not out.exists() and not (tmp_path / "model.partial").exists()


def _made(folder: Path, corrupt: str | None = None) -> Path:
    folder.mkdir()
    if corrupt:
        (folder / corrupt).write_bytes(b"not a jpeg")
    return folder
