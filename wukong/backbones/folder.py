"""The backbone folder that ``wukong pretrain`` writes and ``--backbone FOLDER`` reads, in one place:
``config.json`` (format, architecture, preprocessing, the pretraining classes), ``model.safetensors``
(fp16 weights, the pretraining classifier included), ``metrics.json``, ``skipped.json``, ``logs/``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from wukong.artifact_io import BACKBONE_FORMAT, atomic_folder, read_json, read_safetensors, write_json
from wukong.backbones.archs import ArchSpec, arch_spec
from wukong.errors import BackboneNotAvailable, ParameterError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "lanczos")


def check_data_config(config: Any, where: str) -> dict[str, Any]:
    """A recorded preprocessing config, checked field by field (it comes from a file: untrusted)."""

    def numbers(value: Any, count: int) -> bool:
        return (
            isinstance(value, list)
            and len(value) == count
            and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
        )

    problem = None
    if not isinstance(config, dict):
        problem = "'data_config' must be an object"
    elif not (numbers(config.get("input_size"), 3) and all(8 <= v <= 4096 for v in config["input_size"][1:])):
        problem = f"input_size {config.get('input_size')!r} must be [3, H, W] with sides 8-4096"
    elif not (numbers(config.get("mean"), 3) and numbers(config.get("std"), 3) and all(v > 0 for v in config["std"])):
        problem = "mean and std must be three numbers each (std > 0)"
    elif config.get("interpolation", "bicubic") not in INTERPOLATIONS:
        problem = f"interpolation {config.get('interpolation')!r} must be one of {', '.join(INTERPOLATIONS)}"
    elif not (isinstance(config.get("crop_pct", 1.0), int | float) and 0.1 <= config.get("crop_pct", 1.0) <= 1.0):
        problem = f"crop_pct {config.get('crop_pct')!r} must be in [0.1, 1]"
    if problem:
        raise BackboneNotAvailable(f"{where}: {problem}")
    return dict(config)


@dataclass
class BackboneFolder:
    """A backbone folder as read and checked: what ``backbones.vision`` builds the network from."""

    spec: ArchSpec
    data_config: dict[str, Any]
    state: dict[str, torch.Tensor]  # the network's weights, float32, without the pretraining classifier
    pretrain_head: dict[str, Any] | None  # its weight, bias and classes, where it was kept


def read_backbone_folder(folder: Path) -> BackboneFolder:
    """Read a backbone folder; anything wrong is one ``BackboneNotAvailable`` line naming the file."""
    config = read_json(folder / "config.json")
    if not isinstance(config, dict) or config.get("format") != BACKBONE_FORMAT:
        raise BackboneNotAvailable(f"{folder}: not a backbone folder written by 'wukong pretrain'")
    try:
        spec = ArchSpec.from_dict(config.get("spec"))
    except ParameterError as exc:
        raise BackboneNotAvailable(f"{folder / 'config.json'}: {exc}") from None
    data_config = check_data_config(config.get("data_config"), str(folder / "config.json"))
    weights = read_safetensors(folder / "model.safetensors")
    state = {k: v.float() if v.is_floating_point() else v for k, v in weights.items()}
    prefix = config.get("classifier")
    head = None
    if prefix:
        taken = {k[len(prefix) + 1 :]: state.pop(k) for k in list(state) if k.startswith(prefix + ".")}
        head = {"weight": taken.get("weight"), "bias": taken.get("bias"), "classes": config.get("classes")}
    return BackboneFolder(spec, data_config, state, head)


def write_backbone_folder(
    out: Path,
    *,
    model: nn.Module,
    arch: str,
    classes: list[str],
    input_size: int,
    metrics: dict[str, Any],
    recipe: dict[str, Any],
    data: str,
    skipped: list[dict[str, str]],
    logs: Path | None = None,
    half: bool = True,
) -> None:
    """Write a backbone folder: ``config.json``, ``model.safetensors`` (fp16), ``metrics.json``.

    Weights are stored in fp16 (half the size; the loss in accuracy is nil for inference and
    fine-tuning upcasts to fp32) together with the pretraining classifier, which the ``auto``
    strategy uses to gauge how close a new task is to the pretraining data.
    """
    import shutil

    from safetensors.torch import save_file

    spec = arch_spec(arch)
    state = {
        k: v.detach().to(torch.float16 if half and v.is_floating_point() else v.dtype).contiguous()
        for k, v in model.state_dict().items()
    }
    classifier = model.get_classifier() if hasattr(model, "get_classifier") else None
    config = {
        "format": BACKBONE_FORMAT,
        "arch": arch,
        "spec": spec.to_dict(),
        "num_features": int(getattr(model, "num_features", 0)),
        "classifier": _classifier_prefix(model, classifier),
        "num_classes": len(classes),
        "classes": classes,
        "data_config": {
            "input_size": [3, input_size, input_size],
            "mean": list(IMAGENET_MEAN),
            "std": list(IMAGENET_STD),
            "interpolation": "bicubic",
            "crop_pct": 1.0,
        },
        "pretrained_on": data,
        "recipe": recipe,
        "val_top1": metrics.get("val_top1"),
    }
    with atomic_folder(out) as tmp:
        save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        write_json(tmp / "config.json", config)
        write_json(tmp / "metrics.json", metrics)
        write_json(tmp / "skipped.json", skipped)
        if logs is not None and logs.is_dir():
            shutil.copytree(logs, tmp / "logs")


def _classifier_prefix(model: nn.Module, classifier: nn.Module | None) -> str | None:
    if classifier is None:
        return None
    for name, module in model.named_modules():
        if module is classifier:
            return name
    return None
