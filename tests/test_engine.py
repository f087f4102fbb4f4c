"""The engine for frozen passes: onnxruntime where it agrees with PyTorch, PyTorch otherwise, cached."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from wukong import ImageClassifier, engine
from wukong.backbones.vision import load_image_backbone
from wukong.engine import MIN_COSINE, OPTIMISED, _engine_session, _graph_path, frozen_pass, static_same_padding
from wukong.errors import ParameterError
from wukong.network import Embedding, FeatureExtractor, TransferNet

from .conftest import CAT_DOG, FAST_BACKBONE


def embedding(name: str, tap: int | None = None) -> tuple[nn.Module, int]:
    bb = load_image_backbone(name)
    net = TransferNet(FeatureExtractor(bb.network, tap), nn.Identity(), bb.data_config["mean"], bb.data_config["std"])
    return Embedding(net).eval(), bb.input_size


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(((a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))).min())


@pytest.mark.parametrize(
    ("name", "tap"), [("efficientnet_lite0", None), ("efficientnet_lite0", 3), (FAST_BACKBONE, None)]
)
def test_onnxruntime_features_agree_with_pytorch_fp32(name: str, tap: int | None) -> None:
    module, size = embedding(name, tap)
    run = frozen_pass(module, size, {"test": name, "tap": tap})
    assert run.engine == "onnxruntime", run.note
    pixels = np.random.default_rng(1).integers(0, 256, (6, 3, size, size), dtype=np.uint8)
    with torch.no_grad():
        expected = module(torch.from_numpy(pixels)).numpy()
    assert cosine(run(pixels), expected) >= 0.9999


def test_static_padding_is_exact_at_its_size() -> None:
    import copy

    module, size = embedding("efficientnet_lite0")
    static = static_same_padding(copy.deepcopy(module), size)
    pixels = torch.randint(0, 256, (2, 3, size, size), dtype=torch.uint8)
    with torch.no_grad():
        torch.testing.assert_close(static(pixels), module(pixels))


def test_the_exported_graph_is_cached_by_its_key_with_its_optimised_form(private_cache) -> None:
    module, size = embedding(FAST_BACKBONE)

    def files() -> dict[str, int]:
        return {p.name: p.stat().st_mtime_ns for p in (private_cache / "engines").glob("*.onnx")}

    frozen_pass(module, size, {"test": "cache"}, engine="onnxruntime")
    before = files()
    graphs = [name for name in before if not name.endswith(OPTIMISED)]
    # each graph once as exported, once as onnxruntime optimised it for this CPU (loaded from then on)
    for graph in graphs:
        assert len([n for n in before if n.startswith(graph.removesuffix(".onnx")) and n.endswith(OPTIMISED)]) == 1
    assert len(before) == 2 * len(graphs)
    again = frozen_pass(module, size, {"test": "cache"}, engine="onnxruntime")
    assert files() == before and again.engine == "onnxruntime"
    pixels = np.random.default_rng(3).integers(0, 256, (4, 3, size, size), dtype=np.uint8)
    with torch.no_grad():
        assert cosine(again(pixels), module(torch.from_numpy(pixels)).numpy()) >= MIN_COSINE
    frozen_pass(module, size, {"test": "cache", "weights": "changed"}, engine="onnxruntime")
    assert len(files()) == len(before) + 2


def test_a_process_keeps_a_few_warm_sessions_one_per_graph_file(private_cache, monkeypatch) -> None:
    module, size = embedding(FAST_BACKBONE)
    run = frozen_pass(module, size, {"test": "sessions"}, engine="onnxruntime")
    graph = _graph_path({"test": "sessions"}, size)
    first = _engine_session(graph)
    assert _engine_session(graph) is first  # a later estimator of the same network: the warm session
    pixels = np.random.default_rng(4).integers(0, 256, (3, 3, size, size), dtype=np.uint8)
    np.testing.assert_array_equal(
        frozen_pass(module, size, {"test": "sessions"}, engine="onnxruntime")(pixels), run(pixels)
    )
    written = graph.stat().st_mtime_ns + 1_000_000
    os.utime(graph, ns=(written, written))  # the graph written again since: a session of the new file
    second = _engine_session(graph)
    assert second is not first and _engine_session(graph) is second
    monkeypatch.setattr(engine, "KEEP_SESSIONS", 1)  # (2 by default)
    other = _graph_path({"test": "sessions", "weights": "other"}, size)
    frozen_pass(module, size, {"test": "sessions", "weights": "other"}, engine="onnxruntime")
    assert [key[0] for key in engine._SESSIONS] == [str(other)]  # the oldest let go
    assert _engine_session(graph) is not second


class NotExportable(nn.Module):
    """A real network op that ONNX (opset 17) cannot express: singular values."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(3, 4)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.linear(torch.linalg.svdvals(pixels.float().mean(3)))


