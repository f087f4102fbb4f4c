"""``ImageClassifier``: transfer a pretrained image network to your labelled images."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import ConcatDataset, DataLoader, Dataset

from wukong.backbones.vision import ImageBackbone, load_image_backbone, rebuild_backbone, with_input_size
from wukong.data.augment import ArrayImageDataset
from wukong.data.images import (
    ImageSource,
    ImageStore,
    conflicting_labels,
    decode_images,
    image_items,
    labelled_images,
    list_images,
)
from wukong.engine import FrozenPass, check_engine, frozen_pass
from wukong.errors import DataError, ParameterError
from wukong.estimator import Labelled, TransferClassifier
from wukong.features_cache import FeatureCache, namespace_key
from wukong.heads import build_head, final_linear, head_from_spec, is_linear
from wukong.network import (
    Embedding,
    FeatureExtractor,
    TransferNet,
    later_blocks,
    probe_features,
    weights_fingerprint,
)
from wukong.report import classification_metrics
from wukong.runtime import bf16_measured_faster, default_device
from wukong.strategies.auto import Choice
from wukong.strategies.features import (
    LinearFit,
    fit_linear_classifier,
    one_standard_error_choice,
    refit_with_validation,
    write_linear,
)
from wukong.training.engine import TrainPlan, train_network

# On small data, an epoch repeats the (randomly augmented) images until it makes this many
# optimiser steps: 36 cat/dog images in batches of 64 make one step an epoch, and 15 such epochs
# leave a new head barely trained.
MIN_STEPS_PER_EPOCH = 20
# The default plans (epochs, of which head-only, min steps per epoch) when ``epochs`` is not given.
# ``head``: 15 epochs. ``finetune``: short, starting from the pretrained blocks: one epoch for the
# new head, then seven with the later blocks, about 100 optimiser steps in all on small data (the
# image benchmark compares it with a long schedule and with the hand-written tutorial recipe).
DEFAULT_PLANS = {"head": (15, 15, MIN_STEPS_PER_EPOCH), "finetune": (8, 1, 12)}


class ImageClassifier(TransferClassifier):
    """Image classification by transfer learning, in the four steps: remove the pretrained top,
    build a new top, train it, fine-tune.

    Parameters:
        backbone: ``None`` (EfficientNet-Lite0, offline), a store name (``wukong models``), a timm
            name, a weights file (with ``arch``), a folder from ``wukong pretrain``, or an
            ``nn.Module``.
        strategy: ``"auto"`` (chosen from the data, see ``wukong.strategies.auto``), ``"features"``
            (cached features + cross-validated logistic regression), ``"head"`` (train the new top
            on the frozen network) or ``"finetune"`` (then unfreeze later blocks).
        head: ``"linear"``, ``"mlp"`` or an ``nn.Module`` (features -> logits).
        tap: ``"auto"``, ``"final"`` or a stage index: where ``features`` reads the network.
        linear_model: the classifier ``features`` fits: ``"logistic"`` (softmax regression,
            calibrated probabilities) or ``"svm"`` (linear SVM; scores are softmaxed margins).
        input_size: ``"auto"`` (``features`` on a small-input backbone cross-validates its native
            size against 1.25x that), ``"native"``, or a side in pixels.
        unfreeze: blocks to fine-tune: a count of later stages, or ``"all"`` (default: chosen).
        epochs: total epochs for ``head`` (default 15) / ``finetune`` (default 8); of these,
            ``head_epochs`` (default 1, or a third of a given ``epochs``) train the new head alone
            before blocks are unfrozen. With the default, an epoch on small data passes over the
            (augmented) images several times, to make a minimum of optimiser steps (20 for
            ``head``, 12 for ``finetune``: see ``DEFAULT_PLANS``); a given ``epochs`` counts plain
            passes.
        lr, backbone_lr_ratio: the head's learning rate; pretrained blocks get ``lr * ratio``.
        bf16: bf16 autocast (``None``: where it is measured faster, once per network and machine).
        engine: what runs frozen passes (features, prediction): ``"auto"`` (onnxruntime where it is
            installed and agrees with PyTorch, see ``wukong.engine``), ``"onnxruntime"`` or ``"torch"``.
        warm_start: a second ``fit`` continues from the fitted network (same classes) instead of
            starting again from the pretrained backbone.
        tuning: thresholds and grid the strategies decide with, e.g. ``{"small": 30}`` (see
            ``wukong.tuning.DEFAULTS``); ``None``: the measured defaults.

    Example:
        >>> from wukong import ImageClassifier
        >>> clf = ImageClassifier().fit("../shared/data/cat_dog/train")        # doctest: +SKIP
        >>> clf.predict(["../shared/data/cat_dog/test/cat/cat.983.jpg"])       # doctest: +SKIP
        ['cat']
    """

    modality = "image"

    def __init__(
        self,
        backbone: str | Path | nn.Module | None = None,
        *,
        arch: str | None = None,
        strategy: str = "auto",
        head: str | nn.Module = "linear",
        tap: str | int = "auto",
        linear_model: str = "logistic",
        input_size: str | int = "auto",
        unfreeze: int | str | None = None,
        epochs: int | None = None,
        head_epochs: int | None = None,
        lr: float = 2e-3,
        backbone_lr_ratio: float = 0.1,
        batch_size: int = 64,
        val_fraction: float = 0.2,
        augment: bool = True,
        bf16: bool | None = None,
        engine: str = "auto",
        tuning: dict[str, Any] | None = None,
        seed: int = 0,
        warm_start: bool = False,
        progress: bool = True,
    ) -> None:
        self.backbone = backbone
        self.arch = arch
        self.strategy = strategy
        self.head = head
        self.tap = tap
        self.linear_model = linear_model
        self.input_size = input_size
        self.unfreeze = unfreeze
        self.epochs = epochs
        self.head_epochs = head_epochs
        self.lr = lr
        self.backbone_lr_ratio = backbone_lr_ratio
        self.batch_size = batch_size
        self.val_fraction = val_fraction
        self.augment = augment
        self.bf16 = bf16
        self.engine = engine
        self.tuning = tuning
        self.seed = seed
        self.warm_start = warm_start
        self.progress = progress

    # --- fit -----------------------------------------------------------------------------------

    def _start_fit(self) -> None:
        check_engine(self.engine)
        self._warm = self.warm_start and getattr(self, "net_", None) is not None
        if not self._warm:
            self.backbone_ = load_image_backbone(self.backbone, arch=self.arch)
        self.backbone_name_ = self.backbone_.name
        self.bf16_ = self._bf16_for(self.backbone_)

    def _read_labelled(
        self, data: Any, labels: Sequence[Any] | None, classes: Sequence[str] | None, role: str
    ) -> tuple[Labelled, list[dict[str, Any]]]:
        """Images: a class-per-folder tree, an archive of one, a CSV of ``path,label``, or images
        (paths, PIL images, arrays) + labels; decoded once. Identical images under two classes are
        left out and reported."""
        if classes is None and self._warm:  # warm start: the classes stay those of the fitted model
            classes = self.classes_
        source = labelled_images(data, labels, classes=classes)
        store = self._decode(source.paths, source.labels, self.backbone_, f"Reading {role} images")
        skipped = [s.to_dict() for s in source.skipped + store.skipped]
        keep, clashes = conflicting_labels(store, source.classes)
        if clashes:
            store = store.subset(keep)
            skipped += [s.to_dict() for s in clashes]
        return Labelled(store, store.labels, list(source.classes), source.origin), skipped

    def _stages(self) -> int:
        return len(self.backbone_.stage_names())

    def _run_strategy(
        self, choice: Choice, train: Labelled, val: Labelled, *, work: Path, resume: bool, carved: bool
    ) -> tuple[Choice, dict[str, Any]]:
        backbone = self.backbone_
        if choice.strategy == "features":
            return self._fit_features(backbone, train.examples, val.examples, choice, refit_on_val=carved)
        return choice, self._fit_network(backbone, train.examples, val.examples, choice, work, resume, warm=self._warm)

    def _fit_features(
        self, backbone: ImageBackbone, train: ImageStore, val: ImageStore, choice: Choice, *, refit_on_val: bool
    ) -> tuple[Choice, dict[str, Any]]:
        if not is_linear(self.head):
            raise ParameterError("strategy 'features' fits a linear classifier; use 'head' or 'finetune' for this head")
        taps = self._candidate_taps(backbone)
        tried: dict[str, Any] = {}
        candidates = []  # the default (top features, native size) first
        for size in self._candidate_sizes(backbone):
            # The network is convolutional with global pooling: any input size works. Large photos
            # may gain from a slightly larger input than the native one; tiny images do not.
            sized = with_input_size(backbone, size)
            self.backbone_ = sized
            stores = (train, val) if size == backbone.input_size else self._redecode(sized, train, val)
            for tap in taps:
                extractor = FeatureExtractor(backbone.network, tap).eval()
                feats, labels, groups = self._features(extractor, sized, stores[0], tap, flip=self.augment)
                fit = self._linear(feats, labels, groups)
                tried[f"{_tap_name(tap)}@{size}px"] = fit.info
                candidates.append({"tap": tap, "extractor": extractor, "fit": fit, "backbone": sized, "stores": stores})
        best = candidates[
            one_standard_error_choice([(c["fit"].info["cv_loss"], c["fit"].info["cv_loss_se"]) for c in candidates])
        ]
        tap, extractor, fit = best["tap"], best["extractor"], best["fit"]
        self.backbone_ = backbone = best["backbone"]
        train, val = best["stores"]
        self.net_ = self._assemble(backbone, extractor, tap)
        write_linear(final_linear(self.net_.head), fit)
        self.tap_ = tap
        reason = choice.reason
        if len(tried) > 1:
            scores = ", ".join(f"{name}: {info['cv_loss']} ± {info['cv_loss_se']}" for name, info in tried.items())
            if best is candidates[0]:
                verdict = "no other choice is better by more than one standard error: top features at the native size"
            elif tap is None:
                verdict = "the data looks like the pretraining data: top features kept"
            else:
                verdict = "the data looks unlike the pretraining data: earlier-layer features transfer better"
            metric = fit.info["cv_metric"].replace("_", " ")
            reason += f"; measured by cross-validated {metric} ({scores}): {verdict}, at {backbone.input_size}px"
        final = Choice("features", 0, reason)
        val_feats, _, _ = self._features(extractor, backbone, val, tap, flip=False)  # cached: no second pass
        val_metrics = classification_metrics(val.labels, self._proba_from_features(val_feats), self.classes_)
        extra = {
            "classifier": fit.info,
            "engine": self._frozen(self.net_).note,
            "tap": _tap_name(tap),
            "input_size": backbone.input_size,
            "taps_tried": tried,
            "val": val_metrics,
        }
        # measured above; with few examples, now use them all
        if refit_with_validation(refit_on_val, train.labels, self.tuning_["refit_below"]):
            both = train.concat(val)
            feats, labels, groups = self._features(extractor, backbone, both, tap, flip=self.augment)
            write_linear(final_linear(self.net_.head), self._linear(feats, labels, groups))
            extra["refit_on_train_and_val"] = True
        return final, extra

    def _linear(self, feats: np.ndarray, labels: np.ndarray, groups: np.ndarray) -> LinearFit:
        """The cross-validated linear classifier, as this estimator's parameters and tuning say."""
        how = {"model": self.linear_model, "seed": self.seed, "c_grid": self.tuning_["c_grid"]}
        return fit_linear_classifier(feats, labels, len(self.classes_), groups=groups, **how)

    def _candidate_sizes(self, backbone: ImageBackbone) -> list[int]:
        if self.input_size == "auto":
            native = backbone.input_size
            # FixRes (Touvron et al. 2019): random-resized-crop training shows objects larger than a
            # centre crop does, so the best test side is ~1.15-1.3x the training side. Small-input
            # backbones only, where the extra pixels are cheap.
            return [native, _multiple_of_8(native * 1.25)] if native < 128 else [native]
        return [backbone.input_size if self.input_size == "native" else int(self.input_size)]

    def _redecode(self, backbone: ImageBackbone, *stores: ImageStore) -> tuple[ImageStore, ...]:
        return tuple(
            self._decode(s.sources, s.labels, backbone, f"Reading images at {backbone.input_size}px") for s in stores
        )

    def _candidate_taps(self, backbone: ImageBackbone) -> list[int | None]:
        if self.tap == "final":
            return [None]
        if isinstance(self.tap, int) and not isinstance(self.tap, bool):
            return [self.tap]
        stages = backbone.stage_names()
        if self.tap == "auto" and len(stages) >= 3 and hasattr(backbone.network, "forward_intermediates"):
            return [None, len(stages) - 2]  # the top, and the stage before it
        return [None]

    def _features(
        self, extractor: FeatureExtractor, backbone: ImageBackbone, store: ImageStore, tap: int | None, *, flip: bool
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Features of each image (and of its mirror image), from the on-disk cache when there."""
        net = self._assemble(backbone, extractor, tap)
        description = {
            "backbone": backbone.source,
            "weights": weights_fingerprint(backbone.network),
            "tap": tap,
            "data_config": backbone.data_config,
            "bf16": self.bf16_,
        }
        views = [False, True] if flip else [False]
        parts = []
        for mirrored in views:
            cache = FeatureCache({**description, "mirrored": mirrored})
            parts.append(
                cache.get_or_compute(
                    store.hashes, lambda idx, m=mirrored: self._embed_pixels(net, store.pixels[idx], mirrored=m)
                )
            )
        n = len(store)
        groups = np.tile(np.arange(n), len(views))
        return np.concatenate(parts), np.tile(store.labels, len(views)), groups

    def _fit_network(
        self,
        backbone: ImageBackbone,
        train: ImageStore,
        val: ImageStore,
        choice: Choice,
        work: Path,
        resume: bool,
        *,
        warm: bool = False,
    ) -> dict[str, Any]:
        if not warm:
            self.net_ = self._assemble(backbone, FeatureExtractor(backbone.network, None), None)
            self.tap_ = None
        blocks = later_blocks(backbone.network, choice.unfreeze) if choice.strategy == "finetune" else []
        default_epochs, default_head_epochs, min_steps = DEFAULT_PLANS["finetune" if blocks else "head"]
        epochs = self.epochs or default_epochs
        head_epochs = self.head_epochs or (default_head_epochs if self.epochs is None else max(1, epochs // 3))
        head_epochs = epochs if not blocks else min(epochs - 1, head_epochs)
        plan = TrainPlan(
            blocks=blocks,
            epochs=epochs,
            head_epochs=head_epochs,
            lr=self.lr,
            backbone_lr_ratio=self.backbone_lr_ratio,
            batch_size=self.batch_size,
            bf16=self.bf16_,
            seed=self.seed,
        )
        size, crop = backbone.input_size, backbone.input_size / backbone.resize_size
        train_set = ArrayImageDataset(train.pixels, train.labels, size, train=self.augment, crop_pct=crop)
        if self.epochs is None:  # epochs the user counted are passes over their images
            train_set = repeat_to_steps(train_set, self.batch_size, min_steps)
        val_set = ArrayImageDataset(val.pixels, val.labels, size, train=False, crop_pct=crop)
        history = train_network(
            self.net_, train_set, val_set, plan, work_dir=work, resume=resume, progress=self.progress
        )
        val_metrics = classification_metrics(val.labels, self._proba_prepared(val.pixels), self.classes_)
        return {
            "unfreeze": choice.unfreeze,
            "epochs_run": len(history["epochs"]),
            "history": history,
            "val": val_metrics,
        }

    # --- persistence (see wukong.artifact) -----------------------------------------------------

    def _config_extra(self) -> dict[str, Any]:
        return {
            "backbone": {
                "name": self.backbone_name_,
                "source": self.backbone_.source,
                "data_config": self.backbone_.data_config,
            },
            "tap": self.tap_,
        }

    @classmethod
    def _from_config(
        cls, config: dict[str, Any], backbone: nn.Module | None = None, head: nn.Module | None = None
    ) -> ImageClassifier:
        params = cls._saved_params(config, "backbone", "head")
        model = cls(backbone=backbone, head=head or config["head"]["kind"], **params)
        info = config["backbone"]
        if backbone is not None:
            model.backbone_ = load_image_backbone(backbone, data_config=info["data_config"])
        else:
            model.backbone_ = rebuild_backbone(info["source"], info["data_config"])
        model.backbone_name_ = info["name"]
        model.classes_ = list(config["classes"])
        model.tap_ = config["tap"]
        stages = len(model.backbone_.stage_names())
        if model.tap_ is not None and not (isinstance(model.tap_, int) and 0 <= model.tap_ < max(stages, 1)):
            raise ParameterError(f"tap {model.tap_!r} must be null or a stage index below {stages}")
        model.bf16_ = model._bf16_for(model.backbone_)
        model.strategy_, model.strategy_reason_ = config["strategy"], config["strategy_reason"]
        model.head_spec_ = config["head"]
        head_module = head if head is not None else head_from_spec(config["head"])
        cfg = model.backbone_.data_config
        extractor = FeatureExtractor(model.backbone_.network, model.tap_)
        model.net_ = TransferNet(extractor, head_module, cfg["mean"], cfg["std"]).to(memory_format=torch.channels_last)
        return model

    # --- building blocks ---------------------------------------------------------------------

    def _bf16_for(self, backbone: ImageBackbone) -> bool:
        """``bf16`` as given, or (``None``) whether bf16 autocast runs this network measurably faster."""
        if self.bf16 is not None:
            return bool(self.bf16)
        network = backbone.network.eval()
        device = next(network.parameters()).device
        generator = torch.Generator().manual_seed(0)
        size = backbone.input_size
        batch = torch.randn(16, 3, size, size, generator=generator).to(device, memory_format=torch.channels_last)
        key = {"image_backbone": backbone.name, "weights": weights_fingerprint(network), "size": size}
        return bf16_measured_faster(lambda: network(batch), device, key)

    def _assemble(self, backbone: ImageBackbone, extractor: FeatureExtractor, tap: int | None) -> TransferNet:
        num_features = probe_features(extractor, backbone.input_size)
        head, self.head_spec_ = build_head(self.head, num_features, len(self.classes_))
        cfg = backbone.data_config
        return TransferNet(extractor, head, cfg["mean"], cfg["std"]).to(memory_format=torch.channels_last).eval()

    def _decode(
        self, paths: Sequence[Path], labels: Sequence[int] | None, backbone: ImageBackbone, desc: str
    ) -> ImageStore:
        interpolation = str(backbone.data_config.get("interpolation", "bicubic"))
        return decode_images(
            paths, backbone.resize_size, labels=labels, interpolation=interpolation, progress=self.progress, desc=desc
        )

    def _eval_loader(self, pixels: np.ndarray) -> DataLoader:
        backbone = self.backbone_
        crop = backbone.input_size / backbone.resize_size
        dataset = ArrayImageDataset(pixels, np.zeros(len(pixels)), backbone.input_size, train=False, crop_pct=crop)
        return DataLoader(dataset, batch_size=128, shuffle=False)

    def _frozen(self, net: TransferNet) -> FrozenPass:
        """The engine that runs ``net`` up to its features (see ``wukong.engine``), one per network state."""
        key = {
            "weights": weights_fingerprint(net.features.network),
            "tap": net.features.tap,
            "mean": net.mean.flatten().tolist(),
            "std": net.std.flatten().tolist(),
            "torch": torch.__version__,
        }
        size = self.backbone_.input_size
        passes = self.__dict__.setdefault("_frozen_passes", {})
        name = f"{namespace_key(key)}@{size}:{self.engine}"
        if name not in passes:
            net.to(default_device()).eval()
            passes[name] = frozen_pass(Embedding(net), size, key, engine=self.engine, bf16=self.bf16_)
        return passes[name]

    def _embed_pixels(self, net: TransferNet, pixels: np.ndarray, *, mirrored: bool = False) -> np.ndarray:
        run = self._frozen(net)
        out = []
        for images, _ in self._eval_loader(pixels):
            batch = images.numpy()
            out.append(run(batch[..., ::-1] if mirrored else batch))
        return np.concatenate(out) if out else np.empty((0, 0), np.float32)

    def _proba_prepared(self, pixels: np.ndarray) -> np.ndarray:
        if not len(pixels):
            return np.empty((0, len(self.classes_)), np.float32)
        return self._proba_from_features(self._embed_pixels(self.net_, pixels))

    def _proba_from_features(self, features_np: np.ndarray) -> np.ndarray:
        features = torch.from_numpy(np.ascontiguousarray(features_np, dtype=np.float32))
        head = self.net_.head.eval()
        with torch.inference_mode():
            logits = head(features.to(next(head.parameters()).device)).float()
        return torch.softmax(logits, dim=1).cpu().numpy()

    # --- prediction ------------------------------------------------------------------------------

    def decode_for_prediction(self, inputs: Any) -> ImageStore:
        """Decode images (files, folders, PIL images, arrays, encoded bytes) for prediction; unusable
        ones end up in ``skipped``."""
        self._check_fitted()
        paths = list_images(image_items(inputs))
        if not paths:
            raise DataError(f"{inputs}: no image files found")
        return self._decode(paths, None, self.backbone_, "Reading images")

    def _read_unlabelled(self, inputs: Any) -> tuple[list[str], np.ndarray, list[tuple[str, str]]]:
        store = self.decode_for_prediction(inputs)
        return store.paths, store.pixels, [(s.path, s.reason) for s in store.skipped]

    def _source(self, data: Any, labels: Sequence[Any] | None, classes: Sequence[str] | None = None) -> ImageSource:
        return labelled_images(data, labels, classes)

    def _labelled(self, data: Any, labels: Sequence[Any] | None) -> tuple[np.ndarray, np.ndarray, list[dict]]:
        source = labelled_images(data, labels, classes=self.classes_)
        store = self._decode(source.paths, source.labels, self.backbone_, "Reading images")
        return store.pixels, store.labels, [s.to_dict() for s in source.skipped + store.skipped]


def _multiple_of_8(side: float) -> int:
    return int(round(side / 8) * 8)


def _tap_name(tap: int | None) -> str:
    return "final" if tap is None else f"stage{tap}"


def repeat_to_steps(dataset: Dataset, batch_size: int, min_steps: int) -> Dataset:
    """``dataset`` repeated (whole copies) until it fills at least ``min_steps`` batches.

    Each copy draws its own random augmentation, so the repeats are different views, as they would
    be over more epochs, without an epoch's fixed costs (validation, checkpoints) for each.

    Example:
        >>> len(repeat_to_steps(list(range(36)), 64, 20))
        1296
        >>> len(repeat_to_steps(list(range(5000)), 64, 20))
        5000
    """
    size = len(dataset)  # type: ignore[arg-type]
    copies = -(-min_steps * batch_size // size) if size else 1
    return ConcatDataset([dataset] * copies) if copies > 1 else dataset
