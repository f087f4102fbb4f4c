"""Images and texts already in memory: PIL images, uint8 arrays, pandas Series and DataFrames and a Hugging
Face ``datasets.Dataset`` work in fit, predict and evaluate, as files do; malformed ones get one clear line."""

from __future__ import annotations

import datasets
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from wukong import ImageClassifier, TextClassifier
from wukong.data.images import list_images
from wukong.errors import DataError

from .conftest import CAT_DOG, FAST_BACKBONE
from .test_text_classifier import SST2, _per_class

QUIET = {"progress": False, "seed": 0}
LIGHT = {"strategy": "features", "tap": "final", "input_size": "native", **QUIET}  # no search: inputs are the point


def _photos(split: str) -> tuple[list[Image.Image], list[str]]:
    paths = list_images([CAT_DOG / split])
    images = []
    for path in paths:
        with Image.open(path) as image:
            images.append(image.convert("RGB"))
    return images, [p.parent.name for p in paths]


@pytest.fixture(scope="module")
def fitted_on_files() -> ImageClassifier:
    return ImageClassifier(FAST_BACKBONE, **LIGHT).fit(CAT_DOG / "train")


def test_pil_images_and_arrays_predict_as_their_files_do(fitted_on_files: ImageClassifier) -> None:
    images, labels = _photos("test")
    from_files = fitted_on_files.predict_proba(CAT_DOG / "test")
    from_pil = fitted_on_files.predict_proba(images)
    from_arrays = fitted_on_files.predict_proba([np.asarray(im) for im in images])
    # the same pixels either way: PIL's JPEG decoder at full size vs draft mode may differ a little
    assert np.abs(from_pil - from_arrays).max() < 1e-5
    assert (from_pil.argmax(1) == from_files.argmax(1)).mean() >= 0.9
    one = fitted_on_files.predict(np.asarray(images[0]))  # one HxWx3 array is one image
    assert one == fitted_on_files.predict([images[0]])
    metrics = fitted_on_files.evaluate(images, labels)
    assert metrics["accuracy"] >= 0.7 and sum(sum(row) for row in metrics["confusion_matrix"]) == len(images)


def test_fit_on_pil_images_and_on_an_image_batch_array() -> None:
    images, labels = _photos("train")
    model = ImageClassifier(FAST_BACKBONE, **LIGHT).fit(images, labels)
    test_images, test_labels = _photos("test")
    assert model.score(test_images, test_labels) >= 0.7
    batch = np.stack([np.asarray(im.resize((80, 80))) for im in images])  # N x H x W x 3 uint8
    assert ImageClassifier(FAST_BACKBONE, **LIGHT).fit(batch, labels).classes_ == ["cat", "dog"]


def test_a_dataframe_and_a_hugging_face_dataset_of_images() -> None:
    images, labels = _photos("train")
    paths = [str(p) for p in list_images([CAT_DOG / "train"])]
    frame = pd.DataFrame({"path": paths, "label": labels})
    model = ImageClassifier(FAST_BACKBONE, **LIGHT).fit(frame)
    assert model.predict(pd.Series(paths[:3])) == model.predict(paths[:3])
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=["cat", "dog"])})
    dataset = datasets.Dataset.from_dict(
        {"image": images, "label": [["cat", "dog"].index(y) for y in labels]}, features
    )
    from_dataset = ImageClassifier(FAST_BACKBONE, **LIGHT).fit(dataset)
    assert from_dataset.classes_ == ["cat", "dog"]  # the ClassLabel ids became their names
    assert from_dataset.score(*_photos("test")) >= 0.7


def test_texts_in_a_dataframe_a_series_and_a_dataset() -> None:
    texts, labels = _per_class(SST2 / "train.tsv", None, 40, seed=0)
    test_texts, test_labels = _per_class(SST2 / "test.tsv", None, 50, seed=1)
    frame = pd.DataFrame({"sentence": texts, "label": labels})
    model = TextClassifier(strategy="features", **QUIET).fit(frame)
    assert model.predict(pd.Series(test_texts)) == model.predict(test_texts)
    assert model.evaluate(pd.Series(test_texts), pd.Series(test_labels))["accuracy"] >= 0.6
    dataset = datasets.Dataset.from_dict({"text": texts, "label": labels})
    assert TextClassifier(strategy="features", **QUIET).fit(dataset).score(test_texts, test_labels) >= 0.6


@pytest.mark.parametrize(
    ("inputs", "labels", "message"),
    [
        ([np.zeros((8, 8, 3), np.float32)] * 4, ["a", "b"] * 2, r"image\[0\]: an image array must be uint8"),
        ([1, 2, 3, 4], ["a", "b"] * 2, r"image\[0\]: image inputs are paths, PIL images or uint8 arrays; got a int"),
        ([Image.new("RGB", (8, 8))] * 3, ["a", "b"], "3 inputs but 2 labels"),
        (pd.DataFrame({"picture": ["x.jpg"] * 2, "label": ["a", "b"]}), None, "none is a image input column"),
    ],
)
def test_malformed_in_memory_images_get_one_clear_line(inputs, labels, message) -> None:  # noqa: ANN001
    with pytest.raises(DataError, match=message) as caught:
        ImageClassifier(FAST_BACKBONE, **LIGHT).fit(inputs, labels)
    assert "\n" not in str(caught.value)
