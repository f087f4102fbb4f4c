"""Network architectures Wukong can build by name: any timm name, plus Wukong's small-input variants.

A Wukong variant is a timm architecture with keyword overrides, recorded in JSON so that a saved
model is rebuilt from its config alone (no pickled code).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from torch import nn

from wukong.errors import ParameterError


@dataclass(frozen=True)
class ArchSpec:
    """How to build a network: ``timm.create_model(timm_name, **kwargs)``, then optional surgery."""

    timm_name: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    stem_pool: bool = True  # False removes the stem's max-pool: 4x more resolution for small inputs
    input_size: int | None = None  # the native input side, when the variant has one

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> ArchSpec:
        """The spec recorded in a config file, checked: only known fields and safe timm options.

        A config is data, not code: nothing it holds may make loading read other files (timm's
        ``checkpoint_path``, ``pretrained_cfg_overlay``) or reach the network (``pretrained``).
        """
        if not isinstance(data, dict) or not isinstance(data.get("timm_name"), str):
            raise ParameterError(f"architecture spec {data!r}: needs a 'timm_name'")
        unknown = sorted(set(data) - {"timm_name", "kwargs", "stem_pool", "input_size"})
        if unknown:
            raise ParameterError(f"architecture spec: unknown field(s) {unknown}")
        name, kwargs = data["timm_name"], data.get("kwargs") or {}
        if not _timm_knows(name):
            raise ParameterError(f"architecture spec: {name!r} is not a timm architecture")
        if not isinstance(kwargs, dict):
            raise ParameterError("architecture spec: 'kwargs' must be an object")
        for key, value in kwargs.items():
            check = SAFE_KWARGS.get(key)
            if check is None or not check(value):
                raise ParameterError(
                    f"architecture spec: option {key}={value!r} is not allowed (allowed: {sorted(SAFE_KWARGS)})"
                )
        stem_pool, size = data.get("stem_pool", True), data.get("input_size")
        if not isinstance(stem_pool, bool) or not (size is None or _is_int(size, 8, 2048)):
            raise ParameterError("architecture spec: 'stem_pool' must be true/false and 'input_size' 8-2048 or null")
        return cls(name, dict(kwargs), stem_pool, size)


def _is_int(value: Any, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _is_rate(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and 0.0 <= value < 1.0


# The timm keyword options a recorded spec may carry, each with its check.
SAFE_KWARGS = {
    "channels": lambda v: isinstance(v, list | tuple) and 1 <= len(v) <= 8 and all(_is_int(c, 1, 8192) for c in v),
    "drop_rate": _is_rate,
    "drop_path_rate": _is_rate,
}


def _timm_knows(name: str) -> bool:
    import timm

    return bool(name) and timm.is_model(name)


# Wukong's own variants, for pretraining on small images with a CPU budget.
WUKONG_ARCHS: dict[str, ArchSpec] = {
    # ResNet-18 at half width with a stride-2 stem and no max-pool: on 64px inputs its first stage
    # sees 32x32 maps (a standard ResNet sees 16x16). 2.8M parameters: 5.6 MB in fp16.
    "wukong_resnet18_s": ArchSpec("resnet18", {"channels": [32, 64, 128, 256]}, stem_pool=False, input_size=64),
    # The same at 3/4 width (6.3M parameters) for users with more time.
    "wukong_resnet18_m": ArchSpec("resnet18", {"channels": [48, 96, 192, 384]}, stem_pool=False, input_size=64),
}


def arch_spec(name: str) -> ArchSpec:
    """The spec for a Wukong variant name, or a plain timm name."""
    return WUKONG_ARCHS.get(name, ArchSpec(name))


def build_network(spec: ArchSpec, *, num_classes: int = 0, pretrained: bool = False, **extra: Any) -> nn.Module:
    """Build the timm network for ``spec`` (``num_classes=0``: no classifier, pooled features out)."""
    import timm

    kwargs = {**spec.kwargs, **extra}
    if "channels" in kwargs:
        kwargs["channels"] = tuple(kwargs["channels"])
    model = timm.create_model(spec.timm_name, pretrained=pretrained, num_classes=num_classes, **kwargs)
    if not spec.stem_pool:
        if not hasattr(model, "maxpool"):
            raise ValueError(f"{spec.timm_name}: stem_pool=False needs a network with a 'maxpool' stem")
        model.maxpool = nn.Identity()
    return model
