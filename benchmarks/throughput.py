"""Throughput of frozen passes, side by side in one run: Wukong's path vs the loop a user writes by hand.

1. Files to features, end to end (JPEG files on disk in, feature vectors out), for the default
   backbone (EfficientNet-Lite0, 224px) and the fast one (64px Tiny ImageNet ResNet), on the cat/dog
   photos (large JPEGs), CIFAR-10 test files (32px) and Tiny ImageNet val files (64px):
   Wukong (parallel decoding, draft mode or libjpeg-turbo, + the engine of ``wukong.engine``) against the naive loop
   (``ImageFolder`` + torchvision ``Resize``/``CenterCrop``/``ToTensor``/``Normalize``, PyTorch fp32,
   batch 32) on the same weights. Wukong's first use (its one-time ONNX export) is timed apart; then
   the two take turns, for at least 20 s of rounds (at most 9), and the medians are reported.
   Beside it, one core's milliseconds per cat/dog photo for each step of decoding: the JPEG decode
   by Pillow and by libjpeg-turbo (torchvision), Pillow's bicubic resize-then-crop, Wukong's
   (``resize_square``, with the largest difference from Pillow's), and Wukong's whole decode.
2. The network alone (random uint8 batches of 64): PyTorch fp32, channels_last, bf16 autocast and
   both, and onnxruntime, with the agreement of each with PyTorch fp32 (minimum cosine) and the
   share it reaches of the machine's matrix rate in its precision (model FLOPs x img/s over the
   TFLOP/s of a 2048-square matrix product, measured first: ``matrix_peak``).
3. Re-training on cached features: ``ImageClassifier(strategy="features").fit`` twice on CIFAR-10
   with 100 labels per class, the second time with the features in the cache; then again with the
   first fit's choices kept, nothing searched: as ``wukong train --like`` runs it (``retraining``:
   a copy of the first model whose classifier starts from its weights) and as a new estimator of
   those choices (``ImageClassifier(**chosen_params())``) would, taking turns, the median of
   ``LIKE_RUNS`` fits of each. Each fit starts from a collected heap (``gc.collect()``).
4. Serving: p50/p90 milliseconds of one cat/dog photo POSTed to a real ``wukong serve`` on
   127.0.0.1 (the default backbone), with the engine and with ``--engine torch``.
5. Text: sentences/s of Wukong's encoder against ``SentenceTransformer.encode`` (fp32), BANKING77
   (the median of 3 passes over the same 3,000 texts, the two taking turns), and the bound on that
   speed-up that the transformer's linear layers set at the bf16 matrix rate.

    .venv/bin/python benchmarks/throughput.py            # writes benchmarks/results/throughput.json
    .venv/bin/python benchmarks/throughput.py --parts retrain   # one part again, merged into it
"""

from __future__ import annotations

import argparse
import copy
import csv
import gc
import json
import os
import platform
import shutil
import statistics
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
DATA = Path(os.environ.get("WUKONG_DATA", ROOT.parent / "shared" / "data"))
PEAK: dict[str, float] = {}  # this machine's matrix rate per precision, FLOP/s (``matrix_peak``, measured first)
BACKBONES = ("efficientnet_lite0", "wukong_resnet18_s_tiny")
LIKE_RUNS = 5  # fits with the first fit's choices, timed one after the other; the median is reported
TEXT_ROUNDS = 3  # rounds of passes over the texts; medians are reported


def embedding(name: str):  # noqa: ANN201 - (module, backbone)
    from wukong.backbones.vision import load_image_backbone
    from wukong.network import Embedding, FeatureExtractor, TransferNet

    bb = load_image_backbone(name)
    net = TransferNet(FeatureExtractor(bb.network), torch.nn.Identity(), bb.data_config["mean"], bb.data_config["std"])
    return Embedding(net).eval(), bb


def wukong_files_to_features(name: str, paths: list[Path]) -> tuple[float, np.ndarray]:
    """Seconds for Wukong's own path: ImageClassifier's decoding and frozen pass (no feature cache)."""
    from wukong.modalities import image

    module, bb = embedding(name)
    passes = image.FrozenPasses("auto", bf16=True)
    started = time.perf_counter()
    store = image.decode(paths, None, bb, progress=False, desc="")
    features = passes.embed(module.net, bb, store.pixels)
    return time.perf_counter() - started, features


