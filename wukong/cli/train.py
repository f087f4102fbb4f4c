"""``wukong train``: the main job, and the parsing of its options."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from wukong.cli.app import (
    AcceleratorOption,
    DevicesOption,
    EngineOption,
    NumNodesOption,
    NumWorkersOption,
    PrecisionOption,
    app,
    check_paths,
    emit,
    hardware,
    may_replace,
    precision_bf16,
    progress_wanted,
)
from wukong.errors import WukongError
from wukong.progress import status

if TYPE_CHECKING:
    from wukong.estimator import TransferClassifier
    from wukong.quality import AuditReport


@app.command()
def train(
    data: Annotated[
        list[Path],
        typer.Argument(
            help="Image folder (one sub-folder per class), image CSV (path,label), or text table (CSV/TSV/JSONL). "
            "Several labels in a label cell ('cat;dog', or a JSON list) train a multi-label model. Several "
            "sources of one kind train as one set (e.g. DATA to_label.csv, once the suggestions are labelled)."
        ),
    ],
    out: Annotated[Path, typer.Option("--out", help="Model folder to write.")],
    val: Annotated[
        list[Path] | None,
        typer.Option(help="Validation data (default: a seeded stratified split); repeated: several sources, one set."),
    ] = None,
    test: Annotated[
        list[Path] | None,
        typer.Option(help="Test data, evaluated once after training; repeated: several sources, one set."),
    ] = None,
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
    class_weight: Annotated[
        str,
        typer.Option(
            help="Imbalanced classes: auto (balanced when the largest class has more than 3x the smallest's "
            "examples) | balanced (the training prior divided out of the probabilities) | loss (classes weighted "
            "in the loss) | none."
        ),
    ] = "auto",
    epochs: Annotated[
        int | None,
        typer.Option(
            help="Epochs of head/finetune: images, all epochs (the first third train the head alone); text, "
            "each phase (the head on cached embeddings, then the encoder). Default: chosen from the data size."
        ),
    ] = None,
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
    accelerator: AcceleratorOption = "auto",
    devices: DevicesOption = "1",
    num_nodes: NumNodesOption = 1,
    precision: PrecisionOption = "auto",
    num_workers: NumWorkersOption = None,
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
            "(whole numbers), c_grid (comma-separated numbers), pseudo_labels (auto | always). See wukong.tuning.",
        ),
    ] = None,
    clean: Annotated[
        bool,
        typer.Option(
            help="Audit the data first (as 'wukong audit') and train without the likely label errors, repeated "
            "copies and copies of validation/test items; what was left out is listed, the audit written into OUT."
        ),
    ] = False,
    unlabeled: Annotated[
        list[Path] | None,
        typer.Option(
            "--unlabeled",
            "--unlabelled",
            help="Unlabelled data (repeatable): image files or folders; for text, a file with one text per line "
            "or a table with a text column. The linear classifier pseudo-labels it and trains again, kept only "
            "where cross-validation says it helps (the strategy's reason says).",
        ),
    ] = None,
    like: Annotated[
        Path | None,
        typer.Option(
            help="A trained model folder whose choices to keep: its backbone, strategy, blocks tuned, features "
            "read, input size, mirror images and C. Trains again without searching (after labelling more data, "
            "for example): seconds where the search took a minute."
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
    from wukong.data.inputs import modality_of
    from wukong.data.labelled import origin_of
    from wukong.data.sources import one_set, optional_set, record_of

    source = one_set(data)
    val_set, test_set = optional_set(val), optional_set(test)
    modality = modality_of(source)
    if preset is not None:
        from wukong.backbones.catalog import preset_backbone

        if backbone is not None:
            raise WukongError("give --backbone or --preset, not both")
        backbone = preset_backbone(preset, modality)
    from wukong.choices import STRATEGIES, TEXT_STRATEGIES, check_choices

    weighting = None if class_weight == "none" else class_weight
    check_choices(strategy, linear_model, weighting, TEXT_STRATEGIES if modality == "text" else STRATEGIES)
    hardware_options = hardware(accelerator, devices, num_nodes, num_workers)  # checked before any import of torch
    if modality == "image" and label_names is not None:
        raise WukongError("--label-names describes text labels; it does not apply to image data")
    inputs = [*data, *check_paths({"--val": val, "--test": test})]  # found now, not after training
    check_paths({"--unlabeled": unlabeled})
    check_output_folder(out, fmt=MODEL_FORMAT, inputs=inputs, overwrite=may_replace(out, MODEL_FORMAT, overwrite))
    progress = progress_wanted(quiet, as_json)
    unfreeze_value: int | str | None = None
    if unfreeze is not None:
        unfreeze_value = "all" if unfreeze == "all" else _positive_int(unfreeze, "--unfreeze")
    common = dict(
        strategy=strategy,
        head=head,
        linear_model=linear_model,
        class_weight=weighting,
        epochs=epochs,
        unfreeze=unfreeze_value,
        seed=seed,
        bf16=precision_bf16(precision, bf16),
        **hardware_options,
        tuning=_tuning(tuning) if tuning else None,
        progress=progress,
    )
    choices = {  # the options --like takes from its model instead, given here with other values than their defaults
        "--preset": preset,
        "--backbone": backbone if preset is None else None,
        "--arch": arch,
        "--strategy": strategy != "auto",
        "--head": head != "linear",
        "--linear-model": linear_model != "logistic",
        "--class-weight": class_weight != "auto",
        "--epochs": epochs,
        "--unfreeze": unfreeze,
        "--tuning": tuning,
        "--label-names": label_names,
    }
    with status("Starting: PyTorch, then every input's classes", enabled=progress):
        if like is not None:
            runtime = {k: common[k] for k in ("progress", "bf16", *hardware_options)}
            if modality == "image":
                runtime["engine"] = engine
            else:
                runtime.update(text_col=text_col, label_col=label_col)
            given = [name for name, value in choices.items() if value]
            clf = _like(like, modality, given, runtime)
        elif modality == "image":
            from wukong.image_classifier import ImageClassifier

            clf = ImageClassifier(backbone, arch=arch, engine=engine, **common)
        else:
            from wukong.text_classifier import TextClassifier

            if engine == "onnxruntime":
                raise WukongError("--engine onnxruntime applies to image data; text models run in PyTorch")
            descriptions = _label_descriptions(label_names) if label_names is not None else None
            clf = TextClassifier(backbone, text_col=text_col, label_col=label_col, label_names=descriptions, **common)
        clf.check_data(source, val_set, test_set)  # every input's classes, before any training
    pool = _unlabelled(unlabeled, modality, text_col) if unlabeled else None
    work = work_folder(out, create=True)
    report = None
    if clean:
        from wukong import audit

        report = audit(source, val=val_set, test=test_set, estimator=clf, seed=seed, progress=progress)
        clf.fit(*report.cleaned(), val=val_set, unlabeled=pool, work_dir=work, resume=resume)
        _record_clean(clf, report)
    else:
        clf.fit(source, val=val_set, unlabeled=pool, work_dir=work, resume=resume)
    if like is not None:  # said where the reason is read: the summary, metrics.json, the report
        clf.strategy_reason_ = clf.metrics_["strategy_reason"] = (
            f"the choices of {like} (--like); {clf.strategy_reason_}"
        )
    from wukong.training.plan import is_main_process

    if not is_main_process():  # another process of a multi-device run: it trained; the first one writes
        return
    test_problem = None
    if test_set is not None:
        try:
            metrics = clf.evaluate(test_set)
            clf.metrics_["test_accuracy"] = metrics["accuracy"]
            clf.metrics_["test"] = metrics
            clf.metrics_["test_data"] = record_of(test_set)  # what 'wukong export' checks exports against
        except WukongError as exc:  # found only now: the trained model is kept all the same
            test_problem = str(exc)
            clf.metrics_["test_error"] = test_problem
    try:
        clf.save(out, overwrite=True)  # checked above, before training
    except WukongError as exc:
        raise WukongError(f"{exc}; the run's checkpoints stay in {work} (train again with --resume)") from None
    if report is not None:
        report.save(out)
    remove_work_folder(work)
    m = clf.metrics_
    lines = [f"backbone: {m['backbone']}", f"strategy: {m['strategy']} ({m['strategy_reason']})"]
    if not m.get("multi_label"):  # (multi-label counts are per label, not per example)
        used = sum(m["train_examples"].values()) + (m["val_examples"] if val_set is None else 0)
        lines.append(f"examples: {used} from {origin_of(source)}")
    for item in clf.skipped_:
        lines.append(f"{'note' if item.get('kept') else 'skipped'} {item['path']}: {item['reason']}")
    accuracy = "subset accuracy (the whole label set right)" if m.get("multi_label") else "accuracy"
    lines.append(f"val {accuracy}: {m['val_accuracy']}")
    if "test_accuracy" in m:
        lines.append(f"test {accuracy}: {m['test_accuracy']}")
    if report is not None:
        lines.append(f"--clean left out {m['clean']['left_out']} training items (listed above; see {out}/audit.html)")
    lines.append(f"trained in {m['train_seconds']:.1f}s; model written to {out}")
    emit(_summary(m), as_json, "\n".join(lines))
    if test_problem:
        raise WukongError(f"the model is written to {out}, but the test data could not be evaluated: {test_problem}")


def _like(folder: Path, modality: str, given: list[str], runtime: dict[str, object]) -> TransferClassifier:
    """``--like FOLDER``: an estimator with the choices of the model in FOLDER and this run's own
    settings (``runtime``: progress, hardware, precision, and how the data is read), starting from
    that model's solution where it can (``TransferClassifier.retraining``)."""
    from wukong import load

    if given:
        raise WukongError(f"--like {folder} keeps that model's choices; leave out {', '.join(given)}")
    try:
        model = load(folder)
    except WukongError as exc:
        raise WukongError(f"--like {exc}") from None
    if model.modality != modality:
        raise WukongError(f"--like {folder}: a model of {model.modality}s, and the data to train on is {modality}")
    return model.retraining(**runtime)


