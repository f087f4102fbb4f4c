"""The report's figures, drawn with matplotlib (headless): for ``report.html`` and for TensorBoard.

Each function takes what ``metrics.json`` holds and returns a ``matplotlib.figure.Figure`` (or
``None`` when there is nothing to draw); ``png_bytes`` renders one.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

TRAIN, VAL, ACCURACY, CHOSEN, OTHER = "#d62728", "#1f77b4", "#2ca02c", "#1f77b4", "#b0b0b0"


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # no screen: draw to memory
    import matplotlib.pyplot as plt

    return plt


def png_bytes(figure: Any, dpi: int = 110) -> bytes:
    """The figure as PNG (then closed)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    _pyplot().close(figure)
    return buffer.getvalue()


def learning_curves(epochs: Sequence[dict[str, Any]], finetune_from: int | None = None) -> Any | None:
    """Loss (train, validation) and validation accuracy per epoch, above the learning rate of each
    parameter group; a dashed line where pretrained blocks were unfrozen."""
    if not epochs:
        return None
    plt = _pyplot()
    figure, (top, bottom) = plt.subplots(
        2, 1, figsize=(7, 4.6), sharex=True, gridspec_kw={"height_ratios": [3, 1.3]}, layout="constrained"
    )
    x = [row["epoch"] for row in epochs]
    for key, colour, label in (("train_loss", TRAIN, "train loss"), ("val_loss", VAL, "validation loss")):
        points = [(row["epoch"], row[key]) for row in epochs if key in row]
        if points:
            top.plot(*zip(*points, strict=True), marker="o", ms=3, color=colour, label=label)
    top.set_ylabel("loss")
    accuracy = top.twinx()
    points = [(row["epoch"], row["val_acc"]) for row in epochs if "val_acc" in row]
    if points:
        accuracy.plot(*zip(*points, strict=True), marker="s", ms=3, color=ACCURACY, label="validation accuracy")
    accuracy.set_ylabel("accuracy")
    accuracy.set_ylim(0, 1.02)
    lines = top.get_legend_handles_labels()[0] + accuracy.get_legend_handles_labels()[0]
    top.legend(lines, [line.get_label() for line in lines], loc="upper center", bbox_to_anchor=(0.5, 1.22), ncol=3)
    groups = max((len(row.get("lr") or []) for row in epochs), default=0)
    for group in range(groups):
        points = [(row["epoch"], row["lr"][group]) for row in epochs if len(row.get("lr") or []) > group]
        label = "new head" if group == 0 else "pretrained blocks"
        bottom.plot(*zip(*points, strict=True), marker=".", label=label)
    if groups:
        bottom.set_yscale("log")
        bottom.legend(loc="best", fontsize="small")
    bottom.set_ylabel("learning rate")
    bottom.set_xlabel("epoch")
    bottom.set_xticks(x if len(x) <= 20 else x[:: max(1, len(x) // 10)])
    if finetune_from is not None:
        for axes in (top, bottom):
            axes.axvline(finetune_from - 0.5, color="grey", linestyle="--", linewidth=1)
        top.annotate("blocks unfrozen", (finetune_from - 0.5, 0.02), xycoords=("data", "axes fraction"), fontsize=8)
    top.grid(alpha=0.3)
    bottom.grid(alpha=0.3)
    return figure


def confusion(matrix: Sequence[Sequence[int]], classes: Sequence[str]) -> Any | None:
    """The confusion matrix, coloured by the share of each true class (counts written in the cells)."""
    counts = np.asarray(matrix)
    if counts.size == 0 or len(classes) > 40:
        return None
    plt = _pyplot()
    side = min(9.0, 2.5 + 0.45 * len(classes))
    figure, axes = plt.subplots(figsize=(side, side * 0.85), layout="constrained")
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    image = axes.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    figure.colorbar(image, ax=axes, fraction=0.046, label="share of the true class")
    ticks = np.arange(len(classes))
    axes.set_xticks(
        ticks, classes, rotation=45 if len(classes) > 4 else 0, ha="right" if len(classes) > 4 else "center"
    )
    axes.set_yticks(ticks, classes)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    if len(classes) <= 20:
        for i, j in np.ndindex(counts.shape):
            colour = "white" if shares[i, j] > 0.55 else "black"
            axes.text(j, i, str(counts[i, j]), ha="center", va="center", color=colour, fontsize=9)
    return figure


def per_class_scores(per_class: dict[str, dict[str, float]], limit: int = 30) -> Any | None:
    """Precision, recall and F1 per class (the ``limit`` lowest F1 when there are more classes)."""
    if not per_class:
        return None
    plt = _pyplot()
    names = (
        sorted(per_class, key=lambda c: per_class[c]["f1"])[:limit][::-1] if len(per_class) > limit else list(per_class)
    )
    figure, axes = plt.subplots(figsize=(7, 0.9 + 0.42 * len(names)), layout="constrained")
    y = np.arange(len(names))
    for offset, (key, colour) in zip(
        (-0.27, 0, 0.27), (("precision", VAL), ("recall", TRAIN), ("f1", ACCURACY)), strict=True
    ):
        axes.barh(y + offset, [per_class[n][key] for n in names], height=0.26, color=colour, label=key)
    axes.set_yticks(y, names)
    axes.set_xlim(0, 1)
    axes.set_xlabel("score")
    axes.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=3, fontsize="small", frameon=False)
    axes.grid(axis="x", alpha=0.3)
    if len(per_class) > limit:
        axes.set_xlabel(f"score (the {limit} classes with the lowest F1, of {len(per_class)})")
    return figure


def candidates(tried: dict[str, dict[str, Any]], chosen: str | None) -> Any | None:
    """The features ``features``/``auto`` compared: cross-validated loss ± one standard error, the
    kept one in colour."""
    scored = {name: info for name, info in tried.items() if info.get("cv_loss") is not None}
    if len(scored) < 2:
        return None
    plt = _pyplot()
    names = list(scored)
    figure, axes = plt.subplots(figsize=(7, 0.9 + 0.45 * len(names)), layout="constrained")
    y = np.arange(len(names))[::-1]
    losses = [scored[n]["cv_loss"] for n in names]
    errors = [scored[n].get("cv_loss_se") or 0 for n in names]
    colours = [CHOSEN if n == chosen else OTHER for n in names]
    axes.barh(y, losses, xerr=errors, color=colours, capsize=4)
    axes.set_yticks(y, names)
    metric = next(iter(scored.values())).get("cv_metric", "loss").replace("_", " ")
    axes.set_xlabel(f"cross-validated {metric} (lower is better; bars: ± one standard error)")
    axes.grid(axis="x", alpha=0.3)
    return figure


def reliability_diagram(after: Sequence[dict[str, Any]], before: Sequence[dict[str, Any]] | None) -> Any | None:
    """Accuracy against confidence, per bin of the top probability, after the temperature (and
    before it, where it changed anything): on the diagonal, a score means what it says."""
    if not after:
        return None
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(5.2, 4.6), layout="constrained")
    axes.plot([0, 1], [0, 1], color="#999", linestyle="--", linewidth=1, label="perfectly calibrated")
    curves = [("before calibration", before, OTHER), ("calibrated (what Wukong returns)", after, CHOSEN)]
    for label, bins, colour in curves:
        if not bins:
            continue
        x = [b["confidence"] for b in bins]
        y = [b["accuracy"] for b in bins]
        sizes = [20 + 180 * b["count"] / max(c["count"] for c in bins) for b in bins]
        axes.plot(x, y, color=colour, linewidth=1.5, label=label)
        axes.scatter(x, y, s=sizes, color=colour, alpha=0.7)
    axes.set_xlim(0, 1.02)
    axes.set_ylim(0, 1.02)
    axes.set_xlabel("predicted probability of the top class (mean per bin)")
    axes.set_ylabel("accuracy in the bin")
    axes.legend(loc="upper left", fontsize=8)
    axes.grid(alpha=0.3)
    return figure


def worst_image_errors(errors: Sequence[dict[str, Any]], columns: int = 6) -> Any | None:
    """Thumbnails of the most confident mistakes, each titled true -> predicted (probability);
    inputs that are not image files on disk any more are left out."""
    from wukong.data.decode import BadImage, open_image

    shown = []
    for error in errors:
        try:  # decoded as for training (upright, RGB), at about the thumbnail's size
            shown.append((error, open_image(Path(error["input"]), min_size=160)[0]))
        except BadImage:
            continue
    if not shown:
        return None
    plt = _pyplot()
    rows = -(-len(shown) // columns)
    figure, grid = plt.subplots(rows, columns, figsize=(1.9 * columns, 2.2 * rows), squeeze=False, layout="constrained")
    for axes in grid.flat:
        axes.axis("off")
    for axes, (error, image) in zip(grid.flat, shown, strict=False):
        image.thumbnail((160, 160))
        axes.imshow(image)
        axes.set_title(f"{error['true']} → {error['predicted']}\n{error['score']:.2f}", fontsize=8, color=TRAIN)
    return figure
