"""Many images: streamed decoding (read from the files as used), a file broken mid-run, the device
options, and DDP on two CPU processes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

import wukong.modalities.image as image_module
from tests.conftest import CAT_DOG, FAST_BACKBONE
from tests.test_cli import wukong
from wukong import ImageClassifier
from wukong.data.decode import decode_images
from wukong.data.images import read_image_source
from wukong.data.streamed import StreamedPixels, scan_images
from wukong.errors import DataError, ParameterError


def _stream_everything(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WUKONG_DECODED_LIMIT", "1")  # one byte: any image set is too large to hold


def test_streamed_images_are_the_decoded_ones(cat_dog_copy: Path) -> None:
    (cat_dog_copy / "cat" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    source = read_image_source(cat_dog_copy)
    held = decode_images(source.paths, 72, labels=source.labels)
    streamed = scan_images(source.paths, 72, labels=source.labels)
    assert isinstance(streamed.pixels, StreamedPixels) and streamed.pixels.shape == held.pixels.shape
    assert streamed.hashes == held.hashes and streamed.paths == held.paths
    assert np.array_equal(streamed.labels, held.labels)
    assert (
        [s.path for s in streamed.skipped]
        == [s.path for s in held.skipped]
        == [str(cat_dog_copy / "cat" / "broken.jpg")]
    )
    assert np.array_equal(streamed.pixels[np.arange(len(streamed))], held.pixels)
    part = streamed.subset([5, 1])  # a view, still streamed
    assert isinstance(part.pixels, StreamedPixels) and np.array_equal(part.pixels[1], held.pixels[1])
    joined = part.concat(held.subset([0]))
    assert np.array_equal(joined.pixels[[0, 1, 2]], held.pixels[[5, 1, 0]])


def test_streamed_features_equal_those_of_decoded_images(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Decoded by loader workers from the files or held decoded, the same images give the same
    features (each in its own cache, so nothing is shared)."""
    got = {}
    for name, limit in (("streamed", "1"), ("held", "1TB")):
        monkeypatch.setenv("WUKONG_DECODED_LIMIT", limit)
        monkeypatch.setenv("WUKONG_CACHE", str(tmp_path / name))
        # one engine for both: each cache would time the engines for itself
        labelled, _, features = ImageClassifier(FAST_BACKBONE, engine="onnxruntime", progress=False)._embedded(
            CAT_DOG / "train", None, None, "training"
        )
        assert image_module.is_streamed(labelled.examples) == (name == "streamed")
        got[name] = features
    np.testing.assert_allclose(got["streamed"], got["held"], rtol=1e-5, atol=1e-5)


def test_a_file_broken_during_training_is_left_out_and_reported(
    cat_dog_copy: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _stream_everything(monkeypatch)
    victim = sorted((cat_dog_copy / "dog").glob("*.jpg"))[3]
    scan = image_module.scan_images

    def scan_then_break(*args, **kwargs):  # the file changes after it was listed, as on a shared disk
        store = scan(*args, **kwargs)
        victim.write_bytes(victim.read_bytes()[:200])
        return store

    monkeypatch.setattr(image_module, "scan_images", scan_then_break)
    model = ImageClassifier(FAST_BACKBONE, strategy="finetune", epochs=2, progress=False)
    model.fit(cat_dog_copy, work_dir=tmp_path / "work")
    assert model.metrics_["images_streamed"] is True
    reported = [s for s in model.skipped_ if s["path"] == str(victim)]
    assert len(reported) == 1 and "not during training" in reported[0]["reason"]
    history = model.metrics_["history"]["unreadable"]
    assert sum(len(v) for v in history.values()) == 1
    assert model.metrics_["skipped"] == 1  # counted in the report with the others
    assert len(model.predict(CAT_DOG / "test")) == 22


def test_a_frozen_pass_names_a_file_gone_since_it_was_listed(cat_dog_copy: Path) -> None:
    model = ImageClassifier(FAST_BACKBONE, progress=False)
    model._start_fit()
    source = read_image_source(cat_dog_copy)
    store = scan_images(source.paths, model.backbone_.resize_size, labels=source.labels)
    gone = store.paths[7]
    Path(gone).unlink()
    net = image_module.network(model.backbone_, None, image_module.nn.Identity())
    with pytest.raises(DataError, match=f"{gone}: usable when first read, not now"):
        model._passes.embed(net, model.backbone_, store.pixels)


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--devices", "0"], "devices=0"),
        (["--devices", "two"], "--devices two"),
        (["--accelerator", "quantum"], "accelerator='quantum'"),
        (["--precision", "16"], "--precision 16"),
        (["--precision", "32", "--bf16"], "disagree"),
        (["--num-nodes", "0"], "num_nodes=0"),
    ],
)
def test_device_options_are_checked_before_training(tmp_path: Path, option: list[str], message: str) -> None:
    result = wukong("train", CAT_DOG / "train", "--out", tmp_path / "m", *option, check=False)
    assert result.returncode != 0
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "m").exists()


