"""Image sources: a folder with one sub-folder per class, a CSV of ``path,label``, or images in memory.

Every file is decoded once, checked and resized into an in-memory ``ImageStore`` (uint8, square,
the backbone's resize size). Files that cannot be used are skipped and reported with a reason,
never silently dropped and never fatal on their own.
"""

from __future__ import annotations

import csv
import errno
import hashlib
import io
import os
import warnings
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from wukong.data.archive import extract_cached, is_archive
from wukong.data.inputs import as_items, as_labelled, is_table
from wukong.errors import DataError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"})
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


@dataclass(frozen=True)
class Skipped:
    """An input that was not used, and why; with ``kept``, one that was used despite a problem."""

    path: str
    reason: str
    kept: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "reason": self.reason, **({"kept": True} if self.kept else {})}


@dataclass
class ImageSource:
    """Labelled image files: ``paths[i]`` has class ``classes[labels[i]]``."""

    paths: list[Path]
    labels: list[int]
    classes: list[str]
    skipped: list[Skipped] = field(default_factory=list)
    origin: str = ""

    def __len__(self) -> int:
        return len(self.paths)

    def subset(self, indices: Sequence[int]) -> ImageSource:
        return ImageSource(
            [self.paths[i] for i in indices],
            [self.labels[i] for i in indices],
            self.classes,
            [],
            self.origin,
        )


class BadImage(ValueError):
    """An image file that cannot be used; the message is the reason shown to the user."""


def is_image_source(path: Path) -> bool:
    """True when ``path`` looks like image data: a folder of class folders, an archive, a CSV of paths."""
    path = Path(path)
    if path.is_dir() or is_archive(path):
        return True
    if path.suffix.lower() == ".csv" and path.is_file():
        with open(path, newline="", encoding="utf-8", errors="replace") as fh:
            rows = list(csv.reader(fh))[:6]
        values = [row[0] for row in rows[1:] if row]
        return bool(values) and all(Path(v).suffix.lower() in IMAGE_EXTENSIONS for v in values)
    return False


