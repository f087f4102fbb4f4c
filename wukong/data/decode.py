"""Decoding: every image file (or in-memory image) decoded once, checked and resized into an
in-memory ``ImageStore`` (uint8, square, the backbone's resize size).

Unusable images are skipped with the reason (``BadImage``'s message): corrupt, truncated, empty,
too large, decompression bombs. JPEGs are decoded at the smallest scale that keeps the size asked
for (``Image.draft``); one that scale cannot shrink is decoded by libjpeg-turbo through
``torchvision.io`` straight into the resize (the same pixels as Pillow's decode, in about half the
time, with no Pillow image between).
"""

from __future__ import annotations

import hashlib
import io
import itertools
import os
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from wukong.data.images import image_array_problem, is_in_memory, item_name
from wukong.data.labelled import Skipped
from wukong.data.resize import TORCH_INTERPOLATION, resize_rgb, resize_square
from wukong.progress import track

try:  # deprecated in torchvision 0.29 for TorchCodec's; where it is gone, Pillow decodes every JPEG
    from torchvision.io import ImageReadMode, decode_jpeg
except ImportError:  # pragma: no cover - a torchvision without it
    decode_jpeg = None

READ_CHUNK = 16  # inputs per task of the reading threads (``mapped_in_threads``)
# PIL's own default (about 89 megapixels); larger images are refused, not decoded.
MAX_PIXELS = 89_478_485
# Bytes read from one image file at most: far above any photo (a 100-megapixel TIFF is ~300 MB);
# a larger file is skipped with its size rather than read into memory whole.
MAX_IMAGE_BYTES = 512 * 1024**2


class BadImage(ValueError):
    """An image file that cannot be used; the message is the reason shown to the user."""


def in_memory_rgb(item: Image.Image | np.ndarray) -> tuple[Image.Image, bytes]:
    """An in-memory image as RGB, with the bytes that identify its content (for the feature cache)."""
    if isinstance(item, np.ndarray):
        problem = image_array_problem(item)
        if problem:
            raise BadImage(problem)
        item = Image.fromarray(np.ascontiguousarray(item[..., 0] if item.ndim == 3 and item.shape[2] == 1 else item))
    if item.width * item.height > MAX_PIXELS:
        raise BadImage(f"refused: {item.width}x{item.height} pixels is over the {MAX_PIXELS:,}-pixel limit")
    image = _to_rgb(item)
    return image, f"{image.size}".encode() + image.tobytes()


def read_image_bytes(path: Path, limit: int = MAX_IMAGE_BYTES) -> bytes:
    """The bytes of an image file, at most ``limit`` of them; ``BadImage`` says why a file cannot be read."""
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size > limit:
                raise BadImage(f"file of {size / 1e6:,.0f} MB: over the {limit / 1e6:,.0f} MB limit for one image")
            data = fh.read(limit + 1)
    except OSError as exc:
        raise BadImage(f"cannot read file ({exc.strerror or exc})") from None
    if len(data) > limit:  # grew while being read
        raise BadImage(f"over the {limit / 1e6:,.0f} MB limit for one image")
    return data


def load_image(data: bytes, *, min_size: int | None = None) -> Image.Image:
    """Decode image bytes into an RGB image, upright, 8 bits per channel.

    EXIF rotation is applied; grayscale, palette, RGBA (composited on white), CMYK and 16-bit
    images are converted. Raises ``BadImage`` with the reason for anything unusable.
    ``min_size`` lets JPEG decoding skip detail finer than needed (both sides stay >= it).
    """
    if not data:
        raise BadImage("empty file (0 bytes)")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = _header(data, min_size)[0]
            image.load()
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise BadImage(f"refused as a possible decompression bomb ({exc})") from exc
        except UnidentifiedImageError as exc:
            raise BadImage("not a readable image (unknown or corrupt format)") from exc
        except (OSError, SyntaxError, ValueError) as exc:
            raise BadImage(f"corrupt or truncated image ({exc})") from exc
    try:
        image = ImageOps.exif_transpose(image)
    except Exception:  # a broken EXIF block must not cost the image itself
        pass
    return _to_rgb(image)


