"""``TextClassifier``: transfer a pretrained sentence encoder to your labelled texts.

The estimator's ``fit`` template (``wukong.estimator``) with the text parts: reading tables and
in-memory texts (``wukong.data.text``), the encoder (``wukong.backbones.text.TextEncoder``:
length-bucketed, bf16 where faster, cached by content), the network (``wukong.text_network``), the
text ``auto`` rule (``wukong.strategies.auto``) and the few-shot strategy (``wukong.strategies.fewshot``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import TensorDataset

from wukong.backbones.catalog import entry
from wukong.backbones.text import DEFAULT_TEXT_BACKBONE, TextEncoder
from wukong.data.inputs import as_items, as_labelled, is_table
from wukong.data.text import TextSource, label_name_texts, read_text_table, texts_source
from wukong.errors import DataError, ParameterError
from wukong.estimator import Labelled, TransferClassifier
from wukong.features_cache import FeatureCache
from wukong.heads import build_head, final_linear, head_from_spec, is_linear
from wukong.network import set_trainable
from wukong.report import classification_metrics
from wukong.runtime import default_device
from wukong.strategies.auto import BETTER_FEWSHOT_ENCODER, MPNET_HINT, Choice, choose_text_strategy
from wukong.strategies.features import fit_linear_classifier, refit_with_validation, write_linear
from wukong.strategies.fewshot import ContrastivePlan, contrastive_tune
from wukong.text_network import HeadOnly, TextNet, TokenBatches, encoder_blocks, input_embeddings
from wukong.training.engine import TrainPlan, train_network

# --- tuning defaults ----------------------------------------------------------------------------

# Fine-tuning budget: about this many example passes in all, within [MIN_EPOCHS, MAX_EPOCHS] epochs.
FINETUNE_PASSES = 40_000
MIN_EPOCHS, MAX_EPOCHS = 2, 10
HEAD_EPOCHS = 40  # the new head alone, on cached embeddings: cheap, early stopping ends it
HEAD_MIN_STEPS = 300  # ... but at least this many optimiser steps, however few the examples
HEAD_BATCH = 64


def finetune_epochs(num_examples: int) -> int:
    """Epochs for a budget of ~``FINETUNE_PASSES`` example passes: more epochs on less data."""
    return int(min(MAX_EPOCHS, max(MIN_EPOCHS, round(FINETUNE_PASSES / max(1, num_examples)))))


@dataclass
class _Texts:
    """Texts to embed; ``cache``: labelled data files, whose embeddings are worth keeping on disk."""

    texts: list[str]
    cache: bool = False


class TextClassifier(TransferClassifier):
    """Text classification by transfer learning from a pretrained sentence encoder.

    Parameters:
        backbone: a sentence-transformers model: ``None`` (``all-MiniLM-L6-v2``, bundled, offline),
            a hub id (from the local cache first) or a local model folder.
        strategy: ``"auto"`` (from the examples per class, see ``choose_text_strategy``),
            ``"features"`` (cached embeddings + logistic regression with C chosen by cross-validation),
            ``"head"`` (train the new top on the frozen encoder's cached embeddings), ``"finetune"``
            (the head first, then encoder layers with it, at ``lr * backbone_lr_ratio``) or
            ``"fewshot"`` (contrastive tuning on same/different-class pairs, then ``features``).
        head: ``"linear"``, ``"mlp"`` or an ``nn.Module`` (embeddings -> logits).
        text_col, label_col: the columns of a data file (default: found by name or content).
        linear_model: the classifier ``features`` / ``fewshot`` fit: ``"logistic"`` (softmax
            regression, calibrated probabilities) or ``"svm"`` (linear SVM; softmaxed margins).
        unfreeze: for ``finetune``: the number of top transformer layers to tune, or ``"all"``.
        epochs: for ``head``: epochs of the head (default 40, early stopped); for ``finetune``: epochs
            of fine-tuning (default: about 40k example passes, 2 to 10 epochs).
        head_epochs: for ``finetune``: epochs of the head alone before the encoder joins (default 40).
        lr, backbone_lr_ratio: the head's learning rate; encoder layers get ``lr * backbone_lr_ratio``.
        batch_size: texts per training batch (fine-tuning and contrastive tuning).
        val_fraction: held out of the training data when no ``val`` is given (seeded, stratified).
        max_length: truncate texts to this many tokens (default: the encoder's limit).
        pair_steps, pair_lr, pair_loss: for ``fewshot``: contrastive steps (default: from the data
            size, ``strategies.fewshot.default_steps``), their learning rate, and the loss over
            pairs (``"supcon"`` or ``"cosine"``, see ``wukong.strategies.fewshot``).
        label_names: add a text per class that says what it is as one more training example of it,
            as SetFit's label templates do. ``None``: each class's name (``card_arrival`` -> "card
            arrival") when every label has a letter (names such as ``0``/``1`` say nothing); ``True``:
            the same, required; ``False``: none; a mapping ``{label: description}`` (``{"0":
            "negative", "1": "positive"}``): those descriptions, the names for classes it leaves out.
            What this gains is measured in ``benchmarks/text.py`` (README, Benchmarks).
        bf16: bf16 autocast (``None``: where it is measured faster, once per model and machine).
        tuning: thresholds and grid the strategies decide with, e.g. ``{"small": 30}`` (see
            ``wukong.tuning.DEFAULTS``); ``None``: the measured defaults.

    Example:
        >>> from wukong import TextClassifier
        >>> clf = TextClassifier(progress=False).fit(
        ...     ["refund please", "give my money back", "card not here yet", "where is my card"],
        ...     ["refund", "refund", "card", "card"], val=(["I want a refund"], ["refund"]))
        >>> clf.predict(["my card has not arrived"])
        ['card']
    """

    modality = "text"
    load_modules = ("head",)  # the encoder is named in the folder
    strategies = ("auto", "features", "head", "finetune", "fewshot")

    def __init__(
        self,
        backbone: str | Path | None = None,
        *,
        strategy: str = "auto",
        head: str | nn.Module = "linear",
        text_col: str | None = None,
        label_col: str | None = None,
        linear_model: str = "logistic",
        unfreeze: int | str | None = None,
        epochs: int | None = None,
        head_epochs: int | None = None,
        lr: float = 3e-3,
        backbone_lr_ratio: float = 0.02,
        batch_size: int = 32,
        val_fraction: float = 0.1,
        max_length: int | None = None,
        pair_steps: int | None = None,
        pair_lr: float = 2e-5,
        pair_loss: str = "supcon",
        label_names: bool | Mapping[str, str] | None = None,
        bf16: bool | None = None,
        tuning: dict[str, Any] | None = None,
        seed: int = 0,
        progress: bool = True,
    ) -> None:
        self.backbone = backbone
        self.strategy = strategy
        self.head = head
        self.text_col = text_col
        self.label_col = label_col
        self.linear_model = linear_model
        self.unfreeze = unfreeze
        self.epochs = epochs
        self.head_epochs = head_epochs
        self.lr = lr
        self.backbone_lr_ratio = backbone_lr_ratio
        self.batch_size = batch_size
        self.val_fraction = val_fraction
        self.max_length = max_length
        self.pair_steps = pair_steps
        self.pair_lr = pair_lr
        self.pair_loss = pair_loss
        self.label_names = label_names
        self.bf16 = bf16
        self.tuning = tuning
        self.seed = seed
        self.progress = progress

    # --- fit -----------------------------------------------------------------------------------

    def _read_labelled(
        self, data: Any, labels: Sequence[Any] | None, classes: Sequence[str] | None, role: str
    ) -> tuple[Labelled, list[dict[str, Any]]]:
        """Texts: a CSV/TSV/JSONL file (text and label columns), a DataFrame or Dataset, or texts + labels."""
        source = self._source(data, labels, classes=classes)
        labelled = Labelled(source, source.label_ids(classes), list(source.classes), source.origin)
        return labelled, [s.to_dict() for s in source.skipped]

    def _run_strategy(
        self, choice: Choice, train: Labelled, val: Labelled, *, work: Path, resume: bool, carved: bool
    ) -> tuple[Choice, dict[str, Any]]:
        names = self._label_texts(train.origin)  # checked before the encoder loads
        self.encoder_ = self._load_encoder(self.backbone, self.max_length, self.bf16)
        self.bf16_ = self.encoder_.bf16  # None: bf16 where it is measured faster, for training too
        self.backbone_name_ = self.encoder_.name
        self._feature_cache: FeatureCache | None = None
        self.encoder_tuned_ = False  # until a strategy changes its weights: embeddings may be cached
        if choice.strategy == "fewshot" and self.backbone is None and entry(BETTER_FEWSHOT_ENCODER).installed():
            choice = Choice(choice.strategy, choice.unfreeze, choice.reason + MPNET_HINT)
        train_texts = list(train.examples.texts) + (names or [])
        fit_y = np.concatenate([train.labels, np.arange(len(self.classes_))]) if names else train.labels
        self.net_ = self._assemble()
        fit_step = {
            "features": self._fit_features,
            "head": self._fit_head,
            "finetune": self._fit_finetune,
            "fewshot": self._fit_fewshot,
        }[choice.strategy]
        val_texts = val.examples.texts
        extra = fit_step(
            train_texts, fit_y, val_texts, val.labels, choice=choice, work=work, resume=resume, carved=carved
        )
        extra["label_name_examples"] = len(names or [])
        extra["data_encoding"] = train.examples.encoding
        if names:
            extra["label_texts"] = dict(zip(self.classes_, names, strict=True))
        # Strategies without epochs have no logs: name the (absent) folder, since save copies
        # history["logs"] when it is a folder and an empty name would mean the current directory.
        extra.setdefault("history", {"epochs": [], "logs": str(work / "logs")})
        extra["val"] = extra.pop("val_before_refit", None) or classification_metrics(
            val.labels, self._proba_prepared(_Texts(val_texts, cache=True)), self.classes_
        )
        extra["refit_on_train_and_val"] = bool(carved and extra.get("refit"))
        return choice, extra

    def _choose(self, labels: np.ndarray, num_classes: int, stages: int = 0) -> Choice:
        counts = np.bincount(labels, minlength=num_classes)
        auto = choose_text_strategy(int(counts.min()), float(np.median(counts)), self.tuning_["fewshot_below"])
        linear = is_linear(self.head)
        if self.strategy == "auto":
            if auto.strategy == "features" and not linear:
                return Choice("head", 0, auto.reason.split(";")[0] + f"; train the given {self.head} head instead")
            return auto
        if self.strategy == "features" and not linear:
            raise ParameterError("strategy 'features' fits a linear classifier; use 'head' or 'finetune' for this head")
        unfreeze = (self.unfreeze if self.unfreeze is not None else "all") if self.strategy == "finetune" else 0
        return Choice(self.strategy, unfreeze, f"strategy '{self.strategy}' asked for")

    def _label_texts(self, origin: str) -> list[str] | None:
        """The classes' names or given descriptions as texts, per ``label_names`` (None: not used)."""
        if self.label_names is False:
            return None
        descriptions = self.label_names if isinstance(self.label_names, Mapping) else None
        names = label_name_texts(self.classes_, descriptions)
        if names is None and (self.label_names is True or descriptions):
            raise DataError(
                f"{origin}: the labels {self.classes_[:5]} are not words; describe each, e.g. "
                f"label_names={{{self.classes_[0]!r}: 'negative review', ...}} (CLI: --label-names)"
            )
        return names

    # --- strategies ---------------------------------------------------------------------------

    def _fit_features(self, texts, labels, val_texts, val_labels, *, carved: bool, **_: Any) -> dict[str, Any]:
        """Cached embeddings of the frozen encoder + cross-validated logistic regression."""
        return self._fit_linear(texts, labels, val_texts, val_labels, refit=carved)

    def _fit_head(self, texts, labels, val_texts, val_labels, *, work: Path, resume: bool, **_: Any) -> dict:
        """The new top, trained by the shared engine on the frozen encoder's cached embeddings."""
        history = self._train_head(texts, labels, val_texts, val_labels, self.epochs, work, resume)
        return {"history": history, "epochs_run": len(history["epochs"])}

    def _fit_finetune(
        self, texts, labels, val_texts, val_labels, *, choice: Choice, work: Path, resume: bool, **_: Any
    ) -> dict[str, Any]:
        """The head on cached embeddings first (a good start: fine-tuning then does not have to undo
        a random head's gradients), then encoder layers with it, tokenised, at smaller rates."""
        head_history = self._train_head(texts, labels, val_texts, val_labels, self.head_epochs, work / "head", resume)
        epochs = self.epochs or finetune_epochs(len(texts))
        blocks = encoder_blocks(self.net_.features, choice.unfreeze)
        # TokenBatches items are whole batches, hence the loader's batch_size of 1.
        plan = TrainPlan(
            blocks=blocks,
            epochs=epochs,
            head_epochs=0,
            lr=self.lr,
            backbone_lr_ratio=self.backbone_lr_ratio,
            batch_size=1,
            patience=max(2, epochs // 3),
            bf16=self.bf16_,
            seed=self.seed,
        )
        train_set, val_set = self._token_batches(texts, labels), self._token_batches(val_texts, val_labels)
        self.encoder_tuned_ = True
        history = train_network(
            self.net_, train_set, val_set, plan, work_dir=work / "finetune", resume=resume, progress=self.progress
        )
        return {
            "unfreeze": choice.unfreeze,
            "epochs_run": len(history["epochs"]),
            "head_history": head_history,
            "history": history,
        }

    def _fit_fewshot(
        self, texts, labels, val_texts, val_labels, *, work: Path, resume: bool, carved: bool, **_: Any
    ) -> dict[str, Any]:
        """Contrastive tuning of the encoder on pairs, then the classifier on its embeddings."""
        # The token embeddings (a third of MiniLM's weights) stay as they are: a few examples touch a
        # few of their rows, and leaving them out of the optimiser makes each step ~15% faster.
        words = input_embeddings(self.net_.features)
        if words is not None:
            set_trainable(words, False)
        plan = ContrastivePlan(
            steps=self.pair_steps,
            batch_size=self.batch_size,
            lr=self.pair_lr,
            loss=self.pair_loss,
            bf16=self.bf16_,
            seed=self.seed,
        )
        info = contrastive_tune(
            self.net_.features,
            self._tokenize(texts),
            labels,
            plan,
            progress=self.progress,
        )
        if words is not None:
            set_trainable(words, True)
        self.encoder_tuned_ = True
        if is_linear(self.head):
            extra = self._fit_linear(texts, labels, val_texts, val_labels, refit=carved)
        else:
            history = self._train_head(texts, labels, val_texts, val_labels, self.epochs, work, resume)
            extra = {"history": history}
        return {"contrastive": info, **extra}

    # --- building blocks ---------------------------------------------------------------------

    def _fit_linear(self, texts, labels, val_texts, val_labels, *, refit: bool) -> dict[str, Any]:
        """Logistic regression on the embeddings, folded into the head's final linear layer.

        Validation texts held out of small training data are measured first, then added back for the
        final fit (the refit policy of ``wukong.strategies.features.refit_with_validation``).
        """
        feats = self._embed(_Texts(texts, cache=True))
        how = {"model": self.linear_model, "seed": self.seed, "c_grid": self.tuning_["c_grid"]}
        fit = fit_linear_classifier(feats, labels, len(self.classes_), **how)
        write_linear(final_linear(self.net_.head), fit)
        extra: dict[str, Any] = {"classifier": fit.info}
        if refit_with_validation(refit, labels, self.tuning_["refit_below"]):
            val_feats = self._embed(_Texts(val_texts, cache=True))
            extra["val_before_refit"] = classification_metrics(val_labels, self._proba_of(val_feats), self.classes_)
            both = np.concatenate([feats, val_feats])
            fit = fit_linear_classifier(both, np.concatenate([labels, val_labels]), len(self.classes_), **how)
            write_linear(final_linear(self.net_.head), fit)
            extra["refit"] = True
        return extra

    def _train_head(self, texts, labels, val_texts, val_labels, epochs: int | None, work: Path, resume: bool) -> dict:
        """Train ``net_.head`` with the shared engine on the (cached) embeddings of the encoder as it is.

        ``epochs=None``: ``HEAD_EPOCHS``, or more on tiny data to make ``HEAD_MIN_STEPS`` steps.
        """
        train_set = TensorDataset(
            torch.from_numpy(self._embed(_Texts(texts, cache=True))), torch.as_tensor(labels, dtype=torch.long)
        )
        val_set = TensorDataset(
            torch.from_numpy(self._embed(_Texts(val_texts, cache=True))), torch.as_tensor(val_labels, dtype=torch.long)
        )
        if epochs is None:
            epochs = max(HEAD_EPOCHS, math.ceil(HEAD_MIN_STEPS / math.ceil(len(texts) / HEAD_BATCH)))
        plan = TrainPlan(
            blocks=[],
            epochs=epochs,
            head_epochs=epochs,
            lr=self.lr,
            batch_size=HEAD_BATCH,
            patience=max(6, epochs // 5),
            bf16=False,  # a small matrix product: fp32 is as fast, and exact
            seed=self.seed,
        )
        history = train_network(
            HeadOnly(self.net_.head), train_set, val_set, plan, work_dir=work, resume=resume, progress=self.progress
        )
        return history

    def _assemble(self) -> TextNet:
        head, self.head_spec_ = build_head(self.head, self.encoder_.dim, len(self.classes_))
        return TextNet(self.encoder_.model, head).eval()

    @staticmethod
    def _load_encoder(backbone: str | Path | None, max_length: int | None, bf16: bool | None = None) -> TextEncoder:
        if isinstance(backbone, nn.Module):
            raise ValueError(
                "TextClassifier takes a sentence-transformers model name or folder as backbone; "
                "save a custom model with model.save(folder) and pass the folder"
            )
        name = DEFAULT_TEXT_BACKBONE if backbone is None else str(backbone)
        return TextEncoder(name, bf16=bf16, max_length=max_length, device=str(default_device()))

    def _tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        tokenizer = self.encoder_.model.tokenizer
        encoded = tokenizer(
            list(texts),
            truncation=True,
            max_length=self.encoder_.max_length,
            padding=False,
            return_attention_mask=False,
        )
        return encoded["input_ids"]

    def _token_batches(self, texts: Sequence[str], labels: np.ndarray) -> TokenBatches:
        pad_id = self.encoder_.model.tokenizer.pad_token_id or 0
        return TokenBatches(self._tokenize(texts), labels, batch_size=self.batch_size, pad_id=pad_id, seed=self.seed)

    def _embed(self, prepared: _Texts) -> np.ndarray:
        """Sentence embeddings: length-bucketed and bf16 (TextEncoder), from the on-disk cache when the
        encoder still has its pretrained weights and the texts are labelled data (worth keeping)."""
        self.net_.eval()
        progress = self.progress and len(prepared.texts) > 2000
        if prepared.cache and not self.encoder_tuned_:
            if getattr(self, "_feature_cache", None) is None:
                self._feature_cache = self.encoder_.feature_cache()
            return self.encoder_.encode_cached(prepared.texts, self._feature_cache, progress=progress)
        return self.encoder_.encode(prepared.texts, progress=progress)

    def _proba_of(self, embeddings: np.ndarray) -> np.ndarray:
        head = self.net_.head.eval()
        device = next(head.parameters()).device
        with torch.inference_mode():
            logits = head(torch.from_numpy(embeddings).to(device)).float()
            return torch.softmax(logits, dim=1).cpu().numpy()

    def _proba_prepared(self, prepared: _Texts) -> np.ndarray:
        if not prepared.texts:
            return np.empty((0, len(self.classes_)), np.float32)
        return self._proba_of(self._embed(prepared))

    # --- data ----------------------------------------------------------------------------------

    def _source(self, data: Any, labels: Sequence[Any] | None, classes: Sequence[str] | None = None) -> TextSource:
        if isinstance(data, (str, Path)):
            if labels is not None:
                raise ValueError("labels are read from the file; pass labels only with a list of texts")
            return read_text_table(data, self.text_col, self.label_col, classes=classes)
        if is_table(data) or labels is not None:  # a DataFrame / Dataset, or texts with labels
            data, labels = as_labelled(data, labels, "text", input_col=self.text_col, label_col=self.label_col)
        return texts_source(data, labels, classes)

    def _read_unlabelled(self, inputs: str | Sequence[str]) -> tuple[list[str], _Texts, list[tuple[str, str]]]:
        texts = [inputs] if isinstance(inputs, str) else as_items(inputs)
        bad = next((t for t in texts if not isinstance(t, str)), None)
        if bad is not None:
            raise DataError(f"texts must be strings, got {type(bad).__name__}: {bad!r}")
        return texts, _Texts(texts, cache=False), []

    def _labelled(self, data: Any, labels: Sequence[Any] | None) -> tuple[_Texts, np.ndarray, list[dict]]:
        source = self._source(data, labels, classes=self.classes_)
        return _Texts(source.texts, cache=True), source.label_ids(self.classes_), [s.to_dict() for s in source.skipped]

    # --- persistence (see wukong.artifact) -----------------------------------------------------

    def _config_extra(self) -> dict[str, Any]:
        return {
            "backbone": {
                "name": self.backbone_name_,
                "max_length": self.encoder_.max_length,
                "dim": self.encoder_.dim,
                "licence": getattr(entry(self.backbone_name_), "licence", None),
            },
            "encoder_tuned": self.encoder_tuned_,
        }

    def _state_to_save(self) -> dict[str, torch.Tensor]:
        # An unchanged pretrained encoder is rebuilt from its name at load: only the head is saved.
        if not self.encoder_tuned_:
            return {f"head.{k}": v for k, v in self.net_.head.state_dict().items()}
        return self.net_.state_dict()

    def _load_saved_state(self, state: dict[str, torch.Tensor]) -> None:
        if not self.encoder_tuned_:
            head_state = {k.removeprefix("head."): v for k, v in state.items()}
            self.net_.head.load_state_dict(head_state, strict=True)
        else:
            self.net_.load_state_dict(state, strict=True)

    @classmethod
    def _from_config(cls, config: dict[str, Any], head: nn.Module | None = None) -> TextClassifier:
        params = cls._saved_params(config, "head")
        if not isinstance(params.get("backbone"), str | type(None)):
            params["backbone"] = None
        model = cls(head=head or config["head"]["kind"], **params)
        info = config["backbone"]
        if not isinstance(info.get("name"), str) or not (
            info.get("max_length") is None or (isinstance(info["max_length"], int) and info["max_length"] > 0)
        ):
            raise ParameterError("backbone: 'name' must be a string and 'max_length' a whole number or null")
        if not isinstance(config.get("encoder_tuned"), bool):
            raise ParameterError("'encoder_tuned' must be true or false")
        model.encoder_ = cls._load_encoder(info["name"], info["max_length"], model.bf16)
        model.bf16_ = model.encoder_.bf16
        model.backbone_name_ = info["name"]
        model.classes_ = list(config["classes"])
        model.strategy_, model.strategy_reason_ = config["strategy"], config["strategy_reason"]
        model.head_spec_ = config["head"]
        model._feature_cache = None
        model.encoder_tuned_ = bool(config["encoder_tuned"])
        head_module = head if head is not None else head_from_spec(config["head"])
        model.net_ = TextNet(model.encoder_.model, head_module).eval()
        return model
