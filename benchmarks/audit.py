"""``wukong audit`` on real data with planted problems, beside what a user would otherwise do.

Label errors: CIFAR-10 with 100 training images per class (500 test images per class) and
BANKING77 with 10 examples per intent (the full test file, 3,080 texts), 10% of the training
labels flipped to another class at random (seeded). Rows: precision and recall of the flagged
items against the flipped ones; test accuracy of the ``features`` model (the cross-validated
linear classifier on the default network's features, so every row trains the same way) on the
true labels, on the noisy ones, and on the noisy ones after ``--clean`` (``report.cleaned()``);
beside them, the alternative a user would pick: cleanlab's own ``CleanLearning`` around
scikit-learn's ``LogisticRegression`` on the same features (its defaults), its flagged items
scored the same way and its test accuracy.

Leakage: 50 of 1,000 CIFAR-10 test images (5%) copied into the 1,000 training images, each
re-encoded as JPEG (quality 85) and resized from 32 to 40 pixels: how many are found, and which
other train/test pairs the audit reports (CIFAR-10 is known to hold near-duplicates of its own).
The same with exact copies.

Outliers: 16 Tiny ImageNet images of things CIFAR-10 does not hold (jellyfish, pretzels, ...)
labelled as CIFAR-10 classes among the 1,000 training images: how many are flagged, and how many
CIFAR-10 images with them.

    python benchmarks/audit.py          # writes benchmarks/results/audit.json (about 12 minutes on 2 cores)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from exports import DATA, cifar_subset  # noqa: E402
from trust import banking, banking_test, labelled_files  # noqa: E402

NOISE = 0.10
ODD_CLASSES = ("n01910747", "n02788148", "n02795169", "n07695742", "n07734744", "n07749582", "n07753592", "n07873807")


def flip(labels: list[str], share: float, seed: int) -> tuple[list[str], set[int]]:
    """``share`` of the labels changed to another class, chosen at random (seeded); the changed indices."""
    rng = np.random.default_rng(seed)
    classes = sorted(set(labels))
    chosen = rng.choice(len(labels), int(round(share * len(labels))), replace=False)
    noisy = list(labels)
    for i in chosen:
        noisy[i] = rng.choice([c for c in classes if c != labels[i]])
    return noisy, set(chosen.tolist())


def precision_recall(flagged: set[int], truth: set[int]) -> dict[str, Any]:
    hits = len(flagged & truth)
    return {
        "flagged": len(flagged),
        "precision": round(hits / len(flagged), 4) if flagged else None,
        "recall": round(hits / len(truth), 4),
    }


def label_error_rows(name: str, make: Any, inputs: list[Any], labels: list[str], test: tuple[list, list]) -> list:
    """The rows of one task: flagged items and test accuracy, noisy / cleaned / clean / CleanLearning."""
    from wukong import audit

    noisy, flipped = flip(labels, NOISE, seed=0)
    started = time.time()
    report = audit(inputs, noisy, estimator=make(), progress=False)
    audit_seconds = round(time.time() - started, 1)
    flagged = {i["index"] for i in report.findings["label_issues"]}
    rows = []

    def accuracy(x: list[Any], y: list[str]) -> float:
        return round(float(make().fit(x, y).score(*test)), 4)

    rows.append({"task": name, "row": "true labels (no noise)", "test_accuracy": accuracy(inputs, labels)})
    rows.append({"task": name, "row": "noisy labels, as given", "test_accuracy": accuracy(inputs, noisy)})
    kept_inputs, kept_labels = report.cleaned()
    rows.append(
        {
            "task": name,
            "row": "noisy labels, wukong audit --clean",
            "test_accuracy": accuracy(kept_inputs, kept_labels),
            "left_out": len(report.flagged),
            "audit_seconds": audit_seconds,
            **precision_recall(flagged, flipped),
        }
    )
    rows.append({"task": name, **clean_learning(report.sets["train"], test, make, flipped)})
    lost = rows[0]["test_accuracy"] - rows[1]["test_accuracy"]
    for row in rows[2:]:
        gained = row["test_accuracy"] - rows[1]["test_accuracy"]
        row["share_of_loss_recovered"] = round(gained / lost, 3) if lost > 0 else None
    rows[0]["accuracy_lost_to_noise"] = round(lost, 4)
    return rows


def clean_learning(train: Any, test: tuple[list, list], make: Any, flipped: set[int]) -> dict[str, Any]:
    """What a user would write with cleanlab directly: CleanLearning(LogisticRegression()) on the
    same (cached) features, then scored on the test set's features."""
    from cleanlab.classification import CleanLearning
    from sklearn.linear_model import LogisticRegression

    features, labels = train.features, train.labels
    model = CleanLearning(LogisticRegression(max_iter=2000), seed=0)
    model.fit(features, labels)
    issues = model.get_label_issues()
    flagged = set(np.flatnonzero(issues["is_label_issue"].to_numpy()).tolist())
    estimator = make()
    test_features = estimator._embedded(test[0], test[1], train.classes, "test")[2]
    test_labels = np.asarray([train.classes.index(c) for c in test[1]])
    return {
        "row": "noisy labels, cleanlab CleanLearning(LogisticRegression()) on the same features",
        "test_accuracy": round(float((model.predict(test_features) == test_labels).mean()), 4),
        **precision_recall(flagged, flipped),
    }


