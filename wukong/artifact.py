"""The model folder: ``config.json``, ``model.safetensors``, ``metrics.json``, ``skipped.json``, ``logs/``.

Self-describing and safe: the config names the architecture (rebuilt from code installed with
Wukong or timm), the weights are safetensors, everything else is JSON. Loading never unpickles
and never runs code from the folder. Written atomically: a killed save leaves the old folder.
Pure I/O: the estimator says what to write (``TransferClassifier.save``) and rebuilds itself from
what is read (``TransferClassifier.load``); this module knows no estimator class.
"""

from __future__ import annotations

import platform
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from wukong.artifact_io import (
    MODEL_FORMAT,
    atomic_folder,
    check_replaceable,
    read_json,
    read_safetensors,
    recover_folder,
    write_json,
)
from wukong.errors import DataError, OutputError, WukongError
from wukong.report import draw, html_report, tensorboard_summary


@dataclass
class SavedModel:
    """A model folder as read from disk, checked: what an estimator rebuilds itself from."""

    folder: Path
    config: dict[str, Any]
    metrics: dict[str, Any]
    skipped: list[Any]

    @property
    def config_file(self) -> Path:
        return self.folder / "config.json"

    def weights(self) -> dict[str, torch.Tensor]:
        try:
            return read_safetensors(self.folder / "model.safetensors")
        except WukongError as exc:
            raise DataError(str(exc)) from None


def write_model_folder(
    out: Path,
    *,
    state: dict[str, torch.Tensor],
    config: dict[str, Any],
    metrics: dict[str, Any],
    skipped: list[Any],
    logs: Path | None = None,
    overwrite: bool = True,
) -> Path:
    """Write the model folder atomically. Only an empty folder, or a Wukong model folder (with
    ``overwrite``), is ever replaced; a failed write (a full disk) leaves ``out`` as it was."""
    from safetensors import SafetensorError
    from safetensors.torch import save_file

    from wukong import __version__

    check_replaceable(out, fmt=MODEL_FORMAT, overwrite=overwrite)
    state = {k: v.detach().cpu().contiguous().clone() for k, v in state.items()}
    if isinstance(metrics.get("history"), dict):  # the logs are copied into the folder: point there
        metrics = {**metrics, "history": {**metrics["history"], "logs": "logs"}}
    config = {
        "format": MODEL_FORMAT,
        **config,
        "versions": {"wukong": __version__, "torch": torch.__version__, "python": platform.python_version()},
    }
    try:
        with atomic_folder(out) as tmp:
            save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
            write_json(tmp / "config.json", config)
            write_json(tmp / "metrics.json", metrics)
            write_json(tmp / "skipped.json", skipped)
            drawn = draw(config, metrics)
            (tmp / "report.html").write_text(html_report(config, metrics, skipped, drawn), encoding="utf-8")
            if logs is not None and logs.is_dir():
                shutil.copytree(logs, tmp / "logs")
            tensorboard_summary(tmp / "logs", config, metrics, drawn)
    except (OSError, SafetensorError) as exc:  # safetensors reports a full disk as its own error type
        problem = getattr(exc, "strerror", None) or str(exc).strip().splitlines()[-1]
        raise OutputError(
            f"{out}: the model folder could not be written ({problem}); "
            "nothing was replaced: free some space or choose another --out"
        ) from None
    return out


def read_model_folder(path: Path) -> SavedModel:
    """Read and check a model folder (finishing or undoing a save that was killed half-way).

    Every file is checked before use: a damaged or tampered folder is one ``DataError`` line naming
    the file and the problem. The config is data: only known fields, with checked values, are read.
    """
    path = Path(path)
    recover_folder(path)
    if not path.is_dir():
        raise DataError(f"{path}: not a Wukong model folder (no such folder); train one with 'wukong train'")
    config_file = path / "config.json"
    config = read_json(config_file, missing="missing: not a Wukong model folder; train one with 'wukong train'")
    _check_config(config, config_file)
    metrics = read_json(path / "metrics.json") if (path / "metrics.json").exists() else {}
    skipped = read_json(path / "skipped.json") if (path / "skipped.json").exists() else []
    if not isinstance(metrics, dict) or not isinstance(skipped, list):
        raise DataError(f"{path}: metrics.json must hold an object and skipped.json a list")
    return SavedModel(path, config, metrics, skipped)


def _check_config(config: Any, config_file: Path) -> None:
    """The fields every model folder has."""
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


def jsonable_params(params: dict[str, Any]) -> dict[str, Any]:
    """Parameters as JSON; objects (user modules, backbones) are recorded by type name only."""
    out = {}
    for key, value in params.items():
        if isinstance(value, Path):
            value = str(value)
        elif not isinstance(value, str | int | float | bool | type(None) | list | dict):
            value = f"<{type(value).__qualname__}>"
        out[key] = value
    return out
