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

from wukong.artifact_io import MODEL_FORMAT, atomic_folder, check_replaceable, read_json, recover_folder, write_json
from wukong.backbones.vision import read_safetensors
from wukong.errors import DataError, OutputError, WukongError
from wukong.heads import final_linear
from wukong.report import html_report


def save_model(model: Any, out: Path, *, overwrite: bool = True) -> Path:
    """Write the model folder atomically. Only an empty folder, or a Wukong model folder (with
    ``overwrite``), is ever replaced; a failed write (a full disk) leaves ``out`` as it was."""
    from safetensors import SafetensorError
    from safetensors.torch import save_file

    from wukong import __version__

    check_replaceable(out, fmt=MODEL_FORMAT, overwrite=overwrite)
    state = {k: v.detach().cpu().contiguous().clone() for k, v in model._state_to_save().items()}
    config = {
        "format": MODEL_FORMAT,
        "modality": model.modality,
        "classes": list(model.classes_),
        "strategy": model.strategy_,
        "strategy_reason": model.strategy_reason_,
        "head": model.head_spec_,
        "params": _jsonable_params(model.get_params(deep=False)),
        "bf16": model.bf16_,
        **model._config_extra(),
        "versions": {
            "wukong": __version__,
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
    }
    try:
        with atomic_folder(out) as tmp:
            save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
            write_json(tmp / "config.json", config)
            write_json(tmp / "metrics.json", model.metrics_)
            write_json(tmp / "skipped.json", model.skipped_)
            (tmp / "report.html").write_text(html_report(config, model.metrics_, model.skipped_), encoding="utf-8")
            logs = (model.metrics_.get("history") or {}).get("logs")  # only trained networks have logs
            if logs and Path(logs).is_dir():
                shutil.copytree(logs, tmp / "logs")
    except (OSError, SafetensorError) as exc:  # safetensors reports a full disk as its own error type
        problem = getattr(exc, "strerror", None) or str(exc).strip().splitlines()[-1]
        raise OutputError(
            f"{out}: the model folder could not be written ({problem}); "
            "nothing was replaced: free some space or choose another --out"
        ) from None
    return out


def load_model(path: Path, **modules: nn.Module) -> Any:
    """Rebuild a fitted estimator from its folder. ``backbone=`` / ``head=`` supply user modules.

    Every file is checked before use: a damaged or tampered folder is one ``DataError`` line naming
    the file and the problem. The config is data: only known fields, with checked values, are read.
    """
    path = Path(path)
    recover_folder(path)
    if not path.is_dir():
        raise DataError(f"{path}: not a Wukong model folder (no such folder); train one with 'wukong train'")
    config_file = path / "config.json"
    config = read_json(config_file, missing="missing: not a Wukong model folder; train one with 'wukong train'")
    cls = _model_class(config, config_file)
    try:
        model = cls._from_config(config, **modules)
    except WukongError as exc:
        raise DataError(f"{config_file}: {exc}") from None
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        problem = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc).splitlines()[0]
        raise DataError(f"{config_file}: damaged or not written by this Wukong ({problem})") from None
    weights = path / "model.safetensors"
    try:
        state = read_safetensors(weights)
    except WukongError as exc:
        raise DataError(str(exc)) from None
    try:
        model._load_saved_state(state)
    except RuntimeError as exc:
        raise DataError(f"{weights}: does not match config.json ({str(exc).strip().splitlines()[0]})") from None
    outputs = final_linear(model.net_.head)
    if outputs is not None and outputs.out_features != len(model.classes_):
        raise DataError(
            f"{config_file}: lists {len(model.classes_)} classes but the head has {outputs.out_features} outputs"
        )
    model.net_.eval()
    model.metrics_ = read_json(path / "metrics.json") if (path / "metrics.json").exists() else {}
    model.skipped_ = read_json(path / "skipped.json") if (path / "skipped.json").exists() else []
    if not isinstance(model.metrics_, dict) or not isinstance(model.skipped_, list):
        raise DataError(f"{path}: metrics.json must hold an object and skipped.json a list")
    return model


def _model_class(config: Any, config_file: Path) -> Any:
    """The estimator class a config names, after checking the fields every model folder has."""
    if not isinstance(config, dict) or config.get("format") != MODEL_FORMAT:
        found = config.get("format") if isinstance(config, dict) else type(config).__name__
        raise DataError(f"{config_file}: not a Wukong model config (format {found!r})")
    classes = config.get("classes")
    if not (
        isinstance(classes, list)
        and len(classes) >= 2
        and all(isinstance(c, str) for c in classes)
        and len(set(classes)) == len(classes)
    ):
        raise DataError(f"{config_file}: 'classes' must be a list of two or more distinct names")
    if not isinstance(config.get("params"), dict) or not isinstance(config.get("backbone"), dict):
        raise DataError(f"{config_file}: damaged ('params' and 'backbone' must be objects)")
    if config.get("modality") == "image":
        from wukong.image_classifier import ImageClassifier

        return ImageClassifier
    if config.get("modality") == "text":
        from wukong.text_classifier import TextClassifier

        return TextClassifier
    raise DataError(f"{config_file}: unknown modality {config.get('modality')!r}")


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
