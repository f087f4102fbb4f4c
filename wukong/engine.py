"""Frozen passes at the hardware's pace: the part of a network that does not train, run by the fastest
engine that is installed and agrees with PyTorch.

Most of what Wukong computes on a CPU is a frozen network going forward: features for ``features``
and ``auto``, prediction, evaluation, the server. PyTorch's eager CPU kernels leave much of a small
machine unused on such a network; onnxruntime runs the same graph several times faster (measured in
``benchmarks/throughput.py``). So the frozen part is exported once to ONNX at its fixed input size,
cached on disk by the weights' fingerprint, checked against PyTorch fp32 on a probe batch, and run
by onnxruntime from then on; where that is not possible (no onnxruntime, a GPU, a network that does
not export, outputs that disagree) PyTorch runs it, with bf16 where the CPU has it natively. Where
PyTorch under bf16 agrees with fp32 as closely and is measured faster on the machine (a small
convolutional network on some CPUs), it runs the pass instead.

TensorFlow-style "same" padding (timm's ``tf_*`` networks, such as the EfficientNet-Lite default)
pads each stride-2 convolution by an amount computed from the input at run time. At a fixed input
size that amount is a constant, so the exported copy pads statically, which onnxruntime fuses
into the convolution (the benchmarks' README gives the rates with and without).

Example:
    >>> run = frozen_pass(net_embedding, size=224, key={"weights": "..."})   # doctest: +SKIP
    >>> run(uint8_batch).shape, run.engine                                   # doctest: +SKIP
    ((64, 1280), 'onnxruntime')
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import json
import os
import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from wukong.artifact_io import atomic_file, write_text_atomically
from wukong.cache import cache_dir
from wukong.errors import ParameterError
from wukong.features_cache import namespace_key
from wukong.runtime import cpu_name, inference, measured_fastest

ENGINES = ("auto", "torch", "onnxruntime")
# The exported graph must agree with PyTorch fp32 on the probe batch at least this well.
MIN_COSINE = 0.9999
OPSET = 17
OPTIMISED = ".optimised.onnx"  # the suffix of an engine graph as onnxruntime optimised it on this CPU


class FrozenPass:
    """``run(uint8 NCHW batch) -> float32 (N, features)`` on the engine named in ``engine``; ``note`` says
    why; ``numerics`` names what decides its outputs to the last bits (engine and precision): features
    cached from one are not mixed with another's."""

    def __init__(self, fn: Callable[[np.ndarray], np.ndarray], engine: str, note: str, *, bf16: bool = False) -> None:
        self._fn = fn
        self.engine = engine
        self.note = note
        self.numerics = f"{engine} {'bf16' if bf16 else 'fp32'}"

    def __call__(self, batch: np.ndarray | torch.Tensor) -> np.ndarray:
        if isinstance(batch, torch.Tensor):
            batch = batch.numpy()
        return self._fn(np.ascontiguousarray(batch, dtype=np.uint8))


def check_engine(engine: str) -> None:
    if engine not in ENGINES:
        raise ParameterError(f"engine={engine!r}: choose one of {', '.join(ENGINES)}")


def frozen_pass(
    module: nn.Module, size: int, key: dict[str, Any], *, engine: str = "auto", bf16: bool = False
) -> FrozenPass:
    """The fastest agreeing way to run ``module`` (uint8 ``(N, 3, size, size)`` -> features) frozen.

    ``key`` names what determines the outputs (weights fingerprint, tap, preprocessing): the exported
    graph is cached under it. ``engine="torch"`` never exports; ``"onnxruntime"`` insists (an error
    when it cannot); ``"auto"`` uses onnxruntime where it agrees with PyTorch, else PyTorch, and with
    ``bf16`` PyTorch under bf16 where that agrees as closely and is measured faster.
    """
    check_engine(engine)
    module = module.eval()
    device = next(module.parameters(), torch.zeros(0)).device
    if engine == "torch" or (engine == "auto" and (device.type != "cpu" or not importable("onnxruntime"))):
        why = "asked for" if engine == "torch" else "onnxruntime is not installed or the network is on a GPU"
        return _torch_pass(module, device, bf16, f"torch ({why})")
    try:
        onnx = _onnx_pass(module, size, key)
    except Exception as exc:  # noqa: BLE001 - any export or runtime failure means: run it in PyTorch
        if engine == "onnxruntime":
            raise ParameterError(f"engine='onnxruntime': this network cannot run there ({_first_line(exc)})") from exc
        return _torch_pass(module, device, bf16, f"torch (onnxruntime could not take it: {_first_line(exc)})")
    return _faster_agreeing(onnx, module, device, size, key) if engine == "auto" and bf16 else onnx


