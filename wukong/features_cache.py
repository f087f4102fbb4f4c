"""On-disk cache of features ("CNN codes", sentence embeddings).

Keyed by the *content* of each input (a hash of the file bytes or of the text) within a namespace
that names the backbone, the tap and the preprocessing. So a changed file is recomputed, a renamed
or moved one is not, and changing the backbone or its input size never serves stale features.

Storage: one ``.npz`` shard per ``CHUNK`` inputs computed (numeric arrays only, read with
``allow_pickle=False``), each written to a temporary name and renamed as soon as it is computed: a
killed extraction leaves no broken shard, and run again it computes only what it had not finished. The folder is kept
under a size limit, least recently used shards first (``wukong.cache.evict``); features whose shard
went (evicted by this or another process) are computed again.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from wukong.cache import cache_dir, evict, feature_limit, touch

# Inputs computed, and stored as one shard, at a time: what a killed extraction can lose at most.
CHUNK = 4096


def namespace_key(description: dict[str, Any]) -> str:
    """A short stable key for a JSON-able description of backbone + tap + preprocessing."""
    text = json.dumps(description, sort_keys=True, default=str)
    return hashlib.blake2b(text.encode(), digest_size=12).hexdigest()


def text_hash(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()


class FeatureCache:
    """Features by content hash, for one namespace (see ``namespace_key``).

    Example:
        >>> cache = FeatureCache({"backbone": "demo", "tap": "final"}, root=Path("/tmp/wk-doc"))
        >>> feats = cache.get_or_compute(["h1", "h2"], lambda idx: np.ones((len(idx), 4), np.float32))
        >>> feats.shape
        (2, 4)
    """

    def __init__(self, description: dict[str, Any], root: Path | None = None) -> None:
        self.key = namespace_key(description)
        base = Path(root) if root is not None else cache_dir("features")
        self.folder = base / self.key
        self.folder.mkdir(parents=True, exist_ok=True)
        meta = self.folder / "namespace.json"
        if not meta.exists():  # written whole under another name, then renamed: two processes may race here
            tmp = self.folder / f".namespace-{uuid.uuid4().hex}.tmp"
            tmp.write_text(json.dumps(description, indent=2, sort_keys=True, default=str))
            os.replace(tmp, meta)
        self._index: dict[str, tuple[Path, int]] | None = None

    def _load_index(self) -> dict[str, tuple[Path, int]]:
        if self._index is None:
            self._index = {}
            for shard in sorted(self.folder.glob("shard-*.npz")):
                try:
                    with np.load(shard, allow_pickle=False) as data:
                        keys = data["keys"]
                except (OSError, ValueError, KeyError):
                    continue  # unreadable shard: its features are simply recomputed
                for row, key in enumerate(keys):
                    self._index[key.decode()] = (shard, row)
        return self._index

    def get_or_compute(self, hashes: Sequence[str], compute: Callable[[list[int]], np.ndarray]) -> np.ndarray:
        """Features for ``hashes``; ``compute(indices)`` is called for the missing ones, ``CHUNK`` at a
        time, each chunk stored before the next is computed."""
        index = self._load_index()
        by_shard: dict[Path, list[tuple[int, int]]] = {}
        for i, h in enumerate(hashes):
            if h in index:
                shard, row = index[h]
                by_shard.setdefault(shard, []).append((i, row))
        found: list[tuple[list[int], np.ndarray]] = []  # (input positions, their features) per shard
        have = np.zeros(len(hashes), dtype=bool)
        for shard, pairs in by_shard.items():
            try:
                with np.load(shard, allow_pickle=False) as data:
                    feats = data["features"]
            except (OSError, ValueError, KeyError):  # evicted meanwhile, or unreadable: computed again
                for h in {key for key, (where, _) in index.items() if where == shard}:
                    del index[h]
                continue
            touch(shard)
            positions = [i for i, _ in pairs]
            found.append((positions, feats[[r for _, r in pairs]]))
            have[positions] = True
        missing = np.flatnonzero(~have).tolist()
        for start in range(0, len(missing), CHUNK):  # stored as computed: a kill keeps what was finished
            part = missing[start : start + CHUNK]
            fresh = np.asarray(compute(part), dtype=np.float32)
            self._store([hashes[i] for i in part], fresh)
            found.append((part, fresh))
        width = found[0][1].shape[1] if found else 0
        result = np.empty((len(hashes), width), dtype=np.float32)
        for positions, feats in found:
            result[positions] = feats
        return result

    def _store(self, hashes: list[str], features: np.ndarray) -> None:
        name = f"shard-{uuid.uuid4().hex}.npz"
        tmp = self.folder / f".{name}.tmp"
        with open(tmp, "wb") as fh:
            np.savez(fh, keys=np.asarray(hashes, dtype="S32"), features=features.astype(np.float32))
        os.replace(tmp, self.folder / name)
        evict(self.folder.parent, feature_limit(), keep=self.folder / name)
        if self._index is not None:
            for row, h in enumerate(hashes):
                self._index[h] = (self.folder / name, row)
