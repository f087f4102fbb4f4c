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

Regret = the best row's test accuracy minus ``auto``'s (mean over the samples), and ``auto``'s
margin over the better of the two no-transfer rows.

    python benchmarks/auto.py        # writes benchmarks/results/auto.json (about an hour on 2 cores)
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
from auto_tasks import LIKE_PRETRAINING, TASKS, sample  # noqa: E402

POOL, TEST = 100, 50


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


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    rows = {k: round(float(np.mean([r["rows"][k] for r in runs])), 4) for k in runs[0]["rows"]}
    auto = round(float(np.mean([r["auto"]["test_accuracy"] for r in runs])), 4)
    baseline = max(v for k, v in rows.items() if "pixels" in k)
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
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
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
