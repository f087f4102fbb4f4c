"""The sentence encoder: same embeddings as sentence-transformers, deduplicated, cached, offline-safe."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from sentence_transformers import SentenceTransformer

from wukong.backbones.sentence import default_model_path, load_sentence_transformer
from wukong.backbones.text import TextEncoder, length_batches
from wukong.data.text import read_text_table
from wukong.errors import BackboneNotAvailable, ParameterError
from wukong.features_cache import FeatureCache

from .conftest import DATA


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    """Threads do not change results; one thread keeps these tests fast on a shared 2-core machine."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def sentences() -> list[str]:
    """Real sentences of varied length, plus one longer than the model's 256-token limit."""
    sst2 = read_text_table(DATA / "sst2" / "test.tsv").texts
    banking = read_text_table(DATA / "banking77" / "test.csv").texts
    longest = sorted(sst2, key=len)[-20:]
    return sst2[:16] + banking[::200][:12] + longest[:4] + [" ".join(longest)]


@pytest.fixture(scope="module")
def reference(sentences: list[str]) -> np.ndarray:
    """What a user gets from sentence-transformers itself, fp32."""
    model = SentenceTransformer(str(default_model_path()), device="cpu")
    return model.encode(sentences, batch_size=32, convert_to_numpy=True)


@pytest.fixture(scope="module")
def fp32() -> TextEncoder:
    return TextEncoder(bf16=False)


def test_fp32_matches_sentence_transformers(fp32: TextEncoder, sentences: list[str], reference: np.ndarray) -> None:
    ours = fp32.encode(sentences)
    assert ours.dtype == np.float32 and ours.shape == reference.shape == (len(sentences), fp32.dim)
    assert _cosines(ours, reference).min() >= 0.9999


def test_bf16_is_close_to_sentence_transformers(sentences: list[str], reference: np.ndarray) -> None:
    encoder = TextEncoder(bf16=True, max_batch_tokens=512)  # small batches: several length buckets
    ours = encoder.encode(sentences)
    assert ours.dtype == np.float32
    assert _cosines(ours, reference).min() >= 0.99


def test_openvino_pass_agrees_and_is_left_once_the_weights_change(sentences: list[str], reference: np.ndarray) -> None:
    from wukong.modalities.text import Embedder

    encoder = TextEncoder(engine="openvino")
    ours = encoder.encode(sentences)
    assert encoder.describe()["engine"] == "openvino" and encoder.engine_note.startswith("openvino (agrees")
    assert _cosines(ours, reference).min() >= 0.999
    with torch.no_grad():  # a strategy tunes the weights in place, and says so (as TextClassifier does)
        embeddings = encoder.model[0].auto_model.embeddings.word_embeddings.weight
        embeddings.add_(0.05 * torch.randn(embeddings.shape, generator=torch.Generator().manual_seed(0)))
    Embedder(encoder, progress=False).tuned = True
    changed = encoder.encode(sentences[:8])
    assert encoder.engine_note == "torch (weights changed)"
    assert _cosines(changed, ours[:8]).min() < 0.999  # the new weights, not the exported graph's


def test_openvino_runs_many_batches_at_once_and_gives_each_text_its_own_embedding(sentences: list[str]) -> None:
    import wukong.backbones.text_engine as engine

    torch.set_num_threads(2)  # (the module runs on one thread): OpenVINO's streams, batches side by side
    try:
        encoder = TextEncoder(engine="openvino", max_batch_tokens=256)  # many length buckets
        together = encoder.encode(sentences)
        streams = [c for where, c in engine._COMPILED.items() if ("PERFORMANCE_HINT", "THROUGHPUT") in where[1]]
        assert streams, "the batches did not go to the throughput graph"
    finally:
        torch.set_num_threads(1)
    alone = np.concatenate([encoder.encode(text) for text in sentences])  # one batch each, one at a time
    np.testing.assert_allclose(together, alone, atol=1e-4)


