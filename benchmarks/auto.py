"""``auto``'s regret: on tasks like and unlike the pretraining data, at 5, 10, 20 and 100 labels per
class, every candidate ``auto`` weighs is trained and tested side by side with ``auto`` itself.

Tasks (``auto_tasks.py``): CIFAR-10 photos (like ImageNet), scikit-learn's handwritten digit scans,
synthetic shapes and synthetic textures (unlike it). Each is a pool of 100 images per class and a
test set of 50 per class; training sets of 5, 10 and 20 per class are drawn from the pool three
times (seeds 0-2), 100 per class once.

Rows, each trained on the same training images and scored on the same test images:

- ``auto``: ``ImageClassifier().fit(train_folder)``, the defaults (EfficientNet-Lite0 at 224px);
- two rows per ``features`` candidate that ``auto`` compares (the top, each stage, concatenations,
  raw pixels pooled to 16 and 32): wukong's cross-validated logistic regression on that tap's
  features of all the training images and their mirror images, and of the images alone ("no
  mirrors"): what ``features`` with that tap fits at the end, whichever way it decides;
- ``sklearn_pixels``: the no-transfer model a user would write by hand: scikit-learn's
  ``LogisticRegression`` (standardised inputs, default C) on the images resized to 32x32 RGB;
- ``finetune`` (100 per class only, where ``auto`` weighs it): ``strategy="finetune"``. Where
  ``auto`` kept the fine-tuned network, that network is this row (it is the same fit).

Text tasks (``--tasks sst2 banking77 banking20_cipher``): SST-2 sentences (two sentiments), BANKING77
requests (77 intents), and, unlike the encoder's pretraining data, 20 of those intents (every fourth)
in a seeded letter-substitution cipher (the same words, in a 'language' the encoder never read). A
pool of 100 texts per class is drawn from the training file (seed 0; smaller intents give all they
have), training sets drawn from it as for images, the whole test file as test set.
Rows:

- ``auto``: ``TextClassifier().fit(texts, labels)``, the defaults (all-MiniLM-L6-v2);
- ``features``, ``head``, ``fewshot``, ``finetune``: ``strategy=`` each; where ``auto`` chose one
  of them, its fit is that row (the same fit);
- ``tfidf``: the no-transfer model a user would write by hand: scikit-learn TF-IDF of word 1-2-grams
  and character 2-5-grams, ``LogisticRegression`` with C chosen by cross-validated log loss.

Regret = the best row's test accuracy minus ``auto``'s (mean over the samples), and ``auto``'s
margin over the better of the no-transfer rows (raw pixels; TF-IDF for text).

    python benchmarks/auto.py        # images: writes benchmarks/results/auto.json (about an hour on 2 cores)
    python benchmarks/auto.py --tasks sst2 banking20_cipher banking77     # text (about 1.5 hours)
"""

from __future__ import annotations

import argparse
import dataclasses
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
from auto_tasks import LIKE_PRETRAINING, TASKS, cipher, sample  # noqa: E402

POOL, TEST = 100, 50
# text tasks: (train file, test file, the classes kept (every k-th), letter-substitution cipher)
TEXT_TASKS = {
    "sst2": ("sst2/train.tsv", "sst2/test.tsv", 1, False),
    "banking77": ("banking77/train.csv", "banking77/test.csv", 1, False),
    "banking20_cipher": ("banking77/train.csv", "banking77/test.csv", 4, True),
}
TEXT_STRATEGIES = ("features", "head", "fewshot", "finetune")


