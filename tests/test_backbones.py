"""Backbone registry: the packaged default, the embedded network, timm names through the (offline) hub
cache, local files, pretrain folders and user modules all resolve to a network + its preprocessing."""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import save_file

from wukong.backbones.vision import load_image_backbone
from wukong.errors import BackboneNotAvailable


def test_embedded_backbone_loads_offline_with_its_preprocessing() -> None:
    bb = load_image_backbone("tiny")
    assert bb.source["kind"] == "embedded"
    assert bb.input_size == 64
    assert bb.data_config["mean"] == pytest.approx([0.485, 0.456, 0.406])
    with torch.no_grad():
        features = bb.network.eval()(torch.rand(2, 3, 64, 64))
    assert features.shape == (2, 256)
    assert bb.pretrain_head is not None and len(bb.pretrain_head["classes"]) == bb.pretrain_head["weight"].shape[0]


def _fake_hub_cache(root: Path, repo: str, state: dict[str, torch.Tensor]) -> None:
    """Lay out ``root`` as the Hugging Face cache holding ``repo``'s model.safetensors."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    folder = root / f"models--{repo.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(commit)
    snapshot = folder / "snapshots" / commit
    snapshot.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(snapshot / "model.safetensors"))


def test_timm_name_loads_from_local_hub_cache_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The hub itself cannot exist here: put the weights where huggingface_hub caches them.
    reference = timm.create_model("resnet18", pretrained=False)
    _fake_hub_cache(tmp_path, "timm/resnet18.a1_in1k", reference.state_dict())
    import huggingface_hub.constants as hf_constants

    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    bb = load_image_backbone("resnet18.a1_in1k")
    assert bb.source == {"kind": "timm", "name": "resnet18.a1_in1k", "spec": bb.source["spec"]}
    assert bb.input_size == 224 and bb.data_config["crop_pct"] == pytest.approx(0.95)  # timm's config
    torch.testing.assert_close(bb.network.conv1.weight, reference.conv1.weight)  # the cached weights


def test_uncached_timm_name_offline_says_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants as hf_constants

    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(BackboneNotAvailable, match="not in the local cache.*--arch resnet50"):
        load_image_backbone("resnet50.a1_in1k")


def test_unknown_name_is_refused() -> None:
    with pytest.raises(BackboneNotAvailable, match="not a timm model name"):
        load_image_backbone("no_such_network_v9")


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_local_weights_file_with_arch(tmp_path: Path, suffix: str) -> None:
    reference = timm.create_model("resnet18", pretrained=False)
    path = tmp_path / f"weights{suffix}"
    if suffix == ".safetensors":
        save_file(reference.state_dict(), str(path))
    else:
        torch.save({"state_dict": {f"module.{k}": v for k, v in reference.state_dict().items()}}, path)
    bb = load_image_backbone(path, arch="resnet18")
    torch.testing.assert_close(bb.network.layer4[1].conv2.weight, reference.layer4[1].conv2.weight)
    assert bb.source["kind"] == "file"


def test_weights_file_needs_arch_and_must_fit(tmp_path: Path) -> None:
    path = tmp_path / "w.safetensors"
    save_file(timm.create_model("resnet18").state_dict(), str(path))
    with pytest.raises(BackboneNotAvailable, match="add --arch"):
        load_image_backbone(path)
    with pytest.raises(BackboneNotAvailable, match="does not fit --arch resnet50"):
        load_image_backbone(path, arch="resnet50")


def test_pickled_module_is_not_loaded(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    torch.save(timm.create_model("resnet18"), path)  # a whole pickled module, not a state dict
    with pytest.raises(BackboneNotAvailable, match="not a plain state dict"):
        load_image_backbone(path, arch="resnet18")


def test_user_module_keeps_its_timm_config_and_loses_its_top() -> None:
    net = timm.create_model("resnet18", pretrained=False, num_classes=7)
    bb = load_image_backbone(net)
    assert bb.source["kind"] == "module" and bb.input_size == 224
    with torch.no_grad():
        assert bb.network.eval()(torch.rand(1, 3, 64, 64)).shape == (1, 512)  # classifier removed