def test_auto_runs_pytorch_bf16_only_where_it_agrees_and_is_measured_faster(private_cache) -> None:
    for name in (FAST_BACKBONE, "efficientnet_lite0"):
        module, size = embedding(name)
        key = {"test": "choice", "name": name}
        run = frozen_pass(module, size, key, bf16=True)
        agreement = json.loads(_graph_path(key, size).with_suffix(".json").read_text())["torch_bf16_min_cosine"]
        timings = {path: json.loads(path.read_text()) for path in (private_cache / "timings").glob("*.json")}
        timed = [t for t in timings.values() if t.get("name") == name and t.get("choice") == "engine"]
        if agreement < MIN_COSINE:  # bf16 is not timed where it does not agree
            assert run.engine == "onnxruntime" and not timed, run.note
            continue
        assert len(timed) == 1 and set(timed[0]["seconds"]) == {"onnxruntime", "torch_bf16"}
        assert run.engine == ("torch" if timed[0]["fastest"] == "torch_bf16" else "onnxruntime"), run.note
        pixels = np.random.default_rng(2).integers(0, 256, (6, 3, size, size), dtype=np.uint8)
        with torch.no_grad():
            assert cosine(run(pixels), module(torch.from_numpy(pixels)).numpy()) >= MIN_COSINE
        again = frozen_pass(module, size, key, bf16=True)  # measured once: the same choice, not timed again
        assert again.engine == run.engine
        assert {p: json.loads(p.read_text()) for p in (private_cache / "timings").glob("*.json")} == timings
    assert agreement < MIN_COSINE  # Lite0 in bf16 is not close enough to fp32 to stand in for it


def test_a_network_that_does_not_export_runs_in_pytorch_and_says_why(private_cache) -> None:
    run = frozen_pass(NotExportable(), 8, {"test": "svd"})
    assert run.engine == "torch" and "linalg_svdvals" in run.note
    assert not _graph_path({"test": "svd"}, 8).exists()  # no graph, whole or partial, and no temporary
    assert not list((private_cache / "engines").rglob(".*.tmp"))
    assert run(np.zeros((2, 3, 8, 8), np.uint8)).shape == (2, 4)
    with pytest.raises(ParameterError, match="cannot run there"):
        frozen_pass(NotExportable(), 8, {"test": "svd"}, engine="onnxruntime")
    with pytest.raises(ParameterError, match="engine='jax'"):
        frozen_pass(NotExportable(), 8, {}, engine="jax")


def test_both_engines_give_the_same_model(private_cache: Path, tmp_path: Path) -> None:
    fast = ImageClassifier(FAST_BACKBONE, strategy="features", engine="onnxruntime", progress=False)
    fast.fit(CAT_DOG / "train")
    plain = ImageClassifier(FAST_BACKBONE, strategy="features", engine="torch", bf16=False, progress=False)
    plain.fit(CAT_DOG / "train")
    assert fast.metrics_["engine"].startswith("onnxruntime") and plain.metrics_["engine"].startswith("torch")
    np.testing.assert_allclose(fast.predict_proba(CAT_DOG / "test"), plain.predict_proba(CAT_DOG / "test"), atol=2e-3)
    # loaded, the same weights are the same network: nothing timed again (the rebuilt network's
    # weights are measured once loaded, not while they are still its random start)
    timings = lambda: sorted(p.name for p in (private_cache / "timings").glob("*.json"))  # noqa: E731
    fast.save(tmp_path / "fast")
    before = timings()
    loaded = [ImageClassifier.load(tmp_path / "fast") for _ in range(2)]
    assert timings() == before and [m.bf16_ for m in loaded] == [fast.bf16_] * 2


def test_the_weights_fingerprint_is_remembered_until_a_weight_changes(monkeypatch) -> None:
    """The engine is found by the weights' fingerprint on every prediction: it is hashed once per
    state of the weights, and any change (an optimiser's in-place step, loaded weights, a replaced
    tensor) gives a new one."""
    from wukong.network import weights_fingerprint

    network = load_image_backbone(FAST_BACKBONE).network
    first = weights_fingerprint(network)
    hashing = network.state_dict
    monkeypatch.setattr(network, "state_dict", lambda *a, **k: pytest.fail("hashed again, weights unchanged"))
    assert weights_fingerprint(network) == first
    monkeypatch.setattr(network, "state_dict", hashing)
    weight = next(network.parameters())
    with torch.no_grad():
        weight.mul_(1.5)  # as an optimiser's step changes a weight: in place
    stepped = weights_fingerprint(network)
    assert stepped != first
    with torch.no_grad():
        weight.div_(1.5)
    network.load_state_dict(load_image_backbone(FAST_BACKBONE).network.state_dict())
    assert weights_fingerprint(network) == first  # the same values again: the same key
    network.to(memory_format=torch.channels_last)  # the same values in another layout: the same key
    assert weights_fingerprint(network) == first
    weight.data = weight.data * 2  # a tensor replaced
    assert weights_fingerprint(network) not in (first, stepped)
    with torch.inference_mode():  # tensors made here keep no version counter: hashed each time, no error
        frozen = nn.Linear(4, 2)
    assert weights_fingerprint(frozen) == weights_fingerprint(frozen)
