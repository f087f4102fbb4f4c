"""The text encoder's frozen pass on OpenVINO, where that is installed, agrees and is faster.

A sentence encoder with its pretrained weights is a frozen network going forward, like an image
backbone under ``features`` (``wukong.engine``). OpenVINO, Intel's CPU runtime, runs the exported
transformer in bf16 on CPUs that have it natively, where onnxruntime's CPU provider runs fp32 only
(the rates side by side: ``benchmarks/throughput.py``, its text rows, and the README).

It runs in the precision the encoder runs in: bf16 where that was measured faster, else fp32. The
encoder (tokens and attention mask in, the model's own pooling and normalisation, the sentence
embedding out) is exported to ONNX once per model, length limit and opset, and kept in the cache's
``engines/text`` folder. It is used only while the encoder holds the weights it was exported from
(``TextEncoder.weights_changed`` is set when a strategy tunes them), only where its embeddings
agree with PyTorch fp32 on probe texts (``wukong.engine.MIN_COSINE``), and, with ``engine="auto"``,
only where it is measured faster than PyTorch on the machine (``wukong.runtime.measured_fastest``).
Many batches (a training set's texts) run several at a time on OpenVINO's throughput streams, each
on a few threads: on a small CPU that beats every thread on one batch (the README's speed section).

Example:
    >>> run = openvino_pass(encoder.model, {"name": "all-MiniLM-L6-v2"}, bf16=True)   # doctest: +SKIP
    >>> run(ids, mask).shape                                                   # doctest: +SKIP
    (64, 384)
"""

from __future__ import annotations

import functools
import itertools
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from wukong.cache import cache_dir
from wukong.engine import OPSET, export_graph, importable, min_cosine
from wukong.features_cache import namespace_key

_COMPILED: dict[tuple[str, tuple[tuple[str, Any], ...]], Any] = {}


@functools.cache
def _core() -> Any:  # openvino.Core: one per process
    import openvino

    return openvino.Core()


def openvino_bf16() -> bool:
    """Whether OpenVINO runs bf16 natively on this CPU."""
    return "BF16" in _core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def compile_graph(path: Path, *, bf16: bool, many: bool = False) -> Any:  # openvino.CompiledModel
    """The ONNX graph at ``path`` compiled for the CPU with as many threads as PyTorch uses, in bf16
    where asked and the CPU has it natively (else fp32); for latency (every thread on one batch), or
    with ``many`` for throughput (OpenVINO's streams: batches side by side, a few threads each); once
    per graph and setting in a process, shared by its callers."""
    config = {
        "INFERENCE_NUM_THREADS": torch.get_num_threads(),
        "INFERENCE_PRECISION_HINT": "bf16" if bf16 and openvino_bf16() else "f32",
        "PERFORMANCE_HINT": "THROUGHPUT" if many else "LATENCY",
    }
    where = (str(path), tuple(sorted(config.items())))
    if where not in _COMPILED:
        _COMPILED[where] = _core().compile_model(str(path), "CPU", config)
    return _COMPILED[where]


def openvino_installed() -> bool:
    return importable("openvino")


class _Embedding(nn.Module):
    """A SentenceTransformer as a function of tensors, for export."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.model({"input_ids": ids, "attention_mask": mask})["sentence_embedding"]


def openvino_pass(model: nn.Module, key: dict[str, Any], *, bf16: bool) -> OpenVinoPass:
    """``model`` exported (once per ``key``: what identifies its weights and length limit) and compiled
    (``compile_graph``)."""
    path = cache_dir("engines") / "text" / f"{namespace_key({**key, 'opset': OPSET})}.onnx"
    exported = not path.exists()
    if exported:
        path.parent.mkdir(parents=True, exist_ok=True)
        example = (torch.ones(2, 8, dtype=torch.long), torch.ones(2, 8, dtype=torch.long))
        export_graph(
            _Embedding(model).eval(), example, path, output="embedding", inputs=("ids", "mask"), free_axes={1: "tokens"}
        )
    try:
        return OpenVinoPass(path, bf16=bf16)
    except Exception:
        if exported:
            raise
        path.unlink(missing_ok=True)  # a cached graph damaged since: exported again
        return openvino_pass(model, key, bf16=bf16)


class OpenVinoPass:
    """``run(ids, mask)``: one batch's embeddings, every thread on it (a server's texts, one request
    per calling thread); ``run.map(batches)``: many batches' embeddings in order, several in flight at
    once on OpenVINO's throughput streams (their graph compiled when first asked for)."""

    def __init__(self, path: Path, *, bf16: bool) -> None:
        self.path, self.bf16 = path, bf16
        self._compiled, self._local = compile_graph(path, bf16=bf16), threading.local()

    def __call__(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        if not hasattr(self._local, "request"):  # a request runs one inference at a time: one per thread
            self._local.request = self._compiled.create_infer_request()
        return self._local.request.infer({0: ids, 1: mask})[0].copy()

    def map(self, batches: Iterable[tuple[np.ndarray, np.ndarray]]) -> Iterator[np.ndarray]:
        """The embeddings of each ``(ids, mask)`` batch, in order; one batch alone runs as ``run`` does."""
        batches = iter(batches)
        ahead = list(itertools.islice(batches, 2))
        if len(ahead) < 2:
            yield from (self(ids, mask) for ids, mask in ahead)
            return
        import openvino

        compiled = compile_graph(self.path, bf16=self.bf16, many=True)
        jobs = openvino.AsyncInferQueue(compiled, int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
        done: dict[int, np.ndarray] = {}
        jobs.set_callback(lambda request, i: done.__setitem__(i, request.get_output_tensor(0).data.copy()))
        sent = given = 0
        try:
            for ids, mask in itertools.chain(ahead, batches):
                jobs.start_async({0: ids, 1: mask}, sent)  # waits for a free request
                sent += 1
                while given in done:
                    yield done.pop(given)
                    given += 1
        finally:
            jobs.wait_all()
        while given < sent:
            yield done.pop(given)
            given += 1


def agreement(model: nn.Module, run: OpenVinoPass, tokenizer: Any) -> float:
    """Minimum cosine similarity between PyTorch fp32 and ``run`` on probe texts of varied length."""
    probe = [
        "I lost my card yesterday and need a new one",
        "refund",
        "Why was I charged twice for the same payment at the supermarket on Friday evening?",
        "The film is a quiet, funny and finally moving portrait of a family that never gives up.",
    ]
    batch = tokenizer(probe, padding=True, return_tensors="np")
    ids, mask = batch["input_ids"].astype(np.int64), batch["attention_mask"].astype(np.int64)
    with torch.inference_mode():
        expected = _Embedding(model).eval()(torch.from_numpy(ids), torch.from_numpy(mask)).float().numpy()
    return min_cosine(run(ids, mask), expected)