def _record_clean(clf: TransferClassifier, report: AuditReport) -> None:
    """What ``--clean`` left out joins the skip report (unreadable training files, read by the audit,
    first), and ``metrics.json`` says how many and what the audit found."""
    train = report.sets["train"]
    left = [{"path": r["item"], "reason": f"left out by --clean: {r['reason']}"} for r in report.left_out()]
    clf.skipped_ = [*train.skipped, *clf.skipped_, *left]
    clf.metrics_["skipped"] = sum(1 for s in clf.skipped_ if not s.get("kept"))
    clf.metrics_["clean"] = {"left_out": len(left), "audit": report.summary()}


def _unlabelled(paths: list[Path], modality: str, text_col: str | None) -> list[str]:
    """``--unlabeled``: the image files under the paths, or the texts of the files; each path found to
    hold some before training."""
    from wukong.data.images import list_images
    from wukong.modalities.text import texts_of_file

    pool: list[str] = []
    for path in paths:
        found = [str(p) for p in list_images([path])] if modality == "image" else texts_of_file(path, text_col)
        if not found:
            raise WukongError(f"--unlabeled {path}: no {'image files' if modality == 'image' else 'text'} in it")
        pool += found
    return pool


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
        "multi_label",
        "clean",
        "semi_supervised",
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
            parse = {"c_grid": lambda v: [float(c) for c in v.split(",")], "pseudo_labels": str}.get(name, int)
            out[name] = parse(value)
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