def _faster_agreeing(
    onnx: FrozenPass, module: nn.Module, device: torch.device, size: int, key: dict[str, Any]
) -> FrozenPass:
    """``onnx``, or PyTorch under bf16 autocast where that agrees with fp32 as closely (``MIN_COSINE``
    on the probe batch) and is measured faster on this machine (``benchmarks/throughput.py`` times
    both engines on both backbones of the store)."""
    bf16 = _torch_pass(module, device, True, "")
    verdict_file = _graph_path(key, size).with_suffix(".json")
    record = _read_record(verdict_file)
    if "torch_bf16_min_cosine" not in record:
        record["torch_bf16_min_cosine"] = _agreement(module, bf16, size)
        _write_record(verdict_file, record)
    cosine = record["torch_bf16_min_cosine"]
    if cosine < MIN_COSINE:
        return onnx
    probe = np.random.default_rng(0).integers(0, 256, (16, 3, size, size), dtype=np.uint8)
    runs = {"onnxruntime": lambda: onnx(probe), "torch_bf16": lambda: bf16(probe)}
    if measured_fastest(runs, {**key, "size": size, "choice": "engine"}) == "onnxruntime":
        return onnx
    bf16.note = f"torch (agrees with PyTorch fp32: min cosine {cosine}; measured faster than onnxruntime here), bf16"
    return bf16


def _torch_pass(module: nn.Module, device: torch.device, bf16: bool, note: str) -> FrozenPass:
    def run(batch: np.ndarray) -> np.ndarray:
        with inference(device, bf16):
            return module(torch.from_numpy(batch).to(device)).float().cpu().numpy()

    return FrozenPass(run, "torch", note + (", bf16" if bf16 else ""), bf16=bf16)


def _onnx_pass(module: nn.Module, size: int, key: dict[str, Any]) -> FrozenPass:
    import onnxruntime  # noqa: F401 - fail here, before exporting, where it is not installed

    path = _graph_path(key, size)
    verdict_file = path.with_suffix(".json")
    verdict = _read_record(verdict_file) if path.exists() else {}
    if "min_cosine" not in verdict:
        _export(module, size, path)
        for stale in path.parent.glob(f"{path.stem}.*{OPTIMISED}"):  # of the graph exported before
            stale.unlink(missing_ok=True)
    session = _engine_session(path)

    def run(batch: np.ndarray) -> np.ndarray:
        return session.run(None, {"pixels": batch})[0]

    if "min_cosine" not in verdict:
        verdict = {"min_cosine": _agreement(module, run, size)}  # a new graph: what was measured before goes
        _write_record(verdict_file, verdict)
    if verdict["min_cosine"] < MIN_COSINE:
        raise RuntimeError(f"outputs differ from PyTorch (min cosine {verdict['min_cosine']:.5f})")
    return FrozenPass(run, "onnxruntime", f"onnxruntime (agrees with PyTorch fp32: min cosine {verdict['min_cosine']})")


def _graph_path(key: dict[str, Any], size: int) -> Path:
    return cache_dir("engines") / f"{namespace_key({**key, 'size': size, 'opset': OPSET})}.onnx"


