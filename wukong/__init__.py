"""Wukong: transfer learning in one command.

>>> from wukong import ImageClassifier, TextClassifier, load
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

__version__ = "0.2.0"
__all__ = ["ImageClassifier", "Sources", "TextClassifier", "audit", "load", "suggest", "__version__"]

if TYPE_CHECKING:
    from wukong.data.sources import Sources
    from wukong.image_classifier import ImageClassifier
    from wukong.quality import audit
    from wukong.quality.suggest import suggest
    from wukong.text_classifier import TextClassifier


def load(path: str | Path, **modules: Any) -> Any:
    """Load a model folder written by ``save`` / ``wukong train`` (an Image- or TextClassifier).

    ``backbone=`` / ``head=`` pass the user modules a model was trained with, when it was.
    """
    from wukong.estimator import TransferClassifier

    return TransferClassifier.load(Path(path), **modules)


def __getattr__(name: str) -> Any:
    # Lazy: `import wukong` stays fast (torch is imported only when a classifier is used).
    if name == "ImageClassifier":
        from wukong.image_classifier import ImageClassifier

        return ImageClassifier
    if name == "TextClassifier":
        from wukong.text_classifier import TextClassifier

        return TextClassifier
    if name == "audit":  # wukong.quality: check labelled data before training on it
        from wukong.quality import audit

        return audit
    if name == "suggest":  # which unlabelled items to label next
        from wukong.quality.suggest import suggest

        return suggest
    if name == "Sources":  # several labelled files or folders trained on as one set
        from wukong.data.sources import Sources

        return Sources
    raise AttributeError(f"module 'wukong' has no attribute {name!r}")
