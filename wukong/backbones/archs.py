"""Network architectures Wukong can build by name: any timm name, plus Wukong's small-input variants.

A Wukong variant is a timm architecture with keyword overrides, recorded in JSON so that a saved
model is rebuilt from its config alone (no pickled code).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from torch import nn


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
    def from_dict(cls, data: dict[str, Any]) -> ArchSpec:
        return cls(**data)


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
