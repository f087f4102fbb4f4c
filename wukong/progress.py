"""Feedback on long steps: one progress bar style (rich, on stderr) for decoding, feature extraction,
text encoding and contrastive tuning, and a spinner for steps without a count (the linear
classifier's cross-validation search). Lightning's training bar is rich's too
(``training.engine.make_trainer``). Every caller passes ``enabled`` (the estimator's ``progress``;
the CLI's ``--quiet``/``--json``).
"""

from __future__ import annotations

import contextlib
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
    if not enabled:
        yield
        return
    with _console().status(desc):
        yield