def naive_files_to_features(name: str, folder: Path, limit: int) -> tuple[float, int]:
    """The loop a user writes: ImageFolder + torchvision transforms + PyTorch fp32, batch 32."""
    import torchvision
    from torchvision import transforms

    module, bb = embedding(name)
    size, config = bb.input_size, bb.data_config
    transform = transforms.Compose(
        [
            transforms.Resize(bb.resize_size, interpolation=transforms.InterpolationMode.BICUBIC),
            transforms.CenterCrop(size),
            transforms.ToTensor(),
            transforms.Normalize(config["mean"], config["std"]),
        ]
    )
    dataset = torchvision.datasets.ImageFolder(str(folder), transform=transform)
    subset = torch.utils.data.Subset(dataset, list(range(min(limit, len(dataset)))))
    network = bb.network.eval()
    started = time.perf_counter()
    with torch.no_grad():
        for images, _ in torch.utils.data.DataLoader(subset, batch_size=32):
            network(images)
    return time.perf_counter() - started, len(subset)


def decoding_steps(folder: Path) -> dict:
    """Milliseconds per photo, one core, best of 3 passes: Pillow's JPEG decode (draft mode) and
    libjpeg-turbo's through torchvision (Wukong's route where draft mode cannot shrink a JPEG),
    Pillow's bicubic resize-then-crop to 224, Wukong's ``resize_square``, and Wukong's whole
    ``decode_square`` (file bytes in, the 224 square out); the largest pixel difference of the resizes."""
    from wukong.data.decode import _full_size_jpeg, decode_square, load_image
    from wukong.data.images import list_images
    from wukong.data.resize import pillow_resize_square, resize_square

    photos = [path.read_bytes() for path in list_images([folder])]
    images = [load_image(data, min_size=224) for data in photos]

    def ms(step) -> float:  # noqa: ANN001
        best = float("inf")
        for _ in range(3):
            started = time.perf_counter()
            for item in step:
                item()
            best = min(best, time.perf_counter() - started)
        return round(1000 * best / len(photos), 3)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        row = {
            "photos": len(photos),
            "jpeg_decode_ms": ms([lambda d=d: load_image(d, min_size=224) for d in photos]),
            "libjpeg_turbo_decode_ms": ms([lambda d=d: _full_size_jpeg(d, 224) for d in photos]),
            "libjpeg_turbo_used_for": sum(_full_size_jpeg(d, 224) is not None for d in photos),
            "pillow_resize_crop_ms": ms([lambda i=i: pillow_resize_square(i, 224) for i in images]),
            "wukong_resize_square_ms": ms([lambda i=i: resize_square(i, 224) for i in images]),
            "wukong_decode_square_ms": ms([lambda d=d: decode_square(d, 224) for d in photos]),
        }
    finally:
        torch.set_num_threads(threads)
    difference = max(
        int(np.abs(pillow_resize_square(i, 224).astype(np.int16) - resize_square(i, 224).astype(np.int16)).max())
        for i in images
    )
    return {**row, "max_pixel_difference": difference}


def files_to_features(sets: dict[str, Path], limit: int) -> dict:
    from wukong.data.images import list_images

    out = {}
    for set_name, folder in sets.items():
        paths = list_images([folder])[:limit]
        for name in BACKBONES:
            first, _ = wukong_files_to_features(name, paths)  # includes the one-time export
            counted: list[int] = []
            runs = {
                "wukong": lambda n=name, p=paths: wukong_files_to_features(n, p),
                "naive": lambda n=name, f=folder, c=counted: c.append(naive_files_to_features(n, f, limit)[1]),
            }
            seconds, rounds = median_seconds(runs, min_seconds=20.0, max_rounds=9)
            count = counted[0]
            row = {
                "images": count,
                "wukong_img_per_s": round(count / seconds["wukong"], 1),
                "wukong_first_use_img_per_s": round(count / first, 1),
                "naive_img_per_s": round(count / seconds["naive"], 1),
                "speedup": round(seconds["naive"] / seconds["wukong"], 2),
                "timed_rounds": rounds,
            }
            out[f"{set_name}/{name}"] = row
            print("files->features", set_name, name, row, flush=True)
    return out


