"""Weights files of image networks, wherever they come from: a local file (safetensors, or a plain
PyTorch state dict that loads without unpickling code), or timm's weights in the local Hugging Face
cache; wrapper prefixes and the old classifier are dropped."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from wukong.artifact_io import read_safetensors
from wukong.errors import BackboneNotAvailable


def hf_cached_weights(name: str) -> Path | None:
    """The weights of a timm model in the local Hugging Face cache, if they are there."""
    import timm
    from huggingface_hub import try_to_load_from_cache

    try:
        cfg = timm.models.get_pretrained_cfg(name)
    except Exception:  # noqa: BLE001 - unknown tag: let create_model report it
        return None
    repo = getattr(cfg, "hf_hub_id", None) if cfg is not None else None
    if not repo:
        return None
    repo, _, revision = repo.partition("@")
    for filename in ("model.safetensors", "pytorch_model.bin"):
        found = try_to_load_from_cache(repo, filename, revision=revision or None)
        if isinstance(found, str):
            return Path(found)
    return None


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        return read_safetensors(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001
        raise BackboneNotAvailable(
            f"{path}: not a plain state dict that loads safely ({exc}); save it with "
            "torch.save(model.state_dict(), path) or as .safetensors"
        ) from exc
    for key in ("state_dict", "model", "model_state_dict"):  # common checkpoint wrappers
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise BackboneNotAvailable(f"{path}: holds a {type(state).__name__}, not a state dict")
    return state


def strip_prefixes(state: dict[str, torch.Tensor], network: nn.Module) -> dict[str, torch.Tensor]:
    """Drop wrapper prefixes (``module.``, ``model.``) and the old classifier's weights."""
    wanted = set(network.state_dict())
    out = {}
    for key, value in state.items():
        for prefix in ("module.", "model.", "backbone."):
            if key not in wanted and key.startswith(prefix):
                key = key[len(prefix) :]
        if key in wanted:
            out[key] = value
    return out
