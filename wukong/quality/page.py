"""``audit.html``: one self-contained page of what ``wukong.audit`` found, items shown side by side
(thumbnails or text snippets), in the model report's style."""

from __future__ import annotations

import html
from typing import Any

from wukong.quality.sets import AuditSet
from wukong.report import STYLE

SHOWN = 60  # rows of each table on the page (audit.json has them all)
EXTRA_STYLE = "img{border-radius:4px;max-height:96px}q{font-style:italic}.bar{background:#1f77b4;height:.8em}"


def audit_page(data: dict[str, Any], sets: dict[str, AuditSet]) -> str:
    esc = html.escape
    summary = data["summary"]
    described = ", ".join(f"{name} {one['items']} items ({one['origin']})" for name, one in data["sets"].items())
    parts = [
        "<!doctype html><html lang='en'><meta charset='utf-8'><title>Wukong data audit</title>",
        f"<style>{STYLE}{EXTRA_STYLE}</style><main>",
        f"<h1>Data audit: {esc(data['modality'])}, {len(data['classes'])} classes</h1>",
        f"<p class='sub'>{esc(described)} · features of {esc(data['backbone'])}</p>",
        "<div class='cards'>",
        *(f"<div class='card'><b>{n}</b><span>{esc(k.replace('_', ' '))}</span></div>" for k, n in summary.items()),
        "</div>",
        f"<p class='reason'>Near duplicates: {esc(_thresholds(data['thresholds']))}. "
        f"Outliers: {esc(data['outlier_rule'])}. Label errors: confident learning (cleanlab) on out-of-fold "
        f"probabilities of the cross-validated linear classifier ({esc(_classifier(data['label_check']))}).</p>",
        _balance(data["balance"]),
        _items("Likely label errors", data["label_issues"], sets, ["label", "suggested", "quality"]),
        _pairs("Leakage between sets", data["leakage"], sets),
        _pairs("Near duplicates in the training data", data["near_duplicates"], sets),
        _groups(data["exact_duplicates"], sets),
        _items("Outliers, far from every class", data["outliers"], sets, ["label", "class_similarity"]),
        _skipped(data["skipped"]),
        _left_out(data["clean_leaves_out"]),
        "</main></html>",
    ]
    return "\n".join(p for p in parts if p) + "\n"


def _thresholds(thresholds: dict[str, Any]) -> str:
    return " or ".join(f"{name.replace('_', ' ')} similarity at or above {value}" for name, value in thresholds.items())


def _classifier(info: dict[str, Any]) -> str:
    said = [f"{k.replace('_', ' ')} {v}" for k, v in info.items() if v is not None]
    return ", ".join(said)


def _balance(balance: dict[str, Any]) -> str:
    counts = balance["counts"]
    top = max(counts.values()) or 1
    bar = "<td style='width:60%'><div class='bar' style='width:{:.1f}%'></div></td>"
    rows = "".join(
        f"<tr><td>{html.escape(c)}</td><td>{n}</td>{bar.format(100 * n / top)}</tr>" for c, n in counts.items()
    )
    tiny = balance["tiny_classes"]
    note = f"Tiny classes ({html.escape(balance['tiny_rule'])}): {html.escape(', '.join(tiny)) if tiny else 'none'}."
    return (
        f"<h2>Class balance (training set; largest / smallest = {balance['largest_to_smallest']})</h2>"
        f"<p class='note'>{note}</p><table>{rows}</table>"
    )


def _cell(value: Any) -> str:
    if isinstance(value, list):
        value = ", ".join(map(str, value))
    return html.escape(str(value))


def _items(title: str, rows: list[dict[str, Any]], sets: dict[str, AuditSet], columns: list[str]) -> str:
    if not rows:
        return f"<h2>{html.escape(title)} (none)</h2>"
    head = "".join(f"<th>{html.escape(c)}</th>" for c in ["item", "set", *columns])
    body = "".join(
        f"<tr><td>{_shown(sets, r)}</td><td>{r['set']}</td>"
        + "".join(f"<td>{_cell(r.get(c))}</td>" for c in columns)
        + "</tr>"
        for r in rows[:SHOWN]
    )
    return f"<h2>{html.escape(title)} ({len(rows)})</h2><table><tr>{head}</tr>{body}</table>{_more(rows)}"


def _pairs(title: str, pairs: list[dict[str, Any]], sets: dict[str, AuditSet]) -> str:
    if not pairs:
        return f"<h2>{html.escape(title)} (none)</h2>"
    body = "".join(
        "<tr>"
        + "".join(f"<td>{_shown(sets, x, where=True)}</td>" for x in p["items"])
        + f"<td>{p['kind']}<br>{p['similarity']}</td></tr>"
        for p in pairs[:SHOWN]
    )
    return f"<h2>{html.escape(title)} ({len(pairs)})</h2><table>{body}</table>{_more(pairs)}"


def _shown(sets: dict[str, AuditSet], ref: dict[str, Any], *, where: bool = False) -> str:
    """An item as the page shows it: its thumbnail and file name, or its text; ``where``: with its
    set and label."""
    one = sets[ref["set"]]
    caption = html.escape(ref["item"][:120]) if one.pixels is not None else ""
    if where:
        caption = " · ".join(part for part in (ref["set"], caption, _cell(ref["label"])) if part)
    return one.preview(ref["index"]) + (f"<br><span class='note'>{caption}</span>" if caption else "")


def _groups(groups: list[list[dict[str, Any]]], sets: dict[str, AuditSet]) -> str:
    pairs = [{"kind": "exact", "similarity": 1.0, "items": [g[0], other]} for g in groups for other in g[1:]]
    return _pairs("Exact duplicates in the training data", pairs, sets)


def _skipped(skipped: list[dict[str, Any]]) -> str:
    if not skipped:
        return ""
    rows = "".join(
        f"<tr><td>{html.escape(str(s['path']))}</td><td>{html.escape(str(s['reason']))}"
        f"{' <b>(used)</b>' if s.get('kept') else ''}</td></tr>"
        for s in skipped
    )
    return f"<h2>Unreadable or skipped inputs ({len(skipped)})</h2><table>{rows}</table>"


def _left_out(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "<h2>Left out by a clean training (none)</h2>"
    body = "".join(f"<tr><td>{html.escape(r['item'][:160])}</td><td>{html.escape(r['reason'])}</td></tr>" for r in rows)
    return (
        f"<h2>Left out by a clean training ({len(rows)})</h2><p class='note'>wukong train --clean, or "
        f"report.cleaned() in Python, trains without these.</p><table>{body}</table>"
    )


def _more(rows: list[Any]) -> str:
    return f"<p class='note'>{len(rows) - SHOWN} more in audit.json.</p>" if len(rows) > SHOWN else ""
