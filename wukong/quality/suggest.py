"""Which unlabelled items to label next (``wukong suggest``): uncertain ones, and not all alike.

Uncertainty is the margin between the two most probable classes of the model's calibrated
probabilities (multi-label: the label whose probability is nearest its threshold). Diversity: the
pool is clustered into ``n`` groups by k-means in the network's feature space, and the most
uncertain item of each group is suggested. Uncertainty alone takes many items from the same few
confusing regions and leaves whole parts of the data unseen; on CIFAR-10 the clusters gain most
in the first rounds (``benchmarks/active.py``).

Example:
    >>> from wukong import load, suggest
    >>> rows = suggest(load("runs/cat_dog"), "unlabelled_photos/", n=20)     # doctest: +SKIP
    >>> rows[0]["input"], rows[0]["predicted"], rows[0]["uncertainty"]        # doctest: +SKIP
    ('unlabelled_photos/img_0412.jpg', 'cat', 0.93)
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from wukong.errors import DataError, ParameterError

LARGE_POOL = 20_000  # beyond this many items, mini-batch k-means


def uncertainty(proba: np.ndarray, thresholds: np.ndarray | None = None) -> np.ndarray:
    """1 - (top probability - second): 0 when sure, 1 when two classes tie; multi-label (given
    ``thresholds``): 1 - 2 x the distance of the nearest label's probability to its threshold."""
    if thresholds is not None:
        return 1.0 - 2.0 * np.abs(proba - thresholds[None, :]).min(axis=1)
    top2 = -np.partition(-proba, 1, axis=1)[:, :2] if proba.shape[1] > 1 else np.c_[proba, 1 - proba]
    return 1.0 - (top2[:, 0] - top2[:, 1])


def pick(features: np.ndarray, scores: np.ndarray, n: int, *, diverse: bool = True, seed: int = 0) -> np.ndarray:
    """Indices of ``n`` items, most uncertain first: the pool clustered into ``n`` groups by k-means
    (on unit-length features), and the highest ``scores`` of each group; ``diverse=False``: the
    ``n`` highest scores."""
    from sklearn.cluster import KMeans, MiniBatchKMeans

    n = min(n, len(scores))
    ranked = np.argsort(-scores, kind="stable")
    if not diverse or n == len(scores):
        return ranked[:n]
    x = features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
    clustering = MiniBatchKMeans if len(x) > LARGE_POOL else KMeans
    groups = clustering(n_clusters=n, n_init=1, random_state=seed).fit_predict(x)
    chosen = [members[np.argmax(scores[members])] for g in range(n) if len(members := np.flatnonzero(groups == g))]
    if len(chosen) < n:  # an empty group: the next most uncertain items fill in
        taken = set(chosen)
        chosen += [i for i in ranked if i not in taken][: n - len(chosen)]
    picked = np.asarray(chosen, dtype=np.int64)
    return picked[np.argsort(-scores[picked], kind="stable")]


def suggest(
    model: Any,
    inputs: Any,
    n: int = 50,
    *,
    exclude: Sequence[str | Path] = (),
    diverse: bool = True,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """The ``n`` unlabelled inputs (image files or folders, or texts) to label next, most
    uncertain first: ``{"rank", "input", "predicted", "score", "uncertainty"}`` each. Left out:
    inputs that cannot be read; those the model's training and validation files and folders list
    (``metrics_["train_data"]``, ``["val_data"]``), labelled or not, such as an earlier round's
    suggestions trained on with ``Sources``, where they can still be read; and those that a file
    or folder in ``exclude`` lists."""
    if not (isinstance(n, int) and n >= 1):
        raise ParameterError(f"n={n!r}: give how many items to suggest, 1 or more")
    model._check_fitted()
    column = getattr(model, "text_col", None)
    seen = listed(exclude, model.modality, column)
    for source in [*model.metrics_.get("train_data", []), *model.metrics_.get("val_data", [])]:
        try:  # moved, deleted or changed since: what can still be read is left out
            seen |= listed([source], model.modality, column)
        except DataError:
            continue
    names, features, problems = model._pool_features(inputs)
    usable = [name for i, name in enumerate(names) if i not in problems]
    if not usable:
        why = "; ".join(f"{names[i]}: {problem}" for i, problem in list(problems.items())[:3])
        raise DataError(f"no usable unlabelled input ({why})")
    new = [i for i, name in enumerate(usable) if not seen or _key(name, model.modality) not in seen]
    if not new:
        raise DataError(
            f"every usable unlabelled input ({len(usable)}) is in the model's training or validation data, or "
            "listed by exclude: nothing new to suggest"
        )
    usable, features = [usable[i] for i in new], features[new]
    proba = model._proba_from_logits(model._logits_from_features(features))
    thresholds = np.asarray(model.thresholds_, np.float32) if model.multi_label_ else None
    scores = uncertainty(proba, thresholds)
    rows = []
    for rank, i in enumerate(pick(features, scores, n, diverse=diverse, seed=seed), start=1):
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


def listed(sources: Sequence[str | Path], modality: str, text_col: str | None = None) -> set[str]:
    """The items that ``sources`` list, as ``suggest`` compares them: for images, every image file
    of a folder or every row's path of a CSV, resolved; for texts, every text of a table's text
    column (``text_col`` where the table has it) or of a file's lines."""
    from wukong.data.images import listed_images

    seen: set[str] = set()
    for source in map(Path, sources):
        if not source.exists():
            raise DataError(f"{source}: no such file or folder (exclude)")
        items = listed_images(source) if modality == "image" else _texts(source, text_col)
        seen.update(_key(item, modality) for item in items)
    return seen


def _texts(source: Path, text_col: str | None) -> list[str]:
    from wukong.modalities.text import texts_of_file

    try:
        return texts_of_file(source, text_col)
    except DataError:
        if text_col is None:
            raise
        return texts_of_file(source)  # the suggestions' own 'text' column beside a table named otherwise


def _key(item: Any, modality: str) -> str:
    return str(Path(item).resolve()) if modality == "image" else str(item).strip()


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
            item = (
                str(Path(r["input"]).absolute()) if modality == "image" and Path(r["input"]).is_file() else r["input"]
            )
            writer.writerow([item, "", r["predicted"], r["score"], r["uncertainty"], r["rank"]])
    return path
