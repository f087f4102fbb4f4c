""" "None of these": a score of how much an input looks like the known classes, and the threshold under
which a model may answer "unknown".

Scores (higher: more like the training data), compared by ``benchmarks/trust.py``:

- ``msp``: the maximum calibrated class probability (Hendrycks & Gimpel 2017), the baseline;
- ``energy``: ``T * logsumexp(logits / T)`` (Liu et al. 2020);
- ``maxlogit``: the largest logit (Vaze et al. 2022: with a good classifier, as good as most);
- ``knn``: the cosine similarity of the network's features to their k-th nearest training example
  (Sun et al. 2022), kept as a bank of at most ``BANK`` normalised training features (in float16;
  sparse where at most ``SPARSE_UP_TO`` of its values are not zero, as TF-IDF n-grams' are);
- ``maxlogit+knn`` (the default) and ``msp+knn``: the mean of the two scores' percentiles among
  known validation inputs, so that an input must both look unlike the training data and be hard
  to place to score low. The default is the mix that ``benchmarks/trust.py`` measured best on both
  of its tasks (see ``benchmarks/README.md``).

The threshold is the score's quantile among known validation inputs that keeps ``keep`` of them
(95% by default), computed when asked, so ``keep`` may change after fitting. The percentile of a
part is taken against the same validation inputs' values of that part, so the parts are on one
scale (the share of known inputs that score lower on it) before they are averaged.

Example:
    >>> rng = np.random.default_rng(0)
    >>> known = np.repeat(np.eye(3)[:2], 100, axis=0) + rng.normal(scale=0.3, size=(200, 3))
    >>> logits = known[:, :2] * 3                     # two classes, along the first two axes
    >>> score = fit_score("maxlogit+knn", known[::2], logits[::2], known[1::2], logits[1::2], temperature=1.0)
    >>> far = np.array([[0.0, 0.0, 1.0]])             # along the third axis: like neither class
    >>> bool(score(far, far[:, :2] * 3)[0] < score.threshold(0.95))
    True
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
from scipy import sparse

from wukong.calibration import softmax

SCORES = ("msp", "energy", "maxlogit", "knn", "msp+knn", "maxlogit+knn")
DEFAULT_SCORE = "maxlogit+knn"
KEEP = 0.95  # the share of known inputs kept by default
K = 1  # neighbours of ``knn``: the nearest (measured: k = 1 is as good as or better than 5 and 10)
BANK = 4096  # training features kept for ``knn`` at most (a seeded sample beyond)
SPARSE_UP_TO = 0.1  # a bank with at most this share of non-zero values is kept (and saved) sparse
SPARSE_PARTS = ("data", "indices", "indptr", "shape")  # a sparse bank's tensors: ``bank.data``, ...


def _normalise(features: np.ndarray) -> np.ndarray:
    features = np.asarray(features, dtype=np.float32)
    return features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)


def make_bank(features: np.ndarray) -> np.ndarray | sparse.csr_array:
    """The normalised rows of ``features`` as ``knn`` keeps them: float16, or a float32 sparse matrix of
    float16-rounded values (the same values saved and loaded) where few of them are not zero."""
    normalised = _normalise(features).astype(np.float16)
    if np.count_nonzero(normalised) > SPARSE_UP_TO * normalised.size:
        return normalised
    return sparse.csr_array(normalised.astype(np.float32))


def knn_similarity(features: np.ndarray, bank: np.ndarray | sparse.csr_array, k: int = K) -> np.ndarray:
    """Cosine similarity of each row of ``features`` to its ``k``-th nearest row of ``bank`` (normalised,
    float32 or sparse)."""
    k = max(1, min(k, bank.shape[0]))
    out = np.empty(len(features), np.float32)
    for start in range(0, len(features), 1024):
        sims = np.asarray((bank @ _normalise(features[start : start + 1024]).T).T)
        out[start : start + 1024] = np.partition(sims, -k, axis=1)[:, -k]
    return out


def energy(logits: np.ndarray, temperature: float) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64) / temperature
    top = z.max(axis=1)
    return (temperature * (np.log(np.exp(z - top[:, None]).sum(axis=1)) + top)).astype(np.float32)


@dataclass
class OpenSetScore:
    """A fitted score: ``score(features, logits)``, and ``threshold(keep)`` under which an input is unknown."""

    name: str
    temperature: float
    reference: dict[str, np.ndarray]  # sorted scores of known validation inputs: each part's, and "score"
    bank: np.ndarray | sparse.csr_array | None = None  # normalised training features (``knn``): ``make_bank``
    k: int = K
    extra: dict[str, Any] = field(default_factory=dict)

    def threshold(self, keep: float = KEEP) -> float:
        """The score that ``keep`` of the known validation inputs reach."""
        values = self.reference["score"]
        return float(np.quantile(values, 1.0 - keep)) if len(values) else float("-inf")

    def parts(self, features: np.ndarray, logits: np.ndarray) -> dict[str, np.ndarray]:
        wanted = self.name.split("+")
        out: dict[str, np.ndarray] = {}
        if "msp" in wanted:
            out["msp"] = softmax(logits, self.temperature).max(axis=1)
        if "energy" in wanted:
            out["energy"] = energy(logits, self.temperature)
        if "maxlogit" in wanted:
            out["maxlogit"] = np.asarray(logits, dtype=np.float32).max(axis=1)
        if "knn" in wanted:
            out["knn"] = knn_similarity(features, self._bank32, self.k)
        return out

    @cached_property
    def _bank32(self) -> np.ndarray | sparse.csr_array:
        """The bank in float32, converted once (not on every prediction: 4,096 x 1,280 is 21 MB)."""
        return self.bank if sparse.issparse(self.bank) else self.bank.astype(np.float32)

    def dense_bank(self) -> np.ndarray | None:
        """The bank as a dense float16 array (what an exported graph holds)."""
        if self.bank is None or not sparse.issparse(self.bank):
            return self.bank
        return self.bank.toarray().astype(np.float16)

    def __call__(self, features: np.ndarray, logits: np.ndarray) -> np.ndarray:
        parts = self.parts(features, logits)
        if len(parts) == 1:
            return next(iter(parts.values())).astype(np.float32)
        shares = [
            np.searchsorted(self.reference[n], v, side="right") / len(self.reference[n]) for n, v in parts.items()
        ]
        return np.mean(shares, axis=0).astype(np.float32)

    def tensors(self) -> dict[str, np.ndarray]:
        """What the model folder's safetensors hold for this score."""
        out = {f"reference.{n}": v for n, v in self.reference.items()}
        if sparse.issparse(self.bank):  # float16 values, their columns and where each row starts
            bank = self.bank
            parts = (bank.data.astype(np.float16), bank.indices.astype(np.int32), bank.indptr.astype(np.int64))
            out.update({f"bank.{n}": v for n, v in zip(SPARSE_PARTS, (*parts, np.array(bank.shape)), strict=True)})
        elif self.bank is not None:
            out["bank"] = self.bank
        return out

    def config(self) -> dict[str, Any]:
        """What config.json holds for this score."""
        return {"score": self.name, "k": self.k, f"threshold_at_{KEEP:g}": round(self.threshold(), 6), **self.extra}


