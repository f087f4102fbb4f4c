"""Keep Lightning's output to what a Wukong user needs."""

from __future__ import annotations

import logging
import warnings

# Advice for GPUs and multi-process loading does not apply to a small CPU run; modules in eval mode
# at the start are intended (frozen BatchNorm); the pytree notice is Lightning's own deprecation.
_IGNORED = (
    ".*does not have many workers.*",
    ".*smaller than the logging interval.*",
    ".*LeafSpec.*",
    ".*module\\(s\\) in eval mode.*",
)


def quiet_lightning() -> None:
    """Silence Lightning's start-up banner (GPU/TPU availability, tips) and irrelevant warnings."""
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for pattern in _IGNORED:
        warnings.filterwarnings("ignore", message=pattern)
