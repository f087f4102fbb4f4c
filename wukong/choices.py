"""The named choices of the estimators' parameters, in a module that imports nothing heavy: the
command line checks them before it loads PyTorch, so a mistyped option is an error at once."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from wukong.errors import ParameterError

STRATEGIES = ("auto", "features", "head", "finetune")
TEXT_STRATEGIES = (*STRATEGIES, "fewshot")
# The linear models ``features`` can fit: multinomial logistic regression (softmax), whose outputs
# are calibrated probabilities, or a linear SVM (one-vs-rest squared hinge), whose scores are margins.
LINEAR_MODELS = ("logistic", "svm")
CLASS_WEIGHTS = ("auto", "balanced", "loss", None)


def check_choices(strategy: Any, linear_model: Any, class_weight: Any, strategies: Sequence[str] = STRATEGIES) -> None:
    """A one-line ``ParameterError`` for a strategy, linear model or class weighting not offered.

    Example:
        >>> check_choices("auto", "logistic", None)
    """
    if strategy not in strategies:
        raise ParameterError(f"strategy={strategy!r}: choose one of {', '.join(strategies)}")
    if linear_model not in LINEAR_MODELS:
        raise ParameterError(f"linear_model={linear_model!r}: choose one of {', '.join(LINEAR_MODELS)}")
    if class_weight not in CLASS_WEIGHTS:
        raise ParameterError(f"class_weight={class_weight!r}: choose 'auto', 'balanced', 'loss' or None")
