"""Image transfer benchmark: every strategy side by side with training from scratch, in one run.

Tasks: the original Wukong cat/dog samples (40 train / 22 test) and CIFAR-10 with 20 labels per
class (200 train; 1,000 test images), a dataset the embedded backbone was not pretrained on.
Also: feature-extraction throughput of the embedded backbone, bf16 on and off, against the loop a
user would write by hand (torchvision ImageFolder + transforms, fp32).

    .venv/bin/python benchmarks/image_strategies.py            # writes benchmarks/results/image_strategies.json
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

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
DATA = Path(os.environ.get("WUKONG_DATA", ROOT.parent / "shared" / "data"))


def run_strategy(train: Path, test: Path, **params) -> dict:
    from wukong import ImageClassifier

    started = time.perf_counter()
    clf = ImageClassifier(progress=False, **params).fit(train)
    fit_seconds = time.perf_counter() - started
    metrics = clf.evaluate(test)
    return {
        "strategy": clf.strategy_,
        "test_accuracy": metrics["accuracy"],
        "val_accuracy": clf.metrics_["val_accuracy"],
        "fit_seconds": round(fit_seconds, 1),
        "reason": clf.strategy_reason_,
    }


def from_scratch(train: Path, test: Path, epochs: int) -> dict:
    """The embedded architecture with random weights, trained end to end on the same labels."""
    from wukong import ImageClassifier
    from wukong.backbones.vision import load_image_backbone, scratch_twin

    started = time.perf_counter()
    clf = ImageClassifier(
        scratch_twin(load_image_backbone()),
        strategy="finetune",
        unfreeze="all",
        epochs=epochs,
        head_epochs=1,
        backbone_lr_ratio=1.0,  # nothing pretrained to protect
        progress=False,
    ).fit(train)
    return {
        "strategy": f"from scratch ({epochs} epochs, all layers)",
        "test_accuracy": clf.evaluate(test)["accuracy"],
        "val_accuracy": clf.metrics_["val_accuracy"],
        "fit_seconds": round(time.perf_counter() - started, 1),
    }


def throughput(folder: Path, limit: int = 2000) -> dict:
    """Images/s to turn files into features: Wukong (decode once, batched, bf16 on/off) vs naive."""
    import torchvision
    from torchvision import transforms

    from wukong.backbones.vision import load_image_backbone
    from wukong.data.augment import ArrayImageDataset
    from wukong.data.images import decode_images, list_images
    from wukong.network import FeatureExtractor, TransferNet
    from wukong.runtime import inference

    bb = load_image_backbone()
    net = TransferNet(FeatureExtractor(bb.network), torch.nn.Identity(), bb.data_config["mean"], bb.data_config["std"])
    net = net.to(memory_format=torch.channels_last).eval()
    paths = list_images([folder])[:limit]
    results = {"images": len(paths)}

    started = time.perf_counter()
    store = decode_images(paths, bb.resize_size)
    decode_seconds = time.perf_counter() - started
    results["decode_img_per_s"] = round(len(paths) / decode_seconds, 1)
    for bf16 in (True, False):
        loader = torch.utils.data.DataLoader(
            ArrayImageDataset(store.pixels, store.labels, bb.input_size, train=False), batch_size=256
        )
        started = time.perf_counter()
        with inference(torch.device("cpu"), bf16):
            for images, _ in loader:
                net.embed(images.float().div_(255.0))
        seconds = time.perf_counter() - started
        results[f"wukong_features_img_per_s_bf16_{'on' if bf16 else 'off'}"] = round(len(paths) / seconds, 1)
        results[f"wukong_end_to_end_img_per_s_bf16_{'on' if bf16 else 'off'}"] = round(
            len(paths) / (seconds + decode_seconds), 1
        )

    # The loop a user writes by hand: ImageFolder + per-image transforms, fp32, batch 32.
    size = bb.input_size
    transform = transforms.Compose(
        [
            transforms.Resize(size),
            transforms.CenterCrop(size),
            transforms.ToTensor(),
            transforms.Normalize(bb.data_config["mean"], bb.data_config["std"]),
        ]
    )
    dataset = torchvision.datasets.ImageFolder(str(folder), transform=transform)
    subset = torch.utils.data.Subset(dataset, list(range(min(limit, len(dataset)))))
    network = bb.network.eval()
    started = time.perf_counter()
    with torch.no_grad():
        for images, _ in torch.utils.data.DataLoader(subset, batch_size=32):
            network(images)
    results["naive_end_to_end_img_per_s_fp32"] = round(len(subset) / (time.perf_counter() - started), 1)
    return results


def main() -> None:
    from conftest import cifar_subset

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "image_strategies.json")
    parser.add_argument("--epochs", type=int, default=None, help="epochs for head / finetune (default: Wukong's)")
    parser.add_argument("--scratch-epochs", type=int, default=40)
    args = parser.parse_args()
    os.environ.setdefault("WUKONG_CACHE", tempfile.mkdtemp(prefix="wukong-bench-cache-"))

    with tempfile.TemporaryDirectory() as tmp:
        cifar = cifar_subset(Path(tmp), train_per_class=20, test_per_class=100)
        tasks = {
            "cat_dog": (DATA / "cat_dog" / "train", DATA / "cat_dog" / "test"),
            "cifar10_20_per_class": (cifar / "train", cifar / "test"),
        }
        report: dict = {
            "machine": {"cpu_count": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__},
            "tasks": {},
        }
        for name, (train, test) in tasks.items():
            rows = {}
            for strategy in ("auto", "features", "head", "finetune"):
                rows[strategy] = run_strategy(train, test, strategy=strategy, epochs=args.epochs)
                print(name, strategy, rows[strategy], flush=True)
            rows["scratch"] = from_scratch(train, test, args.scratch_epochs)
            print(name, "scratch", rows["scratch"], flush=True)
            report["tasks"][name] = rows
        report["throughput_cifar10_test"] = throughput(cifar / "test")
        print(report["throughput_cifar10_test"], flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
