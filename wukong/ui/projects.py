"""The projects of ``wukong ui``, on disk: ordinary Wukong data and model folders under the work dir.

A project ``WORKDIR/NAME/`` holds ``project.json`` (its modality), ``data/`` (images: one sub-folder
per class; text: ``data/train.csv`` with ``text,label`` columns), the model folder ``model/`` once
trained, ``job/`` (the training in progress), and the examples waiting for a class that the model
picks from (``pool/`` images, ``pool.txt`` texts; ``wukong suggest``). Everything the page adds is
checked here first: a file that is not a usable image, too large, or a zip entry that points outside
its folder is refused with a one-line reason, and nothing is ever written outside the work dir.
"""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
import uuid
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from wukong.data.images import IMAGE_EXTENSIONS
from wukong.errors import DataError, WukongError

MAX_FILE_BYTES = 50 * 1024 * 1024  # one image, one text table
MAX_ZIP_BYTES = 2 * 1024**3  # one zip, as uploaded
MAX_UNZIPPED_BYTES = 8 * 1024**3  # a zip's contents, in all
MODALITIES = ("image", "text")
TEXT_FILE = "train.csv"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.-]{0,63}$")


def check_name(name: str, what: str) -> str:
    """A project or class name that is also a safe folder name (no separators, no leading dot)."""
    name = name.strip()
    if not _NAME.match(name) or name.endswith("."):
        raise WukongError(
            f"{what} {name!r}: use 1-64 letters, digits, spaces, '.', '_' or '-', starting with a letter or digit"
        )
    return name


