"""Active learning: ``wukong suggest`` against picking at random, on real data.

A pool of 5,000 CIFAR-10 training images (500 per class) whose labels are hidden; 2 labelled
images per class to start (seeded); then 5 rounds, each adding 50 labels: the 50 items
``suggest`` ranks first (the most uncertain item of each of 50 k-means clusters of the pool,
``wukong.quality.suggest``) against 50 drawn at random, which is what a user without the tool
does. After each round the model (``features`` on the default network's top features: the
cross-validated linear classifier, the same for every row) is trained again on the labels so far
and scored on 1,000 CIFAR-10 test images (100 per class). Mean and per-seed accuracy over 3 seeds;
``uncertainty only`` (the most uncertain 50, no clustering: ``diverse=False``) is a third row, to
show what the clusters add.

    python benchmarks/active.py          # writes benchmarks/results/active.json (about 8 minutes on 2 cores)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from exports import cifar_subset  # noqa: E402
from trust import labelled_files  # noqa: E402

START_PER_CLASS, ROUNDS, BATCH, SEEDS = 2, 5, 50, (0, 1, 2)


def accuracy(model: Any, test_paths: list[str], test_labels: list[str]) -> float:
    """Test accuracy from the test images' cached features (the same answers as ``model.score``)."""
    _, features, _ = model._pool_features(test_paths)
    proba = model._proba_from_logits(model._logits_from_features(features))
    predicted = [model.classes_[i] for i in proba.argmax(axis=1)]
    return round(float(np.mean([p == t for p, t in zip(predicted, test_labels, strict=True)])), 4)


def run(method: str, seed: int, pool: list[str], truth: dict[str, str], test: tuple[list, list]) -> list[dict]:
    from wukong import ImageClassifier
    from wukong.quality.suggest import suggest

    rng = np.random.default_rng(seed)
    by_class: dict[str, list[str]] = {}
    for path in pool:
        by_class.setdefault(truth[path], []).append(path)
    labelled = [p for c in sorted(by_class) for p in rng.choice(by_class[c], START_PER_CLASS, replace=False)]
    curve = []
    for round_ in range(ROUNDS + 1):
        model = ImageClassifier(strategy="features", tap="final", seed=seed, progress=False)
        model.fit(labelled, [truth[p] for p in labelled])
        curve.append({"round": round_, "labels": len(labelled), "test_accuracy": accuracy(model, *test)})
        if round_ == ROUNDS:
            break
        taken = set(labelled)
        rest = [p for p in pool if p not in taken]
        if method == "random":
            labelled += rng.choice(rest, BATCH, replace=False).tolist()
        else:
            diverse = method != "uncertainty only"
            labelled += [r["input"] for r in suggest(model, rest, BATCH, diverse=diverse, seed=seed)]
    return curve


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "active.json")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    args = parser.parse_args()
    started = time.time()
    rows: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        cifar = cifar_subset(Path(tmp) / "cifar", 500, 100)
        pool, labels = labelled_files(cifar / "train")
        truth = dict(zip(pool, labels, strict=True))
        test = labelled_files(cifar / "test")
        for method in ("suggest", "random", "uncertainty only"):
            curves = {seed: run(method, seed, pool, truth, test) for seed in args.seeds}
            mean = np.mean([[r["test_accuracy"] for r in c] for c in curves.values()], axis=0)
            rows[method] = {
                "labels": [r["labels"] for r in curves[args.seeds[0]]],
                "mean_test_accuracy": [round(float(v), 4) for v in mean],
                "per_seed": {str(s): [r["test_accuracy"] for r in c] for s, c in curves.items()},
            }
            print(method, rows[method]["mean_test_accuracy"], flush=True)
    suggested, random = rows["suggest"]["mean_test_accuracy"], rows["random"]["mean_test_accuracy"]
    labels = rows["suggest"]["labels"]
    reach = next((n for n, a in zip(labels, suggested, strict=True) if a >= random[-1]), None)
    result = {
        "rows": rows,
        "suggest_ahead_from_round_2": all(s > r for s, r in zip(suggested[2:], random[2:], strict=True)),
        "labels_for_random_final_accuracy": {"random": labels[-1], "suggest": reach},
        "label_saving": round(1 - reach / labels[-1], 3) if reach else None,
        "targets": {"ahead_from_round": 2, "label_saving_at_least": 0.3},
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, Python {sys.version.split()[0]}",
        "command": "python benchmarks/active.py " + " ".join(sys.argv[1:]),
        "seconds": round(time.time() - started, 1),
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
