"""Run a Lightning Trainer over a TransferNet: early stopping, best checkpoint, resume, logs."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, LearningRateMonitor, RichProgressBar
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only
from torch import nn
from torch.utils.data import ConcatDataset, DataLoader, Dataset

from wukong.errors import ParameterError
from wukong.network import TransferNet
from wukong.progress import report_step
from wukong.training.callbacks import DiscriminativeFinetuning, FinetuneEarlyStopping
from wukong.training.checkpoints import epoch_checkpoints, last_checkpoint
from wukong.training.module import TransferModule
from wukong.training.quiet import quiet_lightning


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


ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps", "tpu")


def check_hardware(accelerator: str, devices: int | str, num_nodes: int, num_workers: int | None) -> None:
    """A one-line ``ParameterError`` for a device option Lightning would refuse, before any data is read."""
    if accelerator not in ACCELERATORS:
        raise ParameterError(f"accelerator={accelerator!r}: choose one of {', '.join(ACCELERATORS)}")
    if not (devices == "auto" or (isinstance(devices, int) and not isinstance(devices, bool) and devices >= 1)):
        raise ParameterError(f"devices={devices!r}: give a number of devices (1 or more) or 'auto'")
    if not (isinstance(num_nodes, int) and num_nodes >= 1):
        raise ParameterError(f"num_nodes={num_nodes!r}: give a number of machines, 1 or more")
    if num_workers is not None and not (isinstance(num_workers, int) and num_workers >= 0):
        raise ParameterError(f"num_workers={num_workers!r}: give a number of loader processes (0 or more) or None")


def several_processes(accelerator: str, devices: int | str, num_nodes: int) -> bool:
    """Whether training runs in several processes (Lightning's DDP)."""
    if devices == "auto":  # every GPU there is
        return num_nodes > 1 or (accelerator in ("auto", "gpu", "cuda") and torch.cuda.device_count() > 1)
    return num_nodes > 1 or int(devices) > 1


def is_main_process() -> bool:
    """False in the other processes of a multi-device run (Lightning's DDP): they train, and only
    the first one (global rank 0) writes models, reports and output."""
    return rank_zero_only.rank == 0


class StepReport(Callback):
    """Training's place (epoch, batch) in the progress file of ``wukong.progress.report_step``."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        total = trainer.num_training_batches
        epoch = f"Training: epoch {trainer.current_epoch + 1} of {trainer.max_epochs}"
        report_step(epoch, batch_idx + 1, total if isinstance(total, int) else None, force=False)


class EpochHistory(Callback):
    """Per-epoch train/val metrics, for metrics.json and the learning curves (kept across a resume)."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self.resumed_from_epoch: int | None = None

    def on_train_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch > 0:
            self.resumed_from_epoch = trainer.current_epoch

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        # runs after the epoch's validation, when the epoch's train loss is aggregated too
        row: dict[str, Any] = {"epoch": trainer.current_epoch}
        row["lr"] = [float(f"{group['lr']:.3g}") for group in trainer.optimizers[0].param_groups]
        for key in ("train_loss", "val_loss", "val_acc", "val_score"):
            if key in trainer.callback_metrics:
                # the score's loss term is 1e-4 x the loss: keep the digits that order epochs
                row[key] = round(float(trainer.callback_metrics[key]), 7 if key == "val_score" else 4)
        self.rows.append(row)

    def state_dict(self) -> dict[str, Any]:
        return {"rows": self.rows}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.rows = list(state_dict.get("rows", []))


def make_trainer(
    work_dir: Path,
    *,
    epochs: int,
    bf16: bool,
    callbacks: list[Callback],
    progress: bool,
    accelerator: str = "auto",
    devices: int | str = 1,
    num_nodes: int = 1,
    **more: Any,
) -> L.Trainer:
    """The Lightning Trainer every Wukong training runs in (transfer and pretraining): by default one
    device (the GPU when there is one); on several devices or machines Lightning's DDP (one process
    per device; started by Lightning, or by ``torchrun``/SLURM as Lightning documents); bf16 or fp32,
    TensorBoard logs in ``work_dir/logs``, no sanity validation; ``more``: other Trainer arguments."""
    bar = [RichProgressBar(leave=True)] if progress else []  # the same style as Wukong's other bars
    several = several_processes(accelerator, devices, num_nodes)
    return L.Trainer(
        max_epochs=epochs,
        accelerator=accelerator,
        devices=devices,
        num_nodes=num_nodes,
        # some parameters may take no part in a step (a text encoder's pooler): DDP is told to expect it
        strategy="ddp_find_unused_parameters_true" if several else "auto",
        precision="bf16-mixed" if bf16 else "32-true",
        callbacks=[*callbacks, *bar, StepReport()],
        logger=TensorBoardLogger(work_dir, name="logs", version=""),
        default_root_dir=work_dir,
        enable_progress_bar=progress,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        **more,
    )


def train_network(
    net: TransferNet,
    train_set: Dataset,
    val_set: Dataset,
    plan: TrainPlan,
    *,
    work_dir: Path,
    resume: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Train in place; ``net`` ends with the weights of the best validation epoch: the most
    accurate one, and of equally accurate epochs the one with the lower loss (``val_score``).

    Checkpoints go to ``work_dir/checkpoints`` (``last.ckpt`` every epoch): with ``resume=True``
    a killed run continues from there. TensorBoard logs go to ``work_dir/logs``.
    """
    L.seed_everything(plan.seed, workers=True, verbose=False)
    module = TransferModule(net, lr=plan.lr, class_weight=plan.class_weight)
    checkpoints = work_dir / "checkpoints"
    best, last = epoch_checkpoints(checkpoints, monitor="val_score", mode="max")
    history = EpochHistory()
    finetuning = DiscriminativeFinetuning(
        plan.blocks,
        head_epochs=plan.head_epochs,
        total_epochs=plan.epochs,
        lr=plan.lr,
        backbone_lr_ratio=plan.backbone_lr_ratio,
        patience=plan.patience,
    )
    callbacks: list[Callback] = [
        finetuning,
        best,
        last,
        FinetuneEarlyStopping(finetuning, monitor="val_score", mode="max", patience=plan.patience),
        history,
        LearningRateMonitor(logging_interval="epoch"),  # every parameter group's rate, in TensorBoard
    ]
    with quiet_lightning():  # the banner and irrelevant warnings, for this run only
        hardware = {"accelerator": plan.accelerator, "devices": plan.devices, "num_nodes": plan.num_nodes}
        trainer = make_trainer(
            work_dir,
            epochs=plan.epochs,
            bf16=plan.bf16,
            callbacks=callbacks,
            progress=progress,
            **hardware,
            log_every_n_steps=1,
            accumulate_grad_batches=plan.accumulate,
        )
        hparams = {k: v for k, v in vars(plan).items() if k != "blocks"}
        trainer.logger.log_hyperparams({**hparams, "unfrozen_blocks": len(plan.blocks)})
        workers = loader_workers(train_set, plan.num_workers)
        micro = -(-plan.batch_size // plan.accumulate)
        loader_args = {"batch_size": micro, "num_workers": workers, "persistent_workers": workers > 0}
        train_loader = DataLoader(train_set, shuffle=True, drop_last=len(train_set) > plan.batch_size, **loader_args)
        val_loader = DataLoader(val_set, shuffle=False, **loader_args)
        trainer.fit(module, train_loader, val_loader, ckpt_path=last_checkpoint(checkpoints, resume))
    if best.best_model_path:
        state = torch.load(best.best_model_path, map_location="cpu", weights_only=True)["state_dict"]
        net.load_state_dict({k.removeprefix("net."): v for k, v in state.items() if k.startswith("net.")})
    net.eval()
    return {
        "epochs": history.rows,
        "best_epoch": _best_epoch(history.rows),
        "finetune_from_epoch": finetuning.head_epochs if plan.blocks else None,
        "resumed_from_epoch": history.resumed_from_epoch,
        "unreadable": {stage: sorted(found) for stage, found in module.unreadable.items()},
        "processes": trainer.world_size,  # more than one: DDP
        "logs": str(work_dir / "logs"),
    }


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


def _best_epoch(rows: list[dict[str, float]]) -> int | None:
    scored = [r for r in rows if "val_score" in r]
    return max(scored, key=lambda r: r["val_score"])["epoch"] if scored else None
