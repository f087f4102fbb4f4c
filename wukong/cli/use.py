"""``wukong predict``, ``evaluate``, ``export`` and ``serve``: what a trained model folder is for."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from wukong.cli.app import EngineOption, app, emit
from wukong.errors import WukongError

RejectOption = Annotated[
    bool,
    typer.Option(
        "--reject-unknown",
        help="Answer 'unknown' for inputs unlike the training data (scored against known validation inputs).",
    ),
]
KeepOption = Annotated[
    float | None,
    typer.Option(
        "--unknown-keep",
        min=0.5,
        max=0.999,
        help="With --reject-unknown: the share of inputs like the validation data to keep (default 0.95).",
    ),
]


@app.command()
def predict(
    model: Annotated[Path, typer.Argument(help="Model folder written by 'wukong train'.")],
    inputs: Annotated[
        list[Path] | None, typer.Argument(help="Image files or folders; for text models, files with one text per line.")
    ] = None,
    text: Annotated[list[str] | None, typer.Option("--text", help="A text to classify (repeatable).")] = None,
    top_k: Annotated[int, typer.Option("--top-k", help="Show the K most probable classes.")] = 1,
    reject_unknown: RejectOption = False,
    unknown_keep: KeepOption = None,
    engine: EngineOption = "auto",
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON object per input (with its unknown_score, always).")
    ] = False,
) -> None:
    """Predict the class of images or texts with a trained model."""
    clf = _load(model, engine, reject_unknown=reject_unknown, unknown_keep=unknown_keep)
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
            # a multi-label model: the label set it predicts, each label with its probability
            pairs = row["scores"].items() if "scores" in row and not row.get("unknown") else row["top_k"]
            ranked = ", ".join(f"{label} {score:.3f}" for label, score in pairs) or "(no label)"
            verdict = (
                f"{row['label']} (unknown score {row['unknown_score']:.3f}; nearest: " if row.get("unknown") else ""
            )
            typer.echo(f"{row['input']}\t{verdict}{ranked}{')' if verdict else ''}")
    if all("error" in row for row in rows):
        raise WukongError(f"none of the {len(rows)} input(s) could be predicted (each is listed above with why)")


@app.command()
def evaluate(
    model: Annotated[Path, typer.Argument(help="Model folder written by 'wukong train'.")],
    data: Annotated[
        list[Path], typer.Argument(help="Labelled data in the same form as for training (several: one set).")
    ],
    engine: EngineOption = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="Print the metrics as JSON.")] = False,
) -> None:
    """Accuracy, balanced accuracy, per-class precision/recall/F1, the confusion matrix and calibration
    (expected calibration error, 15 bins; Brier score) on labelled data."""
    from wukong.data.sources import one_set
    from wukong.metrics import format_metrics

    clf = _load(model, engine)
    metrics = clf.evaluate(one_set(data))
    text = format_metrics(metrics, clf.classes_)
    for item in metrics["skipped"]:
        text += f"\n{'note' if item.get('kept') else 'skipped'} {item['path']}: {item['reason']}"
    emit(metrics, as_json, text)


@app.command()
def report(
    model: Annotated[Path, typer.Argument(help="Model folder written by 'wukong train'.")],
    data: Annotated[
        list[Path] | None,
        typer.Option(help="Labelled data to evaluate: the report shows its scores and mistakes; repeated: one set."),
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Where to write the page (default: MODEL/report.html).")] = None,
    engine: EngineOption = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="Print where the report went as JSON.")] = False,
) -> None:
    """Write the model's report.html again: curves, the features compared, confusion matrix, per-class
    scores, the most confident mistakes; with --data, on that data."""
    from wukong.artifact import read_model_folder
    from wukong.artifact_io import write_text_atomically
    from wukong.data.sources import one_set, record_of
    from wukong.report import html_report

    saved = read_model_folder(model)
    metrics = dict(saved.metrics)
    if data:
        evaluated = one_set(data)
        evaluation = _load(model, engine).evaluate(evaluated)
        metrics.update(test=evaluation, test_accuracy=evaluation["accuracy"], test_data=record_of(evaluated))
    target = out if out is not None else model / "report.html"
    target.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomically(target, html_report(saved.config, metrics, saved.skipped))
    result = {"report": str(target), **({"test_accuracy": metrics["test_accuracy"]} if data else {})}
    emit(result, as_json, f"report written to {target}")


@app.command()
def export(
    model: Annotated[Path, typer.Argument(help="Model folder written by 'wukong train'.")],
    out: Annotated[
        Path | None, typer.Option("--out", help="File to write (default: beside MODEL, named after it).")
    ] = None,
    format: Annotated[
        str,
        typer.Option(
            "--format",
            help="onnx; onnx-int8 (dynamic int8, its accuracy change measured); torchscript (.pt); "
            "torch-export (.pt2, torch.export).",
        ),
    ] = "onnx",
    any_size: Annotated[
        bool,
        typer.Option(
            "--any-size",
            help="Image ONNX: take one uint8 RGB image (H, W, 3) of any size; resize and crop in the graph.",
        ),
    ] = False,
    data: Annotated[
        Path | None,
        typer.Option(help="Labelled data to check the export against 'predict' (default: the model's test set)."),
    ] = None,
    max_accuracy_loss: Annotated[
        float,
        typer.Option(
            "--max-accuracy-loss",
            help="onnx-int8: refuse to write it if it loses more accuracy than this (a fraction).",
        ),
    ] = 0.02,
    unknown: Annotated[
        bool,
        typer.Option(
            "--unknown/--no-unknown",
            help="A second output, unknown_score ('none of these'); --no-unknown leaves out the training "
            "features it needs (up to 4,096 x the feature size, float32).",
        ),
    ] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print what was written, its metadata and parity.")] = False,
) -> None:
    """Export a trained model for use without Wukong: ONNX (classes and preprocessing in its metadata;
    text models with their tokenizer files beside it), int8 ONNX, TorchScript or torch.export."""
    import wukong
    from wukong.export import SUFFIXES, export

    if format not in SUFFIXES:
        raise WukongError(f"--format {format}: choose one of {', '.join(SUFFIXES)}")
    if any_size and not format.startswith("onnx"):
        raise WukongError(f"--any-size: for ONNX exports of image models, not --format {format}")
    suffix = (".int8" if format == "onnx-int8" else "") + SUFFIXES[format]
    target = out if out is not None else model.with_name(model.name + suffix)
    how = {"format": format, "any_size": any_size, "data": data, "max_accuracy_loss": max_accuracy_loss}
    info = export(wukong.load(model), target, unknown=unknown, **how)
    lines = [f"exported {model} to {target} ({info['bytes'] / 1e6:.1f} MB, {format})"]
    lines.append(f"input: {json.dumps(info['input'])}")
    if "tokenizer" in info:
        lines.append(f"tokenizer files: {target.parent / info['tokenizer']}")
    if "parity" in info:
        p = info["parity"]
        lines.append(
            f"against predict on {p['examples']} examples of {p['data']}: max |difference| of probabilities "
            f"{p['max_abs_diff']:.2g}, accuracy {p['accuracy_export']:.4f} (model {p['accuracy_model']:.4f})"
        )
    if "int8" in info:
        lines.append(f"int8 accuracy change: {info['int8']['accuracy_change']:+.4f}")
    emit(info, as_json, "\n".join(lines))


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
    workers: Annotated[int, typer.Option(min=1, help="Server processes, each with its own copy of the model.")] = 1,
    reject_unknown: RejectOption = False,
    unknown_keep: KeepOption = None,
    engine: EngineOption = "auto",
) -> None:
    """Serve predictions over HTTP (FastAPI): POST /predict (image bytes or multipart files; JSON
    {"text": ...} or {"texts": [...]}), GET|HEAD /health, OpenAPI at /docs."""
    try:
        from wukong.serve import serve as run_server
    except ImportError:
        raise WukongError("the server needs its extra: pip install 'wukong[serve]'") from None
    settings = {"reject_unknown": reject_unknown, "unknown_keep": unknown_keep}
    clf = _load(model, engine, **settings)
    run_server(clf, host=host, port=port, token=token, workers=workers, model_dir=str(model), engine=engine, **settings)


@app.command()
def ui(
    workdir: Annotated[
        Path, typer.Option(help="Folder of the projects (ordinary data and model folders; made if missing).")
    ] = Path("wukong-projects"),
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
    token: Annotated[
        str | None,
        typer.Option(
            envvar="WUKONG_UI_TOKEN",
            help="Require this token (open the page as /?token=TOKEN). Prefer the environment variable "
            "WUKONG_UI_TOKEN: a --token value is visible to every user in 'ps'.",
        ),
    ] = None,
) -> None:
    """A web page for training without code: make classes, add examples, train, see the report, try
    the model, download it. Everything stays in WORKDIR, on this machine."""
    try:
        from wukong.ui import run_ui
    except ImportError:
        raise WukongError("the page needs the server extra: pip install 'wukong[serve]'") from None
    run_ui(workdir, host=host, port=port, token=token)


def _load(model: Path, engine: str, *, reject_unknown: bool = False, unknown_keep: float | None = None) -> object:
    """A model folder, its frozen passes on ``engine`` (image models; text models run in PyTorch),
    answering "unknown" as asked."""
    import wukong
    from wukong.engine import check_engine

    check_engine(engine)
    clf = wukong.load(model)
    if hasattr(clf, "engine"):
        clf.engine = engine
    elif engine == "onnxruntime":
        raise WukongError(f"{model}: a text model; --engine onnxruntime applies to image models")
    if reject_unknown and getattr(clf, "open_set_", None) is None:
        raise WukongError(f"{model}: saved by a Wukong without open-set scores; train it again to use --reject-unknown")
    clf.set_params(reject_unknown=reject_unknown, **({"unknown_keep": unknown_keep} if unknown_keep else {}))
    return clf
