"""The image adapter: what ``ImageClassifier`` needs that is particular to images.

Read labelled and unlabelled images at the backbone's size (decoded once, by ``wukong.data``),
assemble the ``TransferNet`` (normalisation inside, channels-last), the training datasets
(augmented on the fly), and the frozen passes that embed pixels (``wukong.engine``, cached by the
network's weights) with their features cached on disk by content.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from wukong.backbones.vision import ImageBackbone, with_input_size
from wukong.data.augment import ArrayImageDataset
from wukong.data.decode import BadImage, ImageStore, conflicting_labels, decode_images
from wukong.data.images import image_items, item_name, labelled_images, list_images
from wukong.data.known import remember_decodable
from wukong.data.labelled import Labelled
from wukong.data.streamed import StreamedPixels, read_if_known, scan_images, should_stream
from wukong.engine import FrozenPass, frozen_pass
from wukong.errors import DataError, ParameterError
from wukong.features_cache import FeatureCache, namespace_key
from wukong.heads import build_head
from wukong.network import (
    PIXELS,
    Embedding,
    FeatureExtractor,
    Tap,
    TransferNet,
    pixel_side,
    probe_features,
    probe_widths,
    tap_parts,
    weights_fingerprint,
)
from wukong.progress import status, track
from wukong.runtime import bf16_measured_faster, default_device
from wukong.strategies.finetune import repeat_to_steps
from wukong.training.plan import loader_workers

# Frozen passes run in batches of about this many input pixels (32 images at 224px, 128 at 64px
# and below): on a CPU larger batches are no faster, and the engine's working memory grows with them.
EVAL_PIXELS = 32 * 224 * 224


def eval_batch(size: int) -> int:
    """Images per batch of a frozen pass at ``size`` pixels a side (16 to 128)."""
    return max(16, min(128, EVAL_PIXELS // (size * size)))


def decode(
    paths: Sequence[Any], labels: Sequence[int] | None, backbone: ImageBackbone, *, progress: bool, desc: str
) -> ImageStore:
    """Images decoded at the backbone's resize side, with its interpolation; streamed
    (``wukong.data.streamed``) where too many to hold decoded."""
    size, interpolation = decoding(backbone)
    read = scan_images if should_stream(paths, size) else decode_images
    return read(paths, size, labels=labels, interpolation=interpolation, progress=progress, desc=desc)


def decoding(backbone: ImageBackbone) -> tuple[int, str]:
    """The side images are decoded at for this backbone, and the interpolation of their resize."""
    return backbone.resize_size, str(backbone.data_config.get("interpolation", "bicubic"))


def decode_labelled(
    paths: Sequence[Any], labels: Sequence[Any], backbone: ImageBackbone, *, progress: bool, role: str, lazy: bool
) -> ImageStore:
    """``decode`` for labelled images, whose content hashes are recorded as decoding without a
    problem (``wukong.data.known``). ``lazy``: where every one is recorded already, nothing is
    decoded now (``read_if_known``): a fit whose features are all in the cache decodes none.
    Images too many to hold decoded are streamed anyway, and not recorded."""
    desc = f"Reading {role} images"
    size, interpolation = decoding(backbone)
    if should_stream(paths, size):
        return decode(paths, labels, backbone, progress=progress, desc=desc)
    known = read_if_known(paths, size, labels=labels, interpolation=interpolation) if lazy else None
    if known is not None:
        return known
    store = decode(paths, labels, backbone, progress=progress, desc=desc)
    remember_decodable(store.hashes, size, interpolation)
    return store


def read_labelled(
    data: Any,
    labels: Sequence[Any] | None,
    classes: Sequence[str] | None,
    backbone: ImageBackbone,
    *,
    progress: bool,
    role: str,
    lazy: bool = False,
) -> tuple[Labelled, list[dict[str, Any]]]:
    """A class-per-folder tree, an archive of one, a CSV of ``path,label``, or images (paths, PIL
    images, arrays) + labels, decoded once (``lazy``: see ``decode_labelled``). Identical images
    under two classes are left out and reported with the unreadable ones."""
    source = labelled_images(data, labels, classes=classes)
    store = decode_labelled(source.paths, source.labels, backbone, progress=progress, role=role, lazy=lazy)
    skipped = [s.to_dict() for s in source.skipped + store.skipped]
    # (the same image under two label sets: both are kept, as a multi-label set may hold such pairs)
    keep, clashes = conflicting_labels(store, source.classes) if store.labels.ndim == 1 else ([], [])
    if clashes:
        store = store.subset(keep)
        skipped += [s.to_dict() for s in clashes]
    return Labelled(store, store.labels, list(source.classes), source.origin), skipped


def read_unlabelled(inputs: Any, backbone: ImageBackbone, *, progress: bool) -> tuple[ImageStore, list[str]]:
    """Images to predict on (files, folders, PIL images, arrays, encoded bytes), decoded, and the
    name of every one in order (folders expanded); unusable ones end up in the store's ``skipped``."""
    items = image_items(inputs)
    paths = list_images(items)
    if not paths:
        named = ", ".join(item_name(x, i) for i, x in enumerate(items)) or "(no inputs)"
        raise DataError(f"{named}: no image files found")
    store = decode(paths, None, backbone, progress=progress, desc="Reading images")
    return store, [item_name(p, i) for i, p in enumerate(paths)]


