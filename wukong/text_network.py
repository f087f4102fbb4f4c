"""The text network: a sentence encoder with a new head on top, and what fine-tuning it needs (its blocks,
frozen parts kept in eval mode, token batches of similar length)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from wukong.backbones.text import pad_tokens
from wukong.errors import ParameterError
from wukong.network import TransferNet


class TextNet(TransferNet):
    """A ``TransferNet`` over a sentence encoder: tokenised texts -> transformer, pooling ->
    embedding -> head -> logits.

    Input: int64 ``(batch, 2, width)``: token ids and attention mask, padded to the batch's
    longest text.
    """

    def embed(self, inputs: torch.Tensor) -> torch.Tensor:
        tokens = {"input_ids": inputs[:, 0], "attention_mask": inputs[:, 1], "modality": "text"}
        return self.features(tokens)["sentence_embedding"]


def input_embeddings(encoder: nn.Module) -> nn.Module | None:
    """The token embedding table of a Hugging Face transformer inside ``encoder`` (None if there is none)."""
    for module in encoder.modules():
        getter = getattr(module, "get_input_embeddings", None)
        if callable(getter) and module is not encoder:
            try:
                return getter()
            except NotImplementedError:
                continue
    return None


def transformer_layers(encoder: nn.Module) -> list[nn.Module]:
    """The stack of transformer layers (the longest ``ModuleList``), lowest first."""
    stacks = [m for m in encoder.modules() if isinstance(m, nn.ModuleList)]
    if not stacks:
        raise ParameterError("cannot find the transformer layers of this encoder; use unfreeze='all'")
    return list(max(stacks, key=len))


def encoder_blocks(encoder: nn.Module, count: int | str) -> list[nn.Module]:
    """What fine-tuning unfreezes: the top ``count`` transformer layers, or ``"all"`` (the encoder)."""
    if count == "all":
        return [encoder]
    layers = transformer_layers(encoder)
    return layers[-int(count) :] if int(count) > 0 else []


class TokenBatches(Dataset):
    """Tokenised texts in length-bucketed batches: item ``k`` is the whole batch ``k``.

    Texts of similar length go together (little padding: on CPU every padded token costs as much as
    a real one). Batches are formed once, from a seeded shuffle sorted by length within large
    chunks; the DataLoader, with ``batch_size=1``, shuffles their order every epoch.
    ``__getitems__`` returns the batch's examples padded by the tokenizer to its longest text, so
    PyTorch's default collation stacks them into ``(batch, 2, width)`` (ids, mask) and ``(batch,)``.
    """

    def __init__(
        self,
        tokens: Sequence[Sequence[int]],
        labels: np.ndarray,
        *,
        tokenizer: Any,
        batch_size: int,
        seed: int = 0,
        chunk_batches: int = 50,
    ) -> None:
        self.tokens = tokens
        self.labels = torch.as_tensor(labels, dtype=torch.long)
        self.tokenizer = tokenizer
        order = np.random.default_rng(seed).permutation(len(tokens))
        lengths = np.fromiter((len(t) for t in tokens), np.int64, len(tokens))
        chunk = batch_size * chunk_batches
        self.batches: list[np.ndarray] = []
        for start in range(0, len(order), chunk):
            part = order[start : start + chunk]
            part = part[np.argsort(lengths[part], kind="stable")]
            self.batches += [part[i : i + batch_size] for i in range(0, len(part), batch_size)]

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, index: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return self.__getitems__([index])

    def __getitems__(self, indices: list[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        rows = np.concatenate([self.batches[k] for k in indices])
        padded = pad_tokens(self.tokenizer, {"input_ids": [list(self.tokens[i]) for i in rows]}, "cpu")
        packed = torch.stack([padded["input_ids"], padded["attention_mask"]], dim=1).long()
        return [(packed[j], self.labels[i]) for j, i in enumerate(rows)]
