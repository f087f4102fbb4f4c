"""Unlabelled data (``wukong train --unlabeled``) against the labels alone and the alternatives.

Three tasks, few labels and a large unlabelled pool, several seeded samples each:

- SST-2, 8 labelled sentences per class (10 samples), 10,000 unlabelled training sentences,
  the 872 test sentences;
- BANKING77, 10 labelled queries per intent (3 samples), 5,000 unlabelled training queries, the
  3,080 test queries;
- CIFAR-10, 10 labelled images per class (3 samples), the other 4,900 of 500 per class
  unlabelled, 1,000 test images (100 per class).

Rows, every one the ``features`` strategy on the default network (MiniLM, EfficientNet-Lite0):
``labelled only``; ``--unlabeled`` (Wukong's rule: pseudo-labels kept where cross-validation
says they lower the held-out loss by more than one standard error); ``pseudo-labels always``
(``--tuning pseudo_labels=always``: what always using them gives); and what a user would write by
hand: scikit-learn's ``SelfTrainingClassifier`` around ``LogisticRegression`` (its defaults:
threshold 0.75) on the same standardised features. Test accuracy per sample, the mean, and how
often the rule kept the pseudo-labels.

Run (about 10 minutes on 2 cores; 7 with the features cached; writes
benchmarks/results/semi_supervised.json):

    python benchmarks/semi_supervised.py
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

DATA = Path(os.environ.get("WUKONG_DATA", ROOT.parent / "shared" / "data"))
TASKS = {
    "sst2_8_per_class": {"per_class": 8, "seeds": list(range(10)), "pool": 10_000},
    "banking77_10_per_intent": {"per_class": 10, "seeds": [0, 1, 2], "pool": 5_000},
    "cifar10_10_per_class": {"per_class": 10, "seeds": [0, 1, 2], "pool": 4_900},
}
ROWS = ("labelled only", "--unlabeled", "pseudo-labels always", "sklearn SelfTrainingClassifier")


def text_task(name: str) -> tuple[list[str], list[str], list[str], list[str]]:
    """All training texts and labels, and the test ones."""
    import pandas as pd

    if name.startswith("sst2"):
        train = pd.read_csv(DATA / "sst2" / "train.tsv", sep="\t", quoting=3)
        test = pd.read_csv(DATA / "sst2" / "test.tsv", sep="\t", quoting=3)
        text, label = "sentence", "label"
    else:
        train, test = pd.read_csv(DATA / "banking77" / "train.csv"), pd.read_csv(DATA / "banking77" / "test.csv")
        text, label = "text", "category"
    pairs = [(train[text].astype(str).tolist(), train[label].astype(str).tolist())]
    pairs.append((test[text].astype(str).tolist(), test[label].astype(str).tolist()))
    return (*pairs[0], *pairs[1])


def sample(labels: list[str], per_class: int, pool: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded ``per_class`` labelled indices of each class, and ``pool`` others (their labels hidden)."""
    rng = np.random.default_rng(seed)
    array = np.asarray(labels)
    chosen = np.concatenate(
        [rng.choice(np.flatnonzero(array == c), per_class, replace=False) for c in sorted(set(labels))]
    )
    rest = rng.permutation(np.setdiff1d(np.arange(len(labels)), chosen))[:pool]
    return np.sort(chosen), rest


def run_rows(make: Any, inputs: list, labels: list[str], pool: list, test: tuple[list, list], seed: int) -> dict:
    """Test accuracy of each row on one sample (``make(**kwargs)``: a fresh estimator)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler
    from sklearn.semi_supervised import SelfTrainingClassifier

    out: dict[str, Any] = {}
    plain = make(seed=seed).fit(inputs, labels)
    out["labelled only"] = accuracy(plain, *test)
    model = make(seed=seed).fit(inputs, labels, unlabeled=pool)
    out["--unlabeled"] = accuracy(model, *test)
    out["used"] = model.metrics_["semi_supervised"]["used"]
    out["rule"] = {k: model.metrics_["semi_supervised"][k] for k in ("log_loss_gain", "log_loss_gain_se")}
    forced = make(seed=seed, tuning={"pseudo_labels": "always"}).fit(inputs, labels, unlabeled=pool)
    out["pseudo-labels always"] = accuracy(forced, *test)
    # by hand: the same frozen features, scikit-learn's self-training wrapper with its defaults
    feats, pool_feats, test_feats = (plain._pool_features(x)[1] for x in (inputs, pool, test[0]))
    scaler = StandardScaler().fit(feats)
    classes = sorted(set(labels))
    y = np.r_[[classes.index(v) for v in labels], -np.ones(len(pool_feats), int)]
    wrapper = SelfTrainingClassifier(LogisticRegression(max_iter=1000), threshold=0.75)
    wrapper.fit(scaler.transform(np.r_[feats, pool_feats]), y)
    predicted = [classes[i] for i in wrapper.predict(scaler.transform(test_feats))]
    out["sklearn SelfTrainingClassifier"] = round(
        float(np.mean([p == t for p, t in zip(predicted, test[1], strict=True)])), 4
    )
    return out


def accuracy(model: Any, inputs: list, labels: list[str]) -> float:
    """Test accuracy from the test inputs' cached features (the same answers as ``model.score``)."""
    _, features, _ = model._pool_features(inputs)
    predicted = [model.classes_[i] for i in model._logits_from_features(features).argmax(axis=1)]
    return round(float(np.mean([p == t for p, t in zip(predicted, labels, strict=True)])), 4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "semi_supervised.json")
    parser.add_argument("--tasks", nargs="+", choices=list(TASKS), default=list(TASKS))
    args = parser.parse_args()
    from wukong import ImageClassifier, TextClassifier

    started = time.time()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.tasks:
            task = TASKS[name]
            if name.startswith("cifar"):
                cifar = cifar_subset(Path(tmp) / "cifar", 500, 100)
                inputs, labels = labelled_files(cifar / "train")
                test = labelled_files(cifar / "test")

                def make(**how: Any) -> Any:
                    return ImageClassifier(strategy="features", progress=False, **how)
            else:
                inputs, labels, *test = text_task(name)

                def make(**how: Any) -> Any:
                    return TextClassifier(strategy="features", progress=False, **how)

            per_seed = {}
            for seed in task["seeds"]:
                chosen, rest = sample(labels, task["per_class"], task["pool"], seed)
                row = run_rows(
                    make,
                    [inputs[i] for i in chosen],
                    [labels[i] for i in chosen],
                    [inputs[i] for i in rest],
                    tuple(test),
                    seed,
                )
                per_seed[str(seed)] = row
                print(name, seed, json.dumps(row), flush=True)
            means = {r: round(float(np.mean([s[r] for s in per_seed.values()])), 4) for r in ROWS}
            results[name] = {
                "labelled_per_class": task["per_class"],
                "unlabelled": task["pool"],
                "mean_test_accuracy": means,
                "rule_kept_pseudo_labels": f"{sum(s['used'] for s in per_seed.values())} of {len(per_seed)}",
                "per_seed": per_seed,
            }
            write(args, results, started)
    write(args, results, started)


def write(args: argparse.Namespace, results: dict[str, Any], started: float) -> None:
    report = {
        "tasks": results,
        "rows": list(ROWS),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, Python {sys.version.split()[0]}",
        "command": "python benchmarks/semi_supervised.py " + " ".join(sys.argv[1:]),
        "seconds": round(time.time() - started, 1),
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
