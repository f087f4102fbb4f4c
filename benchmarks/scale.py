"""Memory and speed on many images: streamed decoding (``wukong.data.streamed``) against holding
every decoded image in memory, in one run, with the peak memory of the whole process tree.

1. ``wukong train`` on all 50,000 CIFAR-10 training images, ``--strategy finetune --epochs 1``, the
   default backbone (EfficientNet-Lite0, 224px: decoded at 256px, 9.8 GB if held in memory).
2. Feature extraction over the 101,000 Tiny ImageNet training images (the default backbone's top
   features, cached on disk as ``fit`` and ``wukong audit`` read them), streamed.
3. Side by side on the first 10,100 Tiny ImageNet training images: the same extraction streamed and
   with the decoded images held in memory (``WUKONG_DECODED_LIMIT=1TB``), what a user gets below the
   limit; each in a fresh cache.
4. Fine-tuning every block at 224px on 2,000 CIFAR-10 images (1 epoch, streamed): batches of 64 in
   micro-batches of 32 (``wukong.training.engine.micro_batches``) against whole batches of 64.
5. The ``features`` classifier on all 50,000 CIFAR-10 training images' features (the default
   backbone's, cached first): Wukong's search (C scored on one held-out fifth from 20,000 examples),
   the 5-fold search it used before, and scikit-learn's ``LogisticRegression`` on standardised
   features as a user would write it; fit seconds, peak memory, accuracy on the 10,000 test images.

Memory is sampled every second (``memory_sampled_every_s``; the process tree listed every 5 s): the
proportional set size (PSS, from ``/proc/PID/smaps_rollup``) summed over the command and its
children (loader workers share pages with their parent: PSS counts each shared page once), and the
largest single-process RSS. Linux only. Sampling takes a few percent of one core.

    .venv/bin/python benchmarks/scale.py             # writes benchmarks/results/scale.json (~50 min)
    .venv/bin/python benchmarks/scale.py --only tiny_subset
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("WUKONG_DATA", ROOT.parent / "shared" / "data"))
PYTHON = sys.executable
EXTRACT = """
import sys, time
from wukong import ImageClassifier
clf = ImageClassifier(progress=False)
start = time.time()
labelled, skipped, features = clf._embedded(sys.argv[1], None, None, "training")  # what fit and audit read
streamed = type(labelled.examples.pixels).__name__ == "StreamedPixels"
print({"images": len(features), "width": features.shape[1], "skipped": len(skipped),
       "seconds": round(time.time() - start, 1), "streamed": streamed})
"""

LINEAR = """
import json, sys, time
import numpy as np
from wukong import ImageClassifier
variant = sys.argv[3]
clf = ImageClassifier(progress=False)
train, _, x = clf._embedded(sys.argv[1], None, None, "training")
test, _, xt = clf._embedded(sys.argv[2], None, train.classes, "test")
y, yt = train.labels, test.labels
start = time.time()
if variant == "sklearn":  # what a user writes: scikit-learn's logistic regression on standardised features
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    accuracy = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(x, y).score(xt, yt)
    info = {"C": 1.0}
elif variant != "extract":
    import wukong.strategies.features as features
    if variant == "wukong_five_fold":  # the search used below HOLD_OUT_FROM examples
        features.HOLD_OUT_FROM = 10**9
    fit = features.fit_linear_classifier(x, y, len(train.classes))
    accuracy = float(((xt @ fit.weight.T + fit.bias).argmax(1) == yt).mean())
    info = {k: fit.info[k] for k in ("C", "cv_folds", "cv_loss", "cv_loss_se")}
if variant != "extract":
    print(json.dumps({"fit_seconds": round(time.time() - start, 1), "test_accuracy": round(float(accuracy), 4),
                      "train_examples": len(y), "features": x.shape[1], **info}))
"""

CLI = """
import sys
from wukong.cli import main
sys.argv = ["wukong", *sys.argv[1:]]
main()
"""
WHOLE_BATCHES = CLI.replace(
    "from wukong.cli import main",
    "import wukong.training.engine as engine\n"
    "engine.MICRO_BATCH_PIXELS = 10**12  # one batch of 64 per step, as before\n"
    "from wukong.cli import main",
)


def tree(pid: int) -> list[int]:
    """``pid`` and its descendants."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


