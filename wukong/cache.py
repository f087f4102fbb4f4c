"""Where Wukong keeps what it can recompute, how much of it, and what goes first when it is full.

The root is ``$WUKONG_CACHE`` when set, else the platform's user cache folder (``platformdirs``:
``~/.cache/wukong`` on Linux, honouring ``$XDG_CACHE_HOME``). Each kind of entry has its folder:

- ``features``: features of inputs by content (``wukong.features_cache``), the large one. It is
  kept under a size limit (``$WUKONG_CACHE_LIMIT``, e.g. ``20GB``; default ``DEFAULT_LIMIT``): when a
  new shard takes it over, the least recently used shards go (a shard's modification time is its
  last use: reading one touches it) until it is at most ``KEEP_AFTER_EVICTION`` of the limit.
- ``engines`` (exported ONNX graphs; the text encoder's in ``engines/text``), ``archives`` (extracted
  data archives), ``timings`` (measured speeds: bf16 or fp32, onnxruntime, OpenVINO or PyTorch),
  ``known`` (content hashes of images that decoded without a problem, ``wukong.data.known``):
  recomputed when missing.
- ``models``: installed and converted pretrained weights; ``wukong cache clear`` keeps them unless
  asked (bringing one back may need its package reinstalled).

Every entry is written to a temporary name and renamed, so two processes sharing the cache never
see a half-written one, and a reader whose entry was evicted under it recomputes it.

Example:
    >>> parse_size("1.5GB"), parse_size("200MB"), parse_size("4096")
    (1500000000, 200000000, 4096)
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any

from wukong.errors import ParameterError

KINDS = ("features", "engines", "archives", "timings", "known", "models")
RECOMPUTED = ("features", "engines", "archives", "timings", "known")  # what ``clear`` removes by default
DEFAULT_LIMIT = 20 * 10**9  # bytes of features
KEEP_AFTER_EVICTION = 0.8
_UNITS = {"": 1, "B": 1, "K": 10**3, "KB": 10**3, "M": 10**6, "MB": 10**6, "G": 10**9, "GB": 10**9, "T": 10**12}
_UNITS["TB"] = _UNITS["T"]


def cache_root() -> Path:
    """The cache's root folder (not created)."""
    root = os.environ.get("WUKONG_CACHE")
    if root:
        return Path(root)
    import platformdirs

    return Path(platformdirs.user_cache_dir("wukong", appauthor=False))


def cache_dir(*parts: str) -> Path:
    """Return (and create) a folder under the Wukong cache (``cache_root``)."""
    path = cache_root().joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def parse_size(text: str) -> int:
    """``"20GB"``, ``"500MB"``, ``"4096"`` -> bytes (decimal units)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?B?)\s*", str(text).upper())
    if not match:
        raise ParameterError(f"cache limit {text!r}: give a size such as 20GB, 500MB or a number of bytes")
    return int(float(match.group(1)) * _UNITS[match.group(2)])


def feature_limit() -> int:
    """The size limit of the ``features`` folder, in bytes (``$WUKONG_CACHE_LIMIT``)."""
    given = os.environ.get("WUKONG_CACHE_LIMIT")
    if not given:
        return DEFAULT_LIMIT
    try:
        return parse_size(given)
    except ParameterError:
        raise ParameterError(f"WUKONG_CACHE_LIMIT={given!r}: give a size such as 20GB or 500MB") from None


def touch(path: Path) -> None:
    """Mark an entry as just used (its modification time orders the eviction)."""
    try:
        os.utime(path)
    except OSError:  # gone already (evicted by another process): nothing to mark
        pass


def evict(folder: Path, limit: int, keep: Path | None = None) -> list[Path]:
    """Remove the least recently used ``shard-*.npz`` files under ``folder`` while their total size
    is over ``limit``, down to ``KEEP_AFTER_EVICTION`` of it (``keep``, the one just written, stays);
    returns what was removed."""
    shards = []
    for path in folder.glob("*/shard-*.npz"):
        try:
            stat = path.stat()
        except OSError:  # removed meanwhile by another process
            continue
        shards.append((stat.st_mtime, stat.st_size, path))
    total = sum(size for _, size, _ in shards)
    if total <= limit:
        return []
    removed = []
    for _, size, path in sorted(shards):
        if total <= limit * KEEP_AFTER_EVICTION:
            break
        if keep is not None and path == keep:
            continue
        try:
            path.unlink()
        except OSError:
            continue
        removed.append(path)
        total -= size
    return removed


def usage() -> dict[str, Any]:
    """What the cache holds: per kind, its folder, size in bytes and number of entries."""
    root = cache_root()
    kinds = {}
    for kind in KINDS:
        folder = root / kind
        files = [p for p in folder.rglob("*") if p.is_file()] if folder.is_dir() else []
        kinds[kind] = {"bytes": sum(p.stat().st_size for p in files), "files": len(files)}
    return {"root": str(root), "features_limit_bytes": feature_limit(), "kinds": kinds}


def clear(kinds: tuple[str, ...] = RECOMPUTED) -> dict[str, int]:
    """Remove the given kinds' folders (only those: anything else under the root is left alone);
    returns the bytes freed per kind."""
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown:
        raise ParameterError(f"cache kinds {', '.join(unknown)}: choose among {', '.join(KINDS)}")
    before = usage()["kinds"]
    root = cache_root()
    for kind in kinds:
        shutil.rmtree(root / kind, ignore_errors=True)
    return {kind: before[kind]["bytes"] for kind in kinds}
