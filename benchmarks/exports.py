"""Every export format against ``predict``, on real data: parity of the probabilities, accuracy, the int8
accuracy change, file sizes, and what a user's own preprocessing gives instead.

Models: the default image model (EfficientNet-Lite0, ``auto``) on the cat/dog photos and on CIFAR-10
(20 training images per class, 50 test images per class); the default text model (MiniLM, ``auto``)
on BANKING77 with 10 examples per intent, tested on the full test file (3,080 texts).

Side by side, in one run, with what a user would write by hand: the ``pixels`` graph fed by
torchvision's usual recipe (``Resize(256)``, ``CenterCrop(224)``, ``ToTensor()``: bilinear, the
library's default) against Wukong's ``--any-size`` graph, fed only the decoded image; and
onnxruntime's ``quantize_dynamic`` with its defaults against Wukong's int8 export (measured here
even where ``wukong export`` would refuse to write it: ``written_by_default``).

    python benchmarks/exports.py          # writes benchmarks/results/exports.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("WUKONG_DATA", ROOT.parent / "shared" / "data"))
FORMATS = [("onnx", False), ("onnx", True), ("onnx-int8", False), ("onnx-int8", True), ("torchscript", False)]
FORMATS += [("torch-export", False)]


def cifar_subset(target: Path, train: int, test: int) -> Path:
    counts: dict[tuple[str, str], int] = {}
    wanted = {"train": train, "test": test}
    with tarfile.open(DATA / "cifar10.tar.gz") as tar:
        for member in tar:
            parts = Path(member.name).parts
            if not member.isfile() or len(parts) != 3 or counts.get((parts[0], parts[1]), 0) >= wanted[parts[0]]:
                continue
            counts[(parts[0], parts[1])] = counts.get((parts[0], parts[1]), 0) + 1
            out = target / member.name
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(tar.extractfile(member).read())
    return target


def banking_subset(target: Path, per_intent: int) -> tuple[Path, Path]:
    import pandas as pd

    train = pd.read_csv(DATA / "banking77" / "train.csv")
    train = train.groupby("category").sample(per_intent, random_state=0)
    target.mkdir(parents=True, exist_ok=True)
    train.to_csv(target / "train.csv", index=False)
    return target / "train.csv", DATA / "banking77" / "test.csv"


def by_hand_torchvision(model: Any, export_path: Path, test: Path) -> dict[str, Any]:
    """The ``pixels`` graph fed by a user's usual torchvision preprocessing, against ``predict``."""
    import onnxruntime as ort
    from PIL import Image
    from torchvision import transforms

    files = sorted(p for p in test.rglob("*") if p.is_file())
    size = model.backbone_.input_size
    recipe = transforms.Compose([transforms.Resize(model.backbone_.resize_size), transforms.CenterCrop(size)])
    tensor = transforms.ToTensor()
    session = ort.InferenceSession(str(export_path), providers=["CPUExecutionProvider"])
    pixels = np.stack([tensor(recipe(Image.open(f).convert("RGB"))).numpy() for f in files])
    got = np.concatenate([session.run(None, {"pixels": pixels[i : i + 32]})[0] for i in range(0, len(files), 32)])
    expected = model.predict_proba(files)
    diff = np.abs(got - expected)
    return {
        "recipe": "torchvision Resize(resize side) + CenterCrop(input size) + ToTensor (bilinear)",
        "examples": len(files),
        "max_abs_diff": float(diff.max()),
        "mean_abs_diff": float(diff.mean()),
        "top1_disagreements": int((got.argmax(1) != expected.argmax(1)).sum()),
    }


def by_hand_int8(model: Any, fp32: Path, test: Path) -> dict[str, Any]:
    """What a user writes by hand: onnxruntime's ``quantize_dynamic`` with its defaults, measured the same way."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from wukong.export import check
    from wukong.export.graphs import quiet

    out = fp32.with_name(fp32.stem + "-by-hand-int8.onnx")
    with quiet():
        quantize_dynamic(str(fp32), str(out), weight_type=QuantType.QInt8)
    tokenizer = fp32.with_name(fp32.stem + ".tokenizer")
    runner = check.export_runner(out, tokenizer if tokenizer.is_dir() else None)
    measured = check.measure(model, runner, check.reference(model, test))
    return {
        "recipe": "quantize_dynamic(fp32, out, weight_type=QInt8)",
        "megabytes": round(out.stat().st_size / 1e6, 1),
    } | {k: v for k, v in measured.items() if k in ("accuracy_model", "accuracy_export", "max_abs_diff")}


def run_exports(name: str, model: Any, test: Path, work: Path) -> list[dict[str, Any]]:
    from wukong.export import MAX_ACCURACY_LOSS, SUFFIXES, export

    rows = []
    for fmt, any_size in FORMATS:
        if any_size and model.modality != "image":
            continue
        out = work / f"{name}-{fmt}{'-any' if any_size else ''}{SUFFIXES[fmt]}"
        start = time.perf_counter()
        info = export(model, out, format=fmt, any_size=any_size, data=test, max_accuracy_loss=1.0)  # to measure it
        row = {
            "data": name,
            "format": fmt,
            "any_size": any_size,
            "seconds": round(time.perf_counter() - start, 1),
            "megabytes": round(info["bytes"] / 1e6, 1),
            **{k: v for k, v in info["parity"].items() if k != "data"},
        }
        if "int8" in info:
            row["int8_accuracy_change"] = info["int8"]["accuracy_change"]
            row["written_by_default"] = info["int8"]["accuracy_change"] >= -MAX_ACCURACY_LOSS
        print(json.dumps(row), flush=True)
        rows.append(row)
        if fmt == "onnx" and not any_size:
            hand = {
                "data": name,
                "format": "by hand: onnxruntime quantize_dynamic defaults",
                **by_hand_int8(model, out, test),
            }
            print(json.dumps(hand), flush=True)
            rows.append(hand)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "exports.json")
    args = parser.parse_args()
    import wukong

    rows: list[dict[str, Any]] = []
    by_hand: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        cifar = cifar_subset(work / "cifar", 20, 50)
        image_sets = {
            "cat_dog": (DATA / "cat_dog" / "train", DATA / "cat_dog" / "test"),
            "cifar10": (cifar / "train", cifar / "test"),
        }
        for name, (train, test) in image_sets.items():
            model = wukong.ImageClassifier(progress=False, seed=0).fit(train)
            rows += run_exports(name, model, test, work)
            by_hand[name] = {
                "by_hand_torchvision_into_pixels_graph": by_hand_torchvision(model, work / f"{name}-onnx.onnx", test),
                "wukong_any_size_graph": next(
                    {k: r[k] for k in ("max_abs_diff", "mean_abs_diff", "top1_disagreements")}
                    for r in rows
                    if r["data"] == name and r["format"] == "onnx" and r["any_size"]
                ),
            }
            print(json.dumps({name: by_hand[name]}), flush=True)
        train_csv, test_csv = banking_subset(work / "banking", 10)
        text_model = wukong.TextClassifier(progress=False, seed=0).fit(train_csv)
        rows += run_exports("banking77_10_per_intent", text_model, test_csv, work)
    result = {
        "command": "python benchmarks/exports.py",
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, Python {sys.version.split()[0]}",
        "rows": rows,
        "preprocessing_by_hand_vs_any_size": by_hand,
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
