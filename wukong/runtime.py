"""Where and how tensors are computed: device choice, bf16 autocast where it is measured faster."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import platform
import random
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

# bf16 must beat fp32 by this factor to be used: a margin against timing noise, so that the choice
# (part of the feature cache's namespace) does not flip from one run to the next.
BF16_MARGIN = 1.15


@functools.cache
def cpu_has_fast_bf16() -> bool:
    """True when the CPU has native bf16 matrix instructions (AMX or AVX512-BF16).

    On those CPUs bf16 autocast runs convolutions and matmuls several times faster than fp32;
    elsewhere it emulates bf16 and is slower, so Wukong leaves it off.
    """
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return torch.backends.mkldnn.is_available() and re.search(r"\b(avx512_bf16|amx_bf16)\b", flags) is not None


def default_device() -> torch.device:
    """The GPU when there is one (a process of a multi-GPU run: its own, ``LOCAL_RANK``), else the CPU."""
    if not torch.cuda.is_available():
        return torch.device("cpu")
    local = int(os.environ.get("LOCAL_RANK", "0") or 0)
    return torch.device("cuda", local if local < torch.cuda.device_count() else 0)


def resolve_bf16(bf16: bool | None, device: torch.device | None = None) -> bool:
    """``None`` means automatic: on for CUDA with bf16 support and for capable CPUs."""
    if bf16 is not None:
        return bf16
    device = device or default_device()
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return cpu_has_fast_bf16()


def autocast(device: torch.device, bf16: bool) -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast on ``device`` when ``bf16``, else nothing."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)


@contextlib.contextmanager
def inference(device: torch.device, bf16: bool) -> Iterator[None]:
    """No-grad, and bf16 autocast when asked: the context for every frozen forward pass."""
    with torch.inference_mode(), autocast(device, bf16):
        yield


def bf16_measured_faster(run: Callable[[], Any], device: torch.device, key: dict[str, Any]) -> bool:
    """Whether bf16 autocast makes ``run`` (a forward pass on a typical batch) clearly faster than fp32.

    Native bf16 instructions do not make every network faster: with PyTorch 2.14, convolutional
    networks gain while small transformers lose on this project's CPUs (see ``benchmarks/README.md``).
    So on a CPU with native bf16 the two are timed once per network (``key``: what identifies it),
    PyTorch version and CPU (``measured_fastest``). On CUDA the device's bf16 support decides;
    elsewhere bf16 is off.
    """
    if not resolve_bf16(None, device):
        return False
    if device.type != "cpu":
        return True

    def under(bf16: bool) -> Callable[[], Any]:
        def timed() -> Any:
            with autocast(device, bf16):
                return run()

        return timed

    return measured_fastest({"fp32": under(False), "bf16": under(True)}, {**key, "choice": "precision"}) == "bf16"


def measured_fastest(runs: dict[str, Callable[[], Any]], key: dict[str, Any], *, margin: float = BF16_MARGIN) -> str:
    """The name of the fastest of ``runs`` (each the same typical piece of work, done another way):
    the first is kept unless another is faster by ``margin``. Timed interleaved (the best of three
    rounds, so that all see the same machine load) once per ``key``, PyTorch version, CPU and thread
    count; the verdict and the times are kept in the cache folder.
    """
    from filelock import FileLock

    from wukong.cache import cache_dir
    from wukong.features_cache import namespace_key

    where = {**key, "torch": torch.__version__, "cpu": cpu_name(), "threads": torch.get_num_threads()}
    path = cache_dir("timings") / f"{namespace_key(where)}.json"
    with FileLock(path.with_suffix(".lock")):  # processes starting together: one times, the others read it
        return _recorded_fastest(path, runs) or _time_fastest(runs, path, where, margin)


def _recorded_fastest(path: Path, runs: dict[str, Callable[[], Any]]) -> str | None:
    try:
        verdict = json.loads(path.read_text())["fastest"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return verdict if verdict in runs else None


def _time_fastest(runs: dict[str, Callable[[], Any]], path: Path, where: dict[str, Any], margin: float) -> str:
    seconds = dict.fromkeys(runs, float("inf"))
    with torch.inference_mode():
        for _ in range(3):
            for name, run in runs.items():
                seconds[name] = min(seconds[name], _seconds_per_call(run))
    first, best = next(iter(runs)), min(seconds, key=seconds.__getitem__)
    verdict = best if seconds[first] >= margin * seconds[best] else first
    from wukong.artifact_io import write_text_atomically

    write_text_atomically(path, json.dumps({"fastest": verdict, "seconds": seconds, **where}, indent=2, default=str))
    return verdict


def _seconds_per_call(run: Callable[[], Any], at_least: float = 0.05) -> float:
    """Seconds one call of ``run`` takes, over calls lasting ``at_least`` seconds in all, after an untimed
    one (it warms the kernels, and lets the work before wind down: onnxruntime's threads spin on)."""
    run()
    calls, started = 0, time.perf_counter()
    while True:
        run()
        calls += 1
        elapsed = time.perf_counter() - started
        if elapsed >= at_least:
            return elapsed / calls


@functools.cache
def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# Environment variables that ``lightning.seed_everything`` sets: part of the state a fit gives back.
_SEED_ENVIRONMENT = ("PL_GLOBAL_SEED", "PL_SEED_WORKERS")


@contextlib.contextmanager
def private_random_state(seed: int) -> Iterator[None]:
    """Seed PyTorch, NumPy and ``random`` for a reproducible run, then give the caller's generators
    (and Lightning's seed variables) back as they were: a fit draws no number from them.

    Example:
        >>> _ = torch.manual_seed(1); before = torch.rand(1)
        >>> _ = torch.manual_seed(1)
        >>> with private_random_state(0):
        ...     _ = torch.rand(5)
        >>> bool(torch.rand(1) == before)
        True
    """
    python_state, numpy_state = random.getstate(), np.random.get_state()
    environment = {name: os.environ.get(name) for name in _SEED_ENVIRONMENT}
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=devices):
        try:
            torch.manual_seed(seed)
            np.random.seed(seed % 2**32)
            random.seed(seed)
            yield
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)
            for name, value in environment.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
