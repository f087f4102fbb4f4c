"""Datasets shipped as ``.tar.gz`` archives: extracted once into the cache, then used as folders."""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
from pathlib import Path

from wukong.cache import cache_dir
from wukong.errors import DataError

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")


def is_archive(path: Path) -> bool:
    return path.is_file() and path.name.endswith(ARCHIVE_SUFFIXES)


def extract_cached(archive: Path) -> Path:
    """Extract ``archive`` under the cache (once) and return the extracted folder.

    The cache key is the archive's name, size and modification time, so a replaced archive is
    extracted again. Extraction goes to a temporary folder renamed at the end: a killed
    extraction never leaves a half-filled folder that looks complete.
    """
    archive = Path(archive)
    if not archive.is_file():
        raise DataError(f"{archive}: no such archive")
    stat = archive.stat()
    key = hashlib.blake2b(f"{archive.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode(), digest_size=8).hexdigest()
    stem = archive.name
    for suffix in ARCHIVE_SUFFIXES:
        stem = stem.removesuffix(suffix)
    target = cache_dir("archives") / f"{stem}-{key}"
    if target.is_dir():
        return _single_root(target)
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(tmp, filter="data")
    except (tarfile.TarError, OSError, EOFError) as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise DataError(f"{archive}: cannot extract ({exc}); is it a complete .tar.gz?") from exc
    try:
        os.replace(tmp, target)
    except OSError:  # another process extracted it meanwhile: use theirs
        shutil.rmtree(tmp, ignore_errors=True)
        if not target.is_dir():
            raise
    return _single_root(target)


def _single_root(folder: Path) -> Path:
    """An archive holding one top folder (``tiny-imagenet/...``) is used from inside it."""
    entries = [p for p in folder.iterdir() if not p.name.startswith(".")]
    if len(entries) == 1 and entries[0].is_dir():
        return entries[0]
    return folder
