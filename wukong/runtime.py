"""Where and how tensors are computed: device choice, bf16 autocast on capable CPUs."""

from __future__ import annotations

import contextlib
import functools
import re
from collections.abc import Iterator
from pathlib import Path

import torch


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
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_bf16(bf16: bool | None, device: torch.device | None = None) -> bool:
    """``None`` means automatic: on for CUDA with bf16 support and for capable CPUs."""
    if bf16 is not None:
        return bf16
    device = device or default_device()
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return cpu_has_fast_bf16()


@contextlib.contextmanager
def inference(device: torch.device, bf16: bool) -> Iterator[None]:
    """No-grad, and bf16 autocast when asked: the context for every frozen forward pass."""
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        yield
