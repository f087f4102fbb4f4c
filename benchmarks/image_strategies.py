"""Image transfer benchmark: Wukong side by side with what a user would write or pick instead, in one run.

Tasks: the original Wukong cat/dog samples (40 train / 22 test) and CIFAR-10 with 20 and with 100
labels per class (1,000 test images, 100 per class), a dataset no backbone here was trained on;
``cifar10_20_per_class_samples``: three disjoint samples of 20 labels per class (CIFAR-10's first,
second and third 20 training images of each class) on the same test images, each row's accuracy the
mean of the three (a single sample of 200 images moves a row by a point or two).

Rows, per task:
- Wukong ``auto`` with the default backbone (ImageNet EfficientNet-Lite0), and ``features``, ``head``,
  ``finetune`` forced;
- Wukong ``auto`` with the other backbones of the store: the fast 64px Tiny ImageNet network (the
  default before) and EfficientNet-Lite2 (``--preset best``);
- the hand-written baseline on the *same* Lite0 weights: the PyTorch transfer-learning tutorial
  recipe (fine-tune every layer, SGD momentum 0.9, lr 0.001, batch 4, StepLR(7, 0.1), 25 epochs,
  224px random resized crop + flip, the best epoch by validation accuracy on the same held-out 20%
  that Wukong uses), fp32 as the tutorial runs it;
- the small embedded architecture trained from scratch (no transfer at all).

    .venv/bin/python benchmarks/image_strategies.py                   # writes benchmarks/results/image_strategies.json
    .venv/bin/python benchmarks/image_strategies.py --tasks cat_dog --rows auto tutorial   # a part, merged into it
    .venv/bin/python benchmarks/image_strategies.py --tasks cifar10_20_per_class_samples --rows auto auto_tiny
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
DATA = Path(os.environ.get("WUKONG_DATA", ROOT.parent / "shared" / "data"))
ROWS = ("auto", "features", "head", "finetune", "auto_tiny", "auto_lite2", "tutorial", "scratch")


def wukong_row(train: Path, test: Path, **params) -> dict:
    from wukong import ImageClassifier

    started = time.perf_counter()
    clf = ImageClassifier(progress=False, **params).fit(train)
    fit_seconds = time.perf_counter() - started
    metrics = clf.evaluate(test)
    return {
        "backbone": clf.backbone_name_,
        "strategy": clf.strategy_,
        "test_accuracy": metrics["accuracy"],
        "val_accuracy": clf.metrics_["val_accuracy"],
        "fit_seconds": round(fit_seconds, 1),
        "reason": clf.strategy_reason_,
        "engine": clf.metrics_.get("engine"),
    }


def from_scratch(train: Path, test: Path, epochs: int = 40) -> dict:
    """The embedded architecture with random weights, trained end to end on the same labels."""
    from wukong.backbones.vision import load_image_backbone, scratch_twin

    row = wukong_row(
        train,
        test,
        backbone=scratch_twin(load_image_backbone("tiny")),
        strategy="finetune",
        unfreeze="all",
        epochs=epochs,
        head_epochs=1,
        backbone_lr_ratio=1.0,  # nothing pretrained to protect
    )
    return {**row, "strategy": f"from scratch ({epochs} epochs, all layers)"}


def tutorial(train: Path, test: Path, epochs: int = 25, seed: int = 0) -> dict:
    """The PyTorch transfer-learning tutorial's recipe, as a user writes it, on the same Lite0 weights."""
    import torchvision
    from torch import nn
    from torchvision import transforms

    from wukong.backbones.vision import load_image_backbone
    from wukong.data.split import stratified_split

    torch.manual_seed(seed)
    started = time.perf_counter()
    bb = load_image_backbone("efficientnet_lite0")  # the same weights, translated for timm
    mean, std = bb.data_config["mean"], bb.data_config["std"]
    train_tf = transforms.Compose(
        [
            transforms.RandomResizedCrop(224),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize(mean, std),
        ]
    )
    eval_tf = transforms.Compose(
        [transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor(), transforms.Normalize(mean, std)]
    )
    folder = torchvision.datasets.ImageFolder(str(train))
    fit_idx, val_idx = stratified_split([label for _, label in folder.samples], 0.2, seed=seed)
    fit_set = torch.utils.data.Subset(torchvision.datasets.ImageFolder(str(train), train_tf), fit_idx)
    val_set = torch.utils.data.Subset(torchvision.datasets.ImageFolder(str(train), eval_tf), val_idx)
    test_set = torchvision.datasets.ImageFolder(str(test), eval_tf)
    model = nn.Sequential(bb.network, nn.Linear(1280, len(folder.classes)))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.001, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=7, gamma=0.1)
    criterion = nn.CrossEntropyLoss()
    loader = torch.utils.data.DataLoader(fit_set, batch_size=4, shuffle=True)
    best_acc, best_state, history = -1.0, None, []
    for _ in range(epochs):
        model.train()
        for images, labels in loader:
            optimizer.zero_grad()
            loss = criterion(model(images), labels)
            loss.backward()
            optimizer.step()
        scheduler.step()
        acc = _accuracy(model, val_set)
        history.append(round(acc, 4))
        if acc > best_acc:
            best_acc, best_state = acc, copy.deepcopy(model.state_dict())
    fit_seconds = time.perf_counter() - started
    model.load_state_dict(best_state)
    return {
        "backbone": "efficientnet_lite0 (same weights)",
        "strategy": f"tutorial recipe: all layers, SGD lr 0.001 momentum 0.9, batch 4, StepLR(7, 0.1), {epochs} epochs",
        "test_accuracy": round(_accuracy(model, test_set), 4),
        "val_accuracy": round(best_acc, 4),
        "fit_seconds": round(fit_seconds, 1),
        "val_history": history,
    }