class Candidates:
    """Every ``features`` candidate's test accuracy, read as ``auto`` reads it (``candidate_views``:
    the network's taps in one cached pass, raw pixels through the same centre crop)."""

    def __init__(self, pool: Path, test: Path) -> None:
        from wukong.backbones.vision import load_image_backbone
        from wukong.modalities import image

        self.image = image
        native = load_image_backbone(None)
        self.passes = image.FrozenPasses("auto", image.bf16_for(native, None))
        self.classes = image.read_labelled(test, None, None, native, progress=False, role="test")[0].classes
        self.views = []
        for backbone, taps in image.candidate_views(native, "auto", "auto"):
            reader = image.TapReader(self.passes, backbone, taps)
            sets = [
                image.read_labelled(f, None, self.classes, backbone, progress=False, role="")[0] for f in (pool, test)
            ]
            for tap in taps:  # the whole pool once: every sample's features then come from the cache
                reader(tap, sets[0].examples, flip=True)
                reader(tap, sets[1].examples, flip=False)
            self.views.append((backbone, taps, reader, sets[1]))

    def scores(self, train: Path) -> tuple[dict[str, float], dict[str, list[float]]]:
        """Each candidate's test accuracy, and its cross-validated log loss, standard error and width."""
        from wukong.strategies.features import fit_linear_classifier

        out, cv = {}, {}
        for backbone, taps, reader, test in self.views:
            labelled = self.image.read_labelled(train, None, self.classes, backbone, progress=False, role="")[0]
            for tap, flip in ((tap, flip) for tap in taps for flip in (True, False)):
                feats, labels, groups = reader(tap, labelled.examples, flip=flip)
                fit = fit_linear_classifier(feats, labels, len(self.classes), groups=groups)
                test_feats, test_labels, _ = reader(tap, test.examples, flip=False)
                predicted = (test_feats @ fit.weight.T + fit.bias).argmax(axis=1)
                name = f"features[{self.image.tap_name(tap)}]" + ("" if flip else " no mirrors")
                out[name] = round(float((predicted == test_labels).mean()), 4)
                cv[name] = [fit.info["cv_loss"], fit.info["cv_loss_se"], int(feats.shape[1])]
        return out, cv


def sklearn_pixels(train: Path, test: Path) -> float:
    """Raw pixels + scikit-learn's logistic regression: the hand-written no-transfer baseline."""
    from PIL import Image
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    def read(folder: Path) -> tuple[np.ndarray, np.ndarray]:
        files = sorted(folder.glob("*/*"))
        x = np.stack([np.asarray(Image.open(f).convert("RGB").resize((32, 32)), np.float32).ravel() for f in files])
        return x / 255, np.array([f.parent.name for f in files])

    x, y = read(train)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000)).fit(x, y)
    return round(float(model.score(*read(test))), 4)


def run_auto(train: Path, test: Path, **params: Any) -> dict[str, Any]:
    from wukong import ImageClassifier

    started = time.time()
    model = ImageClassifier(progress=False, **params).fit(train)
    seconds = round(time.time() - started, 1)
    return {
        "test_accuracy": round(float(model.evaluate(test)["accuracy"]), 4),
        "strategy": model.strategy_,
        "tap": model.metrics_.get("tap"),
        "compared_on_validation": model.metrics_.get("compared_on_validation"),
        "mirror_images": model.metrics_.get("mirror_images"),
        "reason": model.strategy_reason_,
        "fit_seconds": seconds,
    }


def one_task(name: str, sizes: list[int], samples: int, work: Path, out: dict[str, Any], save: Any) -> None:
    root = TASKS[name](work / name, pool=POOL, test=TEST)
    started = time.time()
    candidates = Candidates(root / "pool", root / "test")
    task = out["tasks"].setdefault(name, {"like_pretraining": LIKE_PRETRAINING[name], "sizes": {}})
    task["features_seconds"] = round(time.time() - started, 1)
    for size in sizes:
        runs = []
        for seed in range(samples if size < POOL else 1):
            train = root / "pool" if size == POOL else sample(root / "pool", size, seed, work / f"{name}-{size}-{seed}")
            rows, cv = candidates.scores(train)
            rows["sklearn_pixels"] = sklearn_pixels(train, root / "test")
            auto = run_auto(train, root / "test")
            if size == POOL:  # the medium-data rule weighs fine-tuning: measure it
                if auto["strategy"] == "finetune":
                    rows["finetune"] = auto["test_accuracy"]
                else:
                    rows["finetune"] = run_auto(train, root / "test", strategy="finetune")["test_accuracy"]
            best = max(rows, key=rows.get)
            runs.append(
                {
                    "seed": seed,
                    "rows": rows,
                    "cv": cv,
                    "auto": auto,
                    "best": best,
                    "regret": rows[best] - auto["test_accuracy"],
                }
            )
            print(
                name,
                size,
                seed,
                f"auto {auto['test_accuracy']} ({auto['strategy']}, {auto['tap']})",
                f"best {best} {rows[best]}",
                flush=True,
            )
        task["sizes"][str(size)] = summarise(runs)
        save()


def run_text(train: tuple[list[str], list[str]], test: tuple[list[str], list[str]], **params: Any) -> dict[str, Any]:
    from wukong import TextClassifier

    started = time.time()
    model = TextClassifier(progress=False, **params).fit(*train)
    seconds = round(time.time() - started, 1)
    return {
        "test_accuracy": round(float(model.score(*test)), 4),
        "strategy": model.strategy_,
        "backbone": model.backbone_name_,
        "reason": model.strategy_reason_,
        "fit_seconds": seconds,
    }


