"""The model folder: ``config.json``, ``model.safetensors``, ``metrics.json``, ``skipped.json``, ``logs/``.

Self-describing and safe: the config names the architecture (rebuilt from code installed with
Wukong or timm), the weights are safetensors, everything else is JSON. Loading never unpickles
and never runs code from the folder. Written atomically: a killed save leaves the old folder.
"""

from __future__ import annotations

import platform
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn

from wukong.artifact_io import atomic_folder, read_json, write_json
from wukong.errors import DataError
from wukong.report import html_report

FORMAT = "wukong-model/1"


def save_model(model: Any, out: Path) -> Path:
    from safetensors.torch import save_file

    from wukong import __version__

    state = {k: v.detach().cpu().contiguous().clone() for k, v in model._state_to_save().items()}
    config = {
        "format": FORMAT,
        "modality": model.modality,
        "classes": list(model.classes_),
        "strategy": model.strategy_,
        "strategy_reason": model.strategy_reason_,
        "head": model.head_spec_,
        "params": _jsonable_params(model.get_params()),
        "bf16": model.bf16_,
        **model._config_extra(),
        "versions": {
            "wukong": __version__,
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
    }
    with atomic_folder(out) as tmp:
        save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        write_json(tmp / "config.json", config)
        write_json(tmp / "metrics.json", model.metrics_)
        write_json(tmp / "skipped.json", model.skipped_)
        (tmp / "report.html").write_text(html_report(config, model.metrics_, model.skipped_))
        logs = (model.metrics_.get("history") or {}).get("logs")  # only trained networks have logs
        if logs and Path(logs).is_dir():
            shutil.copytree(logs, tmp / "logs")
    return out


def load_model(path: Path, **modules: nn.Module) -> Any:
    """Rebuild a fitted estimator from its folder. ``backbone=`` / ``head=`` supply user modules."""
    from safetensors.torch import load_file

    path = Path(path)
    config_file = path / "config.json"
    if not config_file.exists():
        raise DataError(f"{path}: not a Wukong model folder (no config.json); train one with 'wukong train'")
    config = read_json(config_file)
    if config.get("format") != FORMAT:
        raise DataError(f"{path}: config.json is not a Wukong model ({config.get('format')!r})")
    if config["modality"] == "image":
        from wukong.image_classifier import ImageClassifier as cls
    elif config["modality"] == "text":
        from wukong.text_classifier import TextClassifier as cls
    else:
        raise DataError(f"{path}: unknown modality {config['modality']!r}")
    model = cls._from_config(config, **modules)
    model._load_saved_state(load_file(path / "model.safetensors"))
    model.net_.eval()
    model.metrics_ = read_json(path / "metrics.json") if (path / "metrics.json").exists() else {}
    model.skipped_ = read_json(path / "skipped.json") if (path / "skipped.json").exists() else []
    return model


def _jsonable_params(params: dict[str, Any]) -> dict[str, Any]:
    """Parameters as JSON; objects (user modules, backbones) are recorded by type name only."""
    out = {}
    for key, value in params.items():
        if isinstance(value, Path):
            value = str(value)
        elif not isinstance(value, str | int | float | bool | type(None) | list | dict):
            value = f"<{type(value).__qualname__}>"
        out[key] = value
    return out
