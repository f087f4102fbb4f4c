"""``report.html``: one self-contained page per model folder (figures embedded), and the same figures
in TensorBoard (``logs/``).

The page shows the choice and its reason; validation and test scores; the learning curves with
the learning rates; for ``features``, every candidate compared and the verdict; a coloured
confusion matrix and per-class scores; the most confident mistakes (thumbnails or text snippets);
and every input that was skipped or used with a note.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

from wukong import figures

STYLE = """
body{font:15px/1.45 system-ui,sans-serif;margin:0;background:#f6f7f9;color:#1d2330}
main{max-width:62em;margin:0 auto;padding:1.5em 2em 3em}
h1{font-size:1.6em;margin:.2em 0 .1em}h2{font-size:1.2em;margin:1.8em 0 .5em;border-bottom:2px solid #dde2ea}
.sub{color:#5a6478;margin:0 0 1em}.cards{display:flex;gap:1em;flex-wrap:wrap;margin:1em 0}
.card{background:#fff;border-radius:8px;padding:.8em 1.2em;box-shadow:0 1px 3px #0002;min-width:9em}
.card b{display:block;font-size:1.6em}.card span{color:#5a6478;font-size:.85em}
.reason{background:#fff;border-left:4px solid #1f77b4;padding:.6em 1em;border-radius:4px}
figure{background:#fff;border-radius:8px;padding:.8em;margin:1em 0;box-shadow:0 1px 3px #0002}
figure img{max-width:100%}figcaption{color:#5a6478;font-size:.85em;margin-top:.4em}
table{border-collapse:collapse;background:#fff;margin:.6em 0;width:100%}
td,th{padding:.35em .7em;border-bottom:1px solid #e3e7ee;text-align:left;vertical-align:top}
.wrong{color:#d62728;font-weight:600}.note{color:#5a6478}
"""


def draw(config: dict[str, Any], metrics: dict[str, Any]) -> dict[str, tuple[bytes, str]]:
    """Every figure the report shows, rendered once to PNG: ``{name: (png, caption)}``."""
    classes = config["classes"]
    evaluation, which = _evaluation(metrics)
    history = metrics.get("history") or {}
    best = history.get("best_epoch")
    tried = metrics.get("taps_tried") or metrics.get("candidates_tried") or {}  # images; text
    blend = tried.get(f"blend@{metrics.get('input_size')}px")
    tap = "blend" if blend else metrics.get("tap")
    chosen = metrics.get("candidate_kept") or f"{tap}@{metrics.get('input_size')}px"
    why = (
        f"a blend of {blend['members']} (their calibrated logits averaged), whose loss is below that of the "
        "simplest candidate within one standard error of the lowest by more than its standard error."
        if blend
        else "the pretrained encoder, unless the n-grams' loss is lower than its own by more than their standard error."
        if "candidate_kept" in metrics
        else "the candidate with the fewest features whose loss is within one standard error of the lowest."
    )
    wanted: dict[str, tuple[Any, str]] = {
        "learning_curves": (
            figures.learning_curves(history.get("epochs") or [], history.get("finetune_from_epoch")),
            "Loss and validation accuracy per epoch; below, the learning rate of each parameter group."
            + (f" The weights kept are those of epoch {best}." if best is not None else ""),
        ),
        "features_compared": (
            figures.candidates(tried, chosen),
            f"Kept: {chosen} (in colour): {why}",
        ),
    }
    multi = bool(metrics.get("multi_label"))
    if evaluation and not multi:  # a label set has no single predicted class to cross with the true one
        wanted[f"confusion_{which}"] = (
            figures.confusion(evaluation["confusion_matrix"], classes),
            "Rows: true class; colour: the share of it predicted as each class.",
        )
    if evaluation:
        wanted[f"per_class_{which}"] = (
            figures.per_class_scores(evaluation["per_class"]),
            "Precision, recall and F1 of each class.",
        )
        calibration = evaluation.get("calibration") or {}
        changed = calibration.get("temperature", 1.0) != 1.0
        binned = (
            "each label's probability, every (input, label) pair (size: how many)"
            if multi
            else "the top probability (size: how many inputs)"
        )
        wanted[f"reliability_{which}"] = (
            figures.reliability_diagram(
                calibration.get("reliability") or [], calibration.get("reliability_before") if changed else None
            ),
            f"Dots: bins of {binned}; "
            f"temperature {calibration.get('temperature', 1.0):g}. "
            f"Expected calibration error {evaluation.get('ece')}"
            + (f", {calibration.get('ece_before')} before calibration." if changed else "."),
        )
        if config.get("modality") == "image":
            wanted[f"worst_errors_{which}"] = (
                figures.worst_image_errors(evaluation.get("worst_errors") or []),
                "Each image: true → predicted, with the probability of the most confident wrong decision."
                if multi
                else "Each image: true class → predicted class, with the predicted probability.",
            )
    return {name: (figures.png_bytes(fig), caption) for name, (fig, caption) in wanted.items() if fig is not None}


TITLES = {
    "learning_curves": "Learning curves",
    "features_compared": "Features compared",
    "confusion": "Confusion matrix",
    "per_class": "Per class",
    "reliability": "Calibration: reliability diagram",
    "worst_errors": "Most confident mistakes",
}


def html_report(
    config: dict[str, Any],
    metrics: dict[str, Any],
    skipped: list[dict[str, Any]],
    drawn: dict[str, tuple[bytes, str]] | None = None,
) -> str:
    """The page for a model folder's ``config.json``, ``metrics.json`` and ``skipped.json``
    (``drawn``: the figures from ``draw``, drawn here when not given)."""
    esc = html.escape
    classes = config["classes"]
    drawn = draw(config, metrics) if drawn is None else drawn
    evaluation, which = _evaluation(metrics)
    parts = [
        "<!doctype html><html lang='en'><meta charset='utf-8'><title>Wukong model report</title>",
        f"<style>{STYLE}</style><main>",
        f"<h1>{esc(config.get('modality', ''))} classifier: {len(classes)} classes</h1>",
        f"<p class='sub'>{esc(', '.join(classes[:12]))}{' …' if len(classes) > 12 else ''} · backbone "
        f"{esc(str(metrics.get('backbone')))} · strategy <b>{esc(str(metrics.get('strategy')))}</b></p>",
        _cards(metrics),
        f"<p class='reason'><b>Why this strategy:</b> {esc(str(metrics.get('strategy_reason', '')))}</p>",
        _trust(metrics),
    ]
    for name, (png, caption) in drawn.items():
        title = TITLES[name.removesuffix(f"_{which}")] + (f" ({which})" if name.endswith(which) else "")
        source = "data:image/png;base64," + base64.b64encode(png).decode()
        parts.append(f"<h2>{esc(title)}</h2><figure><img alt='{esc(title)}' src='{source}'>")
        parts.append(f"<figcaption>{esc(caption)}</figcaption></figure>")
    errors = (evaluation or {}).get("worst_errors") or []
    if errors and f"worst_errors_{which}" not in drawn:
        parts += [f"<h2>Most confident mistakes ({which})</h2>", _error_table(errors)]
    if skipped:
        parts.append(f"<h2>Skipped inputs, and inputs used with a note ({len(skipped)})</h2><table>")
        parts += [
            f"<tr><td>{esc(str(s['path']))}</td><td>{esc(str(s['reason']))}"
            f"{' <b>(used)</b>' if s.get('kept') else ''}</td></tr>"
            for s in skipped
        ]
        parts.append("</table>")
    parts.append("</main></html>")
    return "\n".join(parts) + "\n"


def _evaluation(metrics: dict[str, Any]) -> tuple[dict[str, Any] | None, str]:
    if metrics.get("test"):
        return metrics["test"], "test"
    return metrics.get("val"), "validation"


def _cards(metrics: dict[str, Any]) -> str:
    evaluation, where = _evaluation(metrics)
    evaluation = evaluation or {}
    accuracy = "subset accuracy" if metrics.get("multi_label") else "accuracy"  # the whole label set right
    cards = [
        (f"validation {accuracy}", metrics.get("val_accuracy")),
        (f"test {accuracy}", metrics.get("test_accuracy")),
        (f"micro F1 ({where})", evaluation.get("micro_f1")),
        (f"mean average precision ({where})", evaluation.get("mAP")),
        (f"balanced accuracy ({where})", evaluation.get("balanced_accuracy")),
        (f"calibration error, ECE ({where})", evaluation.get("ece")),
        ("training time", f"{metrics['train_seconds']:.0f} s" if metrics.get("train_seconds") is not None else None),
        ("training examples", sum((metrics.get("train_examples") or {}).values()) or None),
        ("skipped inputs", metrics.get("skipped")),
    ]
    shown = [
        f"<div class='card'><b>{html.escape(str(value))}</b><span>{html.escape(label)}</span></div>"
        for label, value in cards
        if value is not None
    ]
    return "<div class='cards'>" + "".join(shown) + "</div>"


def _trust(metrics: dict[str, Any]) -> str:
    """One paragraph: how the probabilities were calibrated and how "unknown" is decided."""
    said = []
    calibration = metrics.get("calibration") or {}
    if calibration:
        said.append(
            f"Probabilities are calibrated by the temperature {calibration.get('temperature')}, fitted on "
            f"{calibration.get('fitted_on')}."
        )
    thresholds = calibration.get("thresholds")
    if thresholds:
        said.append(
            f"Several labels per input: a sigmoid per label, and an input gets every label whose probability "
            f"reaches that label's threshold (tuned for F1 on the same held-out predictions; from "
            f"{min(thresholds):.2f} to {max(thresholds):.2f})."
        )
    if metrics.get("class_weight") == "balanced":
        said.append("The training prior is divided out of them (imbalanced classes), so every class weighs the same.")
    elif metrics.get("class_weight") == "loss":
        said.append("The classes were weighted inversely to their counts in the loss.")
    open_set = metrics.get("open_set") or {}
    if open_set:
        said.append(
            f"“None of these”: the {open_set.get('score')} score, against {open_set.get('validation_examples')} "
            f"known validation inputs (with --reject-unknown, inputs below {open_set.get('threshold_at_0.95')} "
            "are answered unknown, keeping 95% of known ones)."
        )
    return f"<p class='note'>{html.escape(' '.join(said))}</p>" if said else ""


def _error_table(errors: list[dict[str, Any]]) -> str:
    esc = html.escape
    rows = "".join(
        f"<tr><td>{esc(e['input'])}</td><td>{esc(e['true'])}</td><td class='wrong'>{esc(e['predicted'])}</td>"
        f"<td>{e['score']:.2f}</td></tr>"
        for e in errors
    )
    return f"<table><tr><th>input</th><th>true</th><th>predicted</th><th>probability</th></tr>{rows}</table>"


def tensorboard_summary(
    logs: Path, config: dict[str, Any], metrics: dict[str, Any], drawn: dict[str, tuple[bytes, str]]
) -> None:
    """The report's figures, the hyper-parameters and the final scores, written to TensorBoard under
    ``logs/report`` (for every strategy: a ``features`` run has no training logs otherwise)."""
    import numpy as np
    from PIL import Image
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(logs / "report"))
    try:
        params = config.get("params") or {}
        hparams = {k: v if isinstance(v, int | float | str | bool) else str(v) for k, v in params.items()}
        hparams["strategy"] = str(metrics.get("strategy"))
        scores = {f"hparam/{k}": metrics[k] for k in ("val_accuracy", "test_accuracy") if metrics.get(k) is not None}
        writer.add_hparams(hparams, scores, run_name=".")
        for name, (png, _) in drawn.items():
            pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
            writer.add_image(name, pixels, dataformats="HWC")
        writer.add_text("strategy", f"**{metrics.get('strategy')}**: {metrics.get('strategy_reason')}")
    finally:
        writer.close()
