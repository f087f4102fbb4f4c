"""Which unlabelled items to label next (``wukong suggest``): uncertain ones, and not all alike.

Uncertainty is the margin between the two most probable classes of the model's calibrated
probabilities (multi-label: the label whose probability is nearest its threshold). Diversity comes
from weighted k-means (Zhdanov 2019, "Diverse mini-batch active learning"): the ``candidates x n``
most uncertain items are clustered into ``n`` groups in the network's feature space, each item
weighing its uncertainty, and the item nearest each group's centre is suggested. Picking by
uncertainty alone takes many near-identical items from one confusing region; clustering spreads
the labels over every such region.

Example:
    >>> from wukong import load
    >>> from wukong.active import suggest
    >>> rows = suggest(load("runs/cat_dog"), "unlabelled_photos/", n=20)     # doctest: +SKIP
    >>> rows[0]["input"], rows[0]["predicted"], rows[0]["uncertainty"]        # doctest: +SKIP
    ('unlabelled_photos/img_0412.jpg', 'cat', 0.93)
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np

from wukong.errors import DataError, ParameterError

CANDIDATES = 10  # the most uncertain ``CANDIDATES x n`` items are clustered (Zhdanov's beta)


def uncertainty(proba: np.ndarray, thresholds: np.ndarray | None = None) -> np.ndarray:
    """1 - (top probability - second): 0 when sure, 1 when two classes tie; multi-label (given
    ``thresholds``): 1 - 2 x the distance of the nearest label's probability to its threshold."""
    if thresholds is not None:
        return 1.0 - 2.0 * np.abs(proba - thresholds[None, :]).min(axis=1)
    top2 = -np.partition(-proba, 1, axis=1)[:, :2] if proba.shape[1] > 1 else np.c_[proba, 1 - proba]
    return 1.0 - (top2[:, 0] - top2[:, 1])


def pick(
    features: np.ndarray, scores: np.ndarray, n: int, *, candidates: int = CANDIDATES, seed: int = 0
) -> np.ndarray:
    """Indices of ``n`` items: weighted k-means over the ``candidates * n`` highest ``scores``, the
    item nearest each centre; most uncertain first."""
    from sklearn.cluster import KMeans

    n = min(n, len(scores))
    pool = np.argsort(-scores, kind="stable")[: max(n, candidates * n)]
    if n == len(pool):
        return pool
    x = features[pool] / np.maximum(np.linalg.norm(features[pool], axis=1, keepdims=True), 1e-12)
    weights = np.maximum(scores[pool], 1e-6)
    kmeans = KMeans(n_clusters=n, n_init=3, random_state=seed).fit(x, sample_weight=weights)
    chosen: list[int] = []
    for cluster in range(n):
        members = np.flatnonzero(kmeans.labels_ == cluster)
        if len(members):
            distance = np.linalg.norm(x[members] - kmeans.cluster_centers_[cluster], axis=1)
            chosen.append(int(members[np.argmin(distance)]))
    picked = pool[np.asarray(chosen, dtype=np.int64)]
    if len(picked) < n:  # an empty cluster: the next most uncertain items fill in
        rest = [i for i in pool if i not in set(picked.tolist())]
        picked = np.concatenate([picked, rest[: n - len(picked)]])
    return picked[np.argsort(-scores[picked], kind="stable")]


def suggest(
    model: Any, inputs: Any, n: int = 50, *, candidates: int = CANDIDATES, seed: int = 0
) -> list[dict[str, Any]]:
    """The ``n`` unlabelled inputs (files, a folder, a text file or texts) to label next, most
    uncertain first: ``{"rank", "input", "predicted", "score", "uncertainty"}`` each. Inputs that
    cannot be read are left out."""
    if not (isinstance(n, int) and n >= 1):
        raise ParameterError(f"n={n!r}: give how many items to suggest, 1 or more")
    model._check_fitted()
    names, features, problems = model._pool_features(inputs)
    usable = [name for i, name in enumerate(names) if i not in problems]
    if not usable:
        raise DataError(f"{inputs}: no usable unlabelled input")
    proba = model._proba_from_logits(model._logits_from_features(features))
    thresholds = np.asarray(model.thresholds_, np.float32) if model.multi_label_ else None
    scores = uncertainty(proba, thresholds)
    rows = []
    for rank, i in enumerate(pick(features, scores, n, candidates=candidates, seed=seed), start=1):
        top = int(proba[i].argmax())
        rows.append(
            {
                "rank": rank,
                "input": usable[i],
                "predicted": model.classes_[top],
                "score": round(float(proba[i, top]), 4),
                "uncertainty": round(float(scores[i]), 4),
            }
        )
    return rows


def write_csv(rows: list[dict[str, Any]], path: str | Path, modality: str) -> Path:
    """The suggestions as a table to label: the input (``path`` for images, ``text`` for texts) and an
    empty ``label`` column first, so the filled file trains as it is (rows left unlabelled are
    skipped with a note), then the model's guess."""
    path = Path(path)
    first = "path" if modality == "image" else "text"
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow([first, "label", "predicted", "score", "uncertainty", "rank"])
        for r in rows:
            item = str(Path(r["input"]).resolve()) if modality == "image" and Path(r["input"]).is_file() else r["input"]
            writer.writerow([item, "", r["predicted"], r["score"], r["uncertainty"], r["rank"]])
    return path