def _accuracy(model: torch.nn.Module, dataset) -> float:  # noqa: ANN001 - a torch Dataset
    model.eval()
    correct = 0
    with torch.no_grad():
        for images, labels in torch.utils.data.DataLoader(dataset, batch_size=32):
            correct += int((model(images).argmax(1) == labels).sum())
    return correct / len(dataset)


def run_row(row: str, train: Path, test: Path) -> dict:
    if row in ("auto", "features", "head", "finetune"):
        return wukong_row(train, test, strategy=row)
    if row == "auto_tiny":
        return wukong_row(train, test, backbone="wukong_resnet18_s_tiny")
    if row == "auto_lite2":
        return wukong_row(train, test, backbone="efficientnet_lite2")
    if row == "tutorial":
        return tutorial(train, test)
    return from_scratch(train, test)


SAMPLES = 3  # of cifar10_20_per_class_samples


def run_samples(row: str, trains: list[Path], test: Path) -> dict:
    """``row`` on each training sample: the mean test accuracy and fit time, and every sample's row."""
    samples = [run_row(row, train, test) for train in trains]
    return {
        "backbone": samples[0]["backbone"],
        "test_accuracy": round(float(np.mean([s["test_accuracy"] for s in samples])), 4),
        "fit_seconds": round(float(np.mean([s["fit_seconds"] for s in samples])), 1),
        "samples": samples,
    }


def summary(rows: dict) -> dict:
    """The figures the targets are about."""
    out = {}
    if "auto" in rows and "auto_tiny" in rows:
        out["default_minus_tiny_points"] = round(
            100 * (rows["auto"]["test_accuracy"] - rows["auto_tiny"]["test_accuracy"]), 1
        )
        if "samples" in rows["auto"] and "samples" in rows["auto_tiny"]:
            pairs = zip(rows["auto"]["samples"], rows["auto_tiny"]["samples"], strict=True)
            out["default_minus_tiny_points_per_sample"] = [
                round(100 * (a["test_accuracy"] - b["test_accuracy"]), 1) for a, b in pairs
            ]
    if "auto" in rows and "tutorial" in rows:
        out["auto_minus_tutorial_points"] = round(
            100 * (rows["auto"]["test_accuracy"] - rows["tutorial"]["test_accuracy"]), 1
        )
        out["auto_time_fraction_of_tutorial"] = round(rows["auto"]["fit_seconds"] / rows["tutorial"]["fit_seconds"], 3)
    return out


def main() -> None:
    from conftest import cifar_subset

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "image_strategies.json")
    parser.add_argument(
        "--tasks",
        nargs="+",
        default=["cat_dog", "cifar10_20_per_class", "cifar10_100_per_class", "cifar10_20_per_class_samples"],
    )
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=ROWS)
    args = parser.parse_args()
    os.environ.setdefault("WUKONG_CACHE", tempfile.mkdtemp(prefix="wukong-bench-cache-"))
    report = json.loads(args.out.read_text()) if args.out.exists() else {}
    if report.get("version") != 2:  # the report of the 64px default had other tasks and rows
        report = {"version": 2, "tasks": {}}
    report["machine"] = {"cpu_count": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__}
    report.setdefault("runs", []).append({"command": " ".join(sys.argv[1:]), "started": time.strftime("%F %T")})
    with tempfile.TemporaryDirectory() as tmp:
        cifar = {
            n: cifar_subset(Path(tmp) / str(n), train_per_class=n, test_per_class=100)
            for n in (20, 100)
            if f"cifar10_{n}_per_class" in args.tasks
        }
        tasks = {
            "cat_dog": (DATA / "cat_dog" / "train", DATA / "cat_dog" / "test"),
            **{f"cifar10_{n}_per_class": (c / "train", c / "test") for n, c in cifar.items()},
        }
        if "cifar10_20_per_class_samples" in args.tasks:
            trains = [
                cifar_subset(Path(tmp) / f"sample{k}", train_per_class=20, test_per_class=0, train_offset=20 * k)
                for k in range(SAMPLES)
            ]
            test = cifar_subset(Path(tmp) / "samples_test", train_per_class=0, test_per_class=100)
            tasks["cifar10_20_per_class_samples"] = ([t / "train" for t in trains], test / "test")
        for name in args.tasks:
            train, test = tasks[name]
            rows = report["tasks"].setdefault(name, {}).setdefault("rows", {})
            for row in args.rows:
                rows[row] = run_samples(row, train, test) if isinstance(train, list) else run_row(row, train, test)
                rows[row]["measured"] = time.strftime("%F %T")
                print(name, row, json.dumps(rows[row]), flush=True)
                report["tasks"][name]["summary"] = summary(rows)
                args.out.parent.mkdir(parents=True, exist_ok=True)
                args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({name: task.get("summary") for name, task in report["tasks"].items()}, indent=1))


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    main()
