"""Keep Lightning's output to what a Wukong user needs."""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator

# Advice for GPUs and multi-process loading does not apply to a small CPU run; modules in eval mode
# at the start are intended (frozen BatchNorm); the pytree notice is Lightning's own deprecation.
_IGNORED = (
    ".*does not have many workers.*",
    ".*smaller than the logging interval.*",
    ".*LeafSpec.*",
    ".*module\\(s\\) in eval mode.*",
)


@contextlib.contextmanager
def quiet_lightning() -> Iterator[None]:
    """Silence Lightning's start-up banner (GPU/TPU availability, tips) and irrelevant warnings for
    the duration of the block; the host process's warning filters and log levels come back after."""
    loggers = [logging.getLogger(name) for name in ("lightning.pytorch", "lightning.fabric", "lightning")]
    levels = [logger.level for logger in loggers]
    with warnings.catch_warnings():
        for pattern in _IGNORED:
            warnings.filterwarnings("ignore", message=pattern)
        for logger in loggers:
            logger.setLevel(logging.WARNING)
        try:
            yield
        finally:
            for logger, level in zip(loggers, levels, strict=True):
                logger.setLevel(level)
