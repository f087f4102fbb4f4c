"""`wukong pretrain` writes a backbone folder that training then accepts with --backbone."""

from __future__ import annotations

import json
from pathlib import Path

from wukong import ImageClassifier
from wukong.pretrain import PretrainConfig, pretrain, size_for_epoch

from .conftest import CAT_DOG, cifar_subset


def test_progressive_resizing_ends_at_full_size() -> None:
    config = PretrainConfig(epochs=10, min_size=48, input_size=64, full_size_epochs=3)
    sizes = [size_for_epoch(config, e) for e in range(10)]
    assert sizes[0] == 48 and sizes[-3:] == [64, 64, 64]
    assert sizes == sorted(sizes) and all(s % 8 == 0 for s in sizes)


def test_pretrain_then_transfer(tmp_path: Path) -> None:
    data = cifar_subset(tmp_path / "cifar", train_per_class=30, test_per_class=10)
    config = PretrainConfig(arch="wukong_resnet18_s", input_size=32, min_size=32, epochs=2, batch_size=64, bf16=True)
    metrics = pretrain(data / "train", tmp_path / "bb", val=data / "test", config=config, progress=False)
    assert len(metrics["epochs"]) == 2 and 0.0 <= metrics["val_top1"] <= 1.0
    config_json = json.loads((tmp_path / "bb" / "config.json").read_text())
    assert config_json["format"] == "wukong-backbone/1" and config_json["num_classes"] == 10
    # about 5.6 MB of fp16 weights for 2.8M parameters
    assert (tmp_path / "bb" / "model.safetensors").stat().st_size < 7_000_000
    clf = ImageClassifier(tmp_path / "bb", strategy="features", progress=False).fit(CAT_DOG / "train")
    assert clf.metrics_["backbone"] == str(tmp_path / "bb")
    assert len(clf.predict(CAT_DOG / "test")) == 22


def test_batch_augmentation_crops_and_mirrors_each_image_on_its_own() -> None:
    import torch

    from wukong.data.augment import random_resized_crop_batch

    torch.manual_seed(0)
    images = torch.randint(0, 256, (64, 3, 16, 16), dtype=torch.uint8)
    whole = random_resized_crop_batch(images, 16, scale=(1.0, 1.0), ratio=(1.0, 1.0), flip=False)
    assert torch.allclose(whole, images.float(), atol=1e-2)  # the full box, unmirrored: the image itself
    flipped = random_resized_crop_batch(images, 16, scale=(1.0, 1.0), ratio=(1.0, 1.0), flip=True)
    mirrored = [torch.allclose(f, i.float().flip(-1), atol=1e-2) for f, i in zip(flipped, images, strict=True)]
    kept = [torch.allclose(f, i.float(), atol=1e-2) for f, i in zip(flipped, images, strict=True)]
    assert all(m or k for m, k in zip(mirrored, kept, strict=True)) and 10 < sum(mirrored) < 54
    crops = random_resized_crop_batch(images, 8, scale=(0.25, 0.5))
    assert crops.shape == (64, 3, 8, 8) and crops.min() >= 0 and crops.max() <= 255


def test_pretrain_on_fewer_images_than_a_batch_still_trains(tmp_path: Path) -> None:
    metrics = pretrain(
        CAT_DOG / "train", tmp_path / "bb", val=CAT_DOG / "test", config=PretrainConfig(epochs=1), progress=False
    )
    recipe = json.loads((tmp_path / "bb" / "config.json").read_text())["recipe"]
    assert recipe["batch_size"] == 40  # the default 512 would have left no full batch to train on
    assert len(metrics["epochs"]) == 1