def one_text_task(name: str, sizes: list[int], samples: int, out: dict[str, Any], save: Any) -> None:
    from text import DATA, per_class_sample
    from text_layers import tfidf

    from wukong.data.text import read_text_table

    train_file, test_file, every, ciphered = TEXT_TASKS[name]
    full = read_text_table(DATA / train_file)
    kept = set(full.classes[::every])
    full = full.subset([i for i, c in enumerate(full.labels) if c in kept])
    pool = full.subset(per_class_sample(full.labels, POOL, seed=0))
    test_source = read_text_table(DATA / test_file, classes=full.classes)
    rows = [i for i, c in enumerate(test_source.labels) if c in kept]
    test = ([test_source.texts[i] for i in rows], [test_source.labels[i] for i in rows])
    if ciphered:  # the same words and n-grams, in a 'language' the encoder never read
        pool = dataclasses.replace(pool, texts=cipher(pool.texts))
        test = (cipher(test[0]), test[1])
    ids = {c: i for i, c in enumerate(c for c in full.classes if c in kept)}
    test_ids = np.array([ids[c] for c in test[1]])
    task = out["tasks"].setdefault(name, {"like_pretraining": not ciphered, "sizes": {}})
    for size in sizes:
        runs = []
        for seed in range(samples if size < POOL else 1):
            part = pool if size == POOL else pool.subset(per_class_sample(pool.labels, size, seed=seed))
            train = (list(part.texts), list(part.labels))
            auto = run_text(train, test)
            same = {auto["strategy"]} if auto["backbone"] != "tfidf-ngrams" else set()  # that fit is the row
            fits = {s: auto if s in same else run_text(train, test, strategy=s) for s in TEXT_STRATEGIES}
            rows = {s: fit["test_accuracy"] for s, fit in fits.items()}
            rows["tfidf"] = tfidf(train[0], np.array([ids[c] for c in train[1]]), test[0], test_ids)["accuracy"]
            best = max(rows, key=rows.get)
            seconds = {s: fit["fit_seconds"] for s, fit in fits.items()}
            runs.append(
                {
                    "seed": seed,
                    "rows": rows,
                    "fit_seconds": seconds,
                    "auto": auto,
                    "best": best,
                    "regret": rows[best] - auto["test_accuracy"],
                }
            )
            print(name, size, seed, f"auto {auto['test_accuracy']} ({auto['strategy']})", rows, flush=True)
        task["sizes"][str(size)] = summarise(runs)
        save()


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    rows = {k: round(float(np.mean([r["rows"][k] for r in runs])), 4) for k in runs[0]["rows"]}
    auto = round(float(np.mean([r["auto"]["test_accuracy"] for r in runs])), 4)
    baseline = max(v for k, v in rows.items() if "pixels" in k or k == "tfidf")
    best = max(rows, key=rows.get)
    return {
        "samples": len(runs),
        "auto": auto,
        "best_row": best,
        "best": rows[best],
        "regret_points": round(100 * max(0.0, rows[best] - auto), 2),
        "auto_minus_no_transfer_points": round(100 * (auto - baseline), 2),
        "rows": rows,
        "runs": runs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=[*TASKS, *TEXT_TASKS])
    parser.add_argument("--sizes", nargs="+", type=int, default=[5, 10, 20, POOL])
    parser.add_argument("--samples", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "auto.json")
    args = parser.parse_args()
    out: dict[str, Any] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, Python {sys.version.split()[0]}",
        "measured": time.strftime("%Y-%m-%d %H:%M:%S"),
        "tasks": {},
    }
    if args.out.exists():  # a rerun of some tasks keeps the others, and the note saying which run made which
        before = json.loads(args.out.read_text())
        out["tasks"] = before.get("tasks", {})
        if "note" in before:
            out["note"] = before["note"]

    def save() -> None:
        args.out.write_text(json.dumps(out, indent=2) + "\n")

    work = Path(tempfile.mkdtemp(prefix="wukong-auto-"))
    try:
        for name in args.tasks:
            if name in TEXT_TASKS:
                one_text_task(name, args.sizes, args.samples, out, save)
            else:
                one_task(name, args.sizes, args.samples, work, out, save)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for name, task in out["tasks"].items():
        for size, s in task["sizes"].items():
            print(
                f"{name:9} {size:>4}/class  auto {s['auto']:.3f}  best {s['best_row']} {s['best']:.3f}  "
                f"regret {s['regret_points']:.1f}  vs no transfer {s['auto_minus_no_transfer_points']:+.1f}"
            )


if __name__ == "__main__":
    main()