def median_seconds(
    runs: dict[str, Callable[[], object]], *, min_rounds: int = 1, min_seconds: float = 0.0, max_rounds: int = 5
) -> tuple[dict[str, float], int]:
    """The median seconds of each of ``runs``, timed in turn round after round (this machine's speed
    drifts by 10-20% within minutes: interleaved, the drift falls on every run alike), for at least
    ``min_rounds`` rounds and ``min_seconds`` in all (at most ``max_rounds``); and the rounds run."""
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    started = time.perf_counter()
    rounds = 0
    while rounds < max_rounds and (rounds < min_rounds or time.perf_counter() - started < min_seconds):
        for name, run in runs.items():
            begun = time.perf_counter()
            run()
            seconds[name].append(time.perf_counter() - begun)
        rounds += 1
    return {name: float(np.median(values)) for name, values in seconds.items()}, rounds


def matrix_peak(side: int = 2048, reps: int = 10) -> dict[str, float]:
    """TFLOP/s of a large square matrix product in fp32 and in bf16: the rate the networks' shares are of
    (the machines this project runs on differ: AMX, AVX512-BF16 without AMX, no bf16 at all)."""
    out = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        a, b = torch.randn(side, side, dtype=dtype), torch.randn(side, side, dtype=dtype)
        for _ in range(2):
            a @ b
        started = time.perf_counter()
        for _ in range(reps):
            a @ b
        PEAK[name] = 2 * side**3 * reps / (time.perf_counter() - started)
        out[f"{name}_tflop_per_s"] = round(PEAK[name] / 1e12, 3)
    return out


def network_alone(batch: int = 64, reps: int = 5) -> dict:
    import onnxruntime  # noqa: F401 - the engine needs it

    from wukong.engine import frozen_pass

    out = {}
    for name in BACKBONES:
        module, bb = embedding(name)
        size = bb.input_size
        pixels = torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8)
        flops = model_flops(module, size)
        with torch.no_grad():
            reference = module(pixels).numpy()
        variants = {}
        cl_module = copy_channels_last(module)
        for label, net, bf16 in (
            ("torch_fp32", module, False),
            ("torch_fp32_channels_last", cl_module, False),
            ("torch_bf16", module, True),
            ("torch_bf16_channels_last", cl_module, True),
        ):
            run = frozen_pass(net, size, {}, engine="torch", bf16=bf16)
            variants[label] = measure(run, pixels.numpy(), reference, reps, flops, "bf16" if bf16 else "fp32")
        key = {"benchmark": name, "size": size}
        run = frozen_pass(module, size, key, engine="onnxruntime")
        variants["onnxruntime_fp32"] = measure(run, pixels.numpy(), reference, reps, flops, "fp32")
        if name == "efficientnet_lite0":  # what the engine's static 'same' padding gains
            run = onnx_as_exported(module, size)
            variants["onnxruntime_fp32_runtime_padding"] = measure(run, pixels.numpy(), reference, reps, flops, "fp32")
            run = onnx_spinning(key, size)  # the engine's session lets its threads sleep between runs
            variants["onnxruntime_fp32_spinning_threads"] = measure(run, pixels.numpy(), reference, reps, flops, "fp32")
        for precision, run in openvino_runs(key, size).items():
            label = f"openvino_{precision}"
            variants[label] = (
                measure(run, pixels.numpy(), reference, reps, flops, precision) if run else OPENVINO_MISSING
            )
        out[name] = {"input_size": size, "gflops_per_image": round(flops / 1e9, 3), "engines": variants}
        print("network", name, json.dumps(out[name]), flush=True)
    return out


def onnx_as_exported(module: torch.nn.Module, size: int):  # noqa: ANN201 - a batch -> features function
    """The network exported as it is, timm's 'same' padding computed in the graph at run time."""
    from wukong.engine import export_graph, onnx_session

    path = Path(tempfile.mkdtemp(prefix="wukong-bench-onnx-")) / "runtime_padding.onnx"
    net = copy.deepcopy(module).float().eval().to(memory_format=torch.contiguous_format)
    export_graph(net, torch.zeros(1, 3, size, size, dtype=torch.uint8), path, output="features")
    session = onnx_session(path)
    return lambda batch: session.run(None, {"pixels": batch})[0]


OPENVINO_MISSING = "not installed (pip install openvino)"


