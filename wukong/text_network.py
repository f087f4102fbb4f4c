"""The text network: a sentence encoder with a new head on top, and what fine-tuning it needs (its blocks,
frozen parts kept in eval mode, token batches of similar length)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from wukong.errors import ParameterError
from wukong.network import keep_frozen_in_eval


class TextNet(nn.Module):
    """Tokenised texts -> sentence encoder (transformer, pooling) -> embedding -> head -> logits.

    Input: int64 ``(batch, 2, width)``: token ids and attention mask, padded to the batch's
    longest text. Frozen encoder parts run in eval mode (no dropout noise) also while the rest
    trains: ``train()`` puts back in eval every module whose parameters are all frozen.
    """

    def __init__(self, encoder: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.features = encoder
        self.head = head

    def embed(self, batch: torch.Tensor) -> torch.Tensor:
        inputs = {"input_ids": batch[:, 0], "attention_mask": batch[:, 1], "modality": "text"}
        return self.features(inputs)["sentence_embedding"]

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(batch))

    def train(self, mode: bool = True) -> TextNet:
        super().train(mode)
        if mode:
            keep_frozen_in_eval(self.features)
        return self


class HeadOnly(nn.Module):
    """The head on precomputed embeddings: trains a new top without running the encoder each epoch."""

    def __init__(self, head: nn.Module) -> None:
        super().__init__()
        self.features = nn.Identity()
        self.head = head

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        return self.head(embeddings)


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
    ``__getitems__`` returns the batch's examples padded to its longest text, so PyTorch's default
    collation stacks them into ``(batch, 2, width)`` and ``(batch,)``.
    """

    def __init__(
        self,
        tokens: Sequence[Sequence[int]],
        labels: np.ndarray,
        *,
        batch_size: int,
        pad_id: int,
        seed: int = 0,
        chunk_batches: int = 50,
    ) -> None:
        self.tokens = tokens
        self.labels = torch.as_tensor(labels, dtype=torch.long)
        self.pad_id = pad_id
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
        width = max(len(self.tokens[i]) for i in rows)
        out = []
        for i in rows:
            ids = self.tokens[i]
            packed = torch.zeros((2, width), dtype=torch.long)
            packed[0].fill_(self.pad_id)
            packed[0, : len(ids)] = torch.as_tensor(ids, dtype=torch.long)
            packed[1, : len(ids)] = 1
            out.append((packed, self.labels[i]))
        return out