def test_device_options_are_estimator_parameters() -> None:
    model = ImageClassifier(FAST_BACKBONE, accelerator="cpu", devices=2, num_workers=0)
    assert model.get_params()["devices"] == 2
    with pytest.raises(ParameterError, match="num_workers=-1"):
        model.set_params(num_workers=-1).fit(CAT_DOG / "train")


@pytest.mark.slow
def test_two_cpu_processes_train_the_same_kind_of_model(cifar_small: Path, tmp_path: Path) -> None:
    """``--accelerator cpu --devices 2``: Lightning's DDP, two processes (gloo); the model is the same
    kind as one process trains, about as accurate, and written once."""
    runs = {}
    for devices in ("1", "2"):
        out = tmp_path / f"model{devices}"
        args = ["--strategy", "finetune", "--backbone", FAST_BACKBONE, "--json"]
        wukong("train", cifar_small / "train", "--out", out, "--test", cifar_small / "test", *args,
               "--accelerator", "cpu", "--devices", devices)  # fmt: skip
        metrics = json.loads((out / "metrics.json").read_text())
        config = json.loads((out / "config.json").read_text())
        state = load_file(out / "model.safetensors")
        runs[devices] = (metrics, config, {k: v.shape for k, v in state.items()})
    one, two = runs["1"], runs["2"]
    assert one[0]["history"]["processes"] == 1 and two[0]["history"]["processes"] == 2
    assert two[1]["head"] == one[1]["head"] and two[1]["classes"] == one[1]["classes"]
    assert two[2] == one[2]  # the same tensors, of the same shapes
    assert abs(two[0]["test_accuracy"] - one[0]["test_accuracy"]) < 0.1
    assert two[0]["test_accuracy"] > 0.25  # ten classes: far above chance (0.1)
    assert not list(tmp_path.glob("*.partial"))