def leakage_rows(cifar: Path, work: Path) -> list[dict[str, Any]]:
    from PIL import Image

    from wukong import ImageClassifier, audit

    test_paths, test_labels = labelled_files(cifar / "test")
    planted = np.random.default_rng(0).choice(len(test_paths), 50, replace=False)
    rows = []
    for how in ("re-encoded JPEG q85, resized 32->40 px", "exact copies"):
        train = work / f"leak_{how[:5]}"
        shutil.copytree(cifar / "train", train)
        names = {}
        for k, i in enumerate(planted):
            target = train / test_labels[i] / f"leak_{k}.jpg"
            if how == "exact copies":
                shutil.copyfile(test_paths[i], target)
            else:
                Image.open(test_paths[i]).convert("RGB").resize((40, 40), Image.BICUBIC).save(target, quality=85)
            names[str(target)] = test_paths[i]
        report = audit(str(train), test=str(cifar / "test"), estimator=ImageClassifier(progress=False), progress=False)
        pairs = [(p["items"][0]["item"], p["items"][1]["item"], p["kind"]) for p in report.findings["leakage"]]
        found = {a for a, b, _ in pairs if names.get(a) == b}
        others = [{"train": a, "test": b, "kind": kind} for a, b, kind in pairs if a not in names]
        rows.append(
            {
                "copies": how,
                "planted": len(names),
                "found": len(found),
                "other_pairs_reported": len(others),
                "other_pairs": others[:20],
            }
        )
    return rows


def outlier_row(cifar: Path, work: Path) -> dict[str, Any]:
    from wukong import ImageClassifier, audit

    train = work / "odd"
    shutil.copytree(cifar / "train", train)
    classes = sorted(p.name for p in train.iterdir())
    odd = set()
    with tarfile.open(DATA / "tiny-imagenet.tar.gz") as tar:
        taken: dict[str, int] = {}
        for member in tar:
            parts = Path(member.name).parts
            if len(parts) == 4 and parts[1] == "train" and parts[2] in ODD_CLASSES and taken.get(parts[2], 0) < 2:
                k = len(odd)
                target = train / classes[k % len(classes)] / f"odd_{k}.jpg"
                target.write_bytes(tar.extractfile(member).read())
                taken[parts[2]] = taken.get(parts[2], 0) + 1
                odd.add(str(target))
            if len(odd) == 2 * len(ODD_CLASSES):
                break
    report = audit(str(train), estimator=ImageClassifier(progress=False), progress=False)
    flagged = {o["item"] for o in report.findings["outliers"]}
    return {
        "planted": len(odd),
        "found": len(flagged & odd),
        "cifar_images_flagged": len(flagged - odd),
        "of_cifar_images": sum(1 for _ in (cifar / "train").rglob("*.jpg")),
        "rule": report.findings["outlier_rule"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "audit.json")
    args = parser.parse_args()
    from wukong import ImageClassifier, TextClassifier

    started = time.time()
    result: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        cifar = cifar_subset(work / "cifar", 100, 500)
        cifar_test = labelled_files(cifar / "test")
        small = cifar_subset(work / "cifar_small", 100, 100)  # 1,000 test images, 5% of them copied
        images = lambda: ImageClassifier(strategy="features", progress=False)  # noqa: E731
        texts = lambda: TextClassifier(strategy="features", progress=False)  # noqa: E731
        result["label_errors"] = label_error_rows(
            "cifar10_100_per_class", images, *labelled_files(cifar / "train"), cifar_test
        )
        result["label_errors"] += label_error_rows("banking77_10_per_intent", texts, *banking(10), banking_test())
        result["leakage"] = leakage_rows(small, work)
        result["outliers"] = outlier_row(small, work)
    result["targets"] = {
        "label_errors": "recall >= 0.7 at precision >= 0.7; --clean recovers at least half of the accuracy lost",
        "leakage": "every planted copy found",
    }
    result["machine"] = f"{platform.machine()}, {os.cpu_count()} CPU cores, Python {sys.version.split()[0]}"
    result["command"] = "python benchmarks/audit.py " + " ".join(sys.argv[1:])
    result["seconds"] = round(time.time() - started, 1)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
