"""Better data: ``audit`` (``wukong.audit``) checks labelled data before training on it: duplicates,
leakage between the training, validation and test sets, likely label errors, class balance,
outliers and unreadable files, from the pretrained network's features (cached, so the model
trained next reuses them); ``suggest`` (``wukong.suggest``, in ``suggest.py``) picks what to label next.

Example:
    >>> from wukong import ImageClassifier, audit
    >>> report = audit("../shared/data/cat_dog/train", test="../shared/data/cat_dog/test")  # doctest: +SKIP
    >>> report.summary()["label_issues"]                                                     # doctest: +SKIP
    0
    >>> inputs, labels = report.cleaned()       # the training data without the flagged items  # doctest: +SKIP
    >>> ImageClassifier().fit(inputs, labels)                                               # doctest: +SKIP
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from wukong.progress import status
from wukong.quality import checks
from wukong.quality.sets import AuditSet, read_sets

__all__ = ["AuditReport", "audit"]


def audit(
    data: Any,
    labels: Sequence[Any] | None = None,
    *,
    val: Any = None,
    test: Any = None,
    estimator: Any = None,
    backbone: Any = None,
    modality: str | None = None,
    seed: int = 0,
    progress: bool = True,
) -> AuditReport:
    """Audit labelled data (a folder or table file, or inputs with ``labels``; ``val``/``test`` in the
    same forms, a path or an ``(inputs, labels)`` pair).

    The features are those of ``estimator``'s backbone (an unfitted ``ImageClassifier`` or
    ``TextClassifier``), or of ``backbone`` (default: the modality's default network); ``modality``
    (``"image"``/``"text"``) is found from the data when not given.
    """
    sets = read_sets(
        data, labels, val=val, test=test, estimator=estimator, backbone=backbone, modality=modality, progress=progress
    )
    with status("Auditing: duplicates, leakage, label errors, outliers", enabled=progress):
        return AuditReport.of(sets, seed=seed)


@dataclass
class AuditReport:
    """What ``audit`` found; ``to_dict()`` is ``audit.json``, ``save(folder)`` writes it with ``audit.html``."""

    modality: str
    backbone: str
    classes: list[str]
    sets: dict[str, AuditSet]
    findings: dict[str, Any]
    thresholds: dict[str, Any]
    flagged: dict[int, str] = field(default_factory=dict)  # training item -> why ``cleaned`` leaves it out

    @classmethod
    def of(cls, sets: dict[str, AuditSet], *, seed: int = 0) -> AuditReport:
        train = sets["train"]
        findings: dict[str, Any] = {"balance": checks.balance(train.labels, train.classes)}
        thresholds = {"embedding": train.embed_threshold, train.sketch_name: train.sketch_threshold}
        exact = checks.exact_groups(train.hashes)
        findings["exact_duplicates"] = [[train.ref(i) for i in group] for group in exact]
        findings["near_duplicates"] = [_pair(train, i, train, j, s) for i, j, s in _near(train, train)]
        findings["leakage"] = _leakage(sets)
        findings["label_issues"], classifier = _label_issues(sets, seed)
        findings["label_check"] = classifier
        findings["outliers"], findings["outlier_rule"] = _outliers(sets)
        findings["skipped"] = [{"set": name, **s} for name, one in sets.items() for s in one.skipped]
        report = cls(train.modality, train.backbone, list(train.classes), sets, findings, thresholds)
        report.flagged = report._flag(exact)
        return report

    def _flag(self, exact: list[list[int]]) -> dict[int, str]:
        """Training items ``cleaned`` leaves out: likely label errors, the second and later copies of
        an exact duplicate, and copies of a validation or test item (they inflate its scores)."""
        why: dict[int, str] = {}
        for issue in self.findings["label_issues"]:
            if issue["set"] == "train":
                why[issue["index"]] = f"likely label error (given '{issue['label']}', suggested '{issue['suggested']}')"
        for group in exact:
            for i in group[1:]:
                why.setdefault(i, f"exact duplicate of {self.sets['train'].names[group[0]]}")
        for pair in self.findings["leakage"]:
            a, b = pair["items"]
            if a["set"] == "train":
                why.setdefault(a["index"], f"{pair['kind']} duplicate of {b['set']} item {b['item']}")
        return self._keep_every_class(why)

    def _keep_every_class(self, why: dict[int, str]) -> dict[int, str]:
        """Flags that would leave a class with under 2 training examples are dropped (and said)."""
        train = self.sets["train"]
        counts = checks.label_counts(train.labels, len(self.classes)).astype(int)
        kept: dict[int, str] = {}
        for i, reason in sorted(why.items(), key=lambda kv: kv[0]):
            row = train.labels[i]
            members = np.flatnonzero(row) if row.ndim else [int(row)]
            if all(counts[c] - 1 >= 2 for c in members):
                kept[i] = reason
                counts[members] -= 1
        self.findings["flags_dropped_to_keep_classes"] = len(why) - len(kept)
        return kept

    def cleaned(self) -> tuple[list[Any], list[Any]]:
        """The training inputs and labels without the flagged items, ready for ``fit(inputs, labels)``."""
        train = self.sets["train"]
        keep = [i for i in range(len(train)) if i not in self.flagged]
        return [train.inputs[i] for i in keep], [train.label_value(i) for i in keep]

    def left_out(self) -> list[dict[str, Any]]:
        """What ``cleaned`` leaves out, and why."""
        train = self.sets["train"]
        return [{"item": train.names[i], "reason": r} for i, r in sorted(self.flagged.items())]

    def summary(self) -> dict[str, int]:
        f = self.findings
        return {
            "exact_duplicates": sum(len(g) - 1 for g in f["exact_duplicates"]),
            "near_duplicates": len(f["near_duplicates"]),
            "leakage": len(f["leakage"]),
            "label_issues": len(f["label_issues"]),
            "outliers": len(f["outliers"]),
            "skipped": sum(1 for s in f["skipped"] if not s.get("kept")),
            "tiny_classes": len(f["balance"]["tiny_classes"]),
            "flagged_for_clean": len(self.flagged),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "modality": self.modality,
            "backbone": self.backbone,
            "classes": self.classes,
            "sets": {name: one.describe() for name, one in self.sets.items()},
            "thresholds": self.thresholds,
            "summary": self.summary(),
            **self.findings,
            "duplicates_by_class": _by_class(self.findings),
            "clean_leaves_out": self.left_out(),
        }

    def save(self, folder: str | Path) -> Path:
        """Write ``audit.json`` and ``audit.html`` into ``folder`` (made if needed); returns the page's path."""
        from wukong.quality.page import audit_page

        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        data = self.to_dict()
        (out / "audit.json").write_text(json.dumps(data, indent=1, default=str) + "\n", encoding="utf-8")
        page = out / "audit.html"
        page.write_text(audit_page(data, self.sets), encoding="utf-8")
        return page


def _near(a: AuditSet, b: AuditSet) -> list[tuple[int, int, float]]:
    """Near duplicates (not exact ones) between two sets, or within one: a pair whose embeddings or
    surface sketches (``AuditSet.sketch``) are at or above the thresholds; its embedding similarity."""
    same = a is b
    found: dict[tuple[int, int], float] = {}
    for i, j, s in checks.near_pairs(a.features, None if same else b.features, a.embed_threshold):
        found[(i, j)] = s
    for i, j, _ in checks.near_pairs(a.sketch, None if same else b.sketch, a.sketch_threshold):
        found.setdefault((i, j), float(checks.normalised(a.features[[i]]) @ checks.normalised(b.features[[j]]).T))
    pairs = [(i, j, round(s, 4)) for (i, j), s in found.items() if a.hashes[i] != b.hashes[j]]
    return sorted(pairs, key=lambda p: -p[2])


def _pair(a: AuditSet, i: int, b: AuditSet, j: int, similarity: float | None, kind: str = "near") -> dict[str, Any]:
    return {"kind": kind, "similarity": similarity, "items": [a.ref(i), b.ref(j)]}


def _leakage(sets: dict[str, AuditSet]) -> list[dict[str, Any]]:
    """Copies of an item in another set (exact or near): the later set's scores are inflated by them."""
    names = list(sets)
    pairs = []
    for x, first in enumerate(names):
        for second in names[x + 1 :]:
            a, b = sets[first], sets[second]
            where = {h: j for j, h in enumerate(b.hashes)}
            pairs += [_pair(a, i, b, where[h], 1.0, "exact") for i, h in enumerate(a.hashes) if h in where]
            pairs += [_pair(a, i, b, j, s) for i, j, s in _near(a, b)]
    return pairs


def _together(sets: dict[str, AuditSet]) -> tuple[list[tuple[AuditSet, int]], np.ndarray, np.ndarray]:
    """Every set's items as one: (each row's set and index in it, features, labels)."""
    order = list(sets.values())
    where = [(s, i) for s in order for i in range(len(s))]
    return where, np.concatenate([s.features for s in order]), np.concatenate([s.labels for s in order])


def _label_issues(sets: dict[str, AuditSet], seed: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Likely label errors in every set, found together (more examples, a better classifier)."""
    where, features, labels = _together(sets)
    found = checks.label_issues(features, labels, len(sets["train"].classes), seed=seed)
    if found["indices"] is None:
        return [], {**found["classifier"], "why_not": found["why_not"]}
    issues = []
    for k in found["indices"].tolist():
        one, i = where[k]
        issues.append(
            {
                **one.ref(i),
                "suggested": one.label_name(found["suggested"][k]),
                "quality": round(float(found["quality"][k]), 4),
            }
        )
    return issues, found["classifier"]


def _outliers(sets: dict[str, AuditSet]) -> tuple[list[dict[str, Any]], str]:
    where, features, labels = _together(sets)
    flagged, nearest, cut = checks.outliers(features, labels, len(sets["train"].classes))
    rows = [{**where[k][0].ref(where[k][1]), "class_similarity": round(float(nearest[k]), 4)} for k in flagged]
    rule = (
        f"embedding similarity to the nearest class mean below {cut:.4f}: more than {checks.OUTLIER_Z} robust "
        "standard deviations (1.4826 x median absolute deviation) below the median item's"
    )
    return rows, rule


def _by_class(findings: dict[str, Any]) -> dict[str, dict[str, int]]:
    """Duplicate and leaked items counted by the class of the first item."""
    counts: dict[str, Counter[str]] = {}
    for key in ("near_duplicates", "leakage"):
        for pair in findings[key]:
            counts.setdefault(key, Counter())[str(pair["items"][0]["label"])] += 1
    for group in findings["exact_duplicates"]:
        counts.setdefault("exact_duplicates", Counter())[str(group[0]["label"])] += len(group) - 1
    return {key: dict(counted) for key, counted in counts.items()}
