"""Memory and speed on many images: streamed decoding (``wukong.data.streamed``) against holding
every decoded image in memory, in one run, with the peak memory of the whole process tree.

1. ``wukong train`` on all 50,000 CIFAR-10 training images, ``--strategy finetune --epochs 1``, the
   default backbone (EfficientNet-Lite0, 224px: decoded at 256px, 9.8 GB if held in memory).
2. Feature extraction over the 101,000 Tiny ImageNet training images (the default backbone's top
   features, cached on disk as ``fit`` and ``wukong audit`` read them), streamed.
3. Side by side on the first 10,100 Tiny ImageNet training images: the same extraction streamed and
   with the decoded images held in memory (``WUKONG_DECODED_LIMIT=1TB``), what a user gets below the
   limit; each in a fresh cache.

Memory is sampled every half second: the proportional set size (PSS, from ``/proc/PID/smaps_rollup``)
summed over the command and its children (loader workers share pages with their parent: PSS counts
each shared page once), and the largest single-process RSS. Linux only.

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
        while not done.is_set():
            pids = tree(proc.pid)
            peak["pss_kb"] = max(peak["pss_kb"], sum(memory_kb(p, "Pss") for p in pids))
            peak["rss_kb"] = max(peak["rss_kb"], max((memory_kb(p, "Rss") for p in pids), default=0))
            peak["processes"] = max(peak["processes"], len(pids))
            done.wait(0.5)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = proc.communicate()
    done.set()
    sampler.join()
    lines = [line for line in out.splitlines() if line.strip()]
    return {
        "command": " ".join(command[1:] if command[0] == PYTHON else command),
        "exit_status": proc.returncode,
        "seconds": round(time.time() - started, 1),
        "peak_memory_gb": round(peak["pss_kb"] * 1024 / 1e9, 3),
        "largest_process_rss_gb": round(peak["rss_kb"] * 1024 / 1e9, 3),
        "processes_at_most": peak["processes"],
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
    parser.add_argument("--only", choices=["cifar_finetune", "tiny_extraction", "tiny_subset"], action="append")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "scale.json")
    args = parser.parse_args()
    wanted = args.only or ["cifar_finetune", "tiny_subset", "tiny_extraction"]
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
        if "tiny_extraction" in wanted:
            row = run_measured([PYTHON, "-c", EXTRACT, str(tiny)], env("cache-tiny"))
            row.pop("stdout")
            print(row, flush=True)
            results["tiny_imagenet_101000_extraction"] = row
        if "cifar_finetune" in wanted:
            cifar = unpack(DATA / "cifar10.tar.gz", work / "cifar", top="train")
            command = [wukong, "train", str(cifar), "--out", str(work / "model"), "--strategy", "finetune"]
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
    for key in ("tiny_imagenet_101000_extraction",):
        row = results.get(key)
        if row and "seconds" in row:
            row["images_per_second"] = round(101_000 / row["seconds"], 1)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
