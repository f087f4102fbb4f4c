"""Images too many to hold decoded: listed and checked once, decoded again whenever they are used.

A decoded 224-pixel training image takes 196 KB: 50,000 of them would not fit in most machines'
memory. Above a size (``$WUKONG_DECODED_LIMIT``, default ``DEFAULT_DECODED_LIMIT``) an ``ImageStore``
holds ``StreamedPixels`` instead of its array: indexed the same way, each image read from its file
and decoded when asked for (by a ``DataLoader``'s workers when training or extracting features).
Below it the decoded array is kept, which is faster when the same images are used many times.

The first pass (``scan_images``) reads every file once: its content hash (the feature cache's key
and duplicate finder) and a check that it decodes (JPEGs at an eighth of their size, which reads the
whole stream). A file that fails later, changed or removed since, is skipped and reported by training
(``wukong.training``); a frozen pass stops with a one-line error naming it.

Example:
    >>> from pathlib import Path
    >>> files = sorted(Path("../shared/data/cat_dog/train/cat").glob("*.jpg"))[:2]  # doctest: +SKIP
    >>> store = scan_images(files, 64)                                             # doctest: +SKIP
    >>> store.pixels.shape, store.pixels[0].shape                                  # doctest: +SKIP
    ((2, 64, 64, 3), (64, 64, 3))
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from wukong.cache import parse_size
from wukong.data.decode import (
    BadImage,
    ImageStore,
    content_hash,
    decode_one,
    load_image,
    mapped_in_threads,
    read_each,
    read_image_bytes,
    store_of,
)
from wukong.data.images import is_in_memory
from wukong.data.known import all_decodable
from wukong.errors import DataError

DEFAULT_DECODED_LIMIT = 2 * 10**9  # bytes of decoded pixels held in memory at most


def decoded_limit() -> int:
    """Bytes of decoded images kept in memory at most: ``$WUKONG_DECODED_LIMIT`` or the default."""
    return parse_size(os.environ.get("WUKONG_DECODED_LIMIT", str(DEFAULT_DECODED_LIMIT)))


def should_stream(items: Sequence[Any], size: int) -> bool:
    """Whether images of these files would take more than the limit decoded (images given in memory
    are held already: never streamed)."""
    return len(items) * size * size * 3 > decoded_limit() and not any(is_in_memory(i) for i in items)


class StreamedPixels:
    """The (N, size, size, 3) uint8 images of ``sources``, decoded when indexed: ``pixels[i]`` is one
    image, ``pixels[indices]`` an array of them, ``take`` a view (nothing decoded)."""

    dtype = np.dtype(np.uint8)
    ndim = 4

    def __init__(self, sources: Sequence[Any], size: int, interpolation: str = "bicubic") -> None:
        self.sources = list(sources)
        self.size = size
        self.interpolation = interpolation

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self.sources), self.size, self.size, 3)

    def __len__(self) -> int:
        return len(self.sources)

    def decode(self, index: int) -> np.ndarray:
        """Image ``index``; ``BadImage`` if its file can no longer be used."""
        return decode_one(self.sources[index], self.size, self.interpolation)

    def __getitem__(self, index: Any) -> np.ndarray:
        if isinstance(index, int | np.integer):
            return self.decode(int(index))
        chosen = range(len(self))[index] if isinstance(index, slice) else [int(i) for i in np.asarray(index)]
        out = np.empty((len(chosen), self.size, self.size, 3), np.uint8)
        for row, pixels in enumerate(mapped_in_threads(self.checked, list(chosen), workers=2)):
            out[row] = pixels
        return out

    def checked(self, index: int) -> np.ndarray:
        """Image ``index``; a ``DataError`` naming its file if it can no longer be used."""
        try:
            return self.decode(index)
        except BadImage as exc:
            raise DataError(unusable_now(self.sources[index], str(exc))) from None

    def take(self, indices: Sequence[int], axis: int = 0) -> StreamedPixels:
        """The images at ``indices``, still streamed (``axis`` 0 only, as ``ndarray.take``)."""
        return StreamedPixels([self.sources[int(i)] for i in indices], self.size, self.interpolation)


def unusable_now(source: Any, reason: str) -> str:
    """The message for a file that was usable when listed and is not now."""
    return f"{source}: usable when first read, not now ({reason}); changed or removed during the run?"


def scan_images(
    paths: Sequence[Any],
    size: int,
    *,
    labels: Sequence[Any] | None = None,
    interpolation: str = "bicubic",
    workers: int = 2,
    progress: bool = False,
    desc: str = "Reading images",
) -> ImageStore:
    """Every file read and checked once, as ``decode_images`` does, but kept as streamed pixels."""

    def work(item: Any) -> str:
        data = read_image_bytes(item)
        load_image(data, min_size=1)  # every byte decoded; a JPEG at 1/8 scale
        return content_hash(data)

    hashes: list[str] = []
    kept, skipped = read_each(
        paths, work, lambda _, digest: hashes.append(digest), workers=workers, progress=progress, desc=desc
    )
    pixels = StreamedPixels([paths[i] for i in kept], size, interpolation)
    return store_of(pixels, paths, kept, hashes, labels, skipped)


def read_if_known(
    paths: Sequence[Any], size: int, *, labels: Sequence[Any] | None = None, interpolation: str = "bicubic"
) -> ImageStore | None:
    """Every file's bytes hashed, none decoded, the images kept streamed: where each content hash is
    recorded as decoding without a problem (``wukong.data.known``). ``None`` where one is not, or
    cannot be read, or an input is held in memory: those are decoded and checked as usual. In one
    thread: hashing small files in several took three times as long (they wait on each other)."""
    if not paths or any(is_in_memory(p) for p in paths):
        return None
    try:
        hashes = [content_hash(read_image_bytes(p)) for p in paths]
    except BadImage:
        return None
    if not all_decodable(hashes, size, interpolation):
        return None
    kept = list(range(len(paths)))
    return store_of(StreamedPixels(list(paths), size, interpolation), paths, kept, hashes, labels, [])