def fit_score(
    name: str,
    train_features: np.ndarray,
    train_logits: np.ndarray,
    val_features: np.ndarray,
    val_logits: np.ndarray,
    *,
    temperature: float,
    k: int = K,
    seed: int = 0,
) -> OpenSetScore:
    """Fit score ``name`` on the training features (the ``knn`` bank) and known validation inputs
    (the references of percentiles and thresholds)."""
    if name not in SCORES:
        raise ValueError(f"unknown score {name!r}: choose one of {', '.join(SCORES)}")
    bank = None
    if "knn" in name:
        rows = np.arange(len(train_features))
        if len(rows) > BANK:
            rows = np.sort(np.random.default_rng(seed).choice(rows, BANK, replace=False))
        bank = make_bank(train_features[rows])
    score = OpenSetScore(name, float(temperature), {}, bank, k)
    score.reference = {n: np.sort(v) for n, v in score.parts(val_features, val_logits).items()}
    score.reference["score"] = np.sort(score(val_features, val_logits))
    score.extra = {"validation_examples": int(len(val_features)), "bank_examples": 0 if bank is None else bank.shape[0]}
    return score


def load_score(config: dict[str, Any], tensors: dict[str, np.ndarray], temperature: float) -> OpenSetScore:
    """The score saved by ``tensors`` and ``config``; ``ValueError`` when they do not fit together."""
    name = config.get("score")
    if name not in SCORES:
        raise ValueError(f"open_set: unknown score {name!r}")
    reference = {k.removeprefix("reference."): v for k, v in tensors.items() if k.startswith("reference.")}
    score = OpenSetScore(name, temperature, reference, _saved_bank(tensors), int(config.get("k", K)))
    needed = ["score", *name.split("+")] if "+" in name else ["score"]
    if any(n not in reference for n in needed) or ("knn" in name and score.bank is None):
        raise ValueError(f"open_set: the weights lack what score {name!r} needs")
    score.extra = {k: v for k, v in config.items() if k not in ("score", "k") and not k.startswith("threshold")}
    return score


def _saved_bank(tensors: dict[str, np.ndarray]) -> np.ndarray | sparse.csr_array | None:
    """The bank that ``OpenSetScore.tensors`` saved, dense or sparse; ``ValueError`` when damaged."""
    if "bank.data" not in tensors:
        return tensors.get("bank")
    try:
        data, indices, indptr, shape = (tensors[f"bank.{n}"] for n in SPARSE_PARTS)
        bank = sparse.csr_array((data.astype(np.float32), indices, indptr), shape=tuple(int(n) for n in shape))
        bank.check_format(full_check=True)  # every column inside the shape, rows in order
        return bank
    except (KeyError, ValueError, TypeError) as error:
        raise ValueError(f"open_set: the sparse feature bank is damaged ({error})") from error
