"""The text adapter: what ``TextClassifier`` needs that is particular to texts.

Read labelled and unlabelled texts (``wukong.data.text``, ``wukong.data.inputs``), load the sentence
encoder (``wukong.backbones.text.TextEncoder``: length-bucketed, cached by content), add the
classes' names as examples (SetFit's label templates), assemble the ``TextNet``, and tokenise texts
into length-bucketed batches for fine-tuning.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from wukong.backbones.sentence import DEFAULT_TEXT_BACKBONE
from wukong.backbones.text import TextEncoder
from wukong.data.inputs import as_items, as_labelled, is_table
from wukong.data.sources import Sources
from wukong.data.text import TextSource, label_name_texts, read_text_table, read_text_tables, texts_source
from wukong.errors import DataError, ParameterError
from wukong.features_cache import FeatureCache
from wukong.heads import build_head
from wukong.runtime import default_device
from wukong.text_network import TextNet, TokenBatches


@dataclass
class Texts:
    """Texts to embed; ``cache``: labelled data, whose embeddings are worth keeping on disk."""

    texts: list[str]
    cache: bool = False


def read_source(
    data: Any,
    labels: Sequence[Any] | None,
    classes: Sequence[str] | None,
    *,
    text_col: str | None,
    label_col: str | None,
) -> TextSource:
    """Labelled texts: a CSV/TSV/JSONL file (text and label columns), a DataFrame or Dataset, or
    texts + labels."""
    if isinstance(data, (str, Path, Sources)):
        if labels is not None:
            raise ValueError("labels are read from the file; pass labels only with a list of texts")
        if isinstance(data, Sources):
            data.modality()  # sources of two kinds: one error naming both
            return read_text_tables(data.paths, text_col, label_col, classes=classes)
        return read_text_table(data, text_col, label_col, classes=classes)
    if is_table(data) or labels is not None:  # a DataFrame / Dataset, or texts with labels
        data, labels = as_labelled(data, labels, "text", input_col=text_col, label_col=label_col)
    return texts_source(data, labels, classes)


def read_unlabelled(inputs: str | Sequence[str]) -> list[str]:
    """Texts to predict on: one string, or a list, array, Series or Dataset column of them."""
    texts = [inputs] if isinstance(inputs, str) else as_items(inputs)
    bad = next((t for t in texts if not isinstance(t, str)), None)
    if bad is not None:
        raise DataError(f"texts must be strings, got {type(bad).__name__}: {bad!r}")
    return texts


def texts_of_file(file: Path, text_col: str | None = None) -> list[str]:
    """Unlabelled texts kept in a file: a table's text column (``text_col``, else ``text`` or
    ``sentence``), or a plain file's non-empty lines."""
    from wukong.data.encoding import read_table_text
    from wukong.data.tables import parse_table

    if not file.is_file():
        raise DataError(f"{file}: no such file")
    content = read_table_text(file).text
    if file.suffix.lower() not in (".csv", ".tsv", ".jsonl", ".json"):
        return [line.strip() for line in content.splitlines() if line.strip()]
    columns, rows, _ = parse_table(file, content)
    column = text_col or next((c for c in columns if c.strip().lower() in ("text", "sentence")), None)
    if column not in columns:
        raise DataError(f"{file}: no text column {column or 'text'!r} among {columns}; give text_col (--text-col)")
    return [str(row[column]).strip() for _, row in rows if str(row.get(column) or "").strip()]


def label_texts(classes: Sequence[str], label_names: bool | Mapping[str, str] | None, origin: str) -> list[str] | None:
    """The classes' names or given descriptions as texts, per ``label_names`` (None: not used)."""
    if label_names is False:
        return None
    descriptions = label_names if isinstance(label_names, Mapping) else None
    names = label_name_texts(classes, descriptions)
    if names is None and (label_names is True or descriptions):
        raise DataError(
            f"{origin}: the labels {list(classes)[:5]} are not words; describe each, e.g. "
            f"label_names={{{classes[0]!r}: 'negative review', ...}} (CLI: --label-names)"
        )
    return names


def load_encoder(backbone: Any, max_length: int | None, bf16: bool | None = None) -> TextEncoder:
    """The sentence encoder named by ``backbone`` (``None``: the bundled default)."""
    if isinstance(backbone, nn.Module):
        raise ValueError(
            "TextClassifier takes a sentence-transformers model name or folder as backbone; "
            "save a custom model with model.save(folder) and pass the folder"
        )
    name = DEFAULT_TEXT_BACKBONE if backbone is None else str(backbone)
    return TextEncoder(name, bf16=bf16, max_length=max_length, device=str(default_device()))


def saved_encoder(config: dict[str, Any]) -> tuple[str, int | None, bool]:
    """(encoder name, max_length, whether its weights were tuned) from a model folder's config, checked."""
    info = config["backbone"]
    max_length = info.get("max_length")
    if not isinstance(info.get("name"), str) or not (
        max_length is None or (isinstance(max_length, int) and not isinstance(max_length, bool) and max_length > 0)
    ):
        raise ParameterError("backbone: 'name' must be a string and 'max_length' a whole number or null")
    if not isinstance(config.get("encoder_tuned"), bool):
        raise ParameterError("'encoder_tuned' must be true or false")
    return info["name"], max_length, config["encoder_tuned"]


def assemble(encoder: TextEncoder, head: str | nn.Module, num_classes: int) -> tuple[TextNet, dict[str, Any]]:
    """A new ``TextNet`` (and the head's JSON spec): the encoder with a new head."""
    module, spec = build_head(head, encoder.dim, num_classes)
    return TextNet(encoder.model, module).eval(), spec


def tokenize(encoder: TextEncoder, texts: Sequence[str]) -> list[list[int]]:
    """Token ids of each text, truncated to the encoder's limit, unpadded."""
    encoded = encoder.model.tokenizer(
        list(texts), truncation=True, max_length=encoder.max_length, padding=False, return_attention_mask=False
    )
    return encoded["input_ids"]


def token_batches(
    encoder: TextEncoder, texts: Sequence[str], labels: np.ndarray, *, batch_size: int, seed: int
) -> TokenBatches:
    """Length-bucketed batches of tokenised texts, for fine-tuning the encoder."""
    tokenizer = encoder.model.tokenizer
    return TokenBatches(tokenize(encoder, texts), labels, tokenizer=tokenizer, batch_size=batch_size, seed=seed)


class Embedder:
    """Sentence embeddings of the encoder as it is now; those of labelled data are cached on disk
    while the encoder still has its pretrained weights (``tuned`` False)."""

    def __init__(self, encoder: TextEncoder, *, progress: bool) -> None:
        self.encoder = encoder
        self.progress = progress
        self._cache: FeatureCache | None = None

    @property
    def tuned(self) -> bool:
        """Whether a strategy changed the encoder's weights: the encoder's own flag, so that it leaves
        its exported graph, which holds the pretrained weights only."""
        return self.encoder.weights_changed

    @tuned.setter
    def tuned(self, value: bool) -> None:
        self.encoder.weights_changed = value

    def __call__(self, prepared: Texts) -> np.ndarray:
        self.encoder.model.eval()
        progress = self.progress and len(prepared.texts) > 2000
        if prepared.cache and not self.tuned:
            if self._cache is None:
                self._cache = self.encoder.feature_cache()
            return self.encoder.encode_cached(prepared.texts, self._cache, progress=progress)
        return self.encoder.encode(prepared.texts, progress=progress)
