"""Commands about the data: ``wukong audit`` (``wukong.audit``) and ``wukong suggest`` (``wukong.quality.suggest``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from wukong.cli.app import app, check_paths, emit, progress_wanted
from wukong.errors import WukongError


@app.command()
def audit(
    data: Annotated[
        list[Path],
        typer.Argument(help="Labelled data, as for 'wukong train' (image folder, CSV, text table; several: one set)."),
    ],
    val: Annotated[
        list[Path] | None,
        typer.Option(help="Validation data (checked for leakage and label errors too); repeated: one set."),
    ] = None,
    test: Annotated[
        list[Path] | None, typer.Option(help="Test data (checked for leakage and label errors too); repeated: one set.")
    ] = None,
    out: Annotated[Path, typer.Option(help="Folder to write audit.json and audit.html into.")] = Path("audit"),
    backbone: Annotated[
        str | None, typer.Option(help="Pretrained network whose features are compared (default: as 'wukong train').")
    ] = None,
    text_col: Annotated[str | None, typer.Option(help="Text column (text tables).")] = None,
    label_col: Annotated[str | None, typer.Option(help="Label column (text tables).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the cross-validation folds.")] = 0,
    quiet: Annotated[bool, typer.Option(help="No progress bars.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary and the page's path as JSON.")] = False,
) -> None:
    """Find duplicates, leakage between train/val/test, likely label errors, class imbalance, outliers
    and unreadable files; write audit.json and a page, audit.html, with the items side by side.

    'wukong train --clean' then trains without the likely label errors, repeated copies and copies of
    validation or test items.
    """
    from wukong.data.inputs import modality_of
    from wukong.data.sources import one_set, optional_set
    from wukong.quality import audit as run_audit
    from wukong.quality.sets import estimator_for

    check_paths({"DATA": data, "--val": val, "--test": test})
    if out.exists() and not out.is_dir():
        raise WukongError(f"--out {out}: a file, not a folder")
    progress = progress_wanted(quiet, as_json)
    columns = {"text_col": text_col, "label_col": label_col}
    source = one_set(data)
    estimator = estimator_for(modality_of(source), backbone, progress=progress, **columns)
    val_set, test_set = optional_set(val), optional_set(test)
    report = run_audit(source, val=val_set, test=test_set, estimator=estimator, seed=seed, progress=progress)
    page = report.save(out)
    summary = report.summary()
    lines = [f"{name.replace('_', ' ')}: {count}" for name, count in summary.items()]
    lines.append(f"written: {out / 'audit.json'} and {page}")
    emit({"summary": summary, "audit_json": str(out / "audit.json"), "page": str(page)}, as_json, "\n".join(lines))


@app.command()
def suggest(
    model: Annotated[Path, typer.Argument(help="Model folder written by 'wukong train'.")],
    unlabelled: Annotated[
        list[Path],
        typer.Argument(
            help="Unlabelled images (files or folders); for a text model, a file with one text per line or a "
            "table (CSV/TSV/JSONL) with a text column."
        ),
    ],
    n: Annotated[int, typer.Option("--n", help="How many items to suggest.")] = 50,
    out: Annotated[Path, typer.Option(help="The CSV to write: fill its label column and train on it.")] = Path(
        "to_label.csv"
    ),
    text_col: Annotated[
        str | None, typer.Option(help="Text column of a table (default: 'text' or 'sentence').")
    ] = None,
    exclude: Annotated[
        list[Path] | None,
        typer.Option(
            help="Leave out the items this file or folder lists, labelled or not (repeatable): an earlier "
            "round's CSV, the training data."
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the clustering.")] = 0,
    overwrite: Annotated[bool, typer.Option(help="Replace OUT if it exists (it may hold labels already).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per suggested item.")] = False,
) -> None:
    """Rank unlabelled items for labelling: the pool clustered by k-means on the model's features, the
    most uncertain item of each cluster (margin of the calibrated probabilities), written as a CSV
    ready to be labelled.

    The CSV's first columns are the input and an empty label (path,label for images; text,label for
    texts), so once filled it is training data as it is; rows left unlabelled are skipped. Items
    that the model's training files and folders list are never suggested (a CSV trained on with
    'wukong train DATA to_label.csv', rows left blank included), nor are those --exclude lists.
    """
    import json

    import wukong
    from wukong.modalities.text import texts_of_file
    from wukong.quality.suggest import suggest as rank
    from wukong.quality.suggest import write_csv

    if out.exists() and not overwrite:  # a half-labelled file is work: never written over unasked
        raise WukongError(f"--out {out} exists (it may hold labels already); give another name, or --overwrite")
    clf = wukong.load(model)
    if clf.modality == "image":
        inputs: list = [str(p) for p in unlabelled]
    else:
        inputs = [t for file in unlabelled for t in texts_of_file(file, text_col)]
    rows = rank(clf, inputs, n, exclude=exclude or (), seed=seed)
    write_csv(rows, out, clf.modality)
    if as_json:
        typer.echo("\n".join(json.dumps(row) for row in rows))
    else:
        typer.echo("\n".join(f"{r['rank']}\t{r['input']}\t{r['predicted']} {r['score']:.3f}" for r in rows))
        fewer = " (all the pool holds that the model was not trained on and --exclude does not list)"
        typer.echo(f"{len(rows)} items to label written to {out}{fewer if len(rows) < n else ''}")