def test_a_damaged_cached_graph_is_exported_again(
    sentences: list[str], reference: np.ndarray, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import wukong.backbones.text_engine as engine

    monkeypatch.setenv("WUKONG_CACHE", str(tmp_path))
    TextEncoder(engine="openvino").encode(sentences[:2])
    (graph,) = (tmp_path / "engines" / "text").glob("*.onnx")
    graph.write_bytes(b"not a graph")  # a disk fault, or a copy cut short
    engine._COMPILED.clear()  # as in a new process
    again = TextEncoder(engine="openvino").encode(sentences)
    assert _cosines(again, reference).min() >= 0.999 and graph.stat().st_size > 1000


def test_openvino_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    import wukong.backbones.text as text

    monkeypatch.setattr(text, "openvino_installed", lambda: False)
    assert TextEncoder().describe()["engine"] == "torch"
    assert TextEncoder().engine_note == "torch (OpenVINO is not installed)"
    with pytest.raises(ParameterError, match="pip install openvino"):
        TextEncoder(engine="openvino").encode(["where is my card?"])
    with pytest.raises(ParameterError, match="engine='onnx'"):
        TextEncoder(engine="onnx")


def test_max_length_truncates_like_sentence_transformers(sentences: list[str]) -> None:
    model = SentenceTransformer(str(default_model_path()), device="cpu")
    model.max_seq_length = 12
    expected = model.encode(sentences[-10:], batch_size=32)
    ours = TextEncoder(bf16=False, max_length=12).encode(sentences[-10:])
    assert _cosines(ours, expected).min() >= 0.9999


class CountingTokenizer:
    """The real tokenizer, counting how many texts each call tokenises."""

    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.calls: list[int] = []

    def __call__(self, texts: list[str], **kwargs: object) -> object:
        self.calls.append(len(texts))
        return self.inner(texts, **kwargs)

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


def test_duplicates_encoded_once_and_order_kept(
    fp32: TextEncoder, sentences: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    texts = [sentences[i] for i in (5, 20, 5, 0, 32, 20, 5, 17)]
    counting = CountingTokenizer(fp32._tokenizer)
    monkeypatch.setattr(fp32, "_tokenizer", counting)
    together = fp32.encode(texts)
    assert counting.calls == [len(set(texts))]  # one tokenisation, of the distinct texts only
    distinct = sorted(set(texts))  # another order, each text once
    alone = dict(zip(distinct, fp32.encode(distinct), strict=True))
    assert np.allclose(together, [alone[t] for t in texts], atol=1e-5)
    assert np.array_equal(together[0], together[2]) and np.array_equal(together[1], together[5])


def test_reversed_input_gives_reversed_output(fp32: TextEncoder, sentences: list[str]) -> None:
    forward = fp32.encode(sentences[:12])
    backward = fp32.encode(sentences[11::-1])
    assert np.allclose(forward, backward[::-1], atol=1e-5)


def test_empty_and_single_inputs(fp32: TextEncoder, sentences: list[str]) -> None:
    assert fp32.encode([]).shape == (0, fp32.dim)
    assert fp32.encode(sentences[0]).shape == (1, fp32.dim)
    with pytest.raises(TypeError, match="strings"):
        fp32.encode([sentences[0], 3])  # type: ignore[list-item]


def test_cache_hit_does_not_recompute(
    fp32: TextEncoder, sentences: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = fp32.feature_cache(root=tmp_path)
    computed: list[list[str]] = []
    real_encode = fp32.encode

    def counting_encode(texts: list[str], **kwargs: object) -> np.ndarray:
        computed.append(list(texts))
        return real_encode(texts, **kwargs)

    monkeypatch.setattr(fp32, "encode", counting_encode)
    first = fp32.encode_cached(sentences[:10] + sentences[:3], cache)
    assert computed == [sentences[:10]]
    again = fp32.encode_cached(sentences[:10], FeatureCache(fp32.describe(), root=tmp_path))  # fresh index
    assert len(computed) == 1
    assert np.array_equal(again, first[:10])
    mixed = fp32.encode_cached(sentences[6:16], cache)
    assert computed[1] == sentences[10:16]
    assert np.allclose(mixed, real_encode(sentences[6:16]), atol=1e-5)


def test_cache_of_another_setup_is_refused(fp32: TextEncoder, tmp_path: Path) -> None:
    other = FeatureCache({**fp32.describe(), "bf16": not fp32.bf16}, root=tmp_path)
    with pytest.raises(ValueError, match="another encoder"):
        fp32.encode_cached(["hello"], other)


def test_describe_is_json_and_names_what_matters(fp32: TextEncoder) -> None:
    described = json.loads(json.dumps(fp32.describe()))
    assert described["name"] == "all-MiniLM-L6-v2"
    assert described["dim"] == 384 and described["bf16"] is False and described["max_length"] == 256


def test_default_aliases_and_local_folder_load_the_bundled_model() -> None:
    by_id = load_sentence_transformer("sentence-transformers/all-MiniLM-L6-v2")
    by_folder = load_sentence_transformer(str(default_model_path()))
    probe = ["where is my new card?"]
    assert np.allclose(by_id.encode(probe), by_folder.encode(probe), atol=1e-6)


def test_uncached_hub_id_offline_is_backbone_not_available(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(BackboneNotAvailable, match="not in the local Hugging Face cache"):
        TextEncoder("wukong-tests/never-published-encoder")


def test_missing_local_folder_is_backbone_not_available(tmp_path: Path) -> None:
    with pytest.raises(BackboneNotAvailable, match="not a sentence-transformers model folder"):
        load_sentence_transformer(str(tmp_path / "no" / "such" / "model"))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_length_batches_respect_both_limits(seed: int) -> None:
    lengths = np.sort(np.random.default_rng(seed).integers(1, 300, size=500))
    batches = length_batches(lengths, max_count=64, max_tokens=1024)
    assert batches[0][0] == 0 and batches[-1][1] == len(lengths)
    assert all(a[1] == b[0] for a, b in zip(batches, batches[1:], strict=False))
    for start, stop in batches:
        assert stop - start <= 64
        assert stop - start == 1 or (stop - start) * lengths[stop - 1] <= 1024
    # padding bounded too: smaller batches where lengths spread, and no more of them than that needs
    bounded = length_batches(lengths, max_count=64, max_tokens=1024, max_padding=0.05)
    padded = lambda cuts: sum((b - a) * lengths[b - 1] for a, b in cuts)  # noqa: E731
    for start, stop in bounded:
        waste = (stop - start) * lengths[stop - 1] - lengths[start:stop].sum()
        assert waste <= 0.05 * (stop - start) * lengths[stop - 1]
        if stop < len(lengths) and stop - start < 64:  # cut where the next text would pad past a limit
            more = (stop - start + 1) * lengths[stop]
            assert more > 1024 or more - lengths[start : stop + 1].sum() > 0.05 * more
    assert padded(bounded) < padded(batches) and len(bounded) > len(batches)
