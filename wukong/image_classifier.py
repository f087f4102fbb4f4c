"""``ImageClassifier``: transfer a pretrained image network to your labelled images."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import KW_ONLY, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from wukong.backbones.vision import load_image_backbone, rebuild_backbone
from wukong.data.decode import ImageStore
from wukong.data.images import ImageSource, labelled_images
from wukong.engine import check_engine
from wukong.errors import DataError, ParameterError
from wukong.estimator import Labelled, TransferClassifier
from wukong.heads import final_linear, head_from_spec, is_linear
from wukong.modalities import image
from wukong.network import Tap, TransferNet, later_blocks, pixel_side, tap_parts
from wukong.progress import status
from wukong.strategies.auto import Choice
from wukong.strategies.features import (
    Candidate,
    LinearFit,
    Search,
    blend_fits,
    blend_members,
    refit_with_validation,
    search_features,
)
from wukong.strategies.finetune import augmented_schedule, head_then_unfreeze
from wukong.training.plan import micro_batches


@dataclass(eq=False, repr=False)
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
        tap: where ``features`` reads the network: ``"auto"`` (every candidate compared by
            cross-validation: the top, each stage, concatenations, and raw pixels as the
            no-transfer baseline), ``"final"``, a stage index, a list of those (concatenated) or
            ``"pixels16"`` (no transfer: a linear model on the pixels pooled to 16 x 16).
        linear_model: the classifier ``features`` fits: ``"logistic"`` (softmax regression,
            calibrated probabilities) or ``"svm"`` (linear SVM; scores are softmaxed margins).
        input_size: ``"auto"`` (``features`` on a small-input backbone cross-validates its native
            size against 1.25x that), ``"native"``, or a side in pixels.
        unfreeze: blocks to fine-tune: a count of later stages, or ``"all"`` (default: chosen).
        augment: ``features``: with ``"auto"``, each image's mirror image joins the training data
            where cross-validation finds it helps (never for raw pixels); ``True``: it always joins,
            nothing compared (what ``chosen_params`` writes once that was measured); ``head`` /
            ``finetune``: random crops and flips while training (``"auto"`` or ``True``). ``False``:
            the images as given.
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
            starting again from the pretrained backbone; under ``features``, its linear classifier
            starts from the fitted one (the same minimum, in fewer steps; the classes may change).
        tuning: thresholds and grid the strategies decide with, e.g. ``{"small": 30}`` (see
            ``wukong.tuning.DEFAULTS``); ``None``: the measured defaults.
        class_weight, reject_unknown, unknown_label, unknown_keep: imbalanced classes and "none of
            these" (see ``TransferClassifier``).
        accelerator, devices, num_nodes: where training runs, as Lightning's ``Trainer`` takes them
            (``"auto"``: the GPU when there is one); more than one device or machine trains with
            DDP, a process per device (README, "Many images, GPUs and several machines").
            ``num_workers``: loader processes decoding images (``None``: one per core but one,
            where images are streamed from their files).

    Example:
        >>> from wukong import ImageClassifier
        >>> clf = ImageClassifier().fit("../shared/data/cat_dog/train")        # doctest: +SKIP
        >>> clf.predict(["../shared/data/cat_dog/test/cat/cat.983.jpg"])       # doctest: +SKIP
        ['cat']
    """

    modality = "image"

    backbone: str | Path | nn.Module | None = None
    _: KW_ONLY
    arch: str | None = None
    tap: str | int | list[int | None] = "auto"
    input_size: str | int = "auto"
    augment: bool | str = "auto"
    engine: str = "auto"
    warm_start: bool = False

    # --- fit -----------------------------------------------------------------------------------

    def _start_fit(self) -> None:
        check_engine(self.engine)
        if not (isinstance(self.augment, bool) or self.augment == "auto"):
            raise ParameterError(f"augment={self.augment!r}: give 'auto', True or False")
        self._warm = self.warm_start and getattr(self, "net_", None) is not None
        self._linear_start = None
        if self._warm and self.strategy_ == self.strategy == "features":  # the fitted classifier starts the new one
            layer = final_linear(self.net_.head)
            self._linear_start = (layer.weight.detach().cpu().numpy().copy(), layer.bias.detach().cpu().numpy().copy())
        with status("Loading the backbone (and measuring whether bf16 is faster here)", enabled=self.progress):
            if not self._warm:
                self.backbone_ = load_image_backbone(self.backbone, arch=self.arch)
            self.backbone_name_ = self.backbone_.name
            if self.tap not in ("auto", "final"):  # a tap asked for: checked before any image is read
                image.check_tap(self.tap, self._stages())
            if not (self._warm and self.bf16 is None):  # warm: measured for this network already
                self.bf16_ = image.bf16_for(self.backbone_, self.bf16)

    def _read_labelled(
        self, data: Any, labels: Sequence[Any] | None, classes: Sequence[str] | None, role: str
    ) -> tuple[Labelled, list[dict[str, Any]]]:
        if classes is None and self._warm and self._linear_start is None:  # a network trained on: its classes stay
            classes = self.classes_
        # features read where nothing is searched (``chosen_params``): most likely all in the cache
        lazy = self.strategy == "features" and self.tap != "auto" and self.input_size != "auto"
        return image.read_labelled(data, labels, classes, self.backbone_, progress=self.progress, role=role, lazy=lazy)

    def _stages(self) -> int:
        return len(self.backbone_.stage_names())

    def _starts_retraining(self, params: dict[str, Any]) -> bool:
        """``features`` again: the linear classifier fitted again starts from this one (``warm_start``)."""
        return self.strategy_ == params["strategy"] == "features"

    def _shared_when_retrained(self) -> dict[int, Any]:
        """The frozen backbone (a ``features`` fit reads it, and does not change it)."""
        return {id(self.backbone_.network): self.backbone_.network}

    def _read_pool(self, inputs: Any) -> tuple[ImageStore, list[dict[str, Any]]]:
        store, _ = image.read_unlabelled(inputs, self.backbone_, progress=self.progress)
        if not len(store):
            first = store.skipped[0]
            count = len(store.skipped)
            raise DataError(f"unlabeled: none of the {count} images is readable ({first.path}: {first.reason})")
        return store, [{**s.to_dict(), "reason": f"unlabelled: {s.reason}"} for s in store.skipped]

    def _strategy(
        self, choice: Choice, train: Labelled, val: Labelled, *, work: Path, resume: bool, carved: bool
    ) -> tuple[Choice, dict[str, Any]]:
        self._backbone_tuned = False
        if choice.strategy == "features":
            return self._fit_features(train.examples, val.examples, choice, refit_on_val=carved)
        if self.strategy == "auto" and choice.strategy == "finetune" and is_linear(self.head) and not self._warm:
            return self._features_or_finetune(train, val, choice, work, resume)
        self._backbone_tuned = choice.strategy == "finetune"
        return choice, self._fit_network(train.examples, val.examples, choice, work, resume)

    def _run_strategy(
        self, choice: Choice, train: Labelled, val: Labelled, *, work: Path, resume: bool, carved: bool
    ) -> tuple[Choice, dict[str, Any]]:
        choice, extra = self._strategy(choice, train, val, work=work, resume=resume, carved=carved)
        extra["images_streamed"] = image.is_streamed(train.examples)  # read from their files as used
        return choice, extra

    # What ``features`` leaves behind, kept while ``finetune`` is measured against it.
    _FITTED = ("net_", "head_spec_", "backbone_", "tap_", "temperature_", "calibration_", "thresholds_")

    def _features_or_finetune(
        self, train: Labelled, val: Labelled, choice: Choice, work: Path, resume: bool
    ) -> tuple[Choice, dict[str, Any]]:
        """``auto`` beyond small data: the best ``features`` candidate (seconds, on cached features)
        and then the fine-tuned network, both measured on the same held-out validation set; the more
        accurate is kept (the fine-tuned one on a tie, as the size rule says). So data unlike the
        pretraining set, where the pretrained features or even raw pixels may do better, is
        measured rather than assumed."""
        native = self.backbone_
        linear_choice, linear = self._fit_features(train.examples, val.examples, choice, refit_on_val=False)
        kept = {name: getattr(self, name) for name in self._FITTED}
        linear_semi, self._semi = self._semi, None  # the fine-tuned network does not use the unlabelled images
        self.backbone_ = copy.deepcopy(native)  # fine-tuning changes the weights the features were read with
        self._backbone_tuned = True
        tuned = self._fit_network(train.examples, val.examples, choice, work, resume)
        scores = {"features": linear["val"]["accuracy"], "finetune": tuned["val"]["accuracy"]}
        measured = (
            f"measured on the {len(val)} validation examples: fine-tuned {scores['finetune']:.3f}, the best "
            f"linear classifier on frozen features ({linear['tap']}@{linear['input_size']}px) {scores['features']:.3f}"
        )
        compared = {"compared_on_validation": scores}
        if scores["features"] > scores["finetune"]:
            self._semi = linear_semi
            for name, value in kept.items():
                setattr(self, name, value)
            self._backbone_tuned = False
            reason = f"{linear_choice.reason}; {measured}: the linear classifier kept"
            return Choice("features", 0, reason), {**linear, **compared}
        return Choice(choice.strategy, choice.unfreeze, f"{choice.reason}; {measured}: the fine-tuned network kept"), {
            **tuned,
            **compared,
            "features_tried": {"tap": linear["tap"], "taps_tried": linear["taps_tried"]},
        }

    def _fit_features(
        self, train: ImageStore, val: ImageStore, choice: Choice, *, refit_on_val: bool
    ) -> tuple[Choice, dict[str, Any]]:
        """Strategy ``features`` over every tap and input size worth trying (``strategies.features``),
        each size's taps read in one pass, and raw pixels (no transfer) among them.

        With few examples, where the validation images join the training ones for the final fit
        (``refit_with_validation``), the candidates are compared by cross-validation on all of them
        (one image more per class is much at 5 per class), and the validation metrics are those of
        the kept candidate fitted on the training part alone."""
        native = self.backbone_
        refit = refit_with_validation(refit_on_val, train.labels, self.tuning_["refit_below"])
        candidates = []
        for sized, taps in image.candidate_views(native, self.tap, self.input_size):
            # The network is convolutional with global pooling: any input size works. Large photos
            # may gain from a slightly larger input than the native one; tiny images do not.
            same = sized.data_config == native.data_config
            stores = (train, val) if same else image.redecode(sized, (train, val), progress=self.progress)
            searched = stores[0].concat(stores[1]) if refit else stores[0]
            reader = image.TapReader(self._passes, sized, taps)
            for tap in taps:
                net, spec = image.assemble(sized, tap, self.head, len(self.classes_))
                candidates.append(
                    Candidate(
                        f"{image.tap_name(tap)}@{sized.input_size}px",
                        lambda r=reader, t=tap, st=searched: r(t, st, flip=self._mirrored(t)),
                        payload=(net, spec, sized, stores, searched, reader),
                        why=_why(tap),
                    )
                )
        search = search_features(candidates, self._linear)
        self.net_, self.head_spec_, self.backbone_, (train, val), searched, reader = search.best.payload
        self.tap_ = self.net_.features.tap
        blended = self._blend(search, candidates, train if refit else None)
        mirrors = None
        if blended is not None:  # its members' classifiers, each fitted as the search did
            self.net_, self.head_spec_, fit, measured, said = blended
            self.tap_ = self.net_.features.tap
            search.explanation += f"; {said}"
        else:
            fit, mirrors = self._mirrors_or_not(search.fit, reader, searched)
            flip = self._mirrored(self.tap_) if mirrors is None else mirrors["used"]
            train_features = reader(self.tap_, train, flip=flip) if refit else None
            measured = self._linear(*train_features) if refit else fit
        if self._pool is not None:  # the unlabelled images, read at the size and the tap kept
            same = self.backbone_.data_config == native.data_config
            store = self._pool if same else image.redecode(self.backbone_, (self._pool,), progress=self.progress)[0]
            pool = reader(self.tap_, store, flip=False)[0]
            if refit:  # the classifier measured on the validation images first: the final one's decision is kept
                measured = self._self_trained(measured, *train_features, pool=pool)
            fit = self._self_trained(fit, *reader(self.tap_, searched, flip=flip), pool=pool)
            if not refit:
                measured = fit
        self._write_linear(measured)
        reason = choice.reason + (f"; {search.explanation}" if search.explanation else "")
        if mirrors is not None:
            losses = f"cross-validated loss {mirrors['with']} with them, {mirrors['without']} without"
            reason += f"; trained {'with' if mirrors['used'] else 'without'} mirror images ({losses})"
        val_feats, _, _ = reader(self.tap_, val, flip=False)
        extra = {
            "classifier": fit.info,  # the kept fit: with or without mirror images
            "engine": self._passes.of(reader.together, self.backbone_.input_size).note,
            "tap": image.tap_name(self.tap_),
            "input_size": self.backbone_.input_size,
            "taps_tried": search.tried,
            "mirror_images": mirrors,
            "transfer": pixel_side(self.tap_) is None,
            "val_logits": self._logits_from_features(val_feats),
            "sets": (train, val),  # decoded at the input size chosen
        }
        extra["val"] = self._metrics_from_logits(val.labels, extra["val_logits"], val.paths)
        if refit:  # measured above; with few examples, now use them all
            self._write_linear(fit)
            extra["refit_on_train_and_val"] = True
        return Choice("features", 0, reason), extra

    def _blend(
        self, search: Search, candidates: list[Candidate], train: ImageStore | None
    ) -> tuple[TransferNet, dict[str, Any], LinearFit, LinearFit, str] | None:
        """The kept candidate blended with others read in the same pass (``blend_members``), where
        that pays: (network, head spec, classifier, the one measured on the validation images, what
        to say), or ``None``. ``train``: the training part alone, where the validation images join
        the final fit (its members are then fitted on it too, to be measured on them). Not with
        unlabelled images (self-training takes one classifier), nor with class weights (the blend
        is chosen on the plain log loss)."""
        if self._pool is not None or self.class_weights_ is not None:
            return None
        view, reader = search.best.payload[2], search.best.payload[5]
        same = [i for i, c in enumerate(candidates) if c.payload[2] is view]  # read in the same pass
        found = blend_members([search.fits[i] for i in same], same.index(search.index))
        if found is None:
            return None
        distinct = list(dict.fromkeys(same[m] for m in found.members))  # candidate indices, first seen first
        shares = [distinct.index(same[m]) for m in found.members]
        taps = [candidates[i].payload[0].features.tap for i in distinct]
        union = list({image.tap_name(t): t for tap in taps for t in tap_parts(tap)}.values())  # each part once
        ends = np.cumsum([0, *(reader.width(t) for t in union)])
        span = {image.tap_name(t): np.arange(ends[k], ends[k + 1]) for k, t in enumerate(union)}
        columns = [np.concatenate([span[image.tap_name(t)] for t in tap_parts(tap)]) for tap in taps]
        net, spec = image.assemble(view, union, self.head, len(self.classes_))
        fit = blend_fits([search.fits[i] for i in distinct], shares, columns, int(ends[-1]))
        measured = fit
        if train is not None:
            alone = [self._linear(*reader(tap, train, flip=self._mirrored(tap))) for tap in taps]
            measured = blend_fits(alone, shares, columns, int(ends[-1]))
        names = ", ".join(f"{candidates[i].name} ({shares.count(k)}/{len(shares)})" for k, i in enumerate(distinct))
        said = (
            f"a blend of {names} has out-of-fold log loss {found.loss} against {found.start_loss} for "
            f"{search.best.name} alone, lower by more than its standard error: kept (their calibrated logits averaged)"
        )
        search.tried[f"blend@{view.input_size}px"] = {**fit.info, "features": int(ends[-1]), "members": names}
        return net, spec, fit, measured, said

    def _mirrored(self, tap: Any) -> bool:
        """Whether ``features`` reads ``tap`` with mirror images too (``augment``): not raw pixels, the
        no-transfer baseline, which is modelled on the images as given, as a user's own model would
        be (``benchmarks/auto.py``: on scans of digits, mirror images cost it 2 to 3 points)."""
        return self.augment is not False and pixel_side(tap) is None

    def _mirrors_or_not(
        self, fit: LinearFit, reader: image.TapReader, examples: ImageStore
    ) -> tuple[LinearFit, dict[str, Any] | None]:
        """Whether training on mirror images (``augment``) helps the kept candidate: its classifier
        (``fit``, on ``examples`` and their mirror images) fitted again without them, on the same
        folds of the same original images, each scored on originals only; the lower loss is kept.
        Mirrors help photos and harm scans of writing. ``None`` for the second part where there was
        nothing to compare, or where mirror images were asked for (``augment=True``)."""
        if self.augment is True or not self._mirrored(self.tap_) or fit.info["cv_loss"] is None:
            return fit, None
        plain = self._linear(*reader(self.tap_, examples, flip=False))
        used = fit.info["cv_loss"] <= plain.info["cv_loss"]
        return (fit if used else plain), {"with": fit.info["cv_loss"], "without": plain.info["cv_loss"], "used": used}

    def _fit_network(
        self, train: ImageStore, val: ImageStore, choice: Choice, work: Path, resume: bool
    ) -> dict[str, Any]:
        """Strategies ``head`` and ``finetune`` (``strategies.finetune``) on augmented images."""
        if not self._warm:
            self.net_, self.head_spec_ = image.assemble(self.backbone_, None, self.head, len(self.classes_))
            self.tap_ = None
        else:  # trained on in a copy: another model may share this one's frozen backbone (``retraining``)
            self.backbone_, self.net_ = copy.deepcopy((self.backbone_, self.net_))
        blocks = later_blocks(self.backbone_.network, choice.unfreeze) if choice.strategy == "finetune" else []
        epochs, head_epochs, min_steps = augmented_schedule(bool(blocks), self.epochs, self.head_epochs)
        accumulate = micro_batches(self.batch_size, self.backbone_.input_size)  # bounded memory at large sizes
        plan = self._train_plan(blocks, epochs, head_epochs, batch_size=self.batch_size, accumulate=accumulate)
        sets = image.training_sets(
            train,
            val,
            self.backbone_,
            augment=self.augment is not False,
            batch_size=self.batch_size,
            min_steps=min_steps,
        )
        history = head_then_unfreeze(self.net_, plan, *sets, work_dir=work, resume=resume, progress=self.progress)
        unusable = image.unreadable_in_training(history, (train, val))
        train, val = image.without_unreadable(history, (train, val))  # left out of what follows too
        logits = self._logits_prepared(val.pixels)
        self._calibrate(logits, val.labels, "the validation set")
        return {
            "skipped_in_training": unusable,
            "sets": (train, val),
            "unfreeze": choice.unfreeze,
            "epochs_run": len(history["epochs"]),
            "history": history,
            "val": self._metrics_from_logits(val.labels, logits, val.paths),
        }

    # --- persistence (see wukong.artifact) -----------------------------------------------------

    def _config_extra(self) -> dict[str, Any]:
        return {
            "backbone": {"source": self.backbone_.source, "data_config": self.backbone_.data_config},
            "tap": self.tap_,
        }

    # A raw-pixel model does not use its backbone: its weights are left out of the folder (they are
    # rebuilt from the backbone's source at load, as for every other model).
    _UNUSED = "features.network."

    def _state_to_save(self) -> dict[str, torch.Tensor]:
        state = self.net_.state_dict()
        if pixel_side(self.tap_) is None:
            return state
        return {k: v for k, v in state.items() if not k.startswith(self._UNUSED)}

    def _load_saved_state(self, state: dict[str, torch.Tensor]) -> None:
        if pixel_side(self.tap_) is not None:
            state = {**{k: v for k, v in self.net_.state_dict().items() if k.startswith(self._UNUSED)}, **state}
        super()._load_saved_state(state)
        # measured (or found measured) for these weights: before they were loaded, the rebuilt
        # network's random ones had a new fingerprint at every load, and were timed again each time
        self.bf16_ = image.bf16_for(self.backbone_, self.bf16)

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
        if isinstance(config["params"].get("backbone"), str):  # what chosen_params names
            model.backbone_given_ = config["params"]["backbone"]
        model.tap_ = config["tap"]
        image.check_tap(model.tap_, len(model.backbone_.stage_names()))
        model.net_ = image.network(
            model.backbone_, model.tap_, head if head is not None else head_from_spec(config["head"])
        )
        return model

    @property
    def _passes(self) -> image.FrozenPasses:
        """Frozen passes on the engine asked for now (``engine`` may be set after loading)."""
        passes = self.__dict__.get("_frozen_passes")
        if passes is None or (passes.engine, passes.bf16) != (self.engine, self.bf16_):
            passes = self.__dict__["_frozen_passes"] = image.FrozenPasses(self.engine, self.bf16_)
        passes.progress = self.progress
        return passes

    def _embedded(
        self, data: Any, labels: Sequence[Any] | None, classes: Sequence[str] | None, role: str
    ) -> tuple[Labelled, list[dict[str, Any]], np.ndarray]:
        """A labelled set read as ``fit`` reads it, and the backbone's top features of each image
        (cached on disk by content): what ``wukong.audit`` works on."""
        if getattr(self, "backbone_", None) is None:
            self._start_fit()
        labelled, skipped = self._read_labelled(data, labels, classes, role)
        top = image.network(self.backbone_, None, nn.Identity())
        return labelled, skipped, self._passes.cached(top, self.backbone_, labelled.examples, flip=False)[0]

    # --- prediction ------------------------------------------------------------------------------

    def _features_prepared(self, pixels: np.ndarray) -> np.ndarray:
        if not len(pixels):
            return np.empty((0, 0), np.float32)
        return self._passes.embed(self.net_, self.backbone_, pixels)

    def _features_of(self, examples: ImageStore) -> np.ndarray:
        if self._backbone_tuned:  # features of these weights will not be asked for again: not cached
            return super()._features_of(examples)
        return self._passes.cached(self.net_, self.backbone_, examples, flip=False)[0]  # on disk, by content

    def decode_for_prediction(self, inputs: Any) -> ImageStore:
        """Decode images (files, folders, PIL images, arrays, encoded bytes) for prediction; unusable
        ones end up in ``skipped``."""
        self._check_fitted()
        return image.read_unlabelled(inputs, self.backbone_, progress=self.progress)[0]

    def _read_unlabelled(self, inputs: Any) -> tuple[list[str], np.ndarray, dict[int, str]]:
        names, store, problems = self._unlabelled_store(inputs)
        return names, store.pixels, problems

    def _pool_features(self, inputs: Any) -> tuple[list[str], np.ndarray, dict[int, str]]:
        names, store, problems = self._unlabelled_store(inputs)  # cached by content and the network's weights
        return names, self._passes.cached(self.net_, self.backbone_, store, flip=False)[0], problems

    def _unlabelled_store(self, inputs: Any) -> tuple[list[str], ImageStore, dict[int, str]]:
        store, names = image.read_unlabelled(inputs, self.backbone_, progress=self.progress)
        unusable = sorted(set(range(len(names))) - set(store.positions))  # skipped in input order
        return names, store, {i: s.reason for i, s in zip(unusable, store.skipped, strict=True)}

    def _chosen(self) -> dict[str, Any]:
        """``features``: the features read (``tap``), the input size, and whether mirror images
        were used (``augment`` True or False: not compared again)."""
        if self.strategy_ != "features":
            return {}
        tap = "final" if self.tap_ is None else copy.copy(self.tap_)
        chosen: dict[str, Any] = {"tap": tap, "input_size": self.backbone_.input_size}
        mirrors = self.metrics_.get("mirror_images")
        chosen["augment"] = bool(mirrors["used"]) if mirrors else self.augment is not False
        return chosen

    def _source(self, data: Any, labels: Sequence[Any] | None, classes: Sequence[str] | None = None) -> ImageSource:
        return labelled_images(data, labels, classes)

    def _inputs_of(self, examples: ImageStore) -> tuple[list[str], np.ndarray]:
        return examples.paths, examples.pixels


def _why(tap: Tap) -> str:
    """Why a candidate other than the top features may win (said when it does)."""
    if pixel_side(tap):
        return (
            "transfer does not help on this data: a linear model on the raw pixels is as accurate as any "
            "pretrained features, or more"
        )
    if tap is None:
        return ""
    return "earlier layers hold more general features, which can transfer better to data unlike the pretraining data"
