"""The ``wukong`` Typer application, and what every command shares: output, progress, errors."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from wukong.errors import WukongError

app = typer.Typer(
    help="Wukong: transfer learning in one command. Train, predict, evaluate, export, pretrain, serve.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# The option of every command that runs a frozen network (train, predict, evaluate, serve).
EngineOption = Annotated[
    str,
    typer.Option(
        help="Frozen passes (image features, prediction): auto (onnxruntime where it agrees) | onnxruntime | torch."
    ),
]


def _version(value: bool) -> None:
    if value:
        from wukong import __version__

        typer.echo(f"wukong {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """Wukong: transfer learning in one command."""


def emit(data: object, as_json: bool, text: str) -> None:
    typer.echo(json.dumps(data, default=str) if as_json else text)


def progress_wanted(quiet: bool, as_json: bool) -> bool:
    return not quiet and not as_json and sys.stderr.isatty()


def may_replace(out: Path, fmt: str, overwrite: bool) -> bool:
    """--overwrite, or a yes at the prompt when a person is at a terminal and OUT holds a Wukong folder."""
    from wukong.artifact_io import folder_format

    if overwrite:
        return True
    if folder_format(out) == fmt and sys.stdin.isatty() and sys.stdout.isatty():
        return typer.confirm(f"{out} holds a Wukong {'model' if 'model' in fmt else 'backbone'}; replace it?")
    return False


def main() -> None:
    """Entry point: user errors print one line (no traceback) and exit 2."""
    try:
        app()
    except WukongError as exc:
        _fail(str(exc))
    except OSError as exc:  # the file system said no (permissions, a full disk...): one line, not a traceback
        where = f"{exc.filename}: " if exc.filename else ""
        _fail(f"{where}{exc.strerror or exc}")
    except KeyboardInterrupt:
        _fail("interrupted; a killed 'wukong train' continues with --resume", code=130)


def _fail(message: str, code: int = 2) -> None:
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    sys.exit(code)