def redecode(backbone: ImageBackbone, stores: Sequence[ImageStore], *, progress: bool) -> tuple[ImageStore, ...]:
    """The same images decoded again for another input size."""
    desc = f"Reading images at {backbone.input_size}px"
    return tuple(decode(s.sources, s.labels, backbone, progress=progress, desc=desc) for s in stores)


def bf16_for(backbone: ImageBackbone, bf16: bool | None) -> bool:
    """``bf16`` as given, or (``None``) whether bf16 autocast runs this network measurably faster."""
    if bf16 is not None:
        return bool(bf16)
    network = backbone.network.eval()
    device = next(network.parameters()).device
    generator = torch.Generator().manual_seed(0)
    size = backbone.input_size
    batch = torch.randn(16, 3, size, size, generator=generator).to(device, memory_format=torch.channels_last)
    key = {"image_backbone": backbone.name, "weights": weights_fingerprint(network), "size": size}
    return bf16_measured_faster(lambda: network(batch), device, key)


def network(backbone: ImageBackbone, tap: Tap, head: nn.Module) -> TransferNet:
    """The transferred network: normalisation + the backbone read at ``tap`` + ``head``."""
    cfg = backbone.data_config
    extractor = FeatureExtractor(backbone.network, tap)
    return TransferNet(extractor, head, cfg["mean"], cfg["std"]).to(memory_format=torch.channels_last).eval()


def assemble(
    backbone: ImageBackbone, tap: Tap, head: str | nn.Module, num_classes: int
) -> tuple[TransferNet, dict[str, Any]]:
    """A new network with a new head (and the head's JSON spec) on the backbone read at ``tap``."""
    width = probe_features(FeatureExtractor(backbone.network, tap), backbone.input_size)
    module, spec = build_head(head, width, num_classes)
    return network(backbone, tap, module), spec


def unreadable_in_training(history: dict[str, Any], sets: tuple[ImageStore, ImageStore]) -> list[dict[str, Any]]:
    """The skip report's entries for streamed images that training found unusable (and left out)."""
    found = history.get("unreadable", {})
    entries = []
    for store, stage in zip(sets, ("train", "val"), strict=True):
        for index in found.get(stage, []):
            try:
                store.pixels.decode(index)
                reason = "could not be read during training: left out (readable again now)"
            except BadImage as exc:
                reason = f"usable when first read, not during training ({exc}): left out"
            entries.append({"path": store.paths[index], "reason": reason})
    return entries


