"""Wukong's estimators are scikit-learn classifiers: clone, get/set_params, score, cross_val_score and
GridSearchCV run on the real cat/dog photos and on real SST-2 sentences; a fit leaves the caller's
random generators and logging as they were."""

from __future__ import annotations

import json
import logging
import random
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
from sklearn.base import clone, is_classifier
from sklearn.model_selection import GridSearchCV, cross_val_score

from wukong import ImageClassifier, TextClassifier
from wukong.data.images import list_images
from wukong.errors import NotFittedError, ParameterError

from .conftest import CAT_DOG, FAST_BACKBONE
from .test_text_classifier import SST2, _per_class

QUIET = {"progress": False, "seed": 0}


def _cat_dog(split: str) -> tuple[np.ndarray, np.ndarray]:
    paths = list_images([CAT_DOG / split])
    return np.asarray([str(p) for p in paths]), np.asarray([p.parent.name for p in paths])


def test_clone_get_params_and_set_params_follow_scikit_learn() -> None:
    model = ImageClassifier(FAST_BACKBONE, strategy="features", lr=0.01)
    assert is_classifier(model)
    twin = clone(model)
    assert twin is not model and twin.get_params() == model.get_params()
    assert model.get_params(deep=True)["lr"] == 0.01
    assert model.set_params(lr=0.5, strategy="head") is model
    assert (model.lr, model.strategy) == (0.5, "head")
    assert twin.lr == 0.01  # a clone shares no state with its original
    with pytest.raises(ValueError, match="no_such_thing"):
        model.set_params(no_such_thing=1)
    with pytest.raises(NotFittedError):
        twin.predict([str(CAT_DOG / "test" / "cat")])


def test_cross_val_score_and_score_on_the_cat_dog_photos() -> None:
    x, y = _cat_dog("train")
    scores = cross_val_score(ImageClassifier(strategy="features", **QUIET), x, y, cv=3)
    assert scores.shape == (3,)
    assert scores.mean() >= 0.8  # 26 photos a fold: the default's ImageNet features tell cats from dogs
    model = ImageClassifier(strategy="features", **QUIET).fit(x, y)
    test_x, test_y = _cat_dog("test")
    assert model.score(test_x, test_y) == pytest.approx(model.evaluate(test_x, list(test_y))["accuracy"], abs=1e-4)


@pytest.mark.slow  # the default suite stays near 10 minutes; make test-all runs it
def test_grid_search_over_the_linear_model_on_the_cat_dog_photos() -> None:
    x, y = _cat_dog("train")
    grid = {"linear_model": ["logistic", "svm"]}
    search = GridSearchCV(ImageClassifier(strategy="features", **QUIET), grid, cv=2).fit(x, y)
    assert search.best_params_["linear_model"] in grid["linear_model"]
    assert len(search.cv_results_["mean_test_score"]) == 2
    test_x, test_y = _cat_dog("test")
    assert search.score(test_x, test_y) >= 0.8
    assert search.best_estimator_.strategy_ == "features"


def test_cross_val_score_and_grid_search_on_sst2_sentences() -> None:
    texts, labels = _per_class(SST2 / "train.tsv", None, 40, seed=0)
    x, y = np.asarray(texts), np.asarray(labels)
    scores = cross_val_score(TextClassifier(strategy="features", **QUIET), x, y, cv=3)
    assert scores.shape == (3,) and scores.mean() >= 0.6  # sentiment from 53 sentences a fold
    search = GridSearchCV(TextClassifier(strategy="features", **QUIET), {"linear_model": ["logistic", "svm"]}, cv=2)
    search.fit(x, y)
    test_texts, test_labels = _per_class(SST2 / "test.tsv", None, 50, seed=1)
    assert search.score(test_texts, test_labels) >= 0.6


def test_fit_leaves_the_callers_random_generators_and_logging_alone(cat_dog_copy) -> None:  # noqa: ANN001
    torch.manual_seed(123)
    np.random.seed(123)
    random.seed(123)
    expected = (torch.rand(3), np.random.rand(3), [random.random() for _ in range(3)])
    torch.manual_seed(123)
    np.random.seed(123)
    random.seed(123)
    filters = list(warnings.filters)
    level = logging.getLogger("lightning.pytorch").level
    ImageClassifier(FAST_BACKBONE, strategy="head", epochs=1, **QUIET).fit(cat_dog_copy)
    assert torch.equal(torch.rand(3), expected[0])
    assert np.array_equal(np.random.rand(3), expected[1])
    assert [random.random() for _ in range(3)] == expected[2]
    assert warnings.filters == filters
    assert logging.getLogger("lightning.pytorch").level == level


def test_tuning_defaults_are_overridable_per_estimator_and_checked(cat_dog_copy) -> None:  # noqa: ANN001
    default = ImageClassifier(FAST_BACKBONE, epochs=1, **QUIET).fit(cat_dog_copy)
    assert default.strategy_ == "features"  # 16 photos a class: small data under the measured default (50)
    tuned = ImageClassifier(FAST_BACKBONE, epochs=1, tuning={"small": 5}, **QUIET).fit(cat_dog_copy)
    assert "medium data" in tuned.strategy_reason_ and "measured on the" in tuned.strategy_reason_
    assert clone(tuned).get_params()["tuning"] == {"small": 5}
    for bad, message in (({"smal": 5}, "unknown 'smal'; known: small"), ({"c_grid": []}, "c_grid=\\[\\] must be")):
        with pytest.raises(ParameterError, match=message):
            ImageClassifier(FAST_BACKBONE, tuning=bad, **QUIET).fit(cat_dog_copy)


@pytest.mark.slow  # the default suite stays near 10 minutes; make test-all runs it
def test_cli_tuning_option_reaches_the_estimator(tmp_path) -> None:  # noqa: ANN001
    cmd = [sys.executable, "-m", "wukong.cli", "train", str(CAT_DOG / "train"), "--backbone", FAST_BACKBONE]
    bad = subprocess.run([*cmd, "--tuning", "small=x", "--out", str(tmp_path / "m")], capture_output=True, text=True)
    assert bad.returncode != 0 and "--tuning 'small=x': 'x' is not a whole number" in bad.stderr
    assert "Traceback" not in bad.stderr and not (tmp_path / "m").exists()
    run = [*cmd, "--tuning", "small=5", "--epochs", "1", "--out", str(tmp_path / "m"), "--json", "--quiet"]
    done = subprocess.run(run, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)  # past the moved line: the linear classifier and fine-tuning compared
    reason = summary["strategy_reason"]
    assert "medium data" in reason and "validation examples: fine-tuned" in reason
    assert summary["strategy"] in ("features", "finetune")
