"""The LightningModule for training the new top and fine-tuning: plain PyTorch steps.

Precision, checkpoints, early stopping and logging are the Trainer's job (see ``engine.py``).
"""

from __future__ import annotations

import lightning as L
import torch
from torch import nn

# Weight of the loss in ``val_score``: small enough that one more correct example out of a few
# hundred outweighs it, large enough to order epochs of equal accuracy.
VAL_LOSS_TIE_BREAK = 1e-4


class TransferModule(L.LightningModule):
    """Cross-entropy on the logits of a transfer network (``net.features`` + ``net.head``).

    Batches are ``(inputs, labels)`` or, streamed, ``(inputs, labels, indices)``; the network takes
    the inputs as the loader gives them (uint8 images, tokenised texts). ``class_weight``: one
    weight per class in the training loss. Labels as indicator rows (multi-label): binary
    cross-entropy per label, and the validation "accuracy" is the label ranking average precision
    (scikit-learn's ``label_ranking_average_precision_score``: free of thresholds, which are tuned
    after training, and a mean over examples, so exact over batches).
    """

    def __init__(
        self,
        net: nn.Module,
        *,
        lr: float,
        weight_decay: float = 0.05,
        label_smoothing: float = 0.1,
        class_weight: tuple[float, ...] | None = None,
    ):
        super().__init__()
        self.net = net
        self.lr = lr
        self.weight_decay = weight_decay
        weight = torch.tensor(class_weight, dtype=torch.float32) if class_weight is not None else None
        self.loss = nn.CrossEntropyLoss(weight=weight, label_smoothing=label_smoothing)
        self.unreadable: dict[str, set[int]] = {"train": set(), "val": set()}

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)

    def _loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if labels.dim() == 2:
            return nn.functional.binary_cross_entropy_with_logits(logits, labels.float())
        return self.loss(logits, labels)

    def _usable(self, batch, stage: str) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch's images and labels, less those a streamed loader could not decode any more
        (``wukong.data.augment.UNREADABLE``), whose indices are kept in ``unreadable[stage]``."""
        images, labels = batch[0], batch[1]
        if len(batch) < 3:  # (images, labels): decoded before training, nothing to leave out
            return images, labels
        usable = labels >= 0 if labels.dim() == 1 else (labels >= 0).all(dim=1)
        if not bool(usable.all()):
            self.unreadable[stage].update(batch[2][~usable].tolist())
            images, labels = images[usable], labels[usable]
        return images, labels

    def training_step(self, batch, batch_idx):
        images, labels = self._usable(batch, "train")
        if not len(labels):
            return None  # nothing usable in this batch: no step
        loss = self._loss(self(images).float(), labels)
        self.log(
            "train_loss", loss, prog_bar=True, on_epoch=True, on_step=False, batch_size=len(labels), sync_dist=True
        )
        return loss

    def validation_step(self, batch, batch_idx):
        images, labels = self._usable(batch, "val")
        if not len(labels):
            return
        logits = self(images).float()
        n = len(labels)
        if labels.dim() == 2:
            loss = nn.functional.binary_cross_entropy_with_logits(logits, labels.float())
            accuracy = ranking_precision(logits, labels > 0).mean()
        else:
            loss = nn.functional.cross_entropy(logits, labels)
            accuracy = (logits.argmax(1) == labels).float().mean()
        # sync_dist: on several devices every process sees the same means, so all stop at the same epoch
        self.log("val_loss", loss, prog_bar=True, batch_size=n, sync_dist=True)
        self.log("val_acc", accuracy, prog_bar=True, batch_size=n, sync_dist=True)
        # Which epoch is best: the most accurate, and among equally accurate ones the lower loss.
        # Loss alone rises as a fine-tuned model grows confident while its accuracy still improves
        # (seen on BANKING77: best loss at epoch 0, best accuracy at epoch 2). Both are means over
        # the same batches, so the epoch's score is the score of the epoch's means.
        self.log("val_score", accuracy - VAL_LOSS_TIE_BREAK * loss, batch_size=n, sync_dist=True)

    def configure_optimizers(self):
        # Only the head at first: the finetuning callback adds pretrained blocks as their own
        # parameter groups, with smaller learning rates, when it unfreezes them.
        params = [p for p in self.net.head.parameters() if p.requires_grad]
        return torch.optim.AdamW(params, lr=self.lr, weight_decay=self.weight_decay)


def ranking_precision(scores: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Each example's label ranking average precision: over its true labels, the share of true ones
    among the labels scored at least as high (1 for an example with no label).

    Example:
        >>> ranking_precision(torch.tensor([[0.9, 0.1, 0.5]]), torch.tensor([[True, False, True]])).tolist()
        [1.0]
    """
    at_least = scores[:, None, :] >= scores[:, :, None]  # [i, j, k]: label k scores at least label j's
    above = at_least.sum(dim=2).float()
    true_above = (at_least & truth[:, None, :]).sum(dim=2).float()
    per_label = torch.where(truth, true_above / above, torch.zeros_like(above))
    count = truth.sum(dim=1)
    return torch.where(count > 0, per_label.sum(dim=1) / count.clamp(min=1), torch.ones_like(above[:, 0]))