def openvino_runs(key: dict, size: int) -> dict:
    """OpenVINO (Intel's CPU runtime) on the image engine's exported graph, PyTorch's thread count, latency mode:
    fp32, and bf16 inference precision where the CPU has it. Wukong runs the text encoder there
    (``wukong.backbones.text_engine``), not the image networks: measured here so that the choice is
    (README, speed). ``None`` per row where it is not installed."""
    from wukong.backbones.text_engine import compile_graph, openvino_bf16, openvino_installed
    from wukong.engine import _graph_path

    if not openvino_installed():
        return {"fp32": None, "bf16": None}
    out = {}
    for label in ("fp32", "bf16") if openvino_bf16() else ("fp32",):
        request = compile_graph(_graph_path(key, size), bf16=label == "bf16").create_infer_request()
        out[label] = (lambda r: lambda batch: r.infer({0: batch})[0].copy())(request)
    return out


def onnx_spinning(key: dict, size: int):  # noqa: ANN201 - a batch -> features function
    """The engine's graph in a session as onnxruntime opens it by default: threads spin between runs."""
    from wukong.engine import _graph_path, _session_options, onnx_session

    options = _session_options()
    options.add_session_config_entry("session.intra_op.allow_spinning", "1")
    session = onnx_session(_graph_path(key, size), options)
    return lambda batch: session.run(None, {"pixels": batch})[0]


