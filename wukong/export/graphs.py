"""The trained network as a graph other runtimes load: ONNX (images, texts) and TorchScript.

TorchScript, and ``torch.export`` programs.

Every graph ends in softmax of the logits divided by the model's fitted temperature, plus its prior
offsets where it has them, or (multi-label) in a sigmoid per label (its output is ``probabilities``,
as ``predict_proba``'s, columns in the model's class order). A model with an open-set score
(``wukong.openset``) has a second output, ``unknown_score``, as ``unknown_score()`` computes it: an
input scoring below the threshold in the metadata is "none of these".
Image graphs take float ``pixels`` (N, 3, S, S) in [0, 1], resized and cropped as the metadata says,
or (``any_size``) one uint8 RGB ``image`` (H, W, 3) of any size with the resize and crop inside the
graph (``wukong.export.preprocess``). Text graphs take the tokenizer's ``input_ids`` and
``attention_mask`` (N, L), int64.
"""

from __future__ import annotations

import copy
import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from wukong.engine import export_graph, static_same_padding
from wukong.export import preprocess

TEXT_INPUTS = ("input_ids", "attention_mask")


class UnknownScore(nn.Module):
    """An ``OpenSetScore`` as graph operations: the same parts, and each part's percentile among the
    known validation inputs by counting the references at or below it (``searchsorted``, side right)."""

    def __init__(self, score: Any) -> None:
        super().__init__()
        self.parts = tuple(score.name.split("+"))
        self.temperature, self.k = float(score.temperature), int(score.k)
        bank = score.dense_bank() if score.bank is not None else np.zeros((1, 1), np.float16)
        # float16 as in the model folder (half the bytes in the file), computed in float32
        self.register_buffer("bank", torch.from_numpy(bank.astype(np.float16)))
        for part in self.parts if len(self.parts) > 1 else ():
            self.register_buffer(f"reference_{part}", torch.from_numpy(score.reference[part].astype(np.float32)))

    def forward(self, features: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        values = []
        for part in self.parts:
            if part == "msp":
                values.append(torch.softmax(logits / self.temperature, dim=1).amax(dim=1))
            elif part == "energy":
                values.append(self.temperature * torch.logsumexp(logits / self.temperature, dim=1))
            elif part == "maxlogit":
                values.append(logits.amax(dim=1))
            else:  # knn: cosine similarity to the k-th nearest training feature
                similarity = nn.functional.normalize(features, dim=1, eps=1e-12) @ self.bank.float().T
                values.append(torch.topk(similarity, min(self.k, self.bank.shape[0]), dim=1).values[:, -1])
        if len(values) == 1:
            return values[0]
        shares = [
            (getattr(self, f"reference_{part}")[None, :] <= value[:, None]).float().mean(dim=1)
            for part, value in zip(self.parts, values, strict=True)
        ]
        return torch.stack(shares).mean(dim=0)


class ImageProbabilities(nn.Module):
    """Float pixels in [0, 1] -> class probabilities (normalisation inside the network), and the
    unknown score where the model has one."""

    def __init__(self, model: Any, net: nn.Module, unknown: bool = True) -> None:
        super().__init__()
        self.net = net
        self.temperature = float(model.temperature_)
        self.multi_label = bool(model.multi_label_)
        offsets = model.logit_offsets_
        shift = torch.zeros(1) if offsets is None else torch.as_tensor(np.asarray(offsets, dtype=np.float32))
        self.register_buffer("offsets", shift)
        score = getattr(model, "open_set_", None) if unknown else None
        self.unknown = UnknownScore(score) if score is not None else None

    def forward(self, pixels: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        features = self.net.embed(pixels)
        logits = self.net.head(features)
        if self.multi_label:  # one probability per label
            proba = torch.sigmoid(logits / self.temperature)
        else:
            proba = torch.softmax(logits / self.temperature + self.offsets, dim=1)
        return proba if self.unknown is None else (proba, self.unknown(features, logits))


class TextProbabilities(ImageProbabilities):
    """Token ids and attention mask -> class probabilities (the sentence encoder, its pooling, the head)."""

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        return super().forward(torch.stack([input_ids, attention_mask], dim=1))


def probabilities_module(
    model: Any, unknown: bool = True
) -> tuple[nn.Module, tuple[torch.Tensor, ...], tuple[str, ...]]:
    """A CPU fp32 copy of ``model``'s network ending in its probabilities (and, with ``unknown``,
    its unknown score), an example input and the input names."""
    net = copy.deepcopy(model.net_).float().cpu().eval()
    if model.modality == "image":
        size = model.backbone_.input_size
        net = static_same_padding(net, size).to(memory_format=torch.contiguous_format)  # fixed size: constant pads
        module = ImageProbabilities(model, net, unknown)
        return module.eval(), (torch.rand(2, 3, size, size),), ("pixels",)
    tokens = torch.tensor([[101, 7592, 2088, 102], [101, 7592, 102, 0]], dtype=torch.int64)
    module = TextProbabilities(model, net, unknown)
    return module.eval(), (tokens, (tokens != 0).long()), TEXT_INPUTS


def outputs(model: Any, unknown: bool = True) -> tuple[str, ...]:
    """The names of an export's outputs, in order."""
    with_score = unknown and getattr(model, "open_set_", None) is not None
    return ("probabilities", "unknown_score") if with_score else ("probabilities",)


def write_onnx(model: Any, out: Path, *, any_size: bool = False, unknown: bool = True) -> None:
    """``model`` as an ONNX file at ``out``; ``any_size``: with the image preprocessing in the graph;
    ``unknown``: with the unknown score as a second output."""
    import onnx

    module, example, names = probabilities_module(model, unknown)
    free = {1: "tokens"} if model.modality == "text" else None
    with quiet():
        names_out = outputs(model, unknown)
        export_graph(module, example, out, output=names_out, inputs=names, free_axes=free, opset=preprocess.OPSET)
    graph = onnx.load(str(out))
    if any_size:
        graph = _with_preprocessing(graph, model.backbone_)
    onnx.checker.check_model(graph)
    onnx.save(graph, str(out))


def _with_preprocessing(graph: Any, backbone: Any) -> Any:  # onnx.ModelProto
    """``graph`` (input ``pixels``) behind the resize-and-crop graph (input ``image``), as one model."""
    import onnx

    interpolation = str(backbone.data_config.get("interpolation", "bicubic"))
    pre = preprocess.preprocess_model(backbone.resize_size, backbone.input_size, interpolation, graph.ir_version)
    merged = onnx.compose.merge_models(pre, graph, io_map=[(preprocess.OUTPUT, "pixels")], prefix1="pre_")
    merged.graph.input[0].name = preprocess.INPUT  # merge_models prefixed it
    for node in merged.graph.node:
        node.input[:] = [preprocess.INPUT if name == f"pre_{preprocess.INPUT}" else name for name in node.input]
    opsets = list({(o.domain, o.version): o for o in merged.opset_import}.values())  # both graphs' listed
    merged.ClearField("opset_import")
    merged.opset_import.extend(opsets)
    return merged


def torch_program(model: Any, *, traced: bool, unknown: bool = True) -> Any:
    """``model`` for PyTorch users: traced to TorchScript (``traced``), or a ``torch.export`` program
    with a free batch size (and text length)."""
    module, example, _ = probabilities_module(model, unknown)
    with quiet():
        if traced:
            return torch.jit.trace(module, example, check_trace=False)
        batch = torch.export.Dim("batch", min=1, max=4096)
        tokens = torch.export.Dim("tokens", min=2, max=_max_tokens(model))
        shapes = tuple({0: batch, 1: tokens} if model.modality == "text" else {0: batch} for _ in example)
        return torch.export.export(module, example, dynamic_shapes=shapes)


def save_torch(program: Any, out: Path, metadata: str) -> None:
    """A ``torch_program`` at ``out``, the metadata as the archive's ``wukong.json``."""
    with quiet():
        if isinstance(program, torch.jit.ScriptModule):
            torch.jit.save(program, str(out), {"wukong.json": metadata})
        else:
            torch.export.save(program, str(out), extra_files={"wukong.json": metadata})


@contextmanager
def quiet() -> Iterator[None]:
    """Exporters', tracers' and quantisers' chatter off (warnings and log records): it is not the user's."""
    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(logging.NOTSET)


def _max_tokens(model: Any) -> int:
    """The longest tokenised text the encoder takes (its truncation length; 512 where it sets none)."""
    encoder = getattr(model, "encoder_", None)
    return int(encoder.max_length) if encoder is not None and encoder.max_length else 512
