"""The ``wukong`` Typer application, and what every command shares: output, progress, errors."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer

from wukong.errors import ParameterError, WukongError

app = typer.Typer(
    help="Wukong: transfer learning in one command. Train, predict, evaluate, export, pretrain, serve.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
)

# The option of every command that runs a frozen network (train, predict, evaluate, serve).
EngineOption = Annotated[
    str,
    typer.Option(
        help="Frozen passes (image features, prediction): auto (onnxruntime where it agrees) | onnxruntime | torch."
    ),
]


# Where training runs (train, pretrain): passed to Lightning's Trainer (``wukong.training.engine``).
AcceleratorOption = Annotated[
    str, typer.Option(help="Where training runs: auto (the GPU when there is one) | cpu | gpu.")
]
DevicesOption = Annotated[
    str,
    typer.Option(help="Devices to train on: a number, or auto. More than one: Lightning's DDP, a process per device."),
]
NumNodesOption = Annotated[
    int,
    typer.Option(
        "--num-nodes",
        help="Machines to train on (DDP across them): start this same command on each, with torchrun or SLURM.",
    ),
]
PrecisionOption = Annotated[str, typer.Option(help="auto (bf16 where measured faster here) | 32 | bf16 (autocast).")]
NumWorkersOption = Annotated[
    int | None,
    typer.Option(
        "--num-workers",
        help="Loader processes that decode images (default: one per core, at most 4, where images are too many "
        "to hold decoded and are read from their files as used; none otherwise).",
    ),
]


def hardware(accelerator: str, devices: str, num_nodes: int, num_workers: int | None) -> dict[str, object]:
    """The device options as the estimators and ``PretrainConfig`` take them (``devices``: a number or auto)."""
    from wukong.training.devices import check_hardware

    if devices != "auto" and not devices.isdigit():
        raise ParameterError(f"--devices {devices}: give a number of devices, or auto")
    count: int | str = devices if devices == "auto" else int(devices)
    check_hardware(accelerator, count, num_nodes, num_workers)
    return {"accelerator": accelerator, "devices": count, "num_nodes": num_nodes, "num_workers": num_workers}


def check_paths(options: dict[str, Sequence[Path] | None]) -> list[Path]:
    """Every path these command-line options name, found now, before any work (else a one-line error
    naming the option and the path); returned in order."""
    found = []
    for option, paths in options.items():
        for path in paths or []:
            if not path.exists():
                raise WukongError(f"{option} {path}: no such file or folder")
            found.append(path)
    return found


def precision_bf16(precision: str, bf16: bool | None) -> bool | None:
    """``--precision`` as the ``bf16`` parameter: auto -> ``bf16`` (``None``: measured), 32 -> False, bf16 -> True."""
    chosen = {"auto": bf16, "32": False, "bf16": True}
    if precision not in chosen:
        raise ParameterError(f"--precision {precision}: choose auto, 32 or bf16")
    if precision != "auto" and bf16 is not None and bf16 != chosen[precision]:
        raise ParameterError(f"--precision {precision} and --{'' if bf16 else 'no-'}bf16 disagree; give one")
    return chosen[precision]


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
