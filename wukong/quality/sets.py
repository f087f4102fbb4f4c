"""The labelled sets an audit looks at, read and embedded as ``fit`` would (``_embedded`` of the
estimator), with what differs by modality: the surface sketch that finds re-encoded copies, the
similarity thresholds, and how an item is shown.

Near duplicates are pairs at or above either threshold: for images, embedding cosine 0.96, or 0.95
correlation of 16 x 16 grey thumbnails (a re-encoded, resized copy of a small image keeps its
thumbnail better than its embedding); for text, embedding cosine 0.99, or 0.95 cosine of
character-trigram counts (a paraphrase stays below both). Why these: README, "Better data";
checked by ``benchmarks/audit.py``.
"""

from __future__ import annotations

import base64
import html
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from wukong.data.inputs import modality_of
from wukong.data.label_sets import as_model_labels
from wukong.errors import DataError
from wukong.features_cache import text_hash

THRESHOLDS = {"image": (0.96, 0.95), "text": (0.99, 0.95)}  # (embedding, surface sketch)
SKETCHES = {"image": "grey_thumbnail_16px", "text": "character_trigrams"}


@dataclass
class AuditSet:
    """One labelled set: each item's name, input, label, content hash, features and sketch."""

    role: str
    origin: str
    modality: str
    backbone: str
    classes: list[str]
    names: list[str]
    inputs: list[Any]
    labels: np.ndarray
    hashes: list[str]
    features: np.ndarray
    sketch: np.ndarray
    skipped: list[dict[str, Any]] = field(default_factory=list)
    pixels: np.ndarray | None = None  # images: decoded, for thumbnails

    def __len__(self) -> int:
        return len(self.names)

    @property
    def embed_threshold(self) -> float:
        return THRESHOLDS[self.modality][0]

    @property
    def sketch_threshold(self) -> float:
        return THRESHOLDS[self.modality][1]

    @property
    def sketch_name(self) -> str:
        return SKETCHES[self.modality]

    def label_name(self, value: Any) -> Any:
        """A class index as its name; an indicator row as a list of names."""
        row = np.asarray(value)
        return [self.classes[c] for c in np.flatnonzero(row)] if row.ndim else self.classes[int(row)]

    def label_value(self, i: int) -> Any:
        return self.label_name(self.labels[i])

    def ref(self, i: int) -> dict[str, Any]:
        """How an item is named in ``audit.json``."""
        return {"set": self.role, "index": i, "item": self.names[i][:300], "label": self.label_value(i)}

    def describe(self) -> dict[str, Any]:
        return {"origin": self.origin, "items": len(self), "skipped": sum(1 for s in self.skipped if not s.get("kept"))}

    def preview(self, i: int) -> str:
        """An HTML fragment: a thumbnail of an image, or the text (escaped, at most 200 characters)."""
        if self.pixels is None:
            text = self.names[i]
            return f"<q>{html.escape(text[:200])}{'…' if len(text) > 200 else ''}</q>"
        from PIL import Image

        image = Image.fromarray(self.pixels[i])
        image.thumbnail((96, 96))
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=80)
        source = base64.b64encode(buffer.getvalue()).decode()
        return f"<img alt='{html.escape(self.names[i])}' src='data:image/jpeg;base64,{source}'>"


def pixel_sketch(pixels: np.ndarray, side: int = 16) -> np.ndarray:
    """Grey ``side x side`` thumbnails, centred and scaled to unit length (their dot product is a
    correlation); flat images give zeros (they match nothing)."""
    out = []
    for start in range(0, len(pixels), 256):
        x = torch.from_numpy(pixels[start : start + 256]).float().mean(dim=3).unsqueeze(1)
        x = torch.nn.functional.adaptive_avg_pool2d(x, side).flatten(1)
        x = x - x.mean(dim=1, keepdim=True)
        norm = x.norm(dim=1, keepdim=True)
        out.append(torch.where(norm > 1e-3 * side, x / norm.clamp_min(1e-12), 0.0).numpy())
    return np.concatenate(out) if out else np.empty((0, side * side), np.float32)


def _words_only(text: str) -> str:
    return re.sub(r"[^\w\s]", " ", text.lower())


def text_sketch(texts: Sequence[str]) -> np.ndarray:
    """Counts of character trigrams within words (lower-cased, punctuation left out), hashed into
    4,096 columns, unit length."""
    from sklearn.feature_extraction.text import HashingVectorizer

    vectoriser = HashingVectorizer(
        analyzer="char_wb",
        ngram_range=(3, 3),
        n_features=4096,
        alternate_sign=False,
        norm="l2",
        preprocessor=_words_only,
    )
    return vectoriser.transform(list(texts)).toarray().astype(np.float32)


def read_sets(
    data: Any,
    labels: Sequence[Any] | None,
    *,
    val: Any,
    test: Any,
    estimator: Any,
    backbone: Any,
    modality: str | None,
    progress: bool,
) -> dict[str, AuditSet]:
    """The training set and, where given, the validation and test sets, read with the training classes."""
    if estimator is None:
        estimator = estimator_for(modality or modality_of(data, labels), backbone, progress=progress)
    train = _read(estimator, data, labels, None, "train")
    sets = {"train": train}
    for role, given in (("val", val), ("test", test)):
        if given is not None:
            pair = given if isinstance(given, tuple) else (given, None)
            sets[role] = _read(estimator, *pair, train.classes, role, multi=train.labels.ndim == 2)
    return sets


def _read(estimator: Any, data: Any, labels: Any, classes: Any, role: str, *, multi: bool = False) -> AuditSet:
    labelled, skipped, features = estimator._embedded(data, labels, classes, role)
    examples = labelled.examples
    label_ids = labelled.labels
    if classes is not None:
        label_ids = as_model_labels(label_ids, len(classes), multi, labelled.origin)
    if estimator.modality == "image":
        names, inputs, hashes = list(examples.paths), list(examples.sources), list(examples.hashes)
        sketch, pixels = pixel_sketch(examples.pixels), examples.pixels
    else:
        names = inputs = list(examples.texts)
        hashes, sketch, pixels = [text_hash(t) for t in names], text_sketch(names), None
    return AuditSet(
        role=role,
        origin=str(labelled.origin),
        modality=estimator.modality,
        backbone=str(estimator.backbone_name_),
        classes=list(labelled.classes),
        names=[str(n) for n in names],
        inputs=inputs,
        labels=label_ids,
        hashes=hashes,
        features=features,
        sketch=sketch,
        skipped=skipped,
        pixels=pixels,
    )


def estimator_for(
    modality: str, backbone: Any, *, progress: bool, text_col: str | None = None, label_col: str | None = None
) -> Any:
    """The unfitted estimator whose reading and features an audit uses (``text_col``/``label_col``:
    the columns of a text table)."""
    if modality == "image":
        from wukong.image_classifier import ImageClassifier

        return ImageClassifier(backbone, progress=progress)
    if modality == "text":
        from wukong.text_classifier import TextClassifier

        return TextClassifier(backbone, text_col=text_col, label_col=label_col, progress=progress)
    raise DataError(f"modality={modality!r}: choose 'image' or 'text'")
