"""The report a user takes away: report.html with real figures, the same figures in TensorBoard, and
`wukong report` to write it again on other data. The slow test looks at it in headless Chromium."""

from __future__ import annotations

import base64
import html
import io
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from wukong import ImageClassifier, TextClassifier

from .conftest import CAT_DOG, FAST_BACKBONE
from .test_text_classifier import SST2, _per_class

CMD = [sys.executable, "-m", "wukong.cli"]


def figures_of(page: str) -> dict[str, Image.Image]:
    """The section title and decoded PNG of every figure embedded in a report page."""
    found = re.findall(r"<h2>([^<]+)</h2><figure><img alt='[^']*' src='data:image/png;base64,([^']+)'>", page)
    return {title: Image.open(io.BytesIO(base64.b64decode(data))) for title, data in found}


def tensorboard_tags(folder: Path) -> dict[str, list[str]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder))
    events.Reload()
    return events.Tags()


@pytest.fixture(scope="module")
def features_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``features`` on the cat/dog photos with the 64px backbone: four candidate features compared."""
    folder = tmp_path_factory.mktemp("report") / "cat_dog"
    ImageClassifier(FAST_BACKBONE, strategy="features", progress=False).fit(CAT_DOG / "train").save(folder)
    return folder


def test_a_features_report_shows_the_candidates_and_writes_tensorboard_logs(features_model: Path) -> None:
    page = (features_model / "report.html").read_text()
    shown = figures_of(page)
    assert {"Features compared", "Confusion matrix (validation)", "Per class (validation)"} <= set(shown)
    assert all(image.width > 300 and image.height > 150 for image in shown.values())
    metrics = json.loads((features_model / "metrics.json").read_text())
    assert metrics["history"]["logs"] == "logs"  # inside the folder, not the deleted work folder
    for name in metrics["taps_tried"]:
        assert name in metrics["strategy_reason"]  # every candidate's score is in the explanation too
    images = tensorboard_tags(features_model / "logs" / "report")["images"]
    assert {"features_compared", "confusion_validation", "per_class_validation"} <= set(images)


def test_wukong_report_on_test_data_shows_the_worst_mistakes_as_thumbnails(features_model: Path) -> None:
    done = subprocess.run(
        [*CMD, "report", str(features_model), "--data", str(CAT_DOG / "test"), "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    page = (features_model / "report.html").read_text()
    shown = figures_of(page)
    assert {"Confusion matrix (test)", "Per class (test)"} <= set(shown)
    assert f"{result['test_accuracy']}" in page
    evaluation = json.loads((features_model / "metrics.json").read_text())  # not rewritten by report
    assert "balanced accuracy (test)" in page and "calibration error, ECE (test)" in page
    assert evaluation["val"]["ece"] is not None and 0 <= evaluation["val"]["brier"] <= 2
    diagram = np.asarray(shown["Calibration: reliability diagram (test)"].convert("RGB"), dtype=int)
    assert (np.abs(diagram - [31, 119, 180]).sum(axis=2) < 60).sum() > 100  # the calibrated curve, drawn
    temperature = json.loads((features_model / "config.json").read_text())["calibration"]["temperature"]
    assert f"calibrated by the temperature {temperature}" in page and "None of these" in page
    if result["test_accuracy"] < 1.0:  # 22 photos: the 64px network gets some wrong
        mistakes = shown["Most confident mistakes (test)"]
        colours = np.asarray(mistakes.convert("RGB")).reshape(-1, 3)
        assert len(np.unique(colours[:: max(1, len(colours) // 20000)], axis=0)) > 500  # photographs, not blank


def test_a_finetune_report_draws_the_learning_curves_and_logs_the_rates(tmp_path: Path) -> None:
    clf = ImageClassifier(FAST_BACKBONE, strategy="finetune", epochs=3, progress=False)
    clf.fit(CAT_DOG / "train", work_dir=tmp_path / "work").save(tmp_path / "model")
    shown = figures_of((tmp_path / "model" / "report.html").read_text())
    assert "Learning curves" in shown and shown["Learning curves"].height > 300
    scalars = tensorboard_tags(tmp_path / "model" / "logs")["scalars"]
    assert "val_loss" in scalars and any(tag.startswith("lr-") for tag in scalars)
    hparams = (tmp_path / "model" / "logs" / "hparams.yaml").read_text()
    assert "backbone_lr_ratio: 0.1" in hparams and "epochs: 3" in hparams


@pytest.fixture(scope="module")
def text_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``features`` on SST-2 (24 sentences per class), evaluated on the SST-2 test file."""
    texts, labels = _per_class(SST2 / "dev.tsv", None, 24, seed=0)
    clf = TextClassifier(strategy="features", progress=False).fit(texts, labels)
    clf.metrics_["test"] = clf.evaluate(SST2 / "test.tsv")
    folder = tmp_path_factory.mktemp("report") / "sst2"
    clf.save(folder)
    return folder


def test_a_text_report_lists_the_worst_mistakes_as_snippets(text_model: Path) -> None:
    page = (text_model / "report.html").read_text()
    assert {"Confusion matrix (test)", "Per class (test)"} <= set(figures_of(page))
    worst = json.loads((text_model / "metrics.json").read_text())["test"]["worst_errors"]
    assert worst and worst[0]["score"] >= worst[-1]["score"]  # most confident first
    assert html.escape(worst[0]["input"][:40]) in page  # the sentence itself, escaped


@pytest.mark.slow
@pytest.mark.parametrize("which", ["cat_dog", "sst2"])
def test_the_report_renders_in_headless_chromium(
    features_model: Path, text_model: Path, tmp_path: Path, which: str
) -> None:
    """Each report, opened in Debian's headless Chromium: every section is drawn down the page."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    folder = features_model if which == "cat_dog" else text_model
    if which == "cat_dog":  # with the test photos: the mistakes as thumbnails too
        subprocess.run([*CMD, "report", str(folder), "--data", str(CAT_DOG / "test")], check=True, timeout=300)
    shot = tmp_path / "report.png"
    subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--window-size=1100,3000",
            f"--screenshot={shot}",
            (folder / "report.html").as_uri(),
        ],
        capture_output=True,
        timeout=120,
        check=True,
    )
    pixels = np.asarray(Image.open(shot).convert("RGB"))
    ink = (pixels.min(axis=2) < 100).any(axis=1)
    assert pixels.shape[:2] == (3000, 1100) and ink.sum() > 600  # text and figures down the page
    coloured = (pixels.max(axis=2).astype(int) - pixels.min(axis=2) > 80).any(axis=1)
    assert coloured.sum() > 300  # the coloured figures (confusion matrix, bars) rendered, not broken images
