"""Which image contents are known to decode: the record that lets a later read skip decoding.

Every labelled image file that decodes without a problem (``modalities.image.decode_labelled``,
when a fit, an evaluation or an audit reads its data) has its content hash recorded here, per
decoding (side and interpolation). A later read that may leave them undecoded (a ``features``
fit with its tap and input size given, as ``chosen_params`` and ``wukong train --like`` give them),
whose files all have recorded hashes, needs no check and no pixels up front: it hashes the bytes
and keeps the images streamed (``wukong.data.streamed``), decoded only if a pass asks for them.
Such a fit finds every feature in the cache, so it decodes nothing at all. The same bytes decode
the same way, so a recorded hash stays true; what the record lacks (a new cache, a cleared one) is
decoded and checked as usual.

Storage: ``known/<side>-<interpolation>/`` under the cache root, shards of 16-byte hashes written
to a temporary name and renamed (``.npy``, read with ``allow_pickle=False``), merged into one when
they pass ``MERGE_AT``, started again past ``MAX_KNOWN`` hashes. Images too many to hold decoded
(streamed, ``wukong.data.streamed``) are not recorded.

Example:
    >>> remember_decodable(["a" * 32], 256, "bicubic", root=Path("/tmp/wk-known-doc"))
    >>> all_decodable(["a" * 32], 256, "bicubic", root=Path("/tmp/wk-known-doc"))
    True
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from wukong.cache import cache_dir

MERGE_AT = 32  # shards in one folder past which they are merged into one
MAX_KNOWN = 1_000_000  # hashes kept at most (32 MB); past it the record starts again


def _folder(size: int, interpolation: str, root: Path | None) -> Path:
    name = f"{int(size)}-{interpolation}"
    if root is None:
        return cache_dir("known", name)
    folder = Path(root) / name
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _recorded(folder: Path) -> set[bytes]:
    known: set[bytes] = set()
    for shard in folder.glob("shard-*.npy"):
        try:
            known.update(np.load(shard, allow_pickle=False).tolist())
        except (OSError, ValueError):
            continue  # removed meanwhile, or unreadable: those files are decoded and checked again
    return known


def all_decodable(hashes: Sequence[str], size: int, interpolation: str, *, root: Path | None = None) -> bool:
    """Whether every one of these content hashes was decoded without a problem before."""
    if not hashes:
        return False
    known = _recorded(_folder(size, interpolation, root))
    return all(h.encode() in known for h in hashes)


def remember_decodable(hashes: Sequence[str], size: int, interpolation: str, *, root: Path | None = None) -> None:
    """Record content hashes that decoded without a problem (those recorded already are skipped)."""
    folder = _folder(size, interpolation, root)
    known = _recorded(folder)
    new = sorted({h.encode() for h in hashes} - known)
    if not new:
        return
    shards = list(folder.glob("shard-*.npy"))
    restart = len(known) + len(new) > MAX_KNOWN  # a record, not a store: what it forgets is decoded again
    merged = restart or len(shards) >= MERGE_AT
    rows = new[-MAX_KNOWN:] if restart else sorted(known | set(new)) if merged else new
    name = folder / f"shard-{uuid.uuid4().hex}.npy"
    tmp = folder / f".{name.name}.tmp"
    with open(tmp, "wb") as fh:
        np.save(fh, np.asarray(rows, dtype="S32"), allow_pickle=False)
    os.replace(tmp, name)
    if merged:  # the new shard holds every hash kept: the others go
        for shard in shards:
            shard.unlink(missing_ok=True)
