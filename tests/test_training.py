"""Checkpoints and histories that a killed run resumes from, with Lightning's real Trainer."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader, TensorDataset

from wukong.pretrain import History
from wukong.training.checkpoints import epoch_checkpoints, last_checkpoint
from wukong.training.engine import EpochHistory


class WorseningModule(L.LightningModule):
    """Its validation loss grows every epoch: the best epoch is the first, the last is the newest."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(4, 2)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = torch.nn.functional.cross_entropy(self.layer(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        self.log("val_loss", float(self.current_epoch))
        self.log("val_top1", 1.0 / (1 + self.current_epoch))
        self.log("val_top5", 1.0)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _fit(work: Path, epochs: int, resume: bool) -> tuple[EpochHistory, History]:
    data = TensorDataset(torch.randn(16, 4), torch.randint(0, 2, (16,)))
    best, last = epoch_checkpoints(work, monitor="val_loss", mode="min")
    histories = EpochHistory(), History()
    module = WorseningModule()
    module.train_size = 8  # read by History
    trainer = L.Trainer(
        max_epochs=epochs,
        callbacks=[best, last, *histories],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=work,
    )
    trainer.fit(
        module, DataLoader(data, batch_size=8), DataLoader(data, batch_size=8), ckpt_path=last_checkpoint(work, resume)
    )
    return histories


def test_last_checkpoint_follows_every_epoch_even_when_the_metric_worsens(tmp_path: Path) -> None:
    _fit(tmp_path, epochs=3, resume=False)
    last = torch.load(tmp_path / "last.ckpt", map_location="cpu", weights_only=False)
    best = torch.load(tmp_path / "best.ckpt", map_location="cpu", weights_only=False)
    # Lightning's own save_last would have left last.ckpt at epoch 0, with the best
    assert last["epoch"] == 2 and best["epoch"] == 0


def test_a_resumed_run_keeps_the_history_of_the_epochs_before_it(tmp_path: Path) -> None:
    _fit(tmp_path, epochs=2, resume=False)
    epoch_history, pretrain_history = _fit(tmp_path, epochs=4, resume=True)
    assert [row["epoch"] for row in epoch_history.rows] == [0, 1, 2, 3]
    assert [row["epoch"] for row in pretrain_history.rows] == [0, 1, 2, 3]
    seconds = [row["seconds"] for row in pretrain_history.rows]
    assert seconds == sorted(seconds)  # time keeps counting across the resume
    assert last_checkpoint(tmp_path, resume=False) is None


def test_training_keeps_the_most_accurate_epoch(tmp_path: Path) -> None:
    from wukong.network import TransferNet
    from wukong.training.engine import TrainPlan, train_network

    torch.manual_seed(0)
    x = torch.randn(400, 8)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).long()
    train, val = TensorDataset(x[:300], y[:300]), TensorDataset(x[300:], y[300:])
    net = TransferNet(torch.nn.Identity(), torch.nn.Linear(8, 2))  # a head on features
    plan = TrainPlan(blocks=[], epochs=6, head_epochs=6, lr=0.05, batch_size=32, patience=10)
    result = train_network(net, train, val, plan, work_dir=tmp_path, progress=False)
    rows = result["epochs"]
    assert all("val_score" in row for row in rows)
    best = max(rows, key=lambda row: row["val_score"])
    assert result["best_epoch"] == best["epoch"]
    # the restored weights are that epoch's: their accuracy is the best epoch's accuracy
    with torch.no_grad():
        accuracy = float((net(x[300:]).argmax(1) == y[300:]).float().mean())
    assert abs(accuracy - best["val_acc"]) < 1e-3
    assert best["val_acc"] == max(row["val_acc"] for row in rows)
