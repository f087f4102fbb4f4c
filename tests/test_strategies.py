"""Each way of transferring learns, on the real cat/dog samples and on a small CIFAR-10 subset.

The mechanics are tested with the fast 64px backbone; test_default_backbone.py checks the default."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from wukong import ImageClassifier
from wukong.backbones.vision import load_image_backbone
from wukong.network import FeatureExtractor, TransferNet, later_blocks, set_trainable

from .conftest import CAT_DOG, FAST_BACKBONE

# chance is 0.5 on cat/dog and 0.1 on CIFAR-10; these bars need real transfer, not luck.
CAT_DOG_BAR = {"features": 0.7, "head": 0.6, "finetune": 0.6}
CIFAR_BAR = {"features": 0.3, "head": 0.25, "finetune": 0.25}


@pytest.mark.parametrize("strategy", ["features", "head", "finetune"])
def test_strategy_learns_cat_dog(strategy: str, tmp_path: Path) -> None:
    clf = ImageClassifier(FAST_BACKBONE, strategy=strategy, epochs=12, progress=False, seed=0)
    clf.fit(CAT_DOG / "train", work_dir=tmp_path)
    assert clf.strategy_ == strategy
    accuracy = clf.evaluate(CAT_DOG / "test")["accuracy"]
    assert accuracy >= CAT_DOG_BAR[strategy], (strategy, accuracy, clf.metrics_.get("history"))


@pytest.mark.parametrize("strategy", ["features", "head", "finetune"])
def test_strategy_learns_cifar_subset(strategy: str, cifar_small: Path, tmp_path: Path) -> None:
    clf = ImageClassifier(FAST_BACKBONE, strategy=strategy, epochs=12, progress=False, seed=0)
    clf.fit(cifar_small / "train", work_dir=tmp_path)
    accuracy = clf.evaluate(cifar_small / "test")["accuracy"]
    assert accuracy >= CIFAR_BAR[strategy], (strategy, accuracy)


def test_auto_explains_its_choice_and_measures_similarity() -> None:
    clf = ImageClassifier(FAST_BACKBONE, progress=False).fit(CAT_DOG / "train")
    assert clf.strategy_ == "features"  # 20 per class: small data
    assert "small data" in clf.strategy_reason_ and "cross-validated" in clf.strategy_reason_
    stages = len(load_image_backbone(FAST_BACKBONE).stage_names())
    every_stage = {f"stage{i}@64px" for i in range(stages)}
    together = {f"stage{stages - 2}+final@64px", "+".join(f"stage{i}" for i in range(stages)) + "+final@64px"}
    no_transfer = {"pixels16@64px", "pixels32@64px"}
    assert set(clf.metrics_["taps_tried"]) == {"final@64px", "final@80px"} | every_stage | together | no_transfer
    for name, info in clf.metrics_["taps_tried"].items():  # every candidate and its score, in the explanation
        assert f"{name}: {info['cv_loss']} ± {info['cv_loss_se']}" in clf.strategy_reason_
    # the kept candidate is the one with the fewest features within one standard error of the lowest loss
    tried = clf.metrics_["taps_tried"]
    kept = f"{clf.metrics_['tap']}@{clf.metrics_['input_size']}px"
    best = tried[min(tried, key=lambda name: tried[name]["cv_loss"])]
    within = [name for name, info in tried.items() if info["cv_loss"] <= best["cv_loss"] + best["cv_loss_se"]]
    assert tried[kept]["features"] == min(tried[name]["features"] for name in within)


def test_one_standard_error_rule_keeps_the_simplest_candidate_within_the_noise() -> None:
    from wukong.strategies.features import one_standard_error_choice

    # (loss, standard error, features): the fewest features within one standard error of the lowest loss
    assert one_standard_error_choice([(0.60, 0.05, 1280), (0.58, 0.05, 320), (0.59, 0.01, 112)]) == 2
    assert one_standard_error_choice([(0.60, 0.05, 1280), (0.40, 0.05, 1792), (0.44, 0.01, 320)]) == 2
    assert one_standard_error_choice([(0.60, 0.05, 320), (0.40, 0.05, 1280)]) == 1  # clearly better
    assert one_standard_error_choice([(0.50, 0.05, 320), (0.50, 0.05, 320)]) == 0  # a tie: the first
    assert one_standard_error_choice([(None, None, 16), (0.5, 0.1, 1280)]) == 1  # one could not be scored


def test_a_blend_is_one_linear_layer_giving_the_mean_of_its_members_calibrated_logits() -> None:
    from sklearn.datasets import load_digits

    from wukong.strategies.features import blend_fits, blend_members, fit_linear_classifier

    # scikit-learn's digit scans, 12 per digit; two views of them: the top half and the bottom half
    x, y = load_digits(return_X_y=True)
    train = np.concatenate([np.flatnonzero(y == d)[:12] for d in range(10)])
    test = np.setdiff1d(np.arange(len(y)), train)
    top, bottom = np.arange(32), np.arange(32, 64)
    fits = [fit_linear_classifier(x[train][:, cols], y[train], 10) for cols in (top, bottom)]
    found = blend_members(fits, start=0)  # each half misses what the other sees: blending pays
    assert found is not None and sorted(set(found.members)) == [0, 1] and found.loss < found.start_loss
    blend = blend_fits(fits, found.members, [top, bottom], 64)
    blended = x[test] @ blend.weight.T + blend.bias
    views = zip(fits, (top, bottom), strict=True)
    members = [(x[test][:, cols] @ f.weight.T + f.bias) / f.temperature for f, cols in views]
    expected = np.mean([members[i] for i in found.members], axis=0)
    np.testing.assert_allclose(blended, expected, rtol=1e-4, atol=1e-4)
    accuracy = [float(((m.argmax(1)) == y[test]).mean()) for m in (*members, blended)]
    assert accuracy[2] > max(accuracy[:2])  # on data it never saw, better than either half
    assert blend.info["calibration_examples"] == len(train) and blend.temperature > 0
    assert blend_members(fits[:1], start=0) is None  # nothing to blend with
    assert blend_members([fits[0], fits[0]], start=0) is None  # a copy adds nothing


def test_features_cache_reuses_by_content_not_name(cat_dog_copy: Path, private_cache: Path) -> None:
    def fit() -> None:  # a fixed validation set: the training files are the same every time
        clf = ImageClassifier(FAST_BACKBONE, strategy="features", tap="final", input_size="native", progress=False)
        clf.fit(cat_dog_copy, val=CAT_DOG / "test")

    fit()
    shards = set(private_cache.rglob("shard-*.npz"))
    first = next(iter(sorted((cat_dog_copy / "cat").glob("*.jpg"))))
    first.rename(first.with_name("renamed.jpg"))  # same content, new name: no recompute
    fit()
    assert set(private_cache.rglob("shard-*.npz")) == shards
    other = next(iter(sorted((cat_dog_copy / "dog").glob("*.jpg"))))
    from PIL import Image

    Image.open(other).transpose(Image.Transpose.FLIP_TOP_BOTTOM).save(other)  # changed content
    fit()
    new = set(private_cache.rglob("shard-*.npz")) - shards
    assert new, "a changed file must be recomputed"
    sizes = [len(np.load(p)["keys"]) for p in new]
    assert max(sizes) == 1  # ... and only that file


def test_frozen_batchnorm_stays_in_inference_mode() -> None:
    bb = load_image_backbone(FAST_BACKBONE)
    net = TransferNet(FeatureExtractor(bb.network), torch.nn.Linear(256, 2), [0.5] * 3, [0.25] * 3)
    set_trainable(net.features, False)
    last = later_blocks(bb.network, 1)
    for block in last:
        set_trainable(block, True)
    net.train()
    bns = [m for m in net.features.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    frozen = [m for m in bns if not m.weight.requires_grad]
    trainable = [m for m in bns if m.weight.requires_grad]
    assert frozen and trainable
    assert all(not m.training for m in frozen) and all(m.training for m in trainable)
    before = frozen[0].running_mean.clone()
    net(torch.rand(8, 3, 64, 64))
    torch.testing.assert_close(frozen[0].running_mean, before)  # statistics untouched


def test_finetune_uses_smaller_rates_for_pretrained_blocks(tmp_path: Path) -> None:
    clf = ImageClassifier(FAST_BACKBONE, strategy="finetune", epochs=4, head_epochs=2, lr=1e-3, progress=False)
    clf.fit(CAT_DOG / "train", work_dir=tmp_path)
    rates = [row["lr"] for row in clf.metrics_["history"]["epochs"]]
    assert [len(r) for r in rates] == [1, 1, 2, 2]  # the pretrained blocks join at epoch 2
    head_lr, block_lr = rates[2]
    assert block_lr == pytest.approx(head_lr * 0.1, rel=0.01)
    assert rates[3][0] < rates[2][0]  # and every rate decays


@pytest.mark.slow  # the default suite stays near 10 minutes; make test-all runs it
def test_the_default_finetune_is_short_one_head_epoch_then_the_later_blocks(tmp_path: Path) -> None:
    from wukong.strategies.finetune import AUGMENTED_PLANS

    epochs, head_epochs, min_steps = AUGMENTED_PLANS["finetune"]
    clf = ImageClassifier(FAST_BACKBONE, strategy="finetune", progress=False).fit(CAT_DOG / "train", work_dir=tmp_path)
    groups = [len(row["lr"]) for row in clf.metrics_["history"]["epochs"]]
    assert len(groups) <= epochs and groups[:head_epochs] == [1] * head_epochs  # early stopping may end it sooner
    assert set(groups[head_epochs:]) == {2}  # then the head and the later blocks, at their own rates


def test_auto_draws_the_line_between_a_linear_classifier_and_a_finetune_by_size() -> None:
    from wukong.strategies.auto import LARGE, SMALL, choose

    assert choose(SMALL - 1, 200, stages=5).strategy == "features"  # the smallest class decides
    medium = choose(SMALL, SMALL, stages=5)
    assert (medium.strategy, medium.unfreeze) == ("finetune", 2) and "medium data" in medium.reason
    assert (choose(LARGE, LARGE, stages=5).unfreeze, choose(SMALL, SMALL, stages=0).unfreeze) == ("all", "all")


@pytest.mark.slow  # 14 s; benchmarks/image_strategies.py measures from-scratch training beside every strategy
def test_transfer_beats_training_from_scratch(cifar_small: Path) -> None:
    """20 labels per class of CIFAR-10 (not in the pretraining data): transfer must win clearly."""
    from wukong.backbones.vision import scratch_twin

    transfer = ImageClassifier(FAST_BACKBONE, progress=False).fit(cifar_small / "train")
    scratch = ImageClassifier(
        scratch_twin(load_image_backbone(FAST_BACKBONE)),
        strategy="finetune",
        unfreeze="all",
        epochs=20,
        head_epochs=1,
        backbone_lr_ratio=1.0,
        progress=False,
    ).fit(cifar_small / "train")
    transfer_accuracy = transfer.evaluate(cifar_small / "test")["accuracy"]
    scratch_accuracy = scratch.evaluate(cifar_small / "test")["accuracy"]
    assert transfer_accuracy > scratch_accuracy + 0.05, (transfer_accuracy, scratch_accuracy)


@pytest.mark.slow  # 16 s; the SVM is also fitted by the grid searches of test_sklearn_contract.py
def test_features_with_a_linear_svm_learns_and_is_chosen_by_cv_error(cifar_small: Path) -> None:
    """The SVM's C by cross-validated error; its margins calibrated on their out-of-fold values; with
    ``class_weight="loss"`` its classes weighted."""
    how = {"linear_model": "svm", "tap": "final", "class_weight": "loss", "progress": False, "seed": 0}
    clf = ImageClassifier(FAST_BACKBONE, strategy="features", **how)
    clf.fit(cifar_small / "train")
    assert clf.metrics_["classifier"]["classifier"] == "linear_svm"
    assert clf.metrics_["classifier"]["cv_metric"] == "error" and "cross-validated error" in clf.strategy_reason_
    assert clf.metrics_["classifier"]["class_weight"] == "balanced"
    assert clf.temperature_ != 1.0 and "out-of-fold" in clf.calibration_["fitted_on"]
    assert clf.evaluate(cifar_small / "test")["accuracy"] >= CIFAR_BAR["features"]
    proba = clf.predict_proba(cifar_small / "test")
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)


def test_small_data_epochs_repeat_the_images_as_different_views() -> None:
    from wukong.data.augment import ArrayImageDataset
    from wukong.strategies.finetune import AUGMENTED_PLANS, repeat_to_steps

    min_steps = AUGMENTED_PLANS["head"][2]

    pixels = np.random.default_rng(0).integers(0, 256, (36, 72, 72, 3), dtype=np.uint8)
    data = ArrayImageDataset(pixels, np.arange(36) % 2, 64, train=True)
    repeated = repeat_to_steps(data, 64, min_steps)
    assert len(repeated) >= 64 * min_steps and len(repeated) % 36 == 0
    first, again = repeated[0], repeated[36]  # the same image, in two copies
    assert torch.equal(first[1], again[1]) and not torch.equal(first[0], again[0])  # same label, new crop
    big = ArrayImageDataset(np.zeros((64 * min_steps, 8, 8, 3), np.uint8), np.zeros(1280), 8, train=True)
    assert repeat_to_steps(big, 64, min_steps) is big