def serve_latency(model: Path, image: Path, requests: int = 50) -> dict:
    """p50/p90 milliseconds of one image POSTed to a real ``wukong serve`` on 127.0.0.1, per engine."""
    import socket
    import subprocess
    import urllib.request

    out = {}
    for engine in ("auto", "torch"):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        command = [str(ROOT / ".venv" / "bin" / "wukong"), "serve", str(model), "--port", str(port)]
        server = subprocess.Popen([*command, "--engine", engine], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            base = f"http://127.0.0.1:{port}"
            for _ in range(600):  # until it listens
                try:
                    urllib.request.urlopen(f"{base}/health", timeout=5)
                    break
                except OSError:
                    time.sleep(0.1)
            body, millis = image.read_bytes(), []
            for i in range(requests + 3):  # the first three warm it up
                started = time.perf_counter()
                urllib.request.urlopen(urllib.request.Request(f"{base}/predict", data=body), timeout=60).read()
                if i >= 3:
                    millis.append(1000 * (time.perf_counter() - started))
        finally:
            server.terminate()
            server.wait(timeout=30)
        out[engine] = {
            "p50_ms": round(statistics.median(millis), 1),
            "p90_ms": round(float(np.percentile(millis, 90)), 1),
            "requests": requests,
        }
        print("serve", engine, out[engine], flush=True)
    return out


def measure(run, pixels: np.ndarray, reference: np.ndarray, reps: int, flops: float, precision: str) -> dict:  # noqa: ANN001
    got = run(pixels)
    seconds = []
    for _ in range(reps):
        started = time.perf_counter()
        run(pixels)
        seconds.append(time.perf_counter() - started)
    rate = len(pixels) / statistics.median(seconds)
    cosine = (got * reference).sum(1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(reference, axis=1))
    return {
        "img_per_s": round(rate, 1),
        "min_cosine_vs_fp32": round(float(cosine.min()), 6),
        "share_of_peak": round(flops * rate / PEAK[precision], 4),
    }


def copy_channels_last(module: torch.nn.Module) -> torch.nn.Module:
    return copy.deepcopy(module).to(memory_format=torch.channels_last)


def model_flops(module: torch.nn.Module, size: int) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        module(torch.zeros(1, 3, size, size, dtype=torch.uint8))
    return float(counter.get_total_flops())


def retrain_on_cached_features(train: Path) -> dict:
    from wukong import ImageClassifier

    times, models = [], []
    for _ in range(2):
        gc.collect()  # each fit timed from a collected heap, not paying for the garbage of the one before
        started = time.perf_counter()
        models.append(ImageClassifier(strategy="features", progress=False).fit(train))
        times.append(time.perf_counter() - started)
    # what ``wukong train --like FIRST`` runs, nothing searched: the first model's copy, its classifier
    # started from the first one's (``retraining``); beside it, a new estimator of the same choices
    chosen = models[0].chosen_params()
    like_runs, fresh_runs = [], []
    for _ in range(LIKE_RUNS):  # under a second each, where this machine's speed moves by 10-20%: medians
        gc.collect()
        started = time.perf_counter()
        like = models[0].retraining(progress=False).fit(train)
        like_runs.append(time.perf_counter() - started)
        gc.collect()
        started = time.perf_counter()
        fresh = ImageClassifier(**chosen).fit(train)
        fresh_runs.append(time.perf_counter() - started)
    like_seconds, fresh_seconds = statistics.median(like_runs), statistics.median(fresh_runs)
    test = train.parent / "test"
    return {
        "first_fit_seconds": round(times[0], 1),
        "second_fit_seconds": round(times[1], 1),
        "speedup": round(times[0] / times[1], 1),
        "like_fit_seconds": round(like_seconds, 2),  # the median of like_runs_seconds
        "like_runs_seconds": [round(t, 2) for t in like_runs],
        "like_speedup": round(times[0] / like_seconds, 1),
        "like_new_estimator_fit_seconds": round(fresh_seconds, 2),
        "like_new_estimator_runs_seconds": [round(t, 2) for t in fresh_runs],
        "like_new_estimator_speedup": round(times[0] / fresh_seconds, 1),
        "like_choices": {k: chosen[k] for k in ("tap", "input_size", "augment", "tuning") if k in chosen},
        "like_same_predictions_on_test": float(np.mean(np.asarray(like.predict(test)) == models[0].predict(test))),
        "like_max_probability_difference_on_test": float(
            np.abs(like.predict_proba(test) - fresh.predict_proba(test)).max()
        ),
    }


def text_speed(limit: int = 3000) -> dict:
    from sentence_transformers import SentenceTransformer

    from wukong.backbones.sentence import default_model_path
    from wukong.backbones.text import TextEncoder

    with open(DATA / "banking77" / "train.csv", newline="", encoding="utf-8") as fh:
        texts = [row["text"] for row in csv.DictReader(fh)][:limit]

    def timed(encode) -> tuple[np.ndarray, float]:  # noqa: ANN001 - texts -> embeddings
        got = encode(texts)  # (and the engine chosen, its graphs compiled: a warm-up pass)
        return got, median_seconds({"run": lambda: encode(texts)}, min_rounds=TEXT_ROUNDS)[0]["run"]

    encoder = TextEncoder()  # what Wukong runs: engine and precision chosen on this machine
    plain = SentenceTransformer(str(default_model_path()), device="cpu")
    ours, theirs = encoder.encode(texts), plain.encode(texts, batch_size=32)  # (and warmed up)
    seconds, _ = median_seconds(
        {"wukong": lambda: encoder.encode(texts), "plain": lambda: plain.encode(texts, batch_size=32)},
        min_rounds=TEXT_ROUNDS,
    )
    wukong_seconds, plain_seconds = seconds["wukong"], seconds["plain"]
    cosine = (ours * theirs).sum(1) / (np.linalg.norm(ours, axis=1) * np.linalg.norm(theirs, axis=1))
    # the matrix work of the transformer's linear layers on the texts' own tokens (no padding): the
    # least any engine must do, so at the matrix peak of a precision it bounds the speed-up from above
    tokens = sum(
        len(ids) for ids in plain.tokenizer(texts, truncation=True, max_length=plain.max_seq_length)["input_ids"]
    )
    linear = sum(  # every token's layers (the pooler's dense layer sees one token a text, and is not used)
        m.weight.numel()
        for name, m in plain[0].auto_model.named_modules()
        if isinstance(m, torch.nn.Linear) and not name.startswith("pooler")
    )
    flops = 2.0 * tokens * linear
    precision = "bf16" if encoder.bf16 else "fp32"
    return {
        "sentences": len(texts),
        "tokens": tokens,
        "wukong_sentences_per_s": round(len(texts) / wukong_seconds, 1),
        "wukong_precision": precision,
        "sentence_transformers_fp32_sentences_per_s": round(len(texts) / plain_seconds, 1),
        "speedup": round(plain_seconds / wukong_seconds, 2),
        "min_cosine": round(float(cosine.min()), 5),
        "wukong_linear_share_of_peak": round(flops / wukong_seconds / PEAK[precision], 3),
        "sentence_transformers_linear_share_of_fp32_peak": round(flops / plain_seconds / PEAK["fp32"], 3),
        "speedup_bound_at_bf16_peak": round(plain_seconds / (flops / PEAK["bf16"]), 2),
        "wukong_engine": encoder.engine_note,
        "engines": {
            f"{engine}_{'bf16' if bf16 else 'fp32'}": row(
                *timed(TextEncoder(engine=engine, bf16=bf16).encode), theirs, plain_seconds
            )
            for engine in ("torch", "openvino")
            for bf16 in (False, True)
        },
    }


def row(got: np.ndarray, seconds: float, reference: np.ndarray, plain_seconds: float) -> dict:
    cosine = (got * reference).sum(1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(reference, axis=1))
    return {
        "sentences_per_s": round(len(got) / seconds, 1),
        "speedup": round(plain_seconds / seconds, 2),
        "min_cosine": round(float(cosine.min()), 5),
    }


def tiny_imagenet_val(target: Path, limit: int) -> Path:
    """The first ``limit`` files of Tiny ImageNet's val split, as a class-per-folder tree."""
    count = 0
    with tarfile.open(DATA / "tiny-imagenet.tar.gz") as tar:
        for member in tar:
            parts = Path(member.name).parts
            if member.isfile() and len(parts) == 4 and parts[1] == "val" and count < limit:
                out = target / parts[2] / parts[3]
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_bytes(tar.extractfile(member).read())
                count += 1
            if count >= limit:
                break
    return target


PARTS = ("network", "decoding", "files", "retrain", "serve", "text")


def main() -> None:
    from conftest import cifar_subset

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "throughput.json")
    parser.add_argument("--limit", type=int, default=1000, help="files per set")
    parser.add_argument(
        "--parts", nargs="+", choices=PARTS, default=list(PARTS), help="run these parts only, merged into --out"
    )
    args = parser.parse_args()
    cache = Path(tempfile.mkdtemp(prefix="wukong-bench-cache-"))
    os.environ["WUKONG_CACHE"] = str(cache)
    merged = set(args.parts) != set(PARTS) and args.out.exists()
    report: dict = json.loads(args.out.read_text()) if merged else {}
    report["machine"] = {
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }
    started = time.strftime("%F %T")
    if merged:  # the parts run again, and when
        report.setdefault("reruns", []).append({"parts": args.parts, "started": started})
    else:
        report["started"] = started
    with tempfile.TemporaryDirectory() as tmp:
        cifar = cifar_subset(Path(tmp) / "cifar", train_per_class=100, test_per_class=100)
        peak = matrix_peak()  # a rerun's beside its parts: the others' shares are of the first run's
        (report["reruns"][-1] if merged else report)["matrix_peak"] = peak
        print("matrix peak", peak, flush=True)
        if "network" in args.parts:
            report["network_alone"] = network_alone()
        if "decoding" in args.parts:
            report["decoding_steps_cat_dog"] = decoding_steps(DATA / "cat_dog")
            print("decoding steps", report["decoding_steps_cat_dog"], flush=True)
        if "files" in args.parts:
            sets = {
                "cat_dog_photos": DATA / "cat_dog",
                "cifar10_test": cifar / "test",
                "tiny_imagenet_val": tiny_imagenet_val(Path(tmp) / "tiny", args.limit),
            }
            report["files_to_features"] = files_to_features(sets, args.limit)
        if "retrain" in args.parts:
            report["retrain_on_cached_features_cifar10_100_per_class"] = retrain_on_cached_features(cifar / "train")
            print("retrain", report["retrain_on_cached_features_cifar10_100_per_class"], flush=True)
        if "serve" in args.parts:
            from wukong import ImageClassifier

            model = Path(tmp) / "cat_dog_model"
            ImageClassifier(progress=False).fit(DATA / "cat_dog" / "train").save(model)
            photo = DATA / "cat_dog" / "test" / "cat" / "cat.983.jpg"
            report["serve_one_image_cat_dog_default"] = serve_latency(model, photo)
    if "text" in args.parts:
        report["text_encoding_banking77"] = text_speed()
        print("text", report["text_encoding_banking77"], flush=True)
    (report["reruns"][-1] if merged else report)["finished"] = time.strftime("%F %T")
    shutil.rmtree(cache, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
