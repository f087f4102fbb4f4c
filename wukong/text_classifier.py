"""``TextClassifier``: transfer a pretrained sentence encoder to your labelled texts.

The estimator's ``fit`` template (``wukong.estimator``) with the text parts: the adapter
(``wukong.modalities.text``: tables and in-memory texts, the encoder, label-name examples, token
batches), the text ``auto`` rule (``wukong.strategies.auto``), and the strategies ``features``,
``head``/``finetune`` (``wukong.strategies.finetune``: the head on cached embeddings first) and
``fewshot`` (``wukong.strategies.fewshot``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import KW_ONLY, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import TensorDataset

from wukong.backbones.catalog import entry
from wukong.backbones.ngrams import NGRAM_BACKBONE, NgramEncoder
from wukong.choices import TEXT_STRATEGIES
from wukong.data.split import stratified_split
from wukong.data.text import TextSource
from wukong.errors import DataError
from wukong.estimator import Labelled, TransferClassifier
from wukong.heads import head_from_spec, is_linear
from wukong.modalities import text
from wukong.modalities.text import Texts
from wukong.strategies.auto import BETTER_FEWSHOT_ENCODER, MPNET_HINT, Choice, choose_text_strategy
from wukong.strategies.features import LinearFit, refit_with_validation
from wukong.strategies.fewshot import ContrastivePlan, contrastive_tune
from wukong.strategies.finetune import HeadPhase, cached_head_epochs, finetune_epochs, head_then_unfreeze
from wukong.text_network import TextNet, encoder_blocks

EMBEDDING = "sentence embedding"  # the candidate that transfers, as auto names it beside the TF-IDF n-grams
# Texts from which auto weighs the n-grams: below, a cross-validated loss is too noisy to overrule the
# pretrained encoder (benchmarks/README.md, auto's regret); beyond the second, the n-grams' dense
# features (16,384 per text) cost too much memory.
NGRAMS_FROM, NGRAMS_UP_TO = 50, 10_000
COMPARED_UP_TO = 4_000  # texts the comparison cross-validates on (a stratified sample of more)


@dataclass(eq=False, repr=False)
class TextClassifier(TransferClassifier):
    """Text classification by transfer learning from a pretrained sentence encoder.

    Parameters:
        backbone: a sentence-transformers model: ``None`` (``all-MiniLM-L6-v2``, bundled, offline),
            a hub id (from the local cache first) or a local model folder.
        strategy: ``"auto"`` (first whether transfer helps at all: the embedding against TF-IDF
            n-grams, ``_transfer_or_not``; then from the examples per class, ``choose_text_strategy``),
            ``"features"`` (cached embeddings + logistic regression with C chosen by cross-validation),
            ``"head"`` (train the new top on the frozen encoder's cached embeddings), ``"finetune"``
            (the head first, then encoder layers with it, at ``lr * backbone_lr_ratio``) or
            ``"fewshot"`` (contrastive tuning on same/different-class pairs, then ``features``).
        head: ``"linear"``, ``"mlp"`` or an ``nn.Module`` (embeddings -> logits).
        text_col, label_col: the columns of a data file (default: found by name or content).
        linear_model: the classifier ``features`` / ``fewshot`` fit: ``"logistic"`` (softmax
            regression, calibrated probabilities) or ``"svm"`` (linear SVM; softmaxed margins).
        unfreeze: for ``finetune``: the number of top transformer layers to tune, or ``"all"``.
        epochs: for ``head``: epochs of the head (default 40, early stopped); for ``finetune``: epochs of
            each phase, the head on cached embeddings and then the encoder with it (default: 40 head
            epochs, then about 40k example passes, 2 to 10 epochs).
        head_epochs: for ``finetune``: epochs of the head phase, when it should differ from ``epochs``.
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
        class_weight, reject_unknown, unknown_label, unknown_keep: imbalanced classes and "none of
            these" (see ``TransferClassifier``).
        accelerator, devices, num_nodes: where training runs, as Lightning's ``Trainer`` takes them
            (``"auto"``: the GPU when there is one); more than one device or machine trains with
            DDP, a process per device (README, "Many images, GPUs and several machines").
            ``num_workers``: loader processes (``None``: none, texts are tokenised in memory).

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
    strategies = TEXT_STRATEGIES

    backbone: str | Path | None = None
    _: KW_ONLY
    text_col: str | None = None
    label_col: str | None = None
    lr: float = 3e-3
    backbone_lr_ratio: float = 0.02
    batch_size: int = 32
    val_fraction: float = 0.1
    max_length: int | None = None
    pair_steps: int | None = None
    pair_lr: float = 2e-5
    pair_loss: str = "supcon"
    label_names: bool | Mapping[str, str] | None = None

    # --- fit -----------------------------------------------------------------------------------

    def _read_labelled(
        self, data: Any, labels: Sequence[Any] | None, classes: Sequence[str] | None, role: str
    ) -> tuple[Labelled, list[dict[str, Any]]]:
        source = self._source(data, labels, classes=classes)
        labelled = Labelled(source, source.label_ids(classes), list(source.classes), source.origin)
        return labelled, [s.to_dict() for s in source.skipped]

    def _run_strategy(
        self, choice: Choice, train: Labelled, val: Labelled, *, work: Path, resume: bool, carved: bool
    ) -> tuple[Choice, dict[str, Any]]:
        names = text.label_texts(self.classes_, self.label_names, train.origin)  # checked before the encoder loads
        self._start_encoder(text.load_encoder(self.backbone, self.max_length, self.bf16))
        texts = list(train.examples.texts) + (names or [])
        name_labels = np.eye(len(self.classes_), dtype=np.int64) if self.multi_label_ else np.arange(len(self.classes_))
        labels = np.concatenate([train.labels, name_labels]) if names else train.labels
        tried: dict[str, Any] | None = None
        if self._weighs_transfer(choice, len(texts)):
            choice, tried = self._transfer_or_not(choice, texts, labels, val, carved)
        if choice.strategy == "fewshot" and self.backbone is None and entry(BETTER_FEWSHOT_ENCODER).installed():
            choice = Choice(choice.strategy, choice.unfreeze, choice.reason + MPNET_HINT)
        self.net_, self.head_spec_ = text.assemble(self.encoder_, self.head, len(self.classes_))
        step = {"features": self._fit_linear, "fewshot": self._fit_fewshot}
        fit_step = step.get(choice.strategy, self._fit_network)
        data = (texts, labels, val.examples.texts, val.labels)
        extra = fit_step(*data, choice=choice, work=work, resume=resume, carved=carved)
        extra["label_name_examples"] = len(names or [])
        extra["data_encoding"] = train.examples.encoding
        if names:
            extra["label_texts"] = dict(zip(self.classes_, names, strict=True))
        val_texts = list(val.examples.texts)
        if "val_before_refit" not in extra:
            logits = self._logits_prepared(Texts(val_texts, cache=True))
            if not extra.get("classifier"):  # a trained head: calibrated on the validation set
                self._calibrate(logits, val.labels, "the validation set")
            extra["val_before_refit"] = self._metrics_from_logits(val.labels, logits, val_texts)
        extra["val"] = extra.pop("val_before_refit")
        extra["refit_on_train_and_val"] = bool(carved and extra.get("refit"))
        extra["engine"] = self.encoder_.engine_note  # what embeds texts for prediction, and why
        if tried is not None:  # the report draws them
            extra["candidates_tried"] = tried
            extra["candidate_kept"] = NGRAM_BACKBONE if self.backbone_name_ == NGRAM_BACKBONE else EMBEDDING
        return choice, extra

    def _chosen(self) -> dict[str, Any]:
        """A model on TF-IDF n-grams (``auto`` found that transfer does not help): no parameter names
        that encoder, so the strategy, backbone and C stay as they were given, and the comparison
        runs again."""
        if self.backbone_name_ != NGRAM_BACKBONE:
            return {}
        return {"strategy": self.strategy, "backbone": self.backbone, "tuning": self.tuning}

    def _auto_choice(self, per_class_min: int, per_class_median: float, stages: int) -> Choice:
        return choose_text_strategy(per_class_min, per_class_median, self.tuning_["fewshot_below"])

    def _weighs_transfer(self, choice: Choice, texts: int) -> bool:
        """Whether ``auto`` measures if the pretrained encoder helps at all: before tuning it (few-shot
        or fine-tuning), from ``NGRAMS_FROM`` to ``NGRAMS_UP_TO`` training texts, with one
        label per text, a linear head, the plain loss and no unlabelled texts (the comparison is the
        plain cross-validated log loss of two linear classifiers)."""
        return (
            self.strategy == "auto"
            and choice.strategy in ("fewshot", "finetune")
            and NGRAMS_FROM <= texts <= NGRAMS_UP_TO
            and not self.multi_label_
            and is_linear(self.head)
            and self.class_weights_ is None
            and self._pool is None
            and self.linear_model == "logistic"
        )

    def _transfer_or_not(
        self, choice: Choice, texts: list[str], labels: np.ndarray, val: Labelled, carved: bool
    ) -> tuple[Choice, dict[str, Any] | None]:
        """The no-transfer baseline inside ``auto``'s comparison: a linear classifier on the sentence
        embedding against one on TF-IDF word and character n-grams (``backbones.ngrams``), both
        cross-validated on the same texts (with the validation texts where they join the final fit,
        as for images). The n-grams are kept only where their log loss is lower than the
        embedding's by more than their own standard error: transfer does not help on this data;
        then ``features`` is fitted on them. Else the size rule's choice stands, with the
        measurement in its reason."""
        refit = refit_with_validation(carved, labels, self.tuning_["refit_below"])
        compared = texts + (list(val.examples.texts) if refit else [])
        ids = np.concatenate([labels, val.labels]) if refit else labels
        if len(compared) > COMPARED_UP_TO:  # a stratified sample is enough to tell the two apart
            keep = stratified_split(ids, 1 - COMPARED_UP_TO / len(compared), seed=self.seed)[0]
            compared, ids = [compared[i] for i in keep], ids[keep]
        try:
            ngrams = NgramEncoder.fit(compared)
        except ValueError:  # no word of two letters or more in any text: nothing to compare
            return choice, None
        embedding = self._linear(self._embed(Texts(compared, cache=True)), ids)
        counted = self._linear(ngrams.encode(compared), ids, **ngrams.fit_options)
        tried = {
            EMBEDDING: {**embedding.info, "features": self.encoder_.dim},
            NGRAM_BACKBONE: {**counted.info, "features": ngrams.dim},
        }
        losses = [(f.info["cv_loss"], f.info["cv_loss_se"]) for f in (embedding, counted)]
        if any(loss is None for loss, _ in losses):
            return choice, tried
        (pretrained, se_pretrained), (plain, se_plain) = losses
        scores = f"sentence embedding {pretrained} ± {se_pretrained}, TF-IDF n-grams {plain} ± {se_plain}"
        if plain + se_plain < pretrained:
            self._start_encoder(ngrams)
            reason = (
                f"transfer does not help on this data: measured by cross-validated log loss ({scores}), a linear "
                "model on the texts' word and character n-grams (TF-IDF, no pretrained encoder) is more accurate "
                "than one on the encoder's embedding by more than its standard error: kept"
            )
            return Choice("features", 0, reason), tried
        said = f"; measured by cross-validated log loss ({scores}): the pretrained encoder helps, kept"
        return Choice(choice.strategy, choice.unfreeze, choice.reason + said), tried

    def _start_encoder(self, encoder: Any) -> None:
        self.encoder_ = encoder
        self.bf16_ = encoder.bf16  # None: bf16 where it is measured faster, for training too
        self.backbone_name_ = encoder.name
        self._embed = text.Embedder(encoder, progress=self.progress)
        self._set_tuned(False)  # until a strategy changes its weights: embeddings may be cached

    @property
    def encoder_tuned_(self) -> bool:
        """Whether a strategy changed the encoder's weights (then embeddings are not cached, the encoder
        runs in PyTorch, and the whole network is saved); the encoder holds the flag, so none of these
        can disagree."""
        return self._embed.tuned

    def _set_tuned(self, tuned: bool) -> None:
        self._embed.tuned = tuned

    # --- strategies ---------------------------------------------------------------------------

    def _fit_network(
        self, texts, labels, val_texts, val_labels, *, choice: Choice, work: Path, resume: bool, **_: Any
    ) -> dict[str, Any]:
        """``head`` and ``finetune`` (``strategies.finetune``): the head on cached embeddings, then
        (``finetune``) encoder layers with it, tokenised, at smaller rates."""
        finetune = choice.strategy == "finetune"
        blocks = encoder_blocks(self.net_.features, choice.unfreeze) if finetune else []
        # a given ``epochs`` bounds the head phase too, unless ``head_epochs`` says otherwise
        head_epochs = (self.head_epochs or self.epochs) if finetune else self.epochs
        history = self._head_then_unfreeze(texts, labels, val_texts, val_labels, blocks, head_epochs, work, resume)
        extra = {"epochs_run": len(history["epochs"]), "history": history}
        if finetune:
            extra.update(unfreeze=choice.unfreeze, head_history=history.pop("head_history"))
        return extra

    def _fit_fewshot(
        self, texts, labels, val_texts, val_labels, *, work: Path, resume: bool, carved: bool, **_: Any
    ) -> dict[str, Any]:
        """Contrastive tuning of the encoder on pairs, then the classifier on its embeddings."""
        how = {"batch_size": self.batch_size, "lr": self.pair_lr, "loss": self.pair_loss, "seed": self.seed}
        plan = ContrastivePlan(steps=self.pair_steps, bf16=self.bf16_, **how)
        tokens = text.tokenize(self.encoder_, texts)
        info = contrastive_tune(self.net_.features, tokens, labels, plan, progress=self.progress)
        self._set_tuned(True)
        if is_linear(self.head):
            extra = self._fit_linear(texts, labels, val_texts, val_labels, carved=carved, calibrate_on_val=True)
        else:
            extra = {
                "history": self._head_then_unfreeze(texts, labels, val_texts, val_labels, [], self.epochs, work, resume)
            }
        return {"contrastive": info, **extra}

    # --- building blocks ---------------------------------------------------------------------

    def _fit_linear(
        self, texts, labels, val_texts, val_labels, *, carved: bool, calibrate_on_val: bool = False, **_: Any
    ) -> dict[str, Any]:
        """``features``: logistic regression on the embeddings, folded into the head's final linear
        layer and calibrated on its out-of-fold logits (``calibrate_on_val``: on the validation
        texts instead, for an encoder tuned on the training texts, whose out-of-fold logits are
        not held out from it); validation texts carved out of small data are measured, then added
        back (``strategies.features.refit_with_validation``)."""
        feats = self._embed(Texts(texts, cache=True))
        pool = self._embed(self._pool) if self._pool is not None else None  # with the (tuned) encoder
        fit = self._linear_and_pool(feats, labels, pool)
        self._write_linear(fit)
        extra: dict[str, Any] = {"classifier": fit.info}
        refit = refit_with_validation(carved, labels, self.tuning_["refit_below"])
        if refit or calibrate_on_val:
            val_feats = self._embed(Texts(val_texts, cache=True))
            logits = self._logits_from_features(val_feats)
            if calibrate_on_val:
                self._calibrate(logits, val_labels, "the validation set")
            extra["val_before_refit"] = self._metrics_from_logits(val_labels, logits, val_texts)
            extra["val_logits"] = logits
        if refit:
            both = self._linear_and_pool(np.concatenate([feats, val_feats]), np.concatenate([labels, val_labels]), pool)
            self._write_linear(both, calibrate=not calibrate_on_val)  # else the validation texts' temperature stays
            extra["refit"] = True
        return extra

    def _linear_and_pool(self, feats: np.ndarray, labels: np.ndarray, pool: np.ndarray | None) -> LinearFit:
        """The linear classifier, self-trained on the unlabelled texts' embeddings where given."""
        fit = self._linear(feats, labels, **getattr(self.encoder_, "fit_options", {}))
        return fit if pool is None else self._self_trained(fit, feats, labels, None, pool=pool)

    def _head_then_unfreeze(
        self, texts, labels, val_texts, val_labels, blocks: list[nn.Module], head_epochs, work: Path, resume: bool
    ) -> dict[str, Any]:
        """``strategies.finetune``'s policy: the head phase on cached embeddings of the encoder as it
        is, then (``blocks``) the encoder's layers with the head, on length-bucketed token batches."""

        def on_features(inputs: list[str], ids: np.ndarray) -> TensorDataset:
            embedded = torch.from_numpy(self._embed(Texts(inputs, cache=True)))
            return TensorDataset(embedded, torch.as_tensor(ids, dtype=torch.long))

        head_phase = HeadPhase(
            on_features(texts, labels),
            on_features(val_texts, val_labels),
            epochs=cached_head_epochs(len(texts), head_epochs),
        )
        epochs = self.epochs or finetune_epochs(len(texts))
        # TokenBatches items are whole batches, hence the loader's batch size of 1
        plan = self._train_plan(blocks, epochs, 0, batch_size=1, patience=max(2, epochs // 3))
        batches = (None, None)
        if blocks:
            how = {"batch_size": self.batch_size, "seed": self.seed}
            batches = (
                text.token_batches(self.encoder_, texts, labels, **how),
                text.token_batches(self.encoder_, val_texts, val_labels, **how),
            )
            self._set_tuned(True)
        return head_then_unfreeze(
            self.net_, plan, *batches, head_phase=head_phase, work_dir=work, resume=resume, progress=self.progress
        )

    def _features_prepared(self, prepared: Texts) -> np.ndarray:
        if not prepared.texts:
            return np.empty((0, 0), np.float32)
        return self._embed(prepared)

    # --- data ----------------------------------------------------------------------------------

    def _source(self, data: Any, labels: Sequence[Any] | None, classes: Sequence[str] | None = None) -> TextSource:
        return text.read_source(data, labels, classes, text_col=self.text_col, label_col=self.label_col)

    def _embedded(
        self, data: Any, labels: Sequence[Any] | None, classes: Sequence[str] | None, role: str
    ) -> tuple[Labelled, list[dict[str, Any]], np.ndarray]:
        """A labelled set read as ``fit`` reads it, and the encoder's sentence embedding of each
        text (cached on disk): what ``wukong.audit`` works on."""
        if getattr(self, "encoder_", None) is None:
            self._start_encoder(text.load_encoder(self.backbone, self.max_length, self.bf16))
        labelled, skipped = self._read_labelled(data, labels, classes, role)
        return labelled, skipped, self._embed(Texts(list(labelled.examples.texts), cache=True))

    def _read_pool(self, inputs: str | Path | Sequence[str]) -> tuple[Texts, list[dict[str, Any]]]:
        """Texts, or a file of them (a ``Path``: one text per line, or a table's text column)."""
        if isinstance(inputs, Path):
            inputs = text.texts_of_file(inputs, self.text_col)
        texts = [t for t in text.read_unlabelled(inputs) if t.strip()]
        if not texts:
            raise DataError("unlabeled: no text given")
        return Texts(texts, cache=True), []

    def _read_unlabelled(self, inputs: str | Sequence[str]) -> tuple[list[str], Texts, dict[int, str]]:
        texts = text.read_unlabelled(inputs)
        return texts, Texts(texts, cache=False), {}

    def _pool_features(self, inputs: str | Sequence[str]) -> tuple[list[str], np.ndarray, dict[int, str]]:
        texts = text.read_unlabelled(inputs)
        return texts, self._features_prepared(Texts(texts, cache=True)), {}

    def _inputs_of(self, examples: TextSource) -> tuple[list[str], Texts]:
        return list(examples.texts), Texts(list(examples.texts), cache=True)

    # --- persistence (see wukong.artifact) -----------------------------------------------------

    def _config_extra(self) -> dict[str, Any]:
        return {
            "backbone": {
                "max_length": self.encoder_.max_length,
                "dim": self.encoder_.dim,
                "licence": getattr(entry(self.backbone_name_), "licence", None),
            },
            "encoder_tuned": self.encoder_tuned_,
            **(self.encoder_.config() if isinstance(self.encoder_, NgramEncoder) else {}),
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
        name, max_length, tuned = text.saved_encoder(config)
        if name == NGRAM_BACKBONE:  # no transfer: the vocabularies here, their weights with the head
            model._start_encoder(NgramEncoder(config.get("ngrams") or {}))
        else:
            model._start_encoder(text.load_encoder(name, max_length, model.bf16))
        model._set_tuned(tuned)
        model.backbone_name_ = name
        head_module = head if head is not None else head_from_spec(config["head"])
        model.net_ = TextNet(model.encoder_.model, head_module).eval()
        return model