def memory_kb(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def run_measured(command: list[str], env: dict[str, str]) -> dict:
    """Run ``command``; its wall time, exit status, stdout's last line, peak PSS and RSS."""
    peak = {"pss_kb": 0, "rss_kb": 0, "processes": 0}
    started = time.time()
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    done = threading.Event()

    def sample() -> None:
        pids, listed = [proc.pid], 0.0
        while not done.is_set():
            if time.time() - listed > 5:  # the process tree, read again every 5 s (reading /proc costs CPU)
                pids, listed = tree(proc.pid), time.time()
            peak["pss_kb"] = max(peak["pss_kb"], sum(memory_kb(p, "Pss") for p in pids))
            peak["rss_kb"] = max(peak["rss_kb"], max((memory_kb(p, "Rss") for p in pids), default=0))
            peak["processes"] = max(peak["processes"], len(pids))
            done.wait(1.0)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = proc.communicate()
    done.set()
    sampler.join()
    lines = [line for line in out.splitlines() if line.strip()]
    named = {EXTRACT: "<EXTRACT>", LINEAR: "<LINEAR>", CLI: "<wukong>", WHOLE_BATCHES: "<wukong, batches of 64 whole>"}
    return {
        "command": " ".join(named.get(part, part) for part in (command[1:] if command[0] == PYTHON else command)),
        "exit_status": proc.returncode,
        "seconds": round(time.time() - started, 1),
        "peak_memory_gb": round(peak["pss_kb"] * 1024 / 1e9, 3),
        "largest_process_rss_gb": round(peak["rss_kb"] * 1024 / 1e9, 3),
        "processes_at_most": peak["processes"],
        "memory_sampled_every_s": 1.0,
        "output": lines[-1][:2000] if lines else "",
        "stdout": out,
        "error": err.strip().splitlines()[-1][:500] if proc.returncode and err.strip() else None,
    }


def unpack(archive: Path, target: Path, *, top: str, limit: int | None = None) -> Path:
    """Files of the archive under ``top`` (at most ``limit``), extracted into ``target``."""
    count = 0
    with tarfile.open(archive) as tar:
        for member in tar:
            parts = Path(member.name).parts
            if member.isfile() and top in parts[:-2] and member.name.lower().endswith(".jpg"):
                out = target / Path(*parts[parts.index(top) :])
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_bytes(tar.extractfile(member).read())
                count += 1
                if limit and count >= limit:
                    break
    return target / top


def first_per_class(folder: Path, target: Path, per_class: int) -> Path:
    for class_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
        (target / class_dir.name).mkdir(parents=True)
        for image in sorted(class_dir.iterdir())[:per_class]:
            (target / class_dir.name / image.name).symlink_to(image)
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parts = ["cifar_finetune", "tiny_extraction", "tiny_subset", "micro_batches", "linear_50k"]
    parser.add_argument("--only", choices=parts, action="append")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "scale.json")
    args = parser.parse_args()
    wanted = args.only or parts
    results: dict = {"machine": {"cpu_count": os.cpu_count()}, "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    if args.out.exists():
        results = {**json.loads(args.out.read_text()), **{k: v for k, v in results.items() if k == "started"}}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        wukong = str(Path(PYTHON).parent / "wukong")

        def env(cache: str, **more: str) -> dict[str, str]:
            return {**os.environ, "WUKONG_CACHE": str(work / cache), **more}

        if {"tiny_subset", "tiny_extraction"} & set(wanted):
            tiny = unpack(DATA / "tiny-imagenet.tar.gz", work / "tiny", top="train")
        if "tiny_subset" in wanted:
            subset = first_per_class(tiny, work / "tiny_subset", 50)
            rows = {}
            for name, extra in (
                ("streamed", {"WUKONG_DECODED_LIMIT": "0"}),
                ("in_memory", {"WUKONG_DECODED_LIMIT": "1TB"}),
            ):
                rows[name] = run_measured([PYTHON, "-c", EXTRACT, str(subset)], env(f"cache-{name}", **extra))
                rows[name].pop("stdout")
                print(name, rows[name], flush=True)
            results["tiny_imagenet_10100_extraction"] = rows
            save(results, args.out)
        if "tiny_extraction" in wanted:
            row = run_measured([PYTHON, "-c", EXTRACT, str(tiny)], env("cache-tiny"))
            row.pop("stdout")
            print(row, flush=True)
            results["tiny_imagenet_101000_extraction"] = row
            save(results, args.out)
        cifar = work / "cifar"
        if {"cifar_finetune", "micro_batches", "linear_50k"} & set(wanted):
            unpack(DATA / "cifar10.tar.gz", cifar, top="train")
        if "cifar_finetune" in wanted:
            command = [wukong, "train", str(cifar / "train"), "--out", str(work / "model"), "--strategy", "finetune"]
            row = run_measured([*command, "--epochs", "1", "--quiet", "--json"], env("cache-cifar"))
            try:
                summary = json.loads(row.pop("stdout"))
                row["val_accuracy"] = summary.get("val_accuracy")
                row["train_seconds"] = summary.get("train_seconds")
            except json.JSONDecodeError:
                pass
            row["images_per_second_overall"] = round(50_000 / row["seconds"], 1)
            print(row, flush=True)
            results["cifar10_50000_finetune_1_epoch"] = row
            save(results, args.out)
        if "micro_batches" in wanted:
            cifar2k = first_per_class(cifar / "train", work / "c2k", 200)
            rows = {}
            for name, script in (("micro_batches_of_32", CLI), ("whole_batches_of_64", WHOLE_BATCHES)):
                command = [PYTHON, "-c", script, "train", str(cifar2k), "--out", str(work / f"m-{name}")]
                command += ["--strategy", "finetune", "--epochs", "1", "--unfreeze", "all", "--quiet", "--json"]
                row = run_measured(command, env("cache-c2k", WUKONG_DECODED_LIMIT="1"))
                summary = json.loads(row.pop("stdout")) if row["exit_status"] == 0 else {}
                row["val_accuracy"] = summary.get("val_accuracy")
                rows[name] = row
                print(name, row, flush=True)
            results["cifar10_2000_finetune_all_micro_batches"] = rows
            save(results, args.out)
        if "linear_50k" in wanted:
            unpack(DATA / "cifar10.tar.gz", cifar, top="test")
            rows = {}
            for variant in ("extract", "wukong_hold_out", "wukong_five_fold", "sklearn"):
                command = [PYTHON, "-c", LINEAR, str(cifar / "train"), str(cifar / "test"), variant]
                row = run_measured(command, env("cache-linear"))
                row.pop("stdout")
                if variant != "extract" and row["exit_status"] == 0:
                    row.update(json.loads(row["output"]))
                rows[variant] = row
                print(variant, row, flush=True)
            results["cifar10_50000_linear_on_features"] = rows
            save(results, args.out)
    print(f"wrote {args.out}")


def save(results: dict, out: Path) -> None:
    """Write what is measured so far (after each part: a run stopped midway keeps the parts done)."""
    out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
