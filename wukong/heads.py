"""The new top: what replaces the pretrained network's classifier.

``"linear"`` (dropout + linear, the default), ``"mlp"`` (one hidden layer), or any ``nn.Module``
that maps ``(batch, num_features)`` to ``(batch, num_classes)`` (the "top model" of Wukong 1).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from wukong.errors import ParameterError


def build_head(
    kind: str | nn.Module, num_features: int, num_classes: int, *, dropout: float = 0.2, hidden: int = 512
) -> tuple[nn.Module, dict[str, Any]]:
    """Return the head and the JSON spec that rebuilds it (``None`` spec for a user module)."""
    if isinstance(kind, nn.Module):
        return kind, {"kind": "module", "class": f"{type(kind).__module__}.{type(kind).__qualname__}"}
    if kind not in ("linear", "mlp"):
        raise ParameterError(f"unknown head {kind!r}: use 'linear', 'mlp' or an nn.Module")
    spec = {"kind": kind, "num_features": num_features, "num_classes": num_classes, "dropout": dropout}
    if kind == "mlp":
        spec["hidden"] = hidden
    return head_from_spec(spec), spec


def head_from_spec(spec: Any) -> nn.Module:
    """Rebuild a head from its recorded spec (checked: a config file is untrusted data)."""
    if not isinstance(spec, dict) or spec.get("kind") not in ("linear", "mlp", "module"):
        raise ParameterError(f"head spec {spec!r}: 'kind' must be 'linear', 'mlp' or 'module'")
    kind = spec["kind"]
    if kind == "module":
        raise ParameterError("this model's head is a user module; pass it again: wukong.load(path, head=module)")
    sizes = [spec.get("num_features"), spec.get("num_classes")] + ([spec.get("hidden")] if kind == "mlp" else [])
    dropout = spec.get("dropout", 0.0)
    if not all(isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= 1_000_000 for n in sizes) or not (
        isinstance(dropout, int | float) and 0.0 <= dropout < 1.0
    ):
        raise ParameterError(f"head spec {spec!r}: sizes must be whole numbers >= 1 and dropout in [0, 1)")
    features, classes = spec["num_features"], spec["num_classes"]
    if kind == "linear":
        return nn.Sequential(nn.Dropout(dropout), nn.Linear(features, classes))
    if kind == "mlp":
        hidden = spec["hidden"]
        return nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(features, hidden),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, classes),
        )
    raise AssertionError(kind)  # pragma: no cover - kinds are checked above


def final_linear(head: nn.Module) -> nn.Linear | None:
    """The last ``nn.Linear`` of a head (where a linear classifier's weights are written)."""
    linears = [m for m in head.modules() if isinstance(m, nn.Linear)]
    return linears[-1] if linears else None


def is_linear(head: object) -> bool:
    """Whether ``head`` names the plain linear head (the one a linear classifier can be folded into)."""
    return isinstance(head, str) and head == "linear"
