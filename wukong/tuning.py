"""Tuning defaults: the thresholds and grid the strategies decide with, overridable per estimator.

Progressive disclosure (as in Keras): the defaults are measured (``benchmarks/``) and most users never
see them; one who knows their data passes ``tuning={"small": 30}`` to an estimator (or ``--tuning
small=30`` on the command line). An unknown name or a wrong value is refused in one line.

Example:
    >>> resolve_tuning({"small": 30})["small"], resolve_tuning(None)["large"]
    (30, 1000)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from wukong.errors import ParameterError
from wukong.strategies.auto import FEWSHOT_BELOW, LARGE, SMALL
from wukong.strategies.features import C_GRID, REFIT_BELOW

DEFAULTS: dict[str, Any] = {
    "small": SMALL,  # images, auto: below this many examples in the smallest class, frozen features
    "large": LARGE,  # images, auto: from this median per class on, fine-tune every block
    "fewshot_below": FEWSHOT_BELOW,  # text, auto: below this median per class, few-shot tuning
    "refit_below": REFIT_BELOW,  # features: add the carved validation set back below this class size
    "c_grid": C_GRID,  # features: the inverse regularisation strengths cross-validated
    "pseudo_labels": "auto",  # features + unlabelled data: "auto" (kept where CV says) or "always"
}


def resolve_tuning(given: Mapping[str, Any] | None) -> dict[str, Any]:
    """The defaults with ``given`` laid over them, each value checked."""
    if given is None:
        return dict(DEFAULTS)
    if not isinstance(given, Mapping):
        raise ParameterError(f"tuning={given!r}: give a dict such as {{'small': 30}}")
    unknown = sorted(set(given) - set(DEFAULTS))
    if unknown:
        raise ParameterError(f"tuning: unknown {', '.join(map(repr, unknown))}; known: {', '.join(DEFAULTS)}")
    tuning = {**DEFAULTS, **given}
    for name in ("small", "large", "fewshot_below", "refit_below"):
        value = tuning[name]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ParameterError(f"tuning: {name}={value!r} must be a whole number >= 1")
    grid = tuning["c_grid"]
    if (
        isinstance(grid, str | bytes)
        or not grid
        or not all(isinstance(c, int | float) and not isinstance(c, bool) and c > 0 for c in grid)
    ):
        raise ParameterError(f"tuning: c_grid={grid!r} must be a non-empty list of positive numbers")
    tuning["c_grid"] = tuple(float(c) for c in grid)
    if tuning["pseudo_labels"] not in ("auto", "always"):
        raise ParameterError(f"tuning: pseudo_labels={tuning['pseudo_labels']!r} must be 'auto' or 'always'")
    return tuning
