"""``wukong predict``, ``evaluate``, ``export`` and ``serve``: what a trained model folder is for."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from wukong.cli.app import EngineOption, app, emit
from wukong.errors import WukongError


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
    from wukong.metrics import format_metrics

    clf = _load(model, engine)
    metrics = clf.evaluate(data)
    text = format_metrics(metrics, clf.classes_)
    for item in metrics["skipped"]:
        text += f"\n{'note' if item.get('kept') else 'skipped'} {item['path']}: {item['reason']}"
    emit(metrics, as_json, text)


@app.command()
def report(
    model: Annotated[Path, typer.Argument(help="Model folder written by 'wukong train'.")],
    data: Annotated[
        Path | None, typer.Option(help="Labelled data to evaluate: the report shows its scores and mistakes.")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Where to write the page (default: MODEL/report.html).")] = None,
    engine: EngineOption = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="Print where the report went as JSON.")] = False,
) -> None:
    """Write the model's report.html again: curves, the features compared, confusion matrix, per-class
    scores, the most confident mistakes; with --data, on that data."""
    from wukong.artifact import read_model_folder
    from wukong.artifact_io import write_text_atomically
    from wukong.report import html_report

    saved = read_model_folder(model)
    metrics = dict(saved.metrics)
    if data is not None:
        evaluation = _load(model, engine).evaluate(data)
        metrics.update(test=evaluation, test_accuracy=evaluation["accuracy"], test_data=str(data))
    target = out if out is not None else model / "report.html"
    write_text_atomically(target, html_report(saved.config, metrics, saved.skipped))
    result = {"report": str(target), **({"test_accuracy": metrics["test_accuracy"]} if data is not None else {})}
    emit(result, as_json, f"report written to {target}")


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
    emit(info, as_json, f"exported {model} to {out} ({info['bytes'] / 1e6:.1f} MB)")


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
    engine: EngineOption = "auto",
) -> None:
    """Serve predictions over HTTP (FastAPI): POST /predict (image bytes or multipart files; JSON
    {"text": ...} or {"texts": [...]}), GET|HEAD /health, OpenAPI at /docs."""
    try:
        from wukong.serve import serve as run_server
    except ImportError:
        raise WukongError("the server needs its extra: pip install 'wukong[serve]'") from None
    run_server(
        _load(model, engine), host=host, port=port, token=token, workers=workers, model_dir=str(model), engine=engine
    )


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
