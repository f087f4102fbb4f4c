"""Export to ONNX: the whole image pipeline after decoding (normalise, network, softmax)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from wukong.engine import export_graph
from wukong.errors import WukongError


class _Probabilities(nn.Module):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.net(pixels), dim=1)


def export_onnx(model: Any, out: str | Path, *, opset: int = 17) -> dict[str, Any]:
    """Write ``out`` (.onnx): input ``pixels`` float32 (batch, 3, H, W) in [0, 1], RGB, already
    resized and centre-cropped to the backbone's input size; output ``probabilities``.

    Example:
        >>> import wukong
        >>> export_onnx(wukong.load("runs/cat_dog"), "cat_dog.onnx")   # doctest: +SKIP
    """
    if model.modality != "image":
        raise WukongError("ONNX export is for image models; text models serve with 'wukong serve'")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    size = model.backbone_.input_size
    wrapper = _Probabilities(model.net_.float().eval().to(memory_format=torch.contiguous_format)).eval()
    export_graph(wrapper, torch.rand(1, 3, size, size), out, output="probabilities", opset=opset)
    return {"path": str(out), "bytes": out.stat().st_size, "input_size": size, "classes": list(model.classes_)}
