"""Feedback on long steps: one progress bar style (rich, on stderr) for decoding, feature extraction,
text encoding and contrastive tuning, and a spinner for steps without a count (the linear
classifier's cross-validation search). Lightning's training bar is rich's too
(``training.engine.make_trainer``). Every caller passes ``enabled`` (the estimator's ``progress``;
the CLI's ``--quiet``/``--json``).

Where ``$WUKONG_PROGRESS_FILE`` names a file, every step also writes its state there, bars shown or
not: one small JSON object ``{"step", "done", "total", "time"}``, replaced at most twice a second
(the web page's training runs in another process and reads it: ``wukong.ui``).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def _console():  # noqa: ANN202 - rich.console.Console, imported where used
    from rich.console import Console

    return Console(stderr=True)


def track(items: Iterable[T], *, total: int | None, desc: str, enabled: bool, unit: str = "") -> Iterator[T]:
    """``items``, with a bar (count, rate, elapsed and remaining time) while they are consumed.

    Example:
        >>> list(track(range(3), total=3, desc="Counting", enabled=False))
        [0, 1, 2]
    """
    if os.environ.get(PROGRESS_FILE):
        items = _reported(items, desc, total)
    if not enabled:
        yield from items
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = [
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(unit),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
    ]
    with Progress(*columns, console=_console(), transient=False) as bar:
        task = bar.add_task(desc, total=total)
        for item in items:
            yield item
            bar.advance(task)


@contextlib.contextmanager
def status(desc: str, *, enabled: bool) -> Iterator[None]:
    """A spinner with ``desc`` while the block runs (a step whose length is not known in advance)."""
    report_step(desc, None, None)
    if not enabled:
        yield
        return
    with _console().status(desc):
        yield


PROGRESS_FILE = "WUKONG_PROGRESS_FILE"
_last_write = [0.0]  # when the progress file was last replaced (one per process, like the file)


def report_step(step: str, done: int | None, total: int | None, *, force: bool = True) -> None:
    """Write the step's state to ``$WUKONG_PROGRESS_FILE`` when it is set (else nothing); a
    ``force=False`` update is dropped when the last write is under half a second old."""
    path = os.environ.get(PROGRESS_FILE)
    now = time.monotonic()
    if not path or (not force and now - _last_write[0] < 0.5):
        return
    _last_write[0] = now
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump({"step": step, "done": done, "total": total, "time": time.time()}, f)
        os.replace(tmp, path)
    except OSError:  # progress is a courtesy: never the reason a run fails
        pass


def _reported(items: Iterable[T], desc: str, total: int | None) -> Iterator[T]:
    report_step(desc, 0, total)
    done = 0
    for item in items:
        yield item
        done += 1
        report_step(desc, done, total, force=done == total)
