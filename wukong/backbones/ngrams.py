"""No transfer for text: TF-IDF of word and character n-grams, the baseline a pretrained encoder must beat.

Text ``auto`` compares a linear classifier on it with one on the sentence embedding
(``TextClassifier``); where it wins, it is the model's "encoder". scikit-learn does the n-gram
analysis and weighting (``TfidfVectorizer``: word 1-2-grams and character 2-5-grams within word
boundaries, sublinear term frequency, each part L2-normalised, as ``make_union`` of the two
gives). What is learnt from the texts travels without pickle: the vocabularies (JSON, in the
model's ``config.json``) and the inverse document frequencies (a tensor, saved with the head).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from wukong.errors import ParameterError

NGRAM_BACKBONE = "tfidf-ngrams"
# The most frequent n-grams of each kind kept: the features are dense (a linear layer reads them).
MAX_NGRAMS = {"words": 4096, "chars": 12288}
# How its linear classifier is fitted: on the features as they are (standardising would make a rare n-gram
# weigh as much as a common one) and with little regularisation (C from 1 to 10,000: on 77 BANKING77 intents
# at 5 texts each, the cross-validated loss falls until C reaches the thousands, accuracy is flat).
FIT_OPTIONS: dict[str, Any] = {"standardised": False, "c_grid": (1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1e3, 3e3, 1e4)}
_SETTINGS = {
    "words": {"analyzer": "word", "ngram_range": (1, 2)},
    "chars": {"analyzer": "char_wb", "ngram_range": (2, 5)},
}


def _vectoriser(kind: str, vocabulary: Sequence[str] | None = None) -> Any:
    from sklearn.feature_extraction.text import TfidfVectorizer

    return TfidfVectorizer(
        **_SETTINGS[kind],
        sublinear_tf=True,
        max_features=None if vocabulary is not None else MAX_NGRAMS[kind],
        vocabulary=list(vocabulary) if vocabulary is not None else None,
        dtype=np.float32,
    )


class NgramTable(nn.Module):
    """The learnt weighting (inverse document frequency of each n-gram), so that it is saved in
    safetensors with the head; the vocabularies are JSON."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.register_buffer("idf", torch.zeros(width))

    def forward(self, tokens: Any) -> Any:
        raise ParameterError(f"{NGRAM_BACKBONE}: a TF-IDF model has no network to tune or to run on tokens")


class NgramEncoder:
    """TF-IDF features of texts, float32 ``(n, dim)``, in the text encoder's interface.

    Example:
        >>> encoder = NgramEncoder.fit(["card not here", "refund please", "where is my card"])
        >>> encoder.encode(["my card"]).shape == (1, encoder.dim)
        True
    """

    name = NGRAM_BACKBONE
    bf16 = False
    max_length = None
    engine_note = "scikit-learn TF-IDF of word 1-2-grams and character 2-5-grams (no network)"
    fit_options = FIT_OPTIONS

    def __init__(self, vocabularies: dict[str, list[str]]) -> None:
        if set(vocabularies) != set(_SETTINGS) or not all(
            isinstance(v, list) and all(isinstance(t, str) for t in v) for v in vocabularies.values()
        ):
            raise ParameterError(f"{NGRAM_BACKBONE}: 'ngrams' must map 'words' and 'chars' to lists of strings")
        self.vocabularies = vocabularies
        self.parts = {kind: _vectoriser(kind, vocabularies[kind]) for kind in _SETTINGS}
        self.dim = sum(len(v) for v in vocabularies.values())
        self.model = NgramTable(self.dim)

    @classmethod
    def fit(cls, texts: Sequence[str]) -> NgramEncoder:
        """The n-grams of ``texts`` and their weights."""
        fitted = {kind: _vectoriser(kind).fit(list(texts)) for kind in _SETTINGS}
        encoder = cls({kind: v.get_feature_names_out().tolist() for kind, v in fitted.items()})
        with torch.no_grad():
            encoder.model.idf.copy_(torch.from_numpy(np.concatenate([v.idf_ for v in fitted.values()])))
        return encoder

    @property
    def weights_changed(self) -> bool:
        """Always: the weighting is learnt from the training texts, so it is saved with the model."""
        return True

    @weights_changed.setter
    def weights_changed(self, value: bool) -> None:
        pass

    def config(self) -> dict[str, Any]:
        """The vocabularies, for ``config.json``."""
        return {"ngrams": self.vocabularies}

    def encode(self, texts: Sequence[str] | str, *, progress: bool = False) -> np.ndarray:
        """The TF-IDF features of ``texts`` in input order."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        if not texts:
            return np.empty((0, self.dim), np.float32)
        idf = self.model.idf.numpy().astype(np.float64)
        out, start = [], 0
        for kind, part in self.parts.items():
            width = len(self.vocabularies[kind])
            part.idf_ = idf[start : start + width]
            out.append(part.transform(texts).toarray())
            start += width
        return np.concatenate(out, axis=1).astype(np.float32)
