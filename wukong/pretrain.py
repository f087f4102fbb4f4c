"""Supervised pre-training of a backbone on a large labelled image dataset.

When no suitable pretrained network exists, Wukong trains one (``wukong pretrain``) and writes a
backbone folder that ``--backbone DIR`` accepts.
Wukong's own 64px backbone (``wukong_resnet18_s_tiny``, the fast option) was made this way.

Recipe (short-schedule ImageNet practice): images decoded once into memory at the target size;
random resized crop + flip done a batch at a time on the training device (the GPU when there is
one, so the CPU never starves it); progressive resizing (small images early, full size for the
last epochs); SGD with Nesterov momentum, one-cycle learning rate, label smoothing, no weight decay
on norms and biases; bf16 autocast and channels_last where the hardware runs them fast.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from torch import nn

from wukong.artifact_io import work_folder
from wukong.backbones.archs import arch_spec, build_network
from wukong.backbones.folder import IMAGENET_MEAN, IMAGENET_STD, write_backbone_folder
from wukong.data.augment import ArrayBatches, normalize_batch, random_resized_crop_batch
from wukong.data.decode import decode_images
from wukong.data.images import read_image_source
from wukong.errors import DataError
from wukong.runtime import private_random_state
from wukong.training.checkpoints import epoch_checkpoints, last_checkpoint
from wukong.training.devices import check_hardware
from wukong.training.engine import make_trainer
from wukong.training.plan import is_main_process
from wukong.training.quiet import quiet_lightning


@dataclass
class PretrainConfig:
    """Hyper-parameters of ``pretrain``; the defaults are the embedded backbone's recipe."""

    arch: str = "wukong_resnet18_s"
    input_size: int = 64
    min_size: int = 32  # progressive resizing starts here
    full_size_epochs: int = 3  # the last epochs run at input_size
    epochs: int = 60
    batch_size: int = 512
    lr: float = 0.5  # peak learning rate for batch_size 256 (scaled linearly)
    weight_decay: float = 5e-4  # best of 5e-5 / 1e-4 / 5e-4 on Tiny ImageNet (see the model card)
    label_smoothing: float = 0.1
    crop_scale: tuple[float, float] = (0.35, 1.0)  # random resized crop: area fraction kept
    warmup_fraction: float = 0.15
    seed: int = 0
    bf16: bool = True
    accelerator: str = "auto"  # where it trains, as Lightning takes it (``wukong.training.engine``)
    devices: int | str = 1
    num_nodes: int = 1
    num_workers: int = 0  # loader processes (images are held decoded and augmented a batch at a time)
    val_fraction: float = 0.05  # used only when no validation set is given
    extra: dict[str, Any] = field(default_factory=dict)


def size_for_epoch(config: PretrainConfig, epoch: int) -> int:
    """Progressive resizing: linear from ``min_size`` to ``input_size``, multiples of 8."""
    ramp = max(1, config.epochs - config.full_size_epochs)
    if epoch >= ramp or config.min_size >= config.input_size:
        return config.input_size
    size = config.min_size + (config.input_size - config.min_size) * epoch / ramp
    return int(round(size / 8) * 8)


