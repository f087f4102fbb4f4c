"""Calibrated scores and imbalanced classes, measured on real data, each beside the plain alternative.

Calibration: the default model (``auto``) on the cat/dog photos, CIFAR-10 with 100 training images
per class (200 test images per class), and BANKING77 with 10 examples per intent (the full test
file, 3,080 texts). The plain alternative is the same model's uncalibrated softmax: expected
calibration error (ECE, 15 bins), Brier score and log loss before and after the temperature, and
the accuracy (unchanged by construction: a temperature keeps the order of the classes).

Unknowns ("none of these"): trained on 5 CIFAR-10 classes (100 images each) and tested on all 10
(200 test images each; the other 5 classes are unknown), and on 60 BANKING77 intents (10 examples
each) tested on the full test file (the other 17 intents are unknown). The default model is
trained with an explicit validation split (20%, seeded) so that every score is fitted on the same
training and validation features: maximum calibrated probability (MSP, the plain alternative),
energy, maximum logit, Mahalanobis distance (class means, Ledoit-Wolf shared covariance),
k-nearest-neighbour cosine similarity (k = 1, 5, 10), and the percentile mixes ``msp+knn`` and
``maxlogit+knn`` (Wukong's default). AUROC of known against unknown, and at the threshold
keeping 95% of known validation inputs: the share of known and unknown test inputs kept, and the
accuracy on the known ones kept.

Imbalance: CIFAR-10 with 100 training images for five classes and 10 for the other five, and
BANKING77 with 30 examples for half the intents and 3 for the other half; the default model
(``class_weight="auto"``, which here divides the training prior out of the probabilities) against
the same model with its loss weighted by class (``"loss"``, scikit-learn's ``class_weight="balanced"``)
and with every example weighing the same (``None``): macro-F1, balanced accuracy and accuracy on
balanced test sets.

    python benchmarks/trust.py          # writes benchmarks/results/trust.json (about 18 minutes on 2 cores)
    python benchmarks/trust.py --parts imbalance   # one part again; the others keep their figures
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from exports import DATA, cifar_subset  # noqa: E402  - one way to cut CIFAR-10, shared with exports.py


def calibration_row(name: str, model: Any, texts_or_paths: Any, labels: Any) -> dict[str, Any]:
    from wukong.calibration import log_loss, softmax
    from wukong.metrics import brier_score, expected_calibration_error

    logits = model._logits_prepared(model._prepare(texts_or_paths))
    ids = np.array([model.classes_.index(str(label)) for label in labels])
    raw, calibrated = softmax(logits), model.predict_proba(texts_or_paths)
    row = {
        "task": name,
        "strategy": model.strategy_,
        "temperature": model.temperature_,
        "fitted_on": model.calibration_,
        "test_examples": len(ids),
        "accuracy_before": round(float((raw.argmax(1) == ids).mean()), 4),
        "accuracy_after": round(float((calibrated.argmax(1) == ids).mean()), 4),
        "ece_before": round(expected_calibration_error(ids, raw), 4),
        "ece_after": round(expected_calibration_error(ids, calibrated), 4),
        "brier_before": round(brier_score(ids, raw), 4),
        "brier_after": round(brier_score(ids, calibrated), 4),
        "log_loss_before": round(log_loss(logits, ids), 4),
        "log_loss_after": round(log_loss(logits, ids, model.temperature_), 4),
        "train_seconds": model.metrics_["train_seconds"],
    }
    print(json.dumps(row), flush=True)
    return row


def labelled_files(folder: Path) -> tuple[list[str], list[str]]:
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    return [str(p) for p in files], [p.parent.name for p in files]


def banking(per_intent: dict[str, int] | int, seed: int = 0) -> tuple[list[str], list[str]]:
    import pandas as pd

    train = pd.read_csv(DATA / "banking77" / "train.csv")
    parts = [
        group.sample(per_intent if isinstance(per_intent, int) else per_intent[name], random_state=seed)
        for name, group in train.groupby("category")
    ]
    both = pd.concat(parts)
    return list(both.text), list(both.category)


def banking_test() -> tuple[list[str], list[str]]:
    import pandas as pd

    test = pd.read_csv(DATA / "banking77" / "test.csv")
    return list(test.text), list(test.category)


def unknown_rows(name: str, model: Any, train: Any, val: Any, test: Any, known: list[str]) -> list[dict[str, Any]]:
    """Every score of ``model`` (fitted on ``train`` with ``val``) on ``test``; classes not ``known`` are unknown."""
    from sklearn.metrics import roc_auc_score

    from wukong.openset import SCORES, K, fit_score

    def features(inputs: list[str]) -> tuple[np.ndarray, np.ndarray]:
        f = model._features_prepared(model._prepare(inputs))
        return f, model._logits_from_features(f)

    (tf, tl), (vf, vl), (xf, xl) = features(train[0]), features(val[0]), features(test[0])
    is_known = np.isin(test[1], known)
    truth = np.array([model.classes_.index(c) if c in known else -1 for c in test[1]])
    if os.environ.get("WUKONG_BENCH_DUMP"):  # the features, to study other scores without training again
        dump = Path(os.environ["WUKONG_BENCH_DUMP"]) / f"{name}.npz"
        ty = np.array([model.classes_.index(c) for c in train[1]])
        np.savez(
            dump, tf=tf, tl=tl, ty=ty, vf=vf, vl=vl, xf=xf, xl=xl, known=is_known, truth=truth, t=model.temperature_
        )
    scores = {}
    for score_name in SCORES:
        for k in (K, 5, 10) if "knn" in score_name else (K,):
            fitted = fit_score(score_name, tf, tl, vf, vl, temperature=model.temperature_, k=k)
            label = score_name if k == K else f"{score_name} (k={k})"
            scores[label] = (fitted(xf, xl), fitted.threshold(0.95))
    mahalanobis = _mahalanobis(tf, np.array([model.classes_.index(c) for c in train[1]]), len(known))
    on_val = mahalanobis(vf)
    scores["mahalanobis"] = (mahalanobis(xf), float(np.quantile(on_val, 0.05)))
    chosen = model.open_set_
    assert np.allclose(scores[chosen.name][0], chosen(xf, xl), atol=1e-5), "the model's own score differs"
    rows = []
    for score_name, (values, threshold) in scores.items():
        kept = values >= threshold
        predicted = xl.argmax(1)
        rows.append(
            {
                "task": name,
                "score": score_name,
                "chosen_by_wukong": score_name == chosen.name,
                "auroc": round(float(roc_auc_score(is_known, values)), 4),
                "known_kept": round(float(kept[is_known].mean()), 4),
                "unknown_kept": round(float(kept[~is_known].mean()), 4),
                "known_accuracy_kept": round(float((predicted == truth)[is_known & kept].mean()), 4),
                "known_accuracy_all": round(float((predicted == truth)[is_known].mean()), 4),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    best = rows[[r["score"] for r in rows].index(chosen.name)]
    msp = rows[[r["score"] for r in rows].index("msp")]
    rows.append({"task": name, "chosen_minus_msp_auroc_points": round(100 * (best["auroc"] - msp["auroc"]), 1)})
    print(json.dumps(rows[-1]), flush=True)
    return rows


def _mahalanobis(features: np.ndarray, labels: np.ndarray, classes: int) -> Any:
    """Minus the smallest Mahalanobis distance to a class mean (shared Ledoit-Wolf covariance)."""
    from sklearn.covariance import LedoitWolf

    means = np.stack([features[labels == c].mean(0) for c in range(classes)])
    precision = LedoitWolf().fit(features - means[labels]).precision_

    def score(x: np.ndarray) -> np.ndarray:
        d = x[:, None, :] - means[None]
        return -np.einsum("nkd,de,nke->nk", d, precision, d).min(1)

    return score


def split(inputs: list[str], labels: list[str], fraction: float = 0.2, seed: int = 0) -> tuple[tuple, tuple]:
    from sklearn.model_selection import train_test_split

    a, b, la, lb = train_test_split(inputs, labels, test_size=fraction, stratify=labels, random_state=seed)
    return (list(a), list(la)), (list(b), list(lb))


def imbalance_rows(name: str, make: Any, train: Any, test: tuple[list[str], list[str]]) -> list[dict[str, Any]]:
    rows = []
    for setting in ("auto", "loss", None):
        model = (
            make(class_weight=setting).fit(*train)
            if isinstance(train, tuple)
            else make(class_weight=setting).fit(train)
        )
        metrics = model.evaluate(*test)
        rows.append(
            {
                "task": name,
                "class_weight": {"auto": "auto (here: balanced, the prior divided out)", "loss": "loss (weighted)"}.get(
                    setting, "none (every example weighs the same)"
                ),
                "weighted": model.metrics_["class_weight"],
                "strategy": model.strategy_,
                "reason": model.strategy_reason_,
                "macro_f1": metrics["macro_f1"],
                "balanced_accuracy": metrics["balanced_accuracy"],
                "accuracy": metrics["accuracy"],
                "train_seconds": model.metrics_["train_seconds"],
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    none = rows[-1]
    rows.append(
        {
            "task": name,
            "macro_f1_gain_points": round(100 * (rows[0]["macro_f1"] - none["macro_f1"]), 1),
            "balanced_accuracy_gain_points": round(100 * (rows[0]["balanced_accuracy"] - none["balanced_accuracy"]), 1),
            "loss_weighting_macro_f1_gain_points": round(100 * (rows[1]["macro_f1"] - none["macro_f1"]), 1),
        }
    )
    print(json.dumps(rows[-1]), flush=True)
    return rows


def imbalanced_cifar(source: Path, target: Path) -> Path:
    """A copy of ``source`` (100 per class) keeping 10 images in each of the last five classes."""
    for i, folder in enumerate(sorted(p for p in source.iterdir() if p.is_dir())):
        files = sorted(folder.iterdir())[: 100 if i < 5 else 10]
        (target / folder.name).mkdir(parents=True)
        for f in files:
            shutil.copy(f, target / folder.name / f.name)
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "trust.json")
    parser.add_argument("--parts", nargs="+", default=["calibration", "unknown", "imbalance"])
    args = parser.parse_args()
    from wukong import ImageClassifier, TextClassifier

    started = time.time()
    result: dict[str, Any] = {"calibration": [], "unknown": [], "imbalance": []}
    earlier = json.loads(args.out.read_text()) if args.out.exists() else {}
    for part in set(result) - set(args.parts):  # a part not run now keeps its figures from before
        result[part] = earlier.get(part, [])
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        cifar = cifar_subset(work / "cifar", 100, 200)
        cifar_test = labelled_files(cifar / "test")
        b77_test = banking_test()
        if "calibration" in args.parts:
            cat_dog = ImageClassifier(progress=False).fit(str(DATA / "cat_dog" / "train"))
            result["calibration"].append(
                calibration_row("cat_dog", cat_dog, *labelled_files(DATA / "cat_dog" / "test"))
            )
            cifar_model = ImageClassifier(progress=False).fit(str(cifar / "train"))
            result["calibration"].append(calibration_row("cifar10_100_per_class", cifar_model, *cifar_test))
            b77 = TextClassifier(progress=False).fit(*banking(10))
            result["calibration"].append(calibration_row("banking77_10_per_intent", b77, *b77_test))
        if "unknown" in args.parts:
            paths, labels = labelled_files(cifar / "train")
            known = sorted(set(labels))[:5]
            train, val = split(*zip(*[(p, c) for p, c in zip(paths, labels, strict=True) if c in known], strict=True))
            model = ImageClassifier(progress=False).fit(*train, val=val)
            result["unknown"] += unknown_rows("cifar10_5_known_5_unknown", model, train, val, cifar_test, known)
            texts, intents = banking(10)
            known = sorted(np.random.default_rng(0).choice(sorted(set(intents)), 60, replace=False).tolist())
            train, val = split(*zip(*[(t, c) for t, c in zip(texts, intents, strict=True) if c in known], strict=True))
            model = TextClassifier(progress=False).fit(*train, val=val)
            result["unknown"] += unknown_rows("banking77_60_known_17_unknown", model, train, val, b77_test, known)
        if "imbalance" in args.parts:
            skewed = imbalanced_cifar(cifar / "train", work / "cifar_skewed")
            result["imbalance"] += imbalance_rows(
                "cifar10_100_and_10_per_class",
                lambda **kw: ImageClassifier(progress=False, **kw),
                str(skewed),
                cifar_test,
            )
            intents = sorted(set(b77_test[1]))
            counts = {name: 30 if i % 2 == 0 else 3 for i, name in enumerate(intents)}  # the smallest intent has 35
            result["imbalance"] += imbalance_rows(
                "banking77_30_and_3_per_intent",
                lambda **kw: TextClassifier(progress=False, **kw),
                banking(counts),
                b77_test,
            )
    result.update(
        {
            "targets": {
                "ece_after_at_most": 0.05,
                "ece_target_tasks": ["cifar10_100_per_class", "banking77_10_per_intent"],
                "macro_f1_gain_points_at_least": 5,
                "unknown_auroc_points_over_msp_at_least": 5,
            },
            "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, Python {sys.version.split()[0]}",
        }
    )
    run = {"command": "python benchmarks/trust.py " + " ".join(sys.argv[1:]), "parts": args.parts}
    run["seconds"] = round(time.time() - started, 1)
    result["runs"] = [r for r in earlier.get("runs", []) if set(r["parts"]) - set(args.parts)] + [run]
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
