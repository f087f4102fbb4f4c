"""Image sources: a folder with one sub-folder per class, a CSV of ``path,label``, or images in memory.

What is read here is listed and checked, not decoded (``wukong.data.decode`` decodes). Files that
cannot be used are skipped and reported with a reason, never silently dropped and never fatal on
their own.
"""

from __future__ import annotations

import csv
import errno
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from wukong.data.archive import extract_cached, is_archive
from wukong.data.inputs import as_items, as_labelled, is_table
from wukong.data.label_sets import indicator, read_label_cells
from wukong.data.labelled import Skipped
from wukong.data.sources import Sources
from wukong.errors import DataError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"})


@dataclass
class ImageSource:
    """Labelled image files: ``paths[i]`` has class ``classes[labels[i]]``."""

    paths: list[Path]
    labels: list[Any]  # class ids, or indicator rows (several labels per image)
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
    pairs, skipped, hint, several = _listing(Path(path))
    labels, classes = encode_labels([label for _, label in pairs], classes, str(path), hint, several=several)
    return ImageSource(paths=[p for p, _ in pairs], labels=labels, classes=classes, skipped=skipped, origin=str(path))


def read_image_sources(paths: Sequence[str | Path], classes: Sequence[str] | None = None) -> ImageSource:
    """Several labelled image sources as one (``wukong.data.sources``): an image listed twice is used
    once, and under two labels is a ``DataError`` naming both sources."""
    pairs: list[tuple[Path, str]] = []
    skipped: list[Skipped] = []
    first: dict[Path, tuple[Path, str]] = {}  # each file's first source and label
    several = False
    for path in map(Path, paths):
        found, notes, _, many = _listing(path)
        if not found:  # a file of suggestions not labelled yet (a folder without images stops in _listing)
            blank = sum(s.reason == EMPTY_CELL for s in notes)
            raise DataError(f"{path}: no labelled image ({blank} row(s) with an empty path or label); label some")
        several |= many
        skipped += notes
        for file, label in found:
            key = file.resolve()
            if key not in first:
                first[key] = (path, label)
                pairs.append((file, label))
                continue
            where, given = first[key]
            if given != label:
                raise DataError(f"{file}: labelled '{given}' in {where} and '{label}' in {path}; keep one label")
            skipped.append(Skipped(str(file), f"listed again in {path}: used once", kept=True))
    origin = " + ".join(str(p) for p in paths)
    labels, classes = encode_labels([label for _, label in pairs], classes, origin, "in all of them", several=several)
    return ImageSource([p for p, _ in pairs], labels, classes, skipped, origin)


def _listing(path: Path) -> tuple[list[tuple[Path, str]], list[Skipped], str, bool]:
    """The labelled files of one source, what was skipped, how its labels are given (for messages),
    and whether a label cell may hold several labels (a CSV's may; a folder name is one label)."""
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    if is_archive(path):
        path = extract_cached(path)
    if path.is_dir():
        pairs, skipped = _scan_class_folders(path)
        return pairs, skipped, "one sub-folder of images per class", False
    if path.suffix.lower() == ".csv":
        pairs, skipped = _read_csv(path)
        empty = sum(s.reason == EMPTY_CELL for s in skipped)
        hint = "from the 'label' column" + (f" ({empty} row(s) with an empty path or label left out)" if empty else "")
        return pairs, skipped, hint, True
    raise DataError(
        f"{path}: not an image folder or CSV; give a folder with one sub-folder per class, "
        "or a CSV with 'path,label' columns"
    )


def encode_labels(
    cells: Sequence[Any],
    classes: Sequence[str] | None,
    origin: str,
    hint: str = "a label per image",
    *,
    several: bool = True,
) -> tuple[list[Any], list[str]]:
    """Label cells as class ids, or (``several`` allowed and several labels in a cell:
    ``wukong.data.label_sets``) as indicator rows; and the classes (``classes``, the training
    classes, when given)."""
    names, multi = read_label_cells(cells) if several else ([str(c) for c in cells], False)
    found = sorted({n for row in names for n in row} if multi else set(names))
    if classes is None:
        if len(found) < 2:
            raise DataError(f"{origin}: found {len(found)} class(es) {found}; need at least two, {hint}")
        classes = found
    unknown = sorted(set(found) - set(classes))
    if unknown:
        raise DataError(f"{origin}: classes {unknown} are not among the training classes {list(classes)}")
    if multi:
        return list(indicator(names, classes, origin)), list(classes)
    index = {name: i for i, name in enumerate(classes)}
    return [index[name] for name in names], list(classes)


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


def listed_images(path: Path) -> list[Path]:
    """Every image file that ``path`` names, labelled or not: a folder's (recursively), an image
    CSV's ``path`` column on every row (relative paths from the CSV's folder), or the file itself."""
    if path.suffix.lower() != ".csv" or not path.is_file():
        return list_images([path])
    pairs, skipped = _read_csv(path, blank_labels=True)
    return [file for file, _ in pairs]


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


EMPTY_CELL = "empty path or label"


def _read_csv(path: Path, *, blank_labels: bool = False) -> tuple[list[tuple[Path, str]], list[Skipped]]:
    """``(file, label)`` rows of an image CSV, and the rows skipped: those with an empty path, and
    (unless ``blank_labels``) an empty label."""
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
        if not row["path"] or not (row["label"] or blank_labels):
            skipped.append(Skipped(f"{path}:{line}", EMPTY_CELL))
            continue
        file = Path(row["path"])
        if not file.is_absolute():
            file = path.parent / file
        pairs.append((file, row["label"]))
    return pairs, skipped


def labelled_images(data: Any, labels: Sequence[str] | None, classes: Sequence[str] | None = None) -> ImageSource:
    """Labelled images: a folder/CSV/archive path, or inputs (paths, PIL images, uint8 arrays, in a list,
    an array or a table with an image and a label column) with their labels."""
    if isinstance(data, (str, Path, Sources)):
        if labels is not None:
            raise ValueError("labels are read from the folder or CSV; pass labels only with a list of paths")
        if isinstance(data, Sources):
            data.modality()  # sources of two kinds: one error naming both
            return read_image_sources(data.paths, classes=classes)
        return read_image_source(data, classes=classes)
    items, label_list = as_labelled(image_items(data) if not is_table(data) else data, labels, "image")
    for i, item in enumerate(items):  # a wrong kind of input is a mistake in the calling code: stop at once
        check_image_input(item, f"image[{i}]")
    paths = [x if is_in_memory(x) else Path(x) for x in items]
    labels, classes = encode_labels(label_list, classes, "the given images")
    return ImageSource(paths, labels, classes, [], "the given images")
