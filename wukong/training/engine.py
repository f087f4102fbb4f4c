"""Run a Lightning Trainer over a TransferNet: early stopping, best checkpoint, resume, logs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, LearningRateMonitor, RichProgressBar
from lightning.pytorch.loggers import TensorBoardLogger
from torch.utils.data import DataLoader, Dataset

from wukong.network import TransferNet
from wukong.progress import report_step
from wukong.training.callbacks import DiscriminativeFinetuning, FinetuneEarlyStopping
from wukong.training.checkpoints import epoch_checkpoints, last_checkpoint
from wukong.training.module import TransferModule
from wukong.training.plan import TrainPlan, loader_workers, several_processes
from wukong.training.quiet import quiet_lightning


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


def _best_epoch(rows: list[dict[str, float]]) -> int | None:
    scored = [r for r in rows if "val_score" in r]
    return max(scored, key=lambda r: r["val_score"])["epoch"] if scored else None
