"""User-facing errors: one line that names the file and says what to do.

The CLI prints these without a traceback; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class WukongError(Exception):
    """A problem with the user's input or environment, explained in one line."""


class DataError(WukongError):
    """The data cannot be used as given (missing path, too few classes, bad columns...)."""


class BackboneNotAvailable(WukongError):
    """A pretrained network was asked for but cannot be found or loaded here."""


class ParameterError(WukongError, ValueError):
    """A parameter (or command-line option) has a value that is not one of its choices."""


class NotFittedError(WukongError, AttributeError):
    """The estimator was used before `fit` (or `load`)."""


class OutputError(WukongError):
    """An output folder that Wukong may not write or replace (it holds other files, or the data)."""
