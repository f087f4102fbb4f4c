"""The ``wukong`` command."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from wukong.errors import WukongError

app = typer.Typer(
    help="Wukong: transfer learning in one command. Train, predict, evaluate, export, pretrain, serve.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


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


def _emit(data: object, as_json: bool, text: str) -> None:
    typer.echo(json.dumps(data, default=str) if as_json else text)


@app.command()
def pretrain(
    data: Annotated[Path, typer.Argument(help="Labelled image folder (one sub-folder per class), or a .tar.gz of one.")],
    out: Annotated[Path, typer.Option("--out", help="Backbone folder to write.")],
    arch: Annotated[str, typer.Option(help="Architecture: a timm name or a Wukong variant.")] = "wukong_resnet18_s",
    val: Annotated[Optional[Path], typer.Option(help="Validation folder (default: data/val if present, else a split).")] = None,
    epochs: Annotated[int, typer.Option(help="Training epochs.")] = 16,
    input_size: Annotated[int, typer.Option(help="Image side in pixels.")] = 64,
    batch_size: Annotated[int, typer.Option(help="Batch size.")] = 256,
    lr: Annotated[float, typer.Option(help="Peak learning rate per 256 images.")] = 0.5,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    bf16: Annotated[bool, typer.Option(help="bf16 autocast (fast on CPUs with AMX/AVX512-BF16).")] = True,
    limit_per_class: Annotated[Optional[int], typer.Option(help="Use at most N training images per class.")] = None,
    resume: Annotated[bool, typer.Option(help="Continue a killed run from its last checkpoint.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the metrics as JSON.")] = False,
) -> None:
    """Pretrain a backbone on a large labelled dataset; `wukong train --backbone OUT` then uses it."""
    from wukong.pretrain import PretrainConfig, pretrain as run_pretrain

    config = PretrainConfig(
        arch=arch, input_size=input_size, min_size=min(48, input_size), epochs=epochs,
        batch_size=batch_size, lr=lr, seed=seed, bf16=bf16,
    )
    metrics = run_pretrain(data, out, val=val, config=config, resume=resume, limit_per_class=limit_per_class)
    _emit(metrics, as_json, f"Backbone written to {out}: val top-1 {metrics['val_top1']}")


def main() -> None:
    """Entry point: user errors print one line (no traceback) and exit 2."""
    try:
        app()
    except WukongError as exc:
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        sys.exit(2)


if __name__ == "__main__":
    main()
