"""On-disk cache of features ("CNN codes", sentence embeddings).

Keyed by the *content* of each input (a hash of the file bytes or of the text) within a namespace
that names the backbone, the tap and the preprocessing. So a changed file is recomputed, a renamed
or moved one is not, and changing the backbone or its input size never serves stale features.

Storage: one ``.npz`` shard per ``CHUNK`` inputs computed (numeric arrays only, read with
``allow_pickle=False``), each written to a temporary name and renamed as soon as it is computed: a
killed extraction leaves no broken shard, and run again it computes only what it had not finished. The folder is kept
under a size limit, least recently used shards first (``wukong.cache.evict``); features whose shard
went (evicted by this or another process) are computed again. The processes of a multi-device run
share the work: each embeds its part of the inputs and reads the others' parts from the cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from wukong.cache import cache_dir, evict, feature_limit, touch

# Inputs computed, and stored as one shard, at a time: what a killed extraction can lose at most.
CHUNK = 4096
# Several processes of one run (torchrun, SLURM, Lightning's DDP) share the inputs to embed, by
# content hash: each computes its own and reads the others' as they appear, polling every
# PEER_POLL seconds; what has not appeared after PEER_WAIT seconds without any progress it computes.
PEER_POLL, PEER_WAIT = 1.0, 300.0


def process_share() -> tuple[int, int]:
    """(this process's global rank, the number of processes) of a multi-process run, as the launcher
    set them in the environment (Lightning's reading of RANK, LOCAL_RANK or SLURM_PROCID; WORLD_SIZE
    or SLURM_NTASKS); (0, 1) in a process of its own."""
    from wukong.training.plan import process_rank

    processes = int(os.environ.get("WORLD_SIZE", os.environ.get("SLURM_NTASKS", "1")) or 1)
    rank = process_rank()
    return (rank, processes) if 0 <= rank < processes else (0, 1)


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
        rank, processes = process_share()
        mine = [i for i in missing if processes == 1 or int(hashes[i][:8], 16) % processes == rank]
        found += self._computed(hashes, mine, compute)
        if len(mine) < len(missing):  # the other processes' shares: read as they store them
            found += self._from_peers(hashes, sorted(set(missing) - set(mine)), compute)
        width = found[0][1].shape[1] if found else 0
        result = np.empty((len(hashes), width), dtype=np.float32)
        for positions, feats in found:
            result[positions] = feats
        return result

    def _from_peers(
        self, hashes: Sequence[str], wanted: list[int], compute: Callable[[list[int]], np.ndarray]
    ) -> list[tuple[list[int], np.ndarray]]:
        """Features of ``wanted`` inputs as the other processes store them; those still missing when
        none has come for ``PEER_WAIT`` seconds (a process that died, or never started) are computed here."""
        found: list[tuple[list[int], np.ndarray]] = []
        waited_since = time.monotonic()
        while wanted:
            self._index = None  # shards written by the others since: read the folder again
            index = self._load_index()
            ready = [i for i in wanted if hashes[i] in index]
            for shard in {index[hashes[i]][0] for i in ready}:
                rows = [(i, index[hashes[i]][1]) for i in ready if index[hashes[i]][0] == shard]
                try:
                    with np.load(shard, allow_pickle=False) as data:
                        found.append(([i for i, _ in rows], data["features"][[r for _, r in rows]]))
                except (OSError, ValueError, KeyError):  # evicted meanwhile: wanted still
                    ready = [i for i in ready if i not in {i for i, _ in rows}]
            if ready:
                waited_since = time.monotonic()
                wanted = sorted(set(wanted) - set(ready))
            elif time.monotonic() - waited_since > PEER_WAIT:
                found += self._computed(hashes, wanted, compute)
                break
            else:
                time.sleep(PEER_POLL)
        return found

    def _computed(
        self, hashes: Sequence[str], positions: list[int], compute: Callable[[list[int]], np.ndarray]
    ) -> list[tuple[list[int], np.ndarray]]:
        """``compute`` on ``positions``, ``CHUNK`` at a time, each chunk stored as soon as it is
        computed (a kill keeps what was finished)."""
        found = []
        for start in range(0, len(positions), CHUNK):
            part = positions[start : start + CHUNK]
            fresh = np.asarray(compute(part), dtype=np.float32)
            self._store([hashes[i] for i in part], fresh)
            found.append((part, fresh))
        return found

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