class PretrainModule(L.LightningModule):
    """Plain supervised classification; the Trainer does precision, checkpoints and logging."""

    def __init__(self, config: PretrainConfig, model: nn.Module, steps_per_epoch: int) -> None:
        super().__init__()
        self.config = config
        self.model = model
        self.steps_per_epoch = steps_per_epoch
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD), persistent=False)
        self.loss = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
        self.train_size = config.min_size  # set each epoch by ProgressiveResize

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        # augmentation runs here, on the training device, a whole batch at a time
        images, labels = batch
        if self.trainer.training:
            images = random_resized_crop_batch(images, self.train_size, scale=self.config.crop_scale)
        return images, labels

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(normalize_batch(images, self.mean, self.std))

    def training_step(self, batch, batch_idx):
        images, labels = batch
        loss = self.loss(self(images).float(), labels)
        self.log("train_loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch, batch_idx):
        images, labels = batch
        logits = self(images).float()
        top5 = logits.topk(min(5, logits.shape[1]), dim=1).indices  # top-5, or all when fewer classes
        # sync_dist: on several devices, the means over every process's share of the validation images
        self.log("val_loss", nn.functional.cross_entropy(logits, labels), prog_bar=True, sync_dist=True)
        self.log("val_top1", (top5[:, 0] == labels).float().mean(), prog_bar=True, sync_dist=True)
        self.log("val_top5", (top5 == labels[:, None]).any(1).float().mean(), sync_dist=True)

    def configure_optimizers(self):
        config = self.config
        decay = [p for p in self.model.parameters() if p.ndim > 1]
        no_decay = [p for p in self.model.parameters() if p.ndim <= 1]  # norms and biases
        lr = config.lr * config.batch_size / 256
        optimizer = torch.optim.SGD(
            [
                {"params": decay, "weight_decay": config.weight_decay},
                {"params": no_decay, "weight_decay": 0.0},
            ],
            lr=lr,
            momentum=0.9,
            nesterov=True,
        )
        schedule = torch.optim.lr_scheduler.OneCycleLR(
            optimizer,
            max_lr=lr,
            total_steps=config.epochs * self.steps_per_epoch,
            pct_start=config.warmup_fraction,
            anneal_strategy="linear",
            div_factor=25.0,
            final_div_factor=1e3,
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}


class ProgressiveResize(Callback):
    def __init__(self, config: PretrainConfig) -> None:
        self.config = config

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        pl_module.train_size = size_for_epoch(self.config, trainer.current_epoch)


class History(Callback):
    """The validation metrics of each epoch (for metrics.json and the model card), kept across a resume."""

    def __init__(self) -> None:
        self.rows: list[dict[str, float]] = []
        self.started = time.time()
        self.seconds_before = 0.0  # training time of the runs this one resumes

    def seconds(self) -> float:
        return self.seconds_before + time.time() - self.started

    def state_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "seconds": self.seconds()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.rows = list(state_dict.get("rows", []))
        self.seconds_before = float(state_dict.get("seconds", 0.0))
        self.started = time.time()

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking:
            return
        m = trainer.callback_metrics
        self.rows.append(
            {
                "epoch": trainer.current_epoch,
                "val_top1": round(float(m["val_top1"]), 4),
                "val_top5": round(float(m["val_top5"]), 4),
                "val_loss": round(float(m["val_loss"]), 4),
                "train_size": pl_module.train_size,
                "seconds": round(self.seconds(), 1),
            }
        )


def pretrain(
    data: str | Path,
    out: str | Path,
    *,
    val: str | Path | None = None,
    config: PretrainConfig | None = None,
    resume: bool = False,
    progress: bool = True,
    limit_per_class: int | None = None,
) -> dict[str, Any]:
    """Pretrain a backbone on a labelled image dataset and write a backbone folder at ``out``.

    ``data`` is a class-per-folder tree (or a ``.tar.gz`` of one). When it holds ``train/`` and
    ``val/`` sub-folders (as Tiny ImageNet does) they are used as the split. Returns the metrics.

    Example:
        >>> from wukong.pretrain import pretrain, PretrainConfig
        >>> pretrain("big_folder", "my_backbone", config=PretrainConfig(epochs=2))  # doctest: +SKIP
    """
    config = config or PretrainConfig()
    check_hardware(config.accelerator, config.devices, config.num_nodes, config.num_workers)
    with private_random_state(config.seed), quiet_lightning():
        return _pretrain(Path(data), Path(out), val, config, resume, progress, limit_per_class)


def _pretrain(  # noqa: PLR0913 - pretrain's arguments, checked
    data: Path,
    out: Path,
    val: str | Path | None,
    config: PretrainConfig,
    resume: bool,
    progress: bool,
    limit_per_class: int | None,
) -> dict[str, Any]:
    started = time.time()
    L.seed_everything(config.seed, workers=True, verbose=False)

    train_source, val_source = _split_sources(Path(data), val, config, limit_per_class)
    decode = dict(size=config.input_size, interpolation="bicubic", progress=progress, workers=os.cpu_count() or 1)
    train_store = decode_images(train_source.paths, labels=train_source.labels, desc="Reading train", **decode)
    val_store = decode_images(val_source.paths, labels=val_source.labels, desc="Reading val", **decode)
    skipped = train_store.skipped + val_store.skipped + train_source.skipped
    if len(train_store) == 0:
        raise DataError(f"{data}: no usable training image")

    if config.batch_size > len(train_store):  # a small dataset: one full batch per step (the rate scales with it)
        config = replace(config, batch_size=len(train_store))
    # stored at input_size: validation images are used as they are, training ones augmented on the device
    workers = config.num_workers
    train_loader = ArrayBatches(train_store.pixels, train_store.labels).loader(
        config.batch_size, shuffle=True, drop_last=True, num_workers=workers
    )
    val_loader = ArrayBatches(val_store.pixels, val_store.labels).loader(512, shuffle=False, num_workers=workers)

    spec = arch_spec(config.arch)
    model = build_network(spec, num_classes=len(train_source.classes))
    model = model.to(memory_format=torch.channels_last)
    module = PretrainModule(config, model, len(train_loader))

    work = work_folder(out, create=True)
    best, last = epoch_checkpoints(work / "checkpoints", monitor="val_top1", mode="max")
    history = History()
    trainer = make_trainer(
        work,
        epochs=config.epochs,
        bf16=config.bf16,
        callbacks=[ProgressiveResize(config), best, last, history],
        progress=progress,
        accelerator=config.accelerator,
        devices=config.devices,
        num_nodes=config.num_nodes,
        deterministic=False,
        benchmark=torch.cuda.is_available(),  # cuDNN picks the fastest kernels for each input size
    )
    trainer.fit(module, train_loader, val_loader, ckpt_path=last_checkpoint(work / "checkpoints", resume))
    if not is_main_process():  # another process of a multi-device run: the first one writes the backbone
        return {"val_top1": None, "rank": trainer.global_rank}

    metrics = {
        "val_top1": history.rows[-1]["val_top1"] if history.rows else None,
        "val_top5": history.rows[-1]["val_top5"] if history.rows else None,
        "epochs": history.rows,
        "train_images": len(train_store),
        "val_images": len(val_store),
        "classes": len(train_source.classes),
        "train_seconds": round(history.seconds(), 1),
        "processes": trainer.world_size,
        "wall_seconds": round(time.time() - started, 1),
    }
    write_backbone_folder(
        out,
        model=module.model,
        arch=config.arch,
        classes=train_source.classes,
        input_size=config.input_size,
        metrics=metrics,
        recipe=asdict(config),
        data=str(data),
        skipped=[s.to_dict() for s in skipped],
        logs=work / "logs",
    )
    return metrics


def _split_sources(data: Path, val: str | Path | None, config: PretrainConfig, limit: int | None):
    from wukong.data.archive import extract_cached, is_archive
    from wukong.data.split import stratified_split

    if is_archive(data):
        data = extract_cached(data)
    if val is None and (data / "train").is_dir() and (data / "val").is_dir():
        data, val = data / "train", data / "val"
    train = read_image_source(data)
    if limit:
        train = train.subset(_first_per_class(train.labels, limit))
    if val is not None:
        return train, read_image_source(val, classes=train.classes)
    fit_idx, val_idx = stratified_split(train.labels, config.val_fraction, seed=config.seed)
    return train.subset(fit_idx), train.subset(val_idx)


def _first_per_class(labels: list[int], limit: int) -> list[int]:
    counts: dict[int, int] = {}
    keep = []
    for i, label in enumerate(labels):
        if counts.get(label, 0) < limit:
            counts[label] = counts.get(label, 0) + 1
            keep.append(i)
    return keep