def without_unreadable(history: dict[str, Any], sets: tuple[ImageStore, ImageStore]) -> tuple[ImageStore, ImageStore]:
    """The training and validation images less those training found unusable."""
    found = history.get("unreadable", {})
    out = []
    for store, stage in zip(sets, ("train", "val"), strict=True):
        gone = set(found.get(stage, []))
        out.append(store.subset([i for i in range(len(store)) if i not in gone]) if gone else store)
    return out[0], out[1]


def is_streamed(store: ImageStore) -> bool:
    """Whether the images are read from their files as used (``wukong.data.streamed``)."""
    return isinstance(store.pixels, StreamedPixels)


def training_sets(
    train: ImageStore, val: ImageStore, backbone: ImageBackbone, *, augment: bool, batch_size: int, min_steps: int
) -> tuple[Dataset, Dataset]:
    """Datasets that crop (and augment, for training) the decoded images; a small training set is
    repeated to make ``min_steps`` batches an epoch (0: plain passes)."""
    size, crop = backbone.input_size, backbone.input_size / backbone.resize_size
    train_set = ArrayImageDataset(train.pixels, train.labels, size, train=augment, crop_pct=crop)
    if min_steps:
        train_set = repeat_to_steps(train_set, batch_size, min_steps)
    return train_set, ArrayImageDataset(val.pixels, val.labels, size, train=False, crop_pct=crop)


