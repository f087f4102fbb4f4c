"""Saving and loading an estimator: what goes into its model folder, and the modality registry that
``load`` rebuilds it from. The folder itself is written and read by ``wukong.artifact`` (pure I/O)."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Self

import numpy as np
import torch

from wukong.calibration import check_offsets, check_temperature, check_thresholds
from wukong.errors import DataError, ParameterError, WukongError
from wukong.heads import final_linear
from wukong.openset import load_score

OPEN_SET = "open_set."  # the prefix of the open-set score's tensors in model.safetensors

# The modality registry: a model folder's "modality" -> its estimator class, imported when needed
# (``import wukong`` stays light). A new modality adds its line here and its adapter module.
MODALITIES = {"image": "wukong.image_classifier:ImageClassifier", "text": "wukong.text_classifier:TextClassifier"}


def modality_class(modality: Any, config_file: Path | str = "config.json") -> type:
    """The estimator class registered for ``modality``; ``DataError`` naming ``config_file`` otherwise."""
    if not isinstance(modality, str) or modality not in MODALITIES:
        raise DataError(f"{config_file}: unknown modality {modality!r}")
    module, name = MODALITIES[modality].split(":")
    return getattr(importlib.import_module(module), name)


class Persistence:
    """``save`` and ``load`` for ``TransferClassifier`` (a mixin: the estimator supplies the state)."""

    load_modules: tuple[str, ...] = ("backbone", "head")  # user modules that ``load`` accepts

    def _state_to_save(self) -> dict[str, torch.Tensor]:
        """The tensors written to model.safetensors (subclasses may leave out unchanged weights)."""
        return self.net_.state_dict()

    def _load_saved_state(self, state: dict[str, torch.Tensor]) -> None:
        self.net_.load_state_dict(state, strict=True)

    def save(self, path: str | Path, *, overwrite: bool = True) -> Path:
        """Write the model folder (safetensors + JSON), atomically. Returns its path.

        Only a new or empty folder, or a Wukong model folder (when ``overwrite``), is written: a folder
        holding anything else is refused, never replaced.
        """
        from wukong.artifact import jsonable_params, write_model_folder

        self._check_fitted()
        config = {
            "modality": self.modality,
            "classes": list(self.classes_),
            "strategy": self.strategy_,
            "strategy_reason": self.strategy_reason_,
            "head": self.head_spec_,
            "params": jsonable_params(self.get_params(deep=False)),
            "bf16": self.bf16_,
            # probabilities are softmax(logits / temperature): every reader of the folder applies it
            "calibration": getattr(self, "calibration_", None) or {"temperature": self.temperature_},
            # several labels per example: sigmoid outputs, and calibration["thresholds"] decide the set
            "multi_label": bool(self.multi_label_),
            **self._config_extra(),
        }
        state = self._state_to_save()
        open_set = getattr(self, "open_set_", None)
        if open_set is not None:  # its reference scores and feature bank beside the weights
            config["open_set"] = open_set.config()
            state.update(
                {f"{OPEN_SET}{k}": torch.from_numpy(np.ascontiguousarray(v)) for k, v in open_set.tensors().items()}
            )
        config["backbone"] = {"name": self.backbone_name_, **config.get("backbone", {})}
        logs = (self.metrics_.get("history") or {}).get("logs")  # only trained networks have logs
        return write_model_folder(
            Path(path),
            state=state,
            config=config,
            metrics=self.metrics_,
            skipped=self.skipped_,
            logs=Path(logs) if logs else None,
            overwrite=overwrite,
        )

    @classmethod
    def load(cls, path: str | Path, **modules: torch.nn.Module) -> Self:
        """Load a model folder written by ``save`` (never unpickles). ``backbone=`` / ``head=``: the
        user modules a model was trained with, when it was.

        Example:
            >>> model = ImageClassifier.load("my_model")                        # doctest: +SKIP
        """
        from wukong.artifact import read_model_folder

        saved = read_model_folder(Path(path))
        klass = modality_class(saved.config.get("modality"), saved.config_file)
        if not issubclass(klass, cls):
            raise DataError(f"{path}: holds a {klass.__name__}; load it with {klass.__name__}.load or wukong.load")
        unknown = sorted(set(modules) - set(klass.load_modules))
        if unknown:
            raise ParameterError(
                f"{path}: a {klass.__name__} takes {', '.join(m + '=' for m in klass.load_modules)} when loaded, "
                f"not {', '.join(unknown)}= (its backbone is named in the folder)"
            )
        try:
            model = klass._from_config(saved.config, **modules)
            model.classes_ = list(saved.config["classes"])
            model.strategy_, model.strategy_reason_ = saved.config["strategy"], saved.config["strategy_reason"]
            model.head_spec_ = saved.config["head"]
            calibration = saved.config.get("calibration") or {}  # folders written before calibration: none
            model.temperature_ = check_temperature(calibration.get("temperature", 1.0), "calibration")
            model.calibration_ = calibration or None
            model.logit_offsets_ = check_offsets(calibration.get("logit_offsets"), len(model.classes_))
            model.multi_label_ = saved.config.get("multi_label", False)
            if not isinstance(model.multi_label_, bool):
                raise ValueError(f"multi_label must be true or false, not {model.multi_label_!r}")
            if model.multi_label_:
                model.thresholds_ = check_thresholds(calibration.get("thresholds"), len(model.classes_))
        except WukongError as exc:
            raise DataError(f"{saved.config_file}: {exc}") from None
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            problem = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc).splitlines()[0]
            raise DataError(f"{saved.config_file}: damaged or not written by this Wukong ({problem})") from None
        weights = saved.folder / "model.safetensors"
        state = saved.weights()
        extras = {k.removeprefix(OPEN_SET): state.pop(k).numpy() for k in [k for k in state if k.startswith(OPEN_SET)]}
        try:
            model._load_saved_state(state)
            model.open_set_ = None
            if saved.config.get("open_set"):
                model.open_set_ = load_score(saved.config["open_set"], extras, model.temperature_)
        except ValueError as exc:
            raise DataError(f"{weights}: {exc}") from None
        except RuntimeError as exc:
            raise DataError(f"{weights}: does not match config.json ({str(exc).strip().splitlines()[0]})") from None
        outputs = final_linear(model.net_.head)
        if outputs is not None and outputs.out_features != len(model.classes_):
            raise DataError(
                f"{saved.config_file}: lists {len(model.classes_)} classes but the head has "
                f"{outputs.out_features} outputs"
            )
        model.net_.eval()
        model.metrics_, model.skipped_ = saved.metrics, saved.skipped
        return model

    @classmethod
    def _saved_params(cls, config: dict[str, Any], *given: str) -> dict[str, Any]:
        """The constructor parameters recorded in ``config``, less those ``given`` as modules."""
        allowed = set(cls._get_param_names()) - set(given)
        return {k: v for k, v in config["params"].items() if k in allowed}