def test_streamed_pool_and_mirrors_in_features(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The ``features`` strategy on streamed images: mirror images and an unlabelled pool read the same way."""
    _stream_everything(monkeypatch)
    model = ImageClassifier(FAST_BACKBONE, strategy="features", tap="final", progress=False)
    model.fit(CAT_DOG / "train", unlabeled=CAT_DOG / "test")
    assert model.metrics_["images_streamed"] is True
    assert model.metrics_["mirror_images"] is not None and "semi_supervised" in model.metrics_
    assert model.score(*_test_set()) > 0.6


def _test_set() -> tuple[list[str], list[str]]:
    paths = sorted(str(p) for p in (CAT_DOG / "test").glob("*/*.jpg"))
    return paths, [Path(p).parent.name for p in paths]


@pytest.mark.slow
def test_pretrain_on_two_cpu_processes_writes_one_backbone(cifar_small: Path, tmp_path: Path) -> None:
    out = tmp_path / "bb"
    args = ["--arch", "wukong_resnet18_s", "--input-size", "32", "--min-size", "32", "--epochs", "2"]
    wukong("pretrain", cifar_small / "train", "--out", out, "--val", cifar_small / "test", *args,
           "--batch-size", "32", "--accelerator", "cpu", "--devices", "2", "--json")  # fmt: skip
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["processes"] == 2 and len(metrics["epochs"]) == 2
    model = ImageClassifier(out, strategy="features", tap="final", progress=False).fit(CAT_DOG / "train")
    assert len(model.predict(CAT_DOG / "test")) == 22


def test_large_data_scores_each_c_on_one_held_out_fifth() -> None:
    from wukong.strategies.features import HOLD_OUT_FROM, cv_folds

    labels = np.repeat(np.arange(4), HOLD_OUT_FROM // 4)
    (train, test), *more = cv_folds(labels, None, seed=0)
    assert not more and len(test) == HOLD_OUT_FROM // 5 and not set(train) & set(test)
    assert np.bincount(labels[test]).tolist() == [HOLD_OUT_FROM // 20] * 4  # stratified
    assert len(cv_folds(labels[1:], None, seed=0)) == 5  # one example fewer: 5-fold cross-validation
    assert len(cv_folds(labels, None, seed=0, hold_out_from=None)) == 5  # every example scored (the audit)
    mirrored, groups = np.concatenate([labels, labels]), np.tile(np.arange(len(labels)), 2)
    (train, test), *more = cv_folds(mirrored, groups, seed=0)
    assert not more and test.max() < len(labels)  # originals scored, never their mirror images
    assert not set(groups[train]) & set(groups[test]) and len(train) == 2 * (len(labels) - len(test))


SHARED_EXTRACT = """
import sys
import numpy as np
import wukong.features_cache as features_cache
features_cache.CHUNK = 40
features_cache.PEER_WAIT = float(sys.argv[3])
from wukong import ImageClassifier
from wukong.modalities.image import FrozenPasses

computed = []
embed = FrozenPasses.embed

def counting(self, net, backbone, pixels, **kw):
    computed.append(len(pixels))
    return embed(self, net, backbone, pixels, **kw)

FrozenPasses.embed = counting
_, _, features = ImageClassifier(sys.argv[2], progress=False)._embedded(sys.argv[1], None, None, "training")
np.save(sys.argv[4], features)
print(sum(computed))
"""


class Extraction:
    """A run of SHARED_EXTRACT in its own process; its output goes to files (a pipe nobody reads
    while its peer is awaited could fill and stall it)."""

    def __init__(self, script: Path, data: Path, cache: Path, out: Path, wait: float, **env: str) -> None:
        import os
        import subprocess
        import sys

        command = [sys.executable, str(script), str(data), FAST_BACKBONE, str(wait), str(out)]
        environment = {**os.environ, "WUKONG_CACHE": str(cache), **env}
        self.stdout, self.stderr = out.with_suffix(".out"), out.with_suffix(".err")
        with open(self.stdout, "w") as stdout, open(self.stderr, "w") as stderr:
            self.process = subprocess.Popen(command, env=environment, stdout=stdout, stderr=stderr, text=True)

    def computed(self) -> int:
        """How many images this process embedded itself (it must succeed within 5 minutes)."""
        code = self.process.wait(timeout=300)
        assert code == 0, self.stderr.read_text()[-2000:]
        return int(self.stdout.read_text())


@pytest.mark.slow  # the default suite stays near 10 minutes; make test-all runs it
def test_processes_of_one_run_share_feature_extraction(cifar_small: Path, tmp_path: Path) -> None:
    """Two processes of a multi-device run (ranks 0 and 1 of 2, as torchrun sets them) embed the
    200 images into one cache: each computes its share and reads the other's; the features are
    those of one process alone. A rank whose peer never comes computes the rest after waiting."""
    script = tmp_path / "extract.py"
    script.write_text(SHARED_EXTRACT)
    data = cifar_small / "train"
    alone = Extraction(script, data, tmp_path / "alone", tmp_path / "alone.npy", 300)
    assert alone.computed() == 200
    runs = [
        Extraction(script, data, tmp_path / "shared", tmp_path / f"rank{r}.npy", 300, RANK=str(r), WORLD_SIZE="2")
        for r in (0, 1)
    ]
    counts = [run.computed() for run in runs]
    assert sum(counts) == 200 and min(counts) > 50  # split by content hash, about evenly
    for r in (0, 1):
        np.testing.assert_allclose(np.load(tmp_path / f"rank{r}.npy"), np.load(tmp_path / "alone.npy"), atol=1e-5)
    lonely = Extraction(script, data, tmp_path / "lonely", tmp_path / "lonely.npy", 2, RANK="0", WORLD_SIZE="2")
    assert lonely.computed() == 200  # its share, then the rest
