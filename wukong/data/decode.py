"""Decoding: every image file (or in-memory image) decoded once, checked and resized into an
in-memory ``ImageStore`` (uint8, square, the backbone's resize size).

Unusable images are skipped with the reason (``BadImage``'s message): corrupt, truncated, empty,
too large, decompression bombs. JPEGs are decoded at the smallest scale that keeps the size asked
for (``Image.draft``).
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from wukong.data.images import image_array_problem, is_in_memory, item_name
from wukong.data.labelled import Skipped
from wukong.progress import track

# PIL's own default (about 89 megapixels); larger images are refused, not decoded.
MAX_PIXELS = 89_478_485
# Bytes read from one image file at most: far above any photo (a 100-megapixel TIFF is ~300 MB);
# a larger file is skipped with its size rather than read into memory whole.
MAX_IMAGE_BYTES = 512 * 1024**2

_INTERPOLATION = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}
_TORCH_INTERPOLATION = ("bilinear", "bicubic")  # torchvision's names too


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
            image = Image.open(io.BytesIO(data))
            if image.width * image.height > MAX_PIXELS:
                raise BadImage(
                    f"refused: {image.width}x{image.height} pixels is over the "
                    f"{MAX_PIXELS:,}-pixel limit (possible decompression bomb)"
                )
            if min_size and image.format == "JPEG":
                image.draft("RGB", (min_size, min_size))
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
    if isinstance(item, bytes):
        return load_image(item, min_size=min_size), item
    if is_in_memory(item):
        return in_memory_rgb(item)
    data = read_image_bytes(Path(item))
    return load_image(data, min_size=min_size), data


def resize_square(image: Image.Image, size: int, interpolation: str = "bicubic") -> np.ndarray:
    """Resize the shorter side to ``size`` and centre-crop to ``size x size``: uint8 (H, W, 3).

    Bilinear and bicubic go through torchvision's antialiased uint8 kernel, Pillow's filters in
    vectorised form (the same pixels within two levels of 255 as ``pillow_resize_square``, several
    times faster: the resize, not the JPEG decode, was most of a photo's cost); nearest and Lanczos
    through Pillow.
    """
    if interpolation not in _TORCH_INTERPOLATION:
        return pillow_resize_square(image, size, interpolation)
    import torch
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms.v2 import functional as F

    new_w, new_h, left, top = _square_geometry(image.size, size)
    rgb = np.array(image if image.mode == "RGB" else image.convert("RGB"))  # writable, as torch wants
    out = F.resize(
        torch.from_numpy(rgb).permute(2, 0, 1),
        [new_h, new_w],
        interpolation=InterpolationMode(interpolation),
        antialias=True,
    )
    return out[:, top : top + size, left : left + size].permute(1, 2, 0).contiguous().numpy()


def pillow_resize_square(image: Image.Image, size: int, interpolation: str = "bicubic") -> np.ndarray:
    """``resize_square`` done by Pillow's own resize, then the crop: a writable uint8 (size, size, 3)."""
    new_w, new_h, left, top = _square_geometry(image.size, size)
    resample = _INTERPOLATION.get(interpolation, Image.Resampling.BICUBIC)
    image = image.resize((new_w, new_h), resample=resample, reducing_gap=3.0)
    return np.array(image.crop((left, top, left + size, top + size)), dtype=np.uint8)  # writable copy


def _square_geometry(image_size: tuple[int, int], size: int) -> tuple[int, int, int, int]:
    """(width, height) with the shorter side resized to ``size``, and the (left, top) of the centred square."""
    w, h = image_size
    scale = size / min(w, h)
    new_w, new_h = max(size, round(w * scale)), max(size, round(h * scale))
    return new_w, new_h, (new_w - size) // 2, (new_h - size) // 2


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
    return resize_square(open_image(item, min_size=size)[0], size, interpolation)


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
        image, data = open_image(item, min_size=size)
        return resize_square(image, size, interpolation), content_hash(data)

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
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        results = pool.map(attempt, enumerate(paths), chunksize=64)
        for i, result in enumerate(track(results, total=len(paths), desc=desc, enabled=progress, unit="images")):
            if isinstance(result, Skipped):
                skipped.append(result)
            else:
                keep(len(kept), result)
                kept.append(i)
    return kept, skipped


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
