"""Strategies ``head`` and ``finetune``: one policy for every modality.

The new head is trained first on the frozen network (a random head's gradients would otherwise
wreck the pretrained blocks), with its own early stopping; then the chosen later blocks join it in
their own parameter group at ``lr * backbone_lr_ratio``, each phase with its own cosine decay, and
frozen parts stay in inference mode throughout (``wukong.network.TransferNet``). ``head`` is the
first phase alone.

How the head phase runs depends only on whether the frozen body's output changes between epochs:

- it does (images, randomly augmented each epoch): one Trainer run over the whole network, and
  ``DiscriminativeFinetuning`` unfreezes the blocks when the head phase ends;
- it does not (texts, which are not augmented): the head phase runs on the body's cached outputs,
  without the body (``HeadPhase``), which is many times cheaper; the blocks' phase follows in a
  second run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from torch import nn
from torch.utils.data import ConcatDataset, Dataset

from wukong.network import TransferNet
from wukong.training.plan import TrainPlan, several_processes

# --- default schedules ----------------------------------------------------------------------------

# On augmented inputs: (epochs, of which head-only, min optimiser steps per epoch) when ``epochs``
# is not given. On small data an epoch repeats the (randomly augmented) inputs until it makes the
# minimum number of steps: 36 cat/dog images in batches of 64 make one step an epoch, and 15 such
# epochs leave a new head barely trained. ``finetune`` is short, starting from the pretrained blocks:
# one epoch for the new head, then seven with the later blocks, about 100 steps in all on small data
# (the image benchmark compares it with a long schedule and the hand-written tutorial recipe).
AUGMENTED_PLANS = {"head": (15, 15, 20), "finetune": (8, 1, 12)}

# On cached features: the head alone for this many epochs (cheap: early stopping ends it), but at
# least this many optimiser steps however few the examples, in batches of this size.
CACHED_HEAD_EPOCHS, CACHED_HEAD_MIN_STEPS, CACHED_HEAD_BATCH = 40, 300, 64
# Fine-tuning after a cached head phase: about this many example passes in all, within these epochs.
FINETUNE_PASSES, FINETUNE_EPOCHS = 40_000, (2, 10)


def augmented_schedule(finetuning: bool, epochs: int | None, head_epochs: int | None) -> tuple[int, int, int]:
    """(epochs, head-only epochs, min steps per epoch; 0: plain passes) for training on augmented inputs.

    Example:
        >>> augmented_schedule(True, None, None), augmented_schedule(True, 9, None)
        ((8, 1, 12), (9, 3, 0))
    """
    default_epochs, default_head_epochs, min_steps = AUGMENTED_PLANS["finetune" if finetuning else "head"]
    total = epochs or default_epochs
    head = head_epochs or (default_head_epochs if epochs is None else max(1, total // 3))
    head = min(total - 1, head) if finetuning else total
    return total, head, min_steps if epochs is None else 0  # epochs the user counted are plain passes


def cached_head_epochs(examples: int, epochs: int | None = None) -> int:
    """Epochs of a head trained on cached features: ``epochs``, or enough for the minimum steps.

    Example:
        >>> cached_head_epochs(5000), cached_head_epochs(80)
        (40, 300)
    """
    if epochs is not None:
        return epochs
    return max(CACHED_HEAD_EPOCHS, math.ceil(CACHED_HEAD_MIN_STEPS / math.ceil(examples / CACHED_HEAD_BATCH)))


def finetune_epochs(examples: int) -> int:
    """Epochs for a budget of ~``FINETUNE_PASSES`` example passes: more epochs on less data.

    Example:
        >>> finetune_epochs(100), finetune_epochs(8000), finetune_epochs(50_000)
        (10, 5, 2)
    """
    low, high = FINETUNE_EPOCHS
    return int(min(high, max(low, round(FINETUNE_PASSES / max(1, examples)))))


def repeat_to_steps(dataset: Dataset, batch_size: int, min_steps: int) -> Dataset:
    """``dataset`` repeated (whole copies) until it fills at least ``min_steps`` batches.

    Each copy draws its own random augmentation, so the repeats are different views, as they would
    be over more epochs, without an epoch's fixed costs (validation, checkpoints) for each.

    Example:
        >>> len(repeat_to_steps(list(range(36)), 64, 20))
        1296
        >>> len(repeat_to_steps(list(range(5000)), 64, 20))
        5000
    """
    size = len(dataset)  # type: ignore[arg-type]
    copies = -(-min_steps * batch_size // size) if size else 1
    return ConcatDataset([dataset] * copies) if copies > 1 else dataset


# --- the policy -----------------------------------------------------------------------------------


@dataclass
class HeadPhase:
    """The head phase on cached features of the frozen body: ``(features, label)`` datasets."""

    train: Dataset
    val: Dataset
    epochs: int
    batch_size: int = CACHED_HEAD_BATCH


def head_then_unfreeze(
    net: TransferNet,
    plan: TrainPlan,
    train_set: Dataset | None,
    val_set: Dataset | None,
    *,
    head_phase: HeadPhase | None = None,
    work_dir: Path,
    resume: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Train ``net`` in place as the module docstring says; returns the history of the last run
    (with ``head_history`` when the head phase ran on its own).

    ``plan.blocks``: what the second phase unfreezes (empty: strategy ``head``). Without
    ``head_phase``, ``plan.head_epochs`` of the one run train the head alone. With it, the head phase
    runs on its datasets first and ``train_set``/``val_set`` (whole inputs) serve the blocks' phase.
    """
    from wukong.training.engine import train_network  # Lightning, loaded only by the strategies that train

    if (
        head_phase is None
        and plan.blocks
        and plan.head_epochs
        and several_processes(plan.accelerator, plan.devices, plan.num_nodes)
    ):
        # On several devices the head phase runs on its own first: DDP synchronises the parameters
        # that were trainable when it wrapped the network, so blocks unfrozen during a run would
        # train apart in each process (Lightning issue 20340).
        head_plan = replace(plan, blocks=[], epochs=plan.head_epochs)
        history = train_network(
            net, train_set, val_set, head_plan, work_dir=work_dir / "head", resume=resume, progress=progress
        )
        blocks_plan = replace(plan, epochs=plan.epochs - plan.head_epochs, head_epochs=0)
        tuned = train_network(
            net, train_set, val_set, blocks_plan, work_dir=work_dir / "finetune", resume=resume, progress=progress
        )
        return {**tuned, "head_history": history}
    if head_phase is None:
        return train_network(net, train_set, val_set, plan, work_dir=work_dir, resume=resume, progress=progress)
    head_plan = replace(
        plan,
        blocks=[],
        epochs=head_phase.epochs,
        head_epochs=head_phase.epochs,
        batch_size=head_phase.batch_size,
        patience=max(6, head_phase.epochs // 5),
        bf16=False,  # a small matrix product: fp32 is as fast, and exact
    )
    on_features = TransferNet(nn.Identity(), net.head)
    head_dir = work_dir / "head" if plan.blocks else work_dir
    history = train_network(
        on_features, head_phase.train, head_phase.val, head_plan, work_dir=head_dir, resume=resume, progress=progress
    )
    if not plan.blocks:
        return history
    blocks_plan = replace(plan, head_epochs=0)
    tuned = train_network(
        net, train_set, val_set, blocks_plan, work_dir=work_dir / "finetune", resume=resume, progress=progress
    )
    return {**tuned, "head_history": history}
