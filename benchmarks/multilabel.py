"""Several labels per input, measured on multi-label sets built honestly from real data, beside what a
user would otherwise do.

No multi-label set ships in ``../shared/data``, so two are built:

- **CIFAR-10 mosaics**: 2x2 mosaics (64x64) of CIFAR-10 images; each mosaic shows one to three
  classes (drawn uniformly, so two on average), and its label set is the classes it shows. 1,000
  training mosaics from 1,000 CIFAR-10 training images (100 per class), 500 test mosaics from
  1,000 test images: written as PNG files with a CSV of ``path,label`` whose cells read ``cat;dog``.
- **BANKING77 pairs**: two queries of two different intents joined into one text, labelled with
  both intents: 2,000 training texts from BANKING77's train file, 1,000 test texts from its test file.

Contenders, trained on the same data and measured on the same test set:

- ``wukong``: ``ImageClassifier().fit("train.csv")`` / ``TextClassifier().fit(texts, label_lists)``,
  defaults (``auto``): one sigmoid per label, thresholds tuned on held-out predictions;
- ``wukong_features``: the same with ``strategy="features"`` (the frozen network, one-vs-rest
  logistic regressions), whose features the two hand-written ones below use;
- ``softmax_top2`` (the naive baseline the issue names): one softmax model, the top two labels:
  scikit-learn's multinomial ``LogisticRegression`` on the frozen pretrained network's features
  (EfficientNet-Lite0 at 224px; all-MiniLM-L6-v2), each input repeated once per label (how
  multi-label data is fed to a softmax classifier);
- ``one_vs_rest_at_0.5``: what a user would write by hand for multi-label data, scikit-learn's
  ``OneVsRestClassifier(LogisticRegression())`` on the same features, deciding at 0.5.

Both hand-written ones get standardised features (``StandardScaler``) and scikit-learn's default C.
Reported: micro and macro F1, subset accuracy (the whole set right), mean average precision (mAP),
labels per input (true and predicted), and the seconds each took to fit (features excluded for the
hand-written ones: they reuse the ``features`` model's).

    python benchmarks/multilabel.py     # writes benchmarks/results/multilabel.json (about 10 minutes on 2 cores)
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
from exports import DATA, cifar_subset  # noqa: E402  - one way to cut CIFAR-10, shared with exports.py


def mosaics(source: Path, n: int, seed: int, out: Path) -> tuple[Path, list[list[str]]]:
    """``n`` 2x2 mosaics of the images under ``source/<class>/``, one to three classes each, as PNG
    files and ``out/labels.csv``; returns the CSV and the label sets."""
    from PIL import Image

    files = {c.name: sorted(c.glob("*.jpg")) for c in sorted(source.iterdir())}
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True)
    lines, sets = ["path,label"], []
    for i in range(n):
        chosen = sorted(rng.choice(sorted(files), int(rng.integers(1, 4)), replace=False).tolist())
        tiles_of = chosen + rng.choice(chosen, 4 - len(chosen)).tolist()
        rng.shuffle(tiles_of)
        tiles = [np.asarray(Image.open(rng.choice(files[c])).convert("RGB")) for c in tiles_of]
        grid = np.concatenate([np.concatenate(tiles[:2], axis=1), np.concatenate(tiles[2:], axis=1)])
        Image.fromarray(grid).save(out / f"{i}.png")
        lines.append(f"{i}.png," + ";".join(chosen))
        sets.append(chosen)
    (out / "labels.csv").write_text("\n".join(lines) + "\n")
    return out / "labels.csv", sets


def query_pairs(file: str, n: int, seed: int) -> tuple[list[str], list[list[str]]]:
    """``n`` texts joining two BANKING77 queries of two different intents, with both intents."""
    import pandas as pd

    table = pd.read_csv(DATA / "banking77" / file)
    by_intent = {name: list(group.text) for name, group in table.groupby("category")}
    intents = sorted(by_intent)
    rng = np.random.default_rng(seed)
    texts, sets = [], []
    for _ in range(n):
        a, b = rng.choice(intents, 2, replace=False).tolist()
        texts.append(f"{rng.choice(by_intent[a])} {rng.choice(by_intent[b])}")
        sets.append(sorted([a, b]))
    return texts, sets


def scores(name: str, truth: np.ndarray, proba: np.ndarray, decided: np.ndarray, seconds: float) -> dict[str, Any]:
    from wukong.multilabel_metrics import multilabel_metrics

    m = multilabel_metrics(truth, proba, decided, [str(j) for j in range(truth.shape[1])])
    keep = ("micro_f1", "macro_f1", "subset_accuracy", "mAP", "mean_labels", "mean_predicted_labels")
    row = {"model": name, **{k: m[k] for k in keep}, "fit_seconds": round(seconds, 1)}
    print(json.dumps(row), flush=True)
    return row


def compare(
    task: str, model: Any, frozen: Any, train: Any, train_sets: list, test: Any, test_sets: list
) -> dict[str, Any]:
    """``model`` and ``frozen`` (strategy ``features``), fitted on ``train``, and the two hand-written
    classifiers on ``frozen``'s features, on ``test``."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from wukong.data.label_sets import indicator

    classes = model.classes_
    y_train, y_test = indicator(train_sets, classes, "train"), indicator(test_sets, classes, "test")
    rows = [
        scores(name, y_test, m.predict_proba(test), _decided(m, test), m.metrics_["train_seconds"])
        for name, m in (("wukong", model), ("wukong_features", frozen))
    ]
    f_train = frozen._features_prepared(frozen._prepare(train))
    f_test = frozen._features_prepared(frozen._prepare(test))

    started = time.time()  # one softmax model, every input once per label
    rows_of, labels_of = np.nonzero(y_train)
    softmax = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(f_train[rows_of], labels_of)
    proba = np.zeros(y_test.shape, np.float32)
    proba[:, softmax.classes_] = softmax.predict_proba(f_test)
    top2 = np.zeros(y_test.shape, bool)
    np.put_along_axis(top2, np.argsort(-proba, axis=1)[:, :2], True, axis=1)
    rows.append(scores("softmax_top2", y_test, proba, top2, time.time() - started))

    started = time.time()
    ovr = make_pipeline(StandardScaler(), OneVsRestClassifier(LogisticRegression(max_iter=2000))).fit(f_train, y_train)
    proba = ovr.predict_proba(f_test)
    rows.append(scores("one_vs_rest_at_0.5", y_test, proba, proba >= 0.5, time.time() - started))
    wukong, naive = rows[0], rows[2]
    return {
        "task": task,
        "strategy": model.strategy_,
        "strategy_reason": model.strategy_reason_,
        "backbone": model.metrics_["backbone"],
        "train_examples": len(train_sets),
        "test_examples": len(test_sets),
        "labels": len(classes),
        "rows": rows,
        "micro_f1_gain_over_softmax_top2": round(wukong["micro_f1"] - naive["micro_f1"], 4),
        "macro_f1_gain_over_softmax_top2": round(wukong["macro_f1"] - naive["macro_f1"], 4),
    }


