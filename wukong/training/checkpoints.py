"""Checkpoints that a killed run resumes from, and state that must survive the resume."""

from __future__ import annotations

from pathlib import Path

from lightning.pytorch.callbacks import ModelCheckpoint

LAST = "last.ckpt"


def epoch_checkpoints(dirpath: Path, *, monitor: str, mode: str) -> tuple[ModelCheckpoint, ModelCheckpoint]:
    """``best.ckpt`` (the best epoch by ``monitor``) and ``last.ckpt`` (every epoch), in ``dirpath``.

    Lightning's ``save_last=True`` writes ``last.ckpt`` only in epochs that also improved the
    monitored metric, so after a plateau a killed run would restart from an older epoch and lose
    work. A second checkpoint without a monitor is written after every epoch.
    """
    best = ModelCheckpoint(dirpath=dirpath, filename="best", monitor=monitor, mode=mode, save_top_k=1)
    last = ModelCheckpoint(
        dirpath=dirpath, filename=Path(LAST).stem, monitor=None, save_top_k=1, enable_version_counter=False
    )
    return best, last


def last_checkpoint(dirpath: Path, resume: bool) -> str | None:
    """The checkpoint to continue from: ``last.ckpt`` when resuming and it exists."""
    path = Path(dirpath) / LAST
    return str(path) if resume and path.exists() else None