def _read_record(path: Path) -> dict[str, Any]:
    """What was measured of an exported graph (empty: not yet, or being written by another process)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _write_record(path: Path, record: dict[str, Any]) -> None:
    write_text_atomically(path, json.dumps(record))  # whole or absent for a process reading it at once


def onnx_session(path: Path, options: Any = None) -> Any:  # onnxruntime.InferenceSession (imported where used)
    """An onnxruntime CPU session for ``path`` with as many threads as PyTorch uses, warnings off
    (``options``: ``_session_options()``, changed)."""
    import onnxruntime as ort

    return ort.InferenceSession(str(path), options or _session_options(), providers=["CPUExecutionProvider"])


def _session_options() -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.log_severity_level = 3
    # Its threads sleep between runs instead of spinning: on a few cores a spinning pool takes them from
    # the decoding threads and from PyTorch (the network alone runs as fast: benchmarks/throughput.py).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


# Sessions started in this process, the most recently used last: a later estimator of the same network
# (a saved model loaded to predict, the next fit in a notebook) runs on a warm session, whose first
# run does not pay for its memory arena again. That arena holds a batch's activations (Lite0 at 224
# px, batches of 32: about 330 MB with the session), so only two are kept: a fit's and its model's.
KEEP_SESSIONS = 2
_SESSIONS: OrderedDict[tuple[str, int, int], Any] = OrderedDict()
_SESSIONS_LOCK = threading.Lock()  # (a server's threads)


def _engine_session(path: Path) -> Any:
    """``_start_session`` of an engine graph, or the one this process started before for the same
    graph file and thread count (``KEEP_SESSIONS``)."""
    key = (str(path), path.stat().st_mtime_ns, torch.get_num_threads())  # a graph exported again: a new one
    with _SESSIONS_LOCK:
        if key in _SESSIONS:
            _SESSIONS.move_to_end(key)
            return _SESSIONS[key]
        session = _SESSIONS[key] = _start_session(path)
        while len(_SESSIONS) > KEEP_SESSIONS:
            _SESSIONS.popitem(last=False)
        return session


def _start_session(path: Path) -> Any:
    """A session for an engine graph of the cache. Optimising a graph (onnxruntime's fusions and
    layout rewrites, specific to the CPU and the onnxruntime version) is most of a session's start, so
    the optimised graph is kept beside it and later processes load that as it is."""
    import onnxruntime as ort

    tag = namespace_key({"onnxruntime": ort.__version__, "cpu": cpu_name()})[:12]
    optimised = path.with_name(f"{path.stem}.{tag}{OPTIMISED}")
    if optimised.exists():
        options = _session_options()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        try:
            return onnx_session(optimised, options)
        except Exception:  # noqa: BLE001 - damaged or cut short: optimised again below
            pass
    options = _session_options()
    temporary = optimised.with_name(f".{optimised.name}.{os.getpid()}.tmp")
    options.optimized_model_filepath = str(temporary)
    try:
        session = onnx_session(path, options)
    except Exception:  # noqa: BLE001 - the optimised copy could not be written (a read-only cache): without it
        temporary.unlink(missing_ok=True)
        return onnx_session(path)
    with contextlib.suppress(OSError):  # written whole, then renamed: another process sees all or none
        os.replace(temporary, optimised)
    return session


def _export(module: nn.Module, size: int, path: Path) -> None:
    exported = static_same_padding(copy.deepcopy(module).float().cpu().eval(), size)
    exported = exported.to(memory_format=torch.contiguous_format)
    export_graph(exported, torch.zeros(1, 3, size, size, dtype=torch.uint8), path, output="features")


def export_graph(
    module: nn.Module,
    example: torch.Tensor | tuple[torch.Tensor, ...],
    path: Path,
    *,
    output: str | Sequence[str],
    inputs: Sequence[str] = ("pixels",),
    free_axes: dict[int, str] | None = None,
    opset: int = OPSET,
) -> None:
    """``module`` as an ONNX graph with the named ``inputs`` and ``output`` (one name, or one per
    output); axis 0 (the batch) is free, and ``free_axes`` of every input too (e.g. ``{1: "tokens"}``).
    Written whole or not at all (``atomic_file``): a process sharing the cache never reads half a graph."""
    example = example if isinstance(example, tuple) else (example,)
    names = [output] if isinstance(output, str) else list(output)
    axes = {name: {0: "batch", **(free_axes or {})} for name in inputs}
    with warnings.catch_warnings(), atomic_file(path) as tmp:
        warnings.simplefilter("ignore")  # tracer chatter about constants: the input size is fixed on purpose
        torch.onnx.export(
            module,
            example,
            str(tmp),
            input_names=list(inputs),
            output_names=names,
            dynamic_axes={**axes, **{name: {0: "batch"} for name in names}},
            opset_version=opset,
            dynamo=False,
        )


def _agreement(module: nn.Module, run: Callable[[np.ndarray], np.ndarray], size: int) -> float:
    """Minimum cosine similarity between PyTorch fp32 and the engine on a seeded random batch."""
    probe = np.random.default_rng(0).integers(0, 256, (4, 3, size, size), dtype=np.uint8)
    with torch.no_grad():
        expected = module.float()(torch.from_numpy(probe)).float().numpy()
    return min_cosine(run(probe), expected)


def min_cosine(got: np.ndarray, expected: np.ndarray) -> float:
    """The lowest cosine similarity between matching rows, to 6 decimals: how well an engine agrees."""
    cosine = (expected * got).sum(1) / (np.linalg.norm(expected, axis=1) * np.linalg.norm(got, axis=1) + 1e-12)
    return round(float(cosine.min()), 6)


def static_same_padding(module: nn.Module, size: int) -> nn.Module:
    """Replace timm's run-time "same" padding convolutions with constant padding for ``size`` inputs.

    Changes ``module`` in place (pass a copy) and returns it; its outputs are unchanged at that size.
    """
    from timm.layers.conv2d_same import Conv2dSame
    from timm.layers.padding import pad_same_arg

    convs = {name: m for name, m in module.named_modules() if isinstance(m, Conv2dSame)}
    if not convs:
        return module
    seen: dict[str, tuple[int, int]] = {}
    hooks = [
        m.register_forward_pre_hook(lambda _m, args, n=name: seen.__setitem__(n, tuple(args[0].shape[-2:])))
        for name, m in convs.items()
    ]
    with torch.no_grad():
        module(torch.zeros(1, 3, size, size, dtype=torch.uint8))
    for hook in hooks:
        hook.remove()
    for name, conv in convs.items():
        if name not in seen:  # not on the path to the output (an earlier tap stops before it)
            continue
        pad = pad_same_arg(list(seen[name]), list(conv.weight.shape[-2:]), conv.stride, conv.dilation)
        plain = nn.Conv2d(
            conv.in_channels,
            conv.out_channels,
            conv.kernel_size,
            conv.stride,
            0,
            conv.dilation,
            conv.groups,
            conv.bias is not None,
        )
        plain.load_state_dict(conv.state_dict())
        parent, _, leaf = name.rpartition(".")
        setattr(module.get_submodule(parent) if parent else module, leaf, nn.Sequential(nn.ZeroPad2d(pad), plain))
    return module


def importable(module: str) -> bool:
    """Whether ``module`` (an optional engine: onnxruntime, OpenVINO) is installed and imports."""
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__
