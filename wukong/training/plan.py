"""What a training is asked to do (``TrainPlan``) and how it is laid out (micro-batches, loader
workers, processes), without importing Lightning: prediction, evaluation and the ``features``
strategy never pay for it; ``wukong.training.engine`` runs the plan."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import ConcatDataset, Dataset


@dataclass
class TrainPlan:
    """What to train and how long. ``blocks`` empty: the new top only (strategy ``head``)."""

    blocks: list[nn.Module]
    epochs: int
    head_epochs: int
    lr: float = 2e-3
    backbone_lr_ratio: float = 0.1
    batch_size: int = 64
    patience: int = 6  # epochs without validation improvement that end a phase
    bf16: bool = False
    seed: int = 0
    class_weight: tuple[float, ...] | None = None  # per-class weights of the training loss (imbalanced data)
    num_workers: int | None = None  # loader worker processes (``loader_workers``)
    accumulate: int = 1  # micro-batches of batch_size / accumulate per optimiser step (``micro_batches``)
    accelerator: str = "auto"  # where it trains, as Lightning's Trainer takes it (``make_trainer``)
    devices: int | str = 1
    num_nodes: int = 1


def several_processes(accelerator: str, devices: int | str, num_nodes: int) -> bool:
    """Whether training runs in several processes (Lightning's DDP)."""
    if devices == "auto":  # every GPU there is
        return num_nodes > 1 or (accelerator in ("auto", "gpu", "cuda") and torch.cuda.device_count() > 1)
    return num_nodes > 1 or int(devices) > 1


def process_rank() -> int:
    """This process's global rank in a multi-process run (0 in a process of its own): Lightning's
    value once Lightning is loaded (its strategies set it), else the launcher's environment, read as
    Lightning reads it (RANK, LOCAL_RANK, SLURM_PROCID, JSM_NAMESPACE_RANK)."""
    if "lightning" in sys.modules:
        from lightning.fabric.utilities.rank_zero import rank_zero_only

        return int(getattr(rank_zero_only, "rank", 0) or 0)
    for key in ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK"):
        if os.environ.get(key, "").isdigit():
            return int(os.environ[key])
    return 0


def is_main_process() -> bool:
    """False in the other processes of a multi-device run (Lightning's DDP): they train, and only
    the first one (global rank 0) writes models, reports and output."""
    return process_rank() == 0


# Training images per micro-batch, as pixels: the activations kept for the backward pass grow with
# them (``benchmarks/scale.py`` measures the peak). A batch of more pixels is trained as micro-batches
# whose gradients add up to one optimiser step.
MICRO_BATCH_PIXELS = 32 * 224 * 224


def micro_batches(batch_size: int, side: int) -> int:
    """How many micro-batches a training batch of ``side``-pixel images is split into.

    Example:
        >>> micro_batches(64, 224), micro_batches(64, 64), micro_batches(64, 384)
        (2, 1, 7)
    """
    per_step = max(1, MICRO_BATCH_PIXELS // (side * side))
    return max(1, -(-batch_size // per_step))


def loader_workers(dataset: Dataset, asked: int | None) -> int:
    """Loader worker processes: as asked, or (``None``) one per core but one, at least one and at
    most four, where images are decoded from their files as they are used (streamed; the network has
    the other cores), and none where they are held decoded or are texts (a worker's start would cost
    more than it saves)."""
    if asked is not None:
        return asked
    parts = dataset.datasets if isinstance(dataset, ConcatDataset) else [dataset]
    streamed = any(getattr(p, "streamed", False) for p in parts)
    return max(1, min(4, (os.cpu_count() or 1) - 1)) if streamed else 0