class FrozenPasses:
    """Embeds pixels with a network's frozen part on the chosen engine (one engine per network state,
    kept while this object lives), and caches features of labelled images on disk by content."""

    def __init__(self, engine: str, bf16: bool, *, progress: bool = False) -> None:
        self.engine = engine
        self.bf16 = bf16
        self.progress = progress
        self._passes: dict[str, FrozenPass] = {}

    def of(self, net: TransferNet, size: int) -> FrozenPass:
        key = {
            "weights": weights_fingerprint(net.features.network),
            "tap": net.features.tap,
            "mean": net.mean.flatten().tolist(),
            "std": net.std.flatten().tolist(),
            "torch": torch.__version__,
        }
        name = f"{namespace_key(key)}@{size}:{self.engine}"
        if name not in self._passes:
            net.to(default_device()).eval()
            with status("Preparing the inference engine (exported once per network)", enabled=self.progress):
                self._passes[name] = frozen_pass(Embedding(net), size, key, engine=self.engine, bf16=self.bf16)
        return self._passes[name]

    def embed(
        self, net: TransferNet, backbone: ImageBackbone, pixels: np.ndarray, *, mirrored: bool = False
    ) -> np.ndarray:
        """Features of decoded images (centre-cropped to the input size; ``mirrored``: flipped)."""
        run = self.of(net, backbone.input_size)
        batches, total = _uint8_batches(pixels, backbone)
        out = []
        for batch in track(
            batches, total=total, desc="Extracting features", enabled=self.progress and total > 1, unit="batches"
        ):
            out.append(run(batch[..., ::-1] if mirrored else batch))
        return np.concatenate(out) if out else np.empty((0, 0), np.float32)

    def cached(
        self, net: TransferNet, backbone: ImageBackbone, store: ImageStore, *, flip: bool
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(features, labels, groups) of each image, and of its mirror image with ``flip`` (the same
        group), from the on-disk cache when there. Stages of a network that has several are read
        from the pass over all of them (``every_stage``), the one ``features`` searches with: one
        cache serves the search, the kept tap's scores of known inputs, a later fit that keeps the
        search's choices (``chosen_params``) and the audit."""
        tap = net.features.tap
        every = every_stage(backbone, tap_parts(tap))
        if every is not None and tap != every:
            return TapReader(self, backbone, [tap])(tap, store, flip=flip)
        description = {
            "backbone": backbone.source,
            "weights": weights_fingerprint(backbone.network),
            "tap": net.features.tap,
            "data_config": backbone.data_config,
            "bf16": self.bf16,
            "engine": self.of(net, backbone.input_size).numerics,
        }
        views = [False, True] if flip else [False]
        parts = []
        for mirrored in views:
            cache = FeatureCache({**description, "mirrored": mirrored})
            parts.append(
                cache.get_or_compute(
                    store.hashes,
                    lambda idx, m=mirrored: self.embed(net, backbone, store.pixels.take(idx, axis=0), mirrored=m),
                )
            )
        groups = np.tile(np.arange(len(store)), len(views))
        return np.concatenate(parts), np.concatenate([store.labels] * len(views)), groups


def _uint8_batches(pixels: Any, backbone: ImageBackbone) -> tuple[Iterator[np.ndarray], int]:
    """The centre crops of decoded images as uint8 (N, 3, size, size) batches, and how many batches.

    Images held decoded at a side the crop needs no resize from are sliced in place (a view per
    batch, one copy into the engine's layout); streamed ones are decoded by loader workers, and an
    image unusable since it was listed raises the error naming it."""
    size, batch = backbone.input_size, eval_batch(backbone.input_size)
    crop = size / backbone.resize_size
    total = -(-len(pixels) // batch)
    if isinstance(pixels, np.ndarray) and round(pixels.shape[1] * crop) == size:
        top = int(round((pixels.shape[1] - size) / 2.0))  # where torchvision's centre crop starts
        window = pixels[:, top : top + size, top : top + size]
        return (
            np.ascontiguousarray(window[i : i + batch].transpose(0, 3, 1, 2)) for i in range(0, len(pixels), batch)
        ), total

    def loaded() -> Iterator[np.ndarray]:
        dataset = ArrayImageDataset(pixels, np.zeros(len(pixels)), size, train=False, crop_pct=crop)
        for images, labels, *index in DataLoader(dataset, batch_size=batch, num_workers=loader_workers(dataset, None)):
            if index and bool((labels < 0).any()):  # streamed, and a file unusable since it was listed
                pixels.checked(int(index[0][labels < 0][0]))  # raises the error naming it
            yield images.numpy()

    return loaded(), total


def candidate_sizes(backbone: ImageBackbone, input_size: str | int) -> list[int]:
    """Input sides ``features`` compares (the native one first)."""
    if input_size == "auto":
        native = backbone.input_size
        # FixRes (Touvron et al. 2019): random-resized-crop training shows objects larger than a
        # centre crop does, so the best test side is ~1.15-1.3x the training side. Small-input
        # backbones only, where the extra pixels are cheap.
        return [native, int(round(native * 1.25 / 8) * 8)] if native < 128 else [native]
    return [backbone.input_size if input_size == "native" else int(input_size)]


# The no-transfer baseline's sides: raw pixels average-pooled to 16 x 16 and 32 x 32 (a linear model
# on them is what a user without a pretrained network would fit first).
PIXEL_SIDES = (16, 32)


def candidate_views(
    backbone: ImageBackbone, tap: Tap | str, input_size: str | int
) -> list[tuple[ImageBackbone, list[Tap]]]:
    """What ``features`` compares, as (the backbone with its preprocessing, the taps read through it):
    every tap at the first candidate size (the native one, unless another is asked for), raw pixels
    among them (through the same centre crop as the network's, so that any of them can be blended:
    ``strategies.features.blend_members``), and the top at the other sizes (FixRes concerns the top)."""
    taps = candidate_taps(backbone, tap)
    views = []
    for i, size in enumerate(candidate_sizes(backbone, input_size)):
        chosen = taps if i == 0 else [t for t in taps if t is None]
        if chosen:
            views.append((with_input_size(backbone, size), chosen))
    return views


def candidate_taps(backbone: ImageBackbone, tap: Tap | str) -> list[Tap]:
    """Where ``features`` may read the network (``wukong.network.Tap``), the default (its top) first.

    ``tap="auto"``: the top, every stage, the stage before the top with the top, all of them
    together, and raw pixels: whether transfer helps at all is measured too.
    """
    if tap == "final":
        return [None]
    if tap != "auto":
        return [tap]
    taps: list[Tap] = [None]
    stages = len(backbone.stage_names())
    if stages >= 2 and hasattr(backbone.network, "forward_intermediates"):
        taps += [*range(stages - 1, -1, -1), [stages - 2, None], [*range(stages), None]]
    return taps + [f"{PIXELS}{side}" for side in PIXEL_SIDES]


def tap_name(tap: Tap) -> str:
    """``final``, ``stage3``, ``stage3+final``, ``pixels16``."""
    if isinstance(tap, list):
        return "+".join(tap_name(t) for t in tap)
    if isinstance(tap, str):
        return tap
    return "final" if tap is None else f"stage{tap}"


def check_tap(tap: Any, stages: int) -> None:
    """A saved tap must be one ``FeatureExtractor`` reads (a one-line error otherwise)."""
    parts = tap_parts(tap) or [tap]
    ok = all(
        t is None
        or (isinstance(t, str) and pixel_side(t) is not None)
        or (isinstance(t, int) and not isinstance(t, bool) and 0 <= t < max(stages, 1))
        for t in parts
    )
    if not ok:
        raise ParameterError(
            f"tap {tap!r} must be null, a stage index below {stages}, 'pixels<side>', or a list of those"
        )


def every_stage(backbone: ImageBackbone, parts: Sequence[Tap]) -> list[Tap] | None:
    """The parts of the network that ``tap="auto"`` reads in one pass (the top, then each stage from
    the last), in that order, where ``parts`` (some of a tap's) are among them; ``None`` for a
    network with no stages to read, for no parts, and for parts that are not all stages."""
    deep = [t for t in candidate_taps(backbone, "auto") if not isinstance(t, list) and pixel_side(t) is None]
    return deep if len(deep) > 1 and parts and all(part in deep for part in parts) else None


class TapReader:
    """Features of a store at any of ``taps`` into one backbone, from one (cached) forward pass that
    reads them all; raw-pixel taps are read on their own (a pooling, not a pass), and a list may
    hold both (a blend's tap)."""

    def __init__(self, passes: FrozenPasses, backbone: ImageBackbone, taps: Sequence[Tap]) -> None:
        self.passes, self.backbone = passes, backbone
        deep: list[int | None] = []  # every stage read, alone or in a concatenation, once
        for part in (part for t in taps for part in tap_parts(t)):
            if pixel_side(part) is None and part not in deep:
                deep.append(part)
        deep = every_stage(backbone, deep) or deep  # the pass whose features are cached, where it reads them
        self.together = network(backbone, deep if len(deep) > 1 else (deep or [None])[0], nn.Identity())
        widths = probe_widths(backbone.network, deep, backbone.input_size)
        ends = np.cumsum([0, *widths])
        self.columns = {tap_name(t): np.arange(ends[i], ends[i + 1]) for i, t in enumerate(deep)}

    def __call__(self, tap: Tap, store: ImageStore, *, flip: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(features, labels, groups) as ``FrozenPasses.cached`` gives them, for ``tap``."""
        parts, reads = tap_parts(tap), {}
        for part in parts:  # the network's pass (every stage at once, key None), and each raw-pixel pooling
            key = None if pixel_side(part) is None else tap_name(part)
            if key not in reads:
                net = self.together if key is None else network(self.backbone, part, nn.Identity())
                reads[key] = self.passes.cached(net, self.backbone, store, flip=flip)
        blocks = [
            reads[None][0][:, self.columns[tap_name(t)]] if pixel_side(t) is None else reads[tap_name(t)][0]
            for t in parts
        ]
        _, labels, groups = next(iter(reads.values()))
        return (blocks[0] if len(blocks) == 1 else np.concatenate(blocks, axis=1)), labels, groups

    def width(self, part: Tap) -> int:
        """How many features one part of a tap gives (a stage, the top, raw pixels at a side)."""
        if pixel_side(part) is None:
            return len(self.columns[tap_name(part)])
        return probe_features(FeatureExtractor(self.backbone.network, part), self.backbone.input_size)