def _decided(model: Any, inputs: Any) -> np.ndarray:
    """The model's label sets as an indicator matrix."""
    predicted = model.predict(inputs)
    return np.array([[c in names for c in model.classes_] for names in predicted])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "multilabel.json")
    args = parser.parse_args()
    from wukong import ImageClassifier, TextClassifier

    started = time.time()
    tasks = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        cifar = cifar_subset(work / "cifar", 100, 100)
        train_csv, train_sets = mosaics(cifar / "train", 1000, 0, work / "mosaics_train")
        test_csv, test_sets = mosaics(cifar / "test", 500, 1, work / "mosaics_test")
        model = ImageClassifier(progress=False).fit(str(train_csv))
        frozen = ImageClassifier(strategy="features", progress=False).fit(str(train_csv))
        train_paths = [str(train_csv.parent / f"{i}.png") for i in range(len(train_sets))]
        test_paths = [str(test_csv.parent / f"{i}.png") for i in range(len(test_sets))]
        tasks.append(compare("cifar10_mosaics", model, frozen, train_paths, train_sets, test_paths, test_sets))
    train_texts, train_sets = query_pairs("train.csv", 2000, 0)
    test_texts, test_sets = query_pairs("test.csv", 1000, 1)
    model = TextClassifier(progress=False).fit(train_texts, train_sets)
    frozen = TextClassifier(strategy="features", progress=False).fit(train_texts, train_sets)
    tasks.append(compare("banking77_query_pairs", model, frozen, train_texts, train_sets, test_texts, test_sets))
    result = {
        "tasks": tasks,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, Python {sys.version.split()[0]}",
        "command": "python benchmarks/multilabel.py",
        "seconds": round(time.time() - started, 1),
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