def read_image_source(path: str | Path, classes: Sequence[str] | None = None) -> ImageSource:
    """Read a labelled image source: a class-per-folder tree, a ``.tar.gz`` of one, or a CSV.

    ``classes`` fixes the class order (for validation and test sets, which must use the training
    classes); a class found here but not in ``classes`` is an error.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    if is_archive(path):
        path = extract_cached(path)
    if path.is_dir():
        pairs, skipped = _scan_class_folders(path)
    elif path.suffix.lower() == ".csv":
        pairs, skipped = _read_csv(path)
    else:
        raise DataError(
            f"{path}: not an image folder or CSV; give a folder with one sub-folder per class, "
            "or a CSV with 'path,label' columns"
        )
    found = sorted({label for _, label in pairs})
    if classes is None:
        if len(found) < 2:
            raise DataError(
                f"{path}: found {len(found)} class(es) {found}; need at least two, one sub-folder of images per class"
            )
        classes = found
    else:
        unknown = sorted(set(found) - set(classes))
        if unknown:
            raise DataError(f"{path}: classes {unknown} are not among the training classes {list(classes)}")
    index = {name: i for i, name in enumerate(classes)}
    return ImageSource(
        paths=[p for p, _ in pairs],
        labels=[index[label] for _, label in pairs],
        classes=list(classes),
        skipped=skipped,
        origin=str(path),
    )


def is_in_memory(item: Any) -> bool:
    """A PIL image, a NumPy array or encoded bytes (a JPEG, a PNG...), as opposed to a path."""
    return isinstance(item, Image.Image | np.ndarray | bytes)


def image_items(inputs: Any) -> list[Any]:
    """One image (a path, a PIL image, an HxW[xC] array) or many (a list, an NxHxWxC array, a Series)
    as a list; paths stay as given (``list_images`` expands folders)."""
    if isinstance(inputs, str | Path | bytes) or isinstance(inputs, Image.Image):
        return [inputs]
    if isinstance(inputs, np.ndarray) and inputs.dtype.kind not in "US":
        if inputs.ndim in (2, 3) and (inputs.ndim == 2 or inputs.shape[-1] in (1, 3, 4)):
            return [inputs]  # one image
        if inputs.ndim == 4:
            return list(inputs)
        raise DataError(f"an image array must be HxW, HxWxC or NxHxWxC with C in 1, 3, 4 (got shape {inputs.shape})")
    return as_items(inputs)


def image_array_problem(array: np.ndarray) -> str | None:
    """What is wrong with ``array`` as an image (``None``: a uint8 HxW, HxWx1, HxWx3 or HxWx4 array)."""
    if array.dtype != np.uint8 or not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (1, 3, 4))):
        return f"an image array must be uint8 HxW, HxWx3 or HxWx4 (got {array.dtype}, shape {array.shape})"
    return None


def check_image_input(item: Any, name: str) -> None:
    """``DataError`` naming ``name`` unless ``item`` is a kind of image input: a path, a PIL image,
    encoded bytes, or a well-formed uint8 array."""
    if isinstance(item, np.ndarray):
        problem = image_array_problem(item)
        if problem:
            raise DataError(f"{name}: {problem}; convert with (x * 255).round().astype('uint8') for floats in 0..1")
    elif not (is_in_memory(item) or isinstance(item, str | Path)):
        raise DataError(f"{name}: image inputs are paths, PIL images or uint8 arrays; got a {type(item).__name__}")


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


def item_name(item: Any, index: int) -> str:
    """How an input is named in predictions and reports: its path, or ``image[i]`` for one in memory."""
    return f"image[{index}]" if is_in_memory(item) else str(item)


def list_images(inputs: Iterable[Any]) -> list[Any]:
    """Expand files and folders (recursively) into the image files to predict on, sorted; images in
    memory (PIL, arrays) are kept, in their place."""
    files: list[Any] = []
    for i, item in enumerate(inputs):
        if is_in_memory(item):  # a malformed array is reported with its row, like an unreadable file
            files.append(item)
            continue
        check_image_input(item, f"image[{i}]")
        item = Path(item)
        if item.is_dir():  # broken links are kept: reading them reports why they cannot be used
            files.extend(
                sorted(
                    p
                    for p in item.rglob("*")
                    if (p.is_file() or p.is_symlink()) and p.suffix.lower() in IMAGE_EXTENSIONS
                )
            )
        elif item.is_file():
            files.append(item)
        else:
            raise DataError(f"{item}: no such file or folder")
    return files


def _scan_class_folders(root: Path) -> tuple[list[tuple[Path, str]], list[Skipped]]:
    """Image files per class folder. Stops, naming the folder, on a class folder with no image file
    and on one that links back to the data folder (it would make a class of every image)."""
    pairs: list[tuple[Path, str]] = []
    skipped: list[Skipped] = []
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        raise DataError(
            f"{root}: no class sub-folders; put the images of each class in their own "
            f"sub-folder, e.g. {root}/cat/*.jpg and {root}/dog/*.jpg"
        )
    top = root.resolve()
    for class_dir in class_dirs:
        if class_dir.is_symlink() and top.is_relative_to(class_dir.resolve()):
            raise DataError(f"{class_dir}: a link to the data folder itself (or above it), not a class; remove it")
        found = 0
        for file in _walk_files(class_dir, skipped):
            if file.suffix.lower() in IMAGE_EXTENSIONS:
                pairs.append((file, class_dir.name))
                found += 1
            else:
                skipped.append(Skipped(str(file), f"not an image file (extension '{file.suffix}')"))
        if not found:
            raise DataError(
                f"{class_dir}: class folder with no image file; add images of '{class_dir.name}' or remove it"
            )
    return pairs, skipped


def _walk_files(folder: Path, skipped: list[Skipped]) -> list[Path]:
    """Files under ``folder`` (sub-folders included, linked folders not followed), sorted. Links that
    lead nowhere, or in a circle, are reported in ``skipped`` rather than silently left out."""
    files = []
    for path in sorted(folder.rglob("*")):
        if path.name.startswith("."):
            continue
        if path.is_symlink() and not path.exists():
            try:
                path.stat()
                problem = "broken symbolic link"
            except OSError as exc:
                problem = "symbolic link loop" if exc.errno == errno.ELOOP else "broken symbolic link (target missing)"
            skipped.append(Skipped(str(path), problem))
        elif path.is_file():
            files.append(path)
        elif not path.is_dir():  # reading a pipe would block for ever
            skipped.append(Skipped(str(path), "not a regular file (a pipe, socket or device)"))
    return files


def _read_csv(path: Path) -> tuple[list[tuple[Path, str]], list[Skipped]]:
    from wukong.data.encoding import read_table_text

    decoded = read_table_text(path)
    try:
        reader = csv.DictReader(io.StringIO(decoded.text, newline=""))
        fields = [f.strip().lower() for f in (reader.fieldnames or [])]
        if "path" not in fields or "label" not in fields:
            raise DataError(f"{path}: needs a header with 'path' and 'label' columns, found {fields}")
        rows = list(reader)
    except csv.Error as exc:
        raise DataError(f"{path}: not a readable CSV ({exc}); give 'path,label' rows") from None
    pairs: list[tuple[Path, str]] = []
    skipped = [
        Skipped(f"{path}:{n}", f"not UTF-8: read as {decoded.encoding}", kept=True) for n in decoded.fallback_lines
    ]
    for line, row in enumerate(rows, start=2):
        row = {k.strip().lower(): (v or "").strip() for k, v in row.items() if k}
        if not row["path"] or not row["label"]:
            skipped.append(Skipped(f"{path}:{line}", "empty path or label"))
            continue
        file = Path(row["path"])
        if not file.is_absolute():
            file = path.parent / file
        pairs.append((file, row["label"]))
    return pairs, skipped


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


def resize_square(image: Image.Image, size: int, interpolation: str = "bicubic") -> np.ndarray:
    """Resize the shorter side to ``size`` and centre-crop to ``size x size``: uint8 (H, W, 3)."""
    w, h = image.size
    scale = size / min(w, h)
    new_w, new_h = max(size, round(w * scale)), max(size, round(h * scale))
    resample = _INTERPOLATION.get(interpolation, Image.Resampling.BICUBIC)
    image = image.resize((new_w, new_h), resample=resample, reducing_gap=3.0)
    left, top = (new_w - size) // 2, (new_h - size) // 2
    return np.array(image.crop((left, top, left + size, top + size)), dtype=np.uint8)  # writable copy


@dataclass
class ImageStore:
    """Decoded images, all ``size x size`` uint8 RGB, with the content hash of each source file."""

    pixels: np.ndarray  # (N, size, size, 3) uint8
    hashes: list[str]
    labels: np.ndarray  # (N,) int64; -1 when unlabelled
    paths: list[str]  # how each image is named (its path, or image[i] for one given in memory)
    skipped: list[Skipped]
    sources: list[Any] = field(default_factory=list)  # what each was decoded from: a path or an image

    def __len__(self) -> int:
        return len(self.paths)

    def subset(self, indices: Sequence[int]) -> ImageStore:
        """The images at ``indices`` (the skipped ones stay with the full store)."""
        idx = list(indices)
        return ImageStore(
            self.pixels[idx],
            [self.hashes[i] for i in idx],
            self.labels[idx],
            [self.paths[i] for i in idx],
            [],
            [self.sources[i] for i in idx],
        )

    def concat(self, other: ImageStore) -> ImageStore:
        return ImageStore(
            np.concatenate([self.pixels, other.pixels]),
            self.hashes + other.hashes,
            np.concatenate([self.labels, other.labels]),
            self.paths + other.paths,
            [],
            self.sources + other.sources,
        )


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
    from tqdm.auto import tqdm

    def work(numbered: tuple[int, Any]) -> tuple[np.ndarray, str] | Skipped:
        index, item = numbered
        try:
            if isinstance(item, bytes):
                data, image = item, load_image(item, min_size=size)
            elif is_in_memory(item):
                image, data = in_memory_rgb(item)
            else:
                data = read_image_bytes(Path(item))
                image = load_image(data, min_size=size)
            pixels = resize_square(image, size, interpolation)
        except BadImage as exc:
            return Skipped(item_name(item, index), str(exc))
        return pixels, hashlib.blake2b(data, digest_size=16).hexdigest()

    label_list = list(labels) if labels is not None else [-1] * len(paths)
    pixels = np.empty((len(paths), size, size, 3), dtype=np.uint8)
    kept: list[int] = []
    hashes: list[str] = []
    skipped: list[Skipped] = []
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        results = pool.map(work, enumerate(paths), chunksize=64)
        for i, result in enumerate(tqdm(results, total=len(paths), desc=desc, disable=not progress, unit="img")):
            if isinstance(result, Skipped):
                skipped.append(result)
                continue
            pixels[len(kept)] = result[0]
            hashes.append(result[1])
            kept.append(i)
    return ImageStore(
        pixels=pixels[: len(kept)],
        hashes=hashes,
        labels=np.asarray([label_list[i] for i in kept], dtype=np.int64),
        paths=[item_name(paths[i], i) for i in kept],
        skipped=skipped,
        sources=[paths[i] for i in kept],
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


def labelled_images(data: Any, labels: Sequence[str] | None, classes: Sequence[str] | None = None) -> ImageSource:
    """Labelled images: a folder/CSV/archive path, or inputs (paths, PIL images, uint8 arrays, in a list,
    an array or a table with an image and a label column) with their labels."""
    if isinstance(data, (str, Path)):
        if labels is not None:
            raise ValueError("labels are read from the folder or CSV; pass labels only with a list of paths")
        return read_image_source(data, classes=classes)
    items, label_list = as_labelled(image_items(data) if not is_table(data) else data, labels, "image")
    for i, item in enumerate(items):  # a wrong kind of input is a mistake in the calling code: stop at once
        check_image_input(item, f"image[{i}]")
    paths = [x if is_in_memory(x) else Path(x) for x in items]
    names = [str(label) for label in label_list]
    found = sorted(set(names))
    classes = list(classes) if classes is not None else found
    unknown = sorted(set(found) - set(classes))
    if unknown:
        raise DataError(f"labels {unknown} are not among the training classes {classes}")
    if len(classes) < 2:
        raise DataError(f"need at least two classes, got {classes}")
    index = {c: i for i, c in enumerate(classes)}
    return ImageSource(paths, [index[n] for n in names], classes, [], "the given images")