@dataclass
class Project:
    """One project folder; every path it hands out lies inside it."""

    root: Path

    @property
    def name(self) -> str:
        return self.root.name

    @property
    def modality(self) -> str:
        return self._meta()["modality"]

    @property
    def data(self) -> Path:
        """What ``wukong train`` is given: the class folders' parent, or the text table."""
        return self.root / "data" / TEXT_FILE if self.modality == "text" else self.root / "data"

    @property
    def model(self) -> Path:
        return self.root / "model"

    # --- classes and their examples -------------------------------------------------------------

    def classes(self) -> dict[str, int]:
        """Every class with its number of examples (a class with none is listed, with 0)."""
        if self.modality == "image":
            folders = sorted(p for p in (self.root / "data").iterdir() if p.is_dir())
            return {p.name: sum(1 for f in p.iterdir() if f.suffix.lower() in IMAGE_EXTENSIONS) for p in folders}
        counts = {name: 0 for name in self._meta().get("classes", [])}
        for _, label in self._rows():
            counts[label] = counts.get(label, 0) + 1
        return dict(sorted(counts.items()))

    def add_class(self, name: str) -> None:
        name = check_name(name, "class")
        if self.modality == "image":
            (self.root / "data" / name).mkdir(exist_ok=True)
        else:
            meta = self._meta()
            meta["classes"] = sorted({*meta.get("classes", []), name})
            self._write_meta(meta)

    def remove_class(self, name: str) -> None:
        name = check_name(name, "class")
        if self.modality == "image":
            shutil.rmtree(self.root / "data" / name, ignore_errors=True)
            return
        meta = self._meta()
        meta["classes"] = [c for c in meta.get("classes", []) if c != name]
        self._write_meta(meta)
        self._write_rows([row for row in self._rows() if row[1] != name])

    def add_image(self, cls: str, filename: str, upload: Path) -> str:
        """Move the uploaded file into the class (checked: an image Pillow decodes); its stored name.
        A refused upload is removed."""
        return self._store_image(lambda: self._class_folder(cls), filename, upload)

    def add_zip(self, cls: str | None, filename: str, upload: Path) -> dict[str, Any]:
        """The images of a zip: into ``cls``, or (``cls=None``) into the classes its folders name.
        A zip with an entry outside its folder is refused whole; other entries that are not images
        are listed as skipped."""
        try:
            archive = zipfile.ZipFile(upload)
        except (zipfile.BadZipFile, OSError) as exc:
            raise DataError(f"{filename}: not a readable zip file ({exc})") from None
        with archive:
            entries = [e for e in archive.infolist() if not e.is_dir()]
            for entry in entries:
                parts = entry.filename.replace("\\", "/").split("/")
                if entry.filename.startswith(("/", "\\")) or ".." in parts or re.match(r"^[A-Za-z]:", entry.filename):
                    raise DataError(
                        f"{filename}: entry {entry.filename!r} points outside the zip's folder; nothing was extracted"
                    )
            if sum(e.file_size for e in entries) > MAX_UNZIPPED_BYTES:
                raise DataError(f"{filename}: over {MAX_UNZIPPED_BYTES // 1024**3} GB once unzipped; nothing extracted")
            return self._extract_images(archive, entries, cls, filename)

    def _extract_images(
        self, archive: zipfile.ZipFile, entries: list[zipfile.ZipInfo], cls: str | None, filename: str
    ) -> dict[str, Any]:
        added, skipped = 0, []
        prefix = _common_folder([e.filename for e in entries]) if cls is None else ""
        for entry in entries:
            inner = entry.filename[len(prefix) :].split("/")
            name = inner[-1]
            if name.startswith(".") or "__MACOSX" in entry.filename:
                continue
            where = f"{filename}:{entry.filename}"
            if entry.file_size > MAX_FILE_BYTES:
                skipped.append({"path": where, "reason": f"over the {MAX_FILE_BYTES // 1024**2} MB limit of one file"})
                continue
            target_class = cls if cls is not None else (inner[0] if len(inner) > 1 else None)
            if target_class is None:
                skipped.append({"path": where, "reason": "not in a class folder (zip/CLASS/image)"})
                continue
            tmp = self.incoming()
            with archive.open(entry) as src, open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst)
            try:
                check_name(target_class, "class")
                if cls is None:
                    self.add_class(target_class)
                self.add_image(target_class, name, tmp)
                added += 1
            except WukongError as exc:
                tmp.unlink(missing_ok=True)  # a bad class name is found before add_image removes it
                skipped.append({"path": where, "reason": str(exc).removeprefix(f"{name}: ")})
        if not added:
            raise DataError(f"{filename}: no usable images in it" + (f" ({skipped[0]['reason']})" if skipped else ""))
        return {"added": added, "skipped": skipped}

    def add_texts(self, cls: str, lines: list[str]) -> int:
        """One example per non-empty line."""
        cls = check_name(cls, "class")
        if cls not in self.classes():
            raise WukongError(f"class {cls!r}: no such class in {self.name}; add it first")
        texts = [line.strip() for line in lines if line.strip()]
        if not texts:
            raise WukongError(f"class {cls!r}: no text given (one example per line)")
        self._write_rows([*self._rows(), *((text, cls) for text in texts)])
        return len(texts)

    def import_path(self, path: Path) -> dict[str, Any]:
        """Copy in examples already on disk: an image folder with one sub-folder per class, or a
        labelled text table (CSV/TSV/JSONL, as ``wukong train`` reads it)."""
        from wukong.data.images import read_image_source
        from wukong.data.text import read_text_table

        if not path.exists():
            raise WukongError(f"{path}: no such file or folder")
        if self.modality == "text":
            source = read_text_table(path)
            if source.multi_label:
                raise DataError(f"{path}: several labels per row; the page makes single-label projects")
            names = [str(label) for label in source.labels]
            for name in sorted(set(names)):
                self.add_class(name)
            self._write_rows([*self._rows(), *zip(source.texts, names, strict=True)])
            return {"added": len(names), "skipped": [s.to_dict() for s in source.skipped]}
        source = read_image_source(path)
        for name in source.classes:
            self.add_class(name)
        added, skipped = 0, [s.to_dict() for s in source.skipped]
        for file, label in zip(source.paths, source.labels, strict=True):
            tmp = self.incoming()
            shutil.copyfile(file, tmp)
            try:
                self.add_image(source.classes[label], Path(file).name, tmp)
                added += 1
            except WukongError as exc:
                skipped.append({"path": str(file), "reason": str(exc).removeprefix(f"{Path(file).name}: ")})
        return {"added": added, "skipped": skipped}

    # --- examples without labels, for the model to choose from ---------------------------------

    @property
    def pool(self) -> Path:
        """Where the examples without labels wait: ``pool/`` (images), ``pool.txt`` (texts, a line each)."""
        return self.root / ("pool" if self.modality == "image" else "pool.txt")

    def pool_items(self) -> list[str]:
        """The examples without labels: image file names (in ``pool``), or texts."""
        if self.modality == "image":
            return sorted(p.name for p in self.pool.glob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
        return self.pool.read_text(encoding="utf-8").splitlines() if self.pool.exists() else []

    def add_unlabelled_image(self, filename: str, upload: Path) -> str:
        """Move an uploaded image into the pool (checked as ``add_image`` checks); its stored name."""

        def pool() -> Path:
            self.pool.mkdir(exist_ok=True)
            return self.pool

        return self._store_image(pool, filename, upload)

    def add_unlabelled_texts(self, lines: list[str]) -> int:
        """One example per non-empty line not in the pool yet; how many were added."""
        if self.modality != "text":
            raise WukongError(f"{self.name} is an image project: add image files")
        pool = self.pool_items()
        new = [t for t in dict.fromkeys(line.strip() for line in lines) if t and t not in pool]
        if not new and not any(line.strip() for line in lines):
            raise WukongError("no text given (one example per line)")
        self._write_pool([*pool, *new])
        return len(new)

    def label(self, item: str, cls: str) -> None:
        """Give a pool example its class: the image moves into the class folder, the text becomes a
        row of the table."""
        pool = self.pool_items()
        if item not in pool:  # a name the pool holds, never a path
            raise WukongError(f"{item[:80]!r}: not among the examples waiting for a label")
        if self.modality == "image":
            folder = self._class_folder(cls)
            shutil.move(self.pool / item, _free_name(folder, item))
            return
        cls = check_name(cls, "class")
        if cls not in self.classes():
            raise WukongError(f"class {cls!r}: no such class in {self.name}; add it first")
        self._write_rows([*self._rows(), (item, cls)])
        self._write_pool([t for t in pool if t != item])

    def _store_image(self, folder: Callable[[], Path], filename: str, upload: Path) -> str:
        """Move a checked upload into ``folder()`` under a free, safe name; its stored name. A refused
        upload (no such folder, not an image) is removed."""
        try:
            target_folder = folder()
            _check_image(upload, filename)
        except WukongError:
            upload.unlink(missing_ok=True)
            raise
        target = _free_name(target_folder, _safe_file_name(filename))
        shutil.move(upload, target)
        return target.name

    def _write_pool(self, texts: list[str]) -> None:
        tmp = self.pool.with_suffix(".tmp")
        tmp.write_text("".join(f"{t}\n" for t in texts), encoding="utf-8")
        tmp.replace(self.pool)

    def incoming(self) -> Path:
        """A fresh file name for an upload in progress (inside the project)."""
        folder = self.root / ".incoming"
        folder.mkdir(exist_ok=True)
        return folder / uuid.uuid4().hex

    # --- internals ------------------------------------------------------------------------------

    def _class_folder(self, cls: str) -> Path:
        cls = check_name(cls, "class")
        folder = self.root / "data" / cls
        if self.modality != "image":
            raise WukongError(f"{self.name} is a text project: paste lines of text, not files")
        if not folder.is_dir():
            raise WukongError(f"class {cls!r}: no such class in {self.name}; add it first")
        return folder

    def _meta(self) -> dict[str, Any]:
        return json.loads((self.root / "project.json").read_text(encoding="utf-8"))

    def _write_meta(self, meta: dict[str, Any]) -> None:
        (self.root / "project.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")

    def _rows(self) -> list[tuple[str, str]]:
        table = self.root / "data" / TEXT_FILE
        if not table.exists():
            return []
        with table.open(newline="", encoding="utf-8") as f:
            return [(row["text"], row["label"]) for row in csv.DictReader(f)]

    def _write_rows(self, rows: list[tuple[str, str]]) -> None:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(["text", "label"])
        writer.writerows(rows)
        table = self.root / "data" / TEXT_FILE
        tmp = table.with_suffix(".tmp")
        tmp.write_text(buffer.getvalue(), encoding="utf-8")
        tmp.replace(table)


class Workdir:
    """The projects under one folder."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def projects(self) -> list[Project]:
        return [Project(p.parent) for p in sorted(self.root.glob("*/project.json"))]

    def get(self, name: str) -> Project:
        root = self.root / check_name(name, "project")
        if not (root / "project.json").is_file():
            raise WukongError(f"project {name!r}: no such project in {self.root}")
        return Project(root)

    def create(self, name: str, modality: str) -> Project:
        root = self.root / check_name(name, "project")
        if modality not in MODALITIES:
            raise WukongError(f"modality {modality!r}: choose image or text")
        if root.exists():
            raise WukongError(f"project {name!r} exists already in {self.root}")
        (root / "data").mkdir(parents=True)
        project = Project(root)
        project._write_meta({"modality": modality, "classes": []})
        return project


def _check_image(path: Path, filename: str) -> None:
    if Path(filename).suffix.lower() not in IMAGE_EXTENSIONS:
        raise DataError(f"{filename}: not an image file name (expected {', '.join(sorted(IMAGE_EXTENSIONS))})")
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise DataError(f"{filename}: {size / 1e6:.0f} MB, over the {MAX_FILE_BYTES // 1024**2} MB limit of one file")
    try:
        with Image.open(path) as image:
            image.draft("RGB", (64, 64))
            image.load()
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(f"{filename}: not an image Pillow can read ({type(exc).__name__})") from None


def _safe_file_name(filename: str) -> str:
    """The last component of an uploaded name, with only safe characters."""
    base = re.split(r"[\\/]", filename)[-1]
    stem, suffix = Path(base).stem, Path(base).suffix.lower()
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._") or "image"
    return stem[:100] + suffix


def _free_name(folder: Path, name: str) -> Path:
    target = folder / name
    n = 1
    while target.exists():
        target = folder / f"{Path(name).stem}-{n}{Path(name).suffix}"
        n += 1
    return target


def _common_folder(names: list[str]) -> str:
    """``root/`` when every entry lies under one top folder whose sub-folders are the classes."""
    tops = {n.split("/")[0] for n in names if "/" in n}
    if len(tops) == 1 and all("/" in n for n in names) and any(n.count("/") >= 2 for n in names):
        return tops.pop() + "/"
    return ""
