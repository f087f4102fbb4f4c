"""Metrics: accuracy, per-class precision / recall / F1, confusion matrix."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def classification_metrics(labels: np.ndarray, proba: np.ndarray, classes: Sequence[str]) -> dict[str, Any]:
    """Metrics of predicted probabilities ``proba`` (n, classes) against integer ``labels``."""
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    labels = np.asarray(labels)
    predicted = proba.argmax(axis=1)
    indices = list(range(len(classes)))
    precision, recall, f1, support = precision_recall_fscore_support(labels, predicted, labels=indices, zero_division=0)
    top = min(5, len(classes))
    top_k = np.argsort(-proba, axis=1)[:, :top]
    return {
        "accuracy": round(float((predicted == labels).mean()), 4) if len(labels) else None,
        f"top{top}_accuracy": round(float((top_k == labels[:, None]).any(axis=1).mean()), 4) if len(labels) else None,
        "macro_f1": round(float(f1.mean()), 4),
        "n": int(len(labels)),
        "per_class": {
            name: {
                "precision": round(float(precision[i]), 4),
                "recall": round(float(recall[i]), 4),
                "f1": round(float(f1[i]), 4),
                "support": int(support[i]),
            }
            for i, name in enumerate(classes)
        },
        "confusion_matrix": confusion_matrix(labels, predicted, labels=indices).tolist(),
    }


def format_metrics(metrics: dict[str, Any], classes: Sequence[str]) -> str:
    """A plain-text table for the terminal."""
    width = max(8, *(len(c) for c in classes))
    lines = [f"accuracy {metrics['accuracy']:.4f}  macro F1 {metrics['macro_f1']:.4f}  (n={metrics['n']})", ""]
    lines.append(f"{'class':<{width}}  precision  recall     f1  support")
    for name, row in metrics["per_class"].items():
        lines.append(
            f"{name:<{width}}  {row['precision']:9.3f}  {row['recall']:6.3f}  {row['f1']:5.3f}  {row['support']:7d}"
        )
    if len(classes) <= 12:
        lines += ["", "confusion matrix (rows: true, columns: predicted)"]
        lines += ["  ".join(f"{v:4d}" for v in row) for row in metrics["confusion_matrix"]]
    return "\n".join(lines)


def html_report(config: dict[str, Any], metrics: dict[str, Any], skipped: list[dict[str, str]]) -> str:
    """A self-contained HTML page: the choice and its reason, scores, confusion, curves, skipped files."""
    import html

    esc = html.escape
    classes = config["classes"]
    rows = [
        ("backbone", metrics.get("backbone")),
        ("strategy", f"{metrics.get('strategy')}: {metrics.get('strategy_reason')}"),
        ("validation accuracy", metrics.get("val_accuracy")),
        ("test accuracy", metrics.get("test_accuracy")),
        ("training time (s)", metrics.get("train_seconds")),
    ]
    parts = [
        "<!doctype html><meta charset='utf-8'><title>Wukong model report</title>",
        "<style>body{font:14px sans-serif;margin:2em;max-width:60em}td,th{padding:.2em .6em;border:1px solid #ccc}"
        "table{border-collapse:collapse;margin:1em 0}</style>",
        f"<h1>Wukong model: {len(classes)} classes</h1><table>",
        *(f"<tr><th>{esc(k)}</th><td>{esc(str(v))}</td></tr>" for k, v in rows if v is not None),
        "</table>",
    ]
    evaluation = metrics.get("test") or metrics.get("val")
    if evaluation:
        which = "test" if metrics.get("test") else "validation"
        parts.append(
            f"<h2>Per class ({which})</h2><table><tr><th>class</th><th>precision</th><th>recall</th>"
            "<th>F1</th><th>support</th></tr>"
        )
        for name, row in evaluation["per_class"].items():
            parts.append(
                f"<tr><td>{esc(name)}</td><td>{row['precision']:.3f}</td><td>{row['recall']:.3f}</td>"
                f"<td>{row['f1']:.3f}</td><td>{row['support']}</td></tr>"
            )
        parts.append("</table>")
        if len(classes) <= 30:
            header = "".join(f"<th>{esc(c)}</th>" for c in classes)
            parts.append(f"<h2>Confusion matrix ({which}; rows: true)</h2><table><tr><th></th>{header}</tr>")
            for name, line in zip(classes, evaluation["confusion_matrix"], strict=True):
                parts.append(f"<tr><th>{esc(name)}</th>" + "".join(f"<td>{v}</td>" for v in line) + "</tr>")
            parts.append("</table>")
    epochs = (metrics.get("history") or {}).get("epochs") or []
    if epochs:
        parts.append("<h2>Learning curves</h2>" + _svg_curves(epochs))
    if skipped:
        parts.append(f"<h2>Skipped inputs, and inputs used with a note ({len(skipped)})</h2><ul>")
        parts += [
            f"<li>{esc(s['path'])}: {esc(s['reason'])}{' <b>(used)</b>' if s.get('kept') else ''}</li>" for s in skipped
        ]
        parts.append("</ul>")
    return "\n".join(parts) + "\n"


def _svg_curves(epochs: list[dict[str, Any]], width: int = 480, height: int = 200) -> str:
    """Inline SVG of train/val loss and val accuracy per epoch (no plotting library needed)."""
    series = {"train_loss": "#d62728", "val_loss": "#1f77b4", "val_acc": "#2ca02c"}
    values = [r[k] for r in epochs for k in series if k in r]
    top = max(values + [1.0])
    n = max(len(epochs) - 1, 1)
    lines = []
    for key, colour in series.items():
        points = [
            f"{20 + (width - 40) * i / n:.1f},{height - 20 - (height - 40) * r[key] / top:.1f}"
            for i, r in enumerate(epochs)
            if key in r
        ]
        if points:
            lines.append(f"<polyline fill='none' stroke='{colour}' stroke-width='2' points='{' '.join(points)}'/>")
            lines.append(f"<text x='{width - 110}' y='{20 + 14 * len(lines) / 2}' fill='{colour}'>{key}</text>")
    return f"<svg width='{width}' height='{height}' style='border:1px solid #ccc'>{''.join(lines)}</svg>"