def _header(data: bytes, min_size: int | None) -> tuple[Image.Image, tuple[int, int], str]:
    """The image opened, its header read and no pixel decoded, with its stored size and mode; refused
    (``BadImage``) over the pixel limit; a JPEG set to decode at the smallest scale that keeps both
    sides >= ``min_size`` (``Image.draft``). Call it where decompression-bomb warnings are errors."""
    image = Image.open(io.BytesIO(data))
    stored, mode = image.size, image.mode
    if stored[0] * stored[1] > MAX_PIXELS:
        raise BadImage(
            f"refused: {stored[0]}x{stored[1]} pixels is over the "
            f"{MAX_PIXELS:,}-pixel limit (possible decompression bomb)"
        )
    if min_size and image.format == "JPEG":
        image.draft("RGB", (min_size, min_size))
    return image, stored, mode


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        array = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if array.max(initial=0) > 255 else 255.0
        gray = np.clip(array / peak * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(gray).convert("RGB")
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if image.mode != "RGB":
        return image.convert("RGB")
    return image


def open_image(item: Any, *, min_size: int | None = None) -> tuple[Image.Image, bytes]:
    """One input as an upright RGB image, with the bytes that identify its content: a file path,
    encoded bytes, a PIL image or an array. ``min_size``: as in ``load_image``. ``BadImage`` says why
    an input cannot be used."""
    return _opened(item, _encoded(item), min_size)


def _opened(item: Any, data: bytes | None, min_size: int | None) -> tuple[Image.Image, bytes]:
    """``open_image``, with the input's encoded bytes (``_encoded``) already read."""
    return in_memory_rgb(item) if data is None else (load_image(data, min_size=min_size), data)


def _encoded(item: Any) -> bytes | None:
    """The encoded bytes of a file path or of bytes given; ``None`` for a PIL image or an array."""
    if isinstance(item, bytes):
        return item
    return None if is_in_memory(item) else read_image_bytes(Path(item))


@dataclass
class ImageStore:
    """Decoded images, all ``size x size`` uint8 RGB, with the content hash of each source file."""

    pixels: np.ndarray  # (N, size, size, 3) uint8, or ``StreamedPixels`` indexed the same way
    hashes: list[str]
    labels: np.ndarray  # (N,) int64; -1 when unlabelled
    paths: list[str]  # how each image is named (its path, or image[i] for one given in memory)
    skipped: list[Skipped]
    sources: list[Any] = field(default_factory=list)  # what each was decoded from: a path or an image
    positions: list[int] = field(default_factory=list)  # where each stood among the inputs decoded

    def __len__(self) -> int:
        return len(self.paths)

    def subset(self, indices: Sequence[int]) -> ImageStore:
        """The images at ``indices`` (the skipped ones stay with the full store)."""
        idx = list(indices)
        return ImageStore(
            self.pixels.take(idx, axis=0),  # a streamed store stays streamed (``wukong.data.streamed``)
            [self.hashes[i] for i in idx],
            self.labels[idx],
            [self.paths[i] for i in idx],
            [],
            [self.sources[i] for i in idx],
            [self.positions[i] for i in idx] if self.positions else [],
        )

    def concat(self, other: ImageStore) -> ImageStore:
        streamed = [p for p in (self.pixels, other.pixels) if hasattr(p, "sources")]  # ``StreamedPixels``
        if streamed:  # read from the sources when asked for, as the streamed part is
            joined = type(streamed[0])(self.sources + other.sources, streamed[0].size, streamed[0].interpolation)
        else:
            joined = np.concatenate([self.pixels, other.pixels])
        return ImageStore(
            joined,
            self.hashes + other.hashes,
            np.concatenate([self.labels, other.labels]),
            self.paths + other.paths,
            [],
            self.sources + other.sources,
        )  # positions refer to two different input lists: not kept


def content_hash(data: bytes) -> str:
    """What names an image's content in the feature cache and finds identical files."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def decode_one(item: Any, size: int, interpolation: str = "bicubic") -> np.ndarray:
    """One input decoded, upright, resized and centre-cropped: uint8 (size, size, 3); ``BadImage`` if unusable."""
    return decode_square(item, size, interpolation)[0]


def decode_square(item: Any, size: int, interpolation: str = "bicubic") -> tuple[np.ndarray, bytes]:
    """``decode_one``'s pixels, and the bytes that identify the input's content (as ``open_image``)."""
    data = _encoded(item)
    if data is not None and interpolation in TORCH_INTERPOLATION:
        rgb = _full_size_jpeg(data, size)
        if rgb is not None:
            return resize_rgb(rgb, size, interpolation), data
    image, data = _opened(item, data, size)
    return resize_square(image, size, interpolation), data


def _full_size_jpeg(data: bytes, min_size: int) -> torch.Tensor | None:
    """A JPEG's pixels as a uint8 (H, W, 3) tensor, decoded by libjpeg-turbo through torchvision, where
    that gives what ``load_image`` would: an RGB or grey JPEG, upright as stored, within the pixel
    limit, that draft mode would not shrink. None for any other input, and for what libjpeg refuses
    (``load_image`` then decodes it, or says why it cannot)."""
    if decode_jpeg is None or not data.startswith(b"\xff\xd8"):
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            header, stored, mode = _header(data, min_size)
            if (
                header.format != "JPEG"
                or mode not in ("RGB", "L")
                or header.getexif().get(ExifTags.Base.Orientation, 1) != 1
                or header.size != stored  # decoding at a smaller scale is cheaper still: Pillow's draft mode
            ):
                return None
        except Exception:  # noqa: BLE001 - whatever is wrong, load_image finds it and names it
            return None
    try:
        planes = decode_jpeg(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB)
    except RuntimeError:
        return None
    return planes.permute(1, 2, 0).contiguous()


def decode_images(
    paths: Sequence[Any],
    size: int,
    *,
    labels: Sequence[int] | None = None,
    interpolation: str = "bicubic",
    workers: int = 2,
    progress: bool = False,
    desc: str = "Reading images",
) -> ImageStore:
    """Decode, check and resize every file (or in-memory image) once. Unusable ones go to ``skipped``
    with a reason."""

    def work(item: Any) -> tuple[np.ndarray, str]:
        pixels, data = decode_square(item, size, interpolation)
        return pixels, content_hash(data)

    pixels = np.empty((len(paths), size, size, 3), dtype=np.uint8)
    hashes: list[str] = []

    def keep(row: int, result: tuple[np.ndarray, str]) -> None:
        pixels[row], digest = result  # written in place: no second copy of the images
        hashes.append(digest)

    kept, skipped = read_each(paths, work, keep, workers=workers, progress=progress, desc=desc)
    return store_of(pixels[: len(kept)], paths, kept, hashes, labels, skipped)


def read_each(
    paths: Sequence[Any],
    work: Callable[[Any], Any],
    keep: Callable[[int, Any], None],
    *,
    workers: int,
    progress: bool,
    desc: str,
) -> tuple[list[int], list[Skipped]]:
    """``work`` on every input, in threads; ``keep(row, result)`` for each usable one, in order (row:
    its place among the kept). Returns the kept inputs' positions and the unusable ones, each with
    the reason ``work`` raised (``BadImage``)."""

    def attempt(numbered: tuple[int, Any]) -> Any:
        index, item = numbered
        try:
            return work(item)
        except BadImage as exc:
            return Skipped(item_name(item, index), str(exc))

    kept: list[int] = []
    skipped: list[Skipped] = []
    results = mapped_in_threads(attempt, list(enumerate(paths)), workers)
    for i, result in enumerate(track(results, total=len(paths), desc=desc, enabled=progress, unit="images")):
        if isinstance(result, Skipped):
            skipped.append(result)
        else:
            keep(len(kept), result)
            kept.append(i)
    return kept, skipped


def mapped_in_threads(work: Callable[[Any], Any], items: Sequence[Any], workers: int) -> Iterator[Any]:
    """``work`` of each item, in order, from ``workers`` threads taking ``READ_CHUNK`` items a task
    (a thread pool ignores ``chunksize``: a task per image cost more than decoding a small one)."""
    chunks = [items[i : i + READ_CHUNK] for i in range(0, len(items), READ_CHUNK)]
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        yield from itertools.chain.from_iterable(pool.map(lambda chunk: [work(item) for item in chunk], chunks))


def store_of(
    pixels: Any,
    paths: Sequence[Any],
    kept: list[int],
    hashes: list[str],
    labels: Sequence[Any] | None,
    skipped: list[Skipped],
) -> ImageStore:
    """The store of the ``kept`` inputs (positions in ``paths``) and their ``pixels``."""
    label_list = list(labels) if labels is not None else [-1] * len(paths)
    return ImageStore(
        pixels=pixels,
        hashes=hashes,
        labels=np.asarray([label_list[i] for i in kept], dtype=np.int64),
        paths=[item_name(paths[i], i) for i in kept],
        skipped=skipped,
        sources=[paths[i] for i in kept],
        positions=kept,
    )


def conflicting_labels(store: ImageStore, classes: Sequence[str]) -> tuple[list[int], list[Skipped]]:
    """Identical files under different classes contradict each other: the indices to keep (all the
    others) and a report of the left-out copies, each naming where its twin is."""
    seen: dict[str, dict[int, str]] = {}
    for path, digest, label in zip(store.paths, store.hashes, store.labels.tolist(), strict=True):
        seen.setdefault(digest, {}).setdefault(label, path)
    clashes = {digest: where for digest, where in seen.items() if len(where) > 1}
    keep, skipped = [], []
    for i, (path, digest, label) in enumerate(zip(store.paths, store.hashes, store.labels.tolist(), strict=True)):
        if digest not in clashes:
            keep.append(i)
            continue
        others = ", ".join(f"'{classes[c]}' ({p})" for c, p in clashes[digest].items() if c != label)
        skipped.append(
            Skipped(path, f"the same image is under class '{classes[label]}' and {others}: contradictory, left out")
        )
    return keep, skipped
