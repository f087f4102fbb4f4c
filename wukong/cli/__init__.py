"""The ``wukong`` command: ``app`` (Typer) and ``main`` (its entry point, one-line errors).

One module per group of commands: ``train``; ``data`` (audit, suggest); ``use`` (predict, evaluate, export, serve);
``store`` (pretrain, models, cache). They are imported in the order ``--help`` lists them.
"""

# isort: off
from wukong.cli import train, data, use, store  # noqa: F401 - each registers its commands on app
from wukong.cli.app import app, main

# isort: on

__all__ = ["app", "main"]
