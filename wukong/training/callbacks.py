"""Callbacks: when to unfreeze which pretrained blocks, at which learning rates."""

from __future__ import annotations

import math

from lightning.pytorch.callbacks import BaseFinetuning, EarlyStopping
from torch import nn

from wukong.network import set_trainable


class DiscriminativeFinetuning(BaseFinetuning):
    """Train the new head on a frozen backbone, then unfreeze the later blocks.

    - epochs ``[0, head_epochs)``: backbone frozen (BatchNorm in inference mode, see TransferNet);
    - from ``head_epochs``: ``blocks`` are unfrozen into their own parameter group at
      ``lr * backbone_lr_ratio`` (pretrained weights move less than the new head);
    - every group follows a cosine decay over the epochs after its start;
    - with ``patience``, a head that stops improving (validation loss) starts fine-tuning early,
      as Wukong 1 gave each phase its own early stopping.

    Lightning's own ``freeze`` switches BatchNorm to batch statistics (``track_running_stats=False``);
    here freezing only stops gradients, and ``TransferNet.train`` keeps frozen BatchNorm in eval.
    """

    def __init__(
        self,
        blocks: list[nn.Module],
        *,
        head_epochs: int,
        total_epochs: int,
        lr: float,
        backbone_lr_ratio: float,
        patience: int = 0,
    ) -> None:
        super().__init__()
        self.blocks = blocks
        self.head_epochs = head_epochs
        self.total_epochs = total_epochs
        self.lr = lr
        self.backbone_lr_ratio = backbone_lr_ratio
        self.patience = patience
        self._best = math.inf
        self._wait = 0

    def in_head_phase(self, epoch: int) -> bool:
        """True while only the head trains and pretrained blocks are still to be unfrozen."""
        return bool(self.blocks) and epoch < self.head_epochs

    def on_validation_end(self, trainer, pl_module) -> None:
        epoch = trainer.current_epoch
        if trainer.sanity_checking or not self.patience or not self.in_head_phase(epoch):
            return
        loss = trainer.callback_metrics.get("val_loss")
        if loss is None:
            return
        if float(loss) < self._best - 1e-4:
            self._best, self._wait = float(loss), 0
        else:
            self._wait += 1
            if self._wait >= self.patience:  # the head has plateaued: fine-tune from the next epoch
                self.head_epochs = epoch + 1

    def state_dict(self) -> dict:
        return {**super().state_dict(), "head_epochs": self.head_epochs, "best": self._best, "wait": self._wait}

    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict(state_dict)
        self.head_epochs = state_dict.get("head_epochs", self.head_epochs)
        self._best = state_dict.get("best", self._best)
        self._wait = state_dict.get("wait", self._wait)

    def freeze_before_training(self, pl_module) -> None:
        set_trainable(pl_module.net.features, False)
        if self.blocks and self.head_epochs == 0:
            # Trainable from the start: on several devices DDP registers, when it wraps the network
            # (after this, before the first epoch), the parameters it will synchronise.
            for block in self.blocks:
                set_trainable(block, True)

    def finetune_function(self, pl_module, current_epoch: int, optimizer) -> None:
        if self.blocks and current_epoch >= self.head_epochs:
            in_optimizer = {id(p) for group in optimizer.param_groups for p in group["params"]}
            if not any(id(p) in in_optimizer for block in self.blocks for p in block.parameters()):
                self.unfreeze_and_add_param_group(
                    self.blocks, optimizer, lr=self.lr * self.backbone_lr_ratio, train_bn=True
                )
            elif not any(p.requires_grad for block in self.blocks for p in block.parameters()):
                self.make_trainable(self.blocks)  # resumed run: the group was restored already
        # Two phases, each with its own cosine decay: head alone, then head + unfrozen blocks.
        finetuning = bool(self.blocks) and current_epoch >= self.head_epochs
        if finetuning:
            factor = _cosine(current_epoch - self.head_epochs, self.total_epochs - self.head_epochs)
        else:
            factor = _cosine(current_epoch, self.head_epochs if self.blocks else self.total_epochs)
        for index, group in enumerate(optimizer.param_groups):
            base = self.lr if index == 0 else self.lr * self.backbone_lr_ratio
            group["lr"] = base * factor


class FinetuneEarlyStopping(EarlyStopping):
    """Early stopping that only ends training once fine-tuning has begun (the head phase has its own)."""

    def __init__(self, finetuning: DiscriminativeFinetuning, **kwargs) -> None:
        super().__init__(**kwargs)
        self.finetuning = finetuning

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if not self.finetuning.in_head_phase(trainer.current_epoch):
            super().on_train_epoch_end(trainer, pl_module)

    def on_validation_end(self, trainer, pl_module) -> None:
        if not self.finetuning.in_head_phase(trainer.current_epoch):
            super().on_validation_end(trainer, pl_module)


def _cosine(step: int, span: int) -> float:
    """From 1 down to 0.05 over ``span`` epochs."""
    step = min(step, max(span - 1, 0))
    span = max(span, 1)
    return 0.05 + 0.95 * 0.5 * (1.0 + math.cos(math.pi * step / span))
