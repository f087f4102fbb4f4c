"""Exports used as their users would use them, without Wukong: ONNX through onnxruntime, the text
tokenizer through the ``tokenizers`` library, TorchScript and torch.export through PyTorch; each
compared with ``predict_proba`` on the real cat/dog test photos and BANKING77 texts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from PIL import Image, ImageOps

from wukong import ImageClassifier, TextClassifier, load
from wukong.errors import WukongError
from wukong.export import export

from .conftest import CAT_DOG, DATA

CMD = [sys.executable, "-m", "wukong.cli"]
TEST_FILES = sorted(p for p in (CAT_DOG / "test").rglob("*") if p.is_file())
# float32 graphs of the same network: only summation order differs
SAME_NETWORK = 1e-4


@pytest.fixture(scope="module")
def cat_dog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default image model (EfficientNet-Lite0 features) on cat/dog, saved as 'wukong train' does."""
    folder = tmp_path_factory.mktemp("export") / "cat_dog"
    model = ImageClassifier(progress=False, seed=0).fit(CAT_DOG / "train")
    model.metrics_["test_data"] = str(CAT_DOG / "test")
    model.save(folder)
    return folder


@pytest.fixture(scope="module")
def banking(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str], list[str]]:
    """A MiniLM head on 6 BANKING77 intents (8 texts each), with 60 test texts of them."""
    import csv

    rows = list(csv.DictReader(open(DATA / "banking77" / "train.csv", encoding="utf-8")))
    intents = sorted({r["category"] for r in rows})[::13][:6]
    picked: dict[str, list[str]] = {c: [] for c in intents}
    for row in rows:
        if row["category"] in picked and len(picked[row["category"]]) < 18:
            picked[row["category"]].append(row["text"])
    train = [(t, c) for c, texts in picked.items() for t in texts[:8]]
    test = [(t, c) for c, texts in picked.items() for t in texts[8:]]
    # fp32, so that the fp32 export is held to float rounding (bf16, where measured faster, moves ~1e-3)
    model = TextClassifier(strategy="head", epochs=15, progress=False, seed=0, bf16=False)
    model.fit(*zip(*train, strict=True))
    folder = tmp_path_factory.mktemp("export") / "banking"
    model.save(folder)
    texts, labels = (list(x) for x in zip(*test, strict=True))
    return folder, texts, labels


def _pixels_as_the_metadata_says(meta: dict, files: list[Path]) -> np.ndarray:
    """What the metadata tells a user to feed a ``pixels`` graph, done with Pillow alone."""
    pre = meta["preprocessing"]
    out = []
    for path in files:
        image = ImageOps.exif_transpose(Image.open(path)).convert("RGB")
        side = pre["resize_shorter_side_to"]
        scale = side / min(image.size)
        image = image.resize(
            (max(side, round(image.width * scale)), max(side, round(image.height * scale))), Image.BICUBIC
        )
        crop = pre["centre_crop"]
        left, top = (image.width - crop) // 2, (image.height - crop) // 2
        out.append(np.asarray(image.crop((left, top, left + crop, top + crop)), np.float32).transpose(2, 0, 1) / 255)
    return np.stack(out)


def _session(path: Path) -> tuple[ort.InferenceSession, dict]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session, json.loads(session.get_modelmeta().custom_metadata_map["wukong"])


# --- images --------------------------------------------------------------------------------------


def test_image_onnx_carries_its_preprocessing_and_matches_predict(cat_dog: Path, tmp_path: Path) -> None:
    model = load(cat_dog)
    info = export(model, tmp_path / "m.onnx")
    session, meta = _session(tmp_path / "m.onnx")
    assert meta["classes"] == model.classes_ == ["cat", "dog"]
    assert meta["input"]["name"] == session.get_inputs()[0].name == "pixels"
    pre = meta["preprocessing"]
    assert (pre["centre_crop"], pre["resize_shorter_side_to"], pre["interpolation"]) == (224, 256, "bicubic")
    assert len(pre["mean"]) == len(pre["std"]) == 3
    # a user following the metadata with Pillow, on the real test photos
    got = session.run(None, {"pixels": _pixels_as_the_metadata_says(meta, TEST_FILES)})[0]
    expected = model.predict_proba(TEST_FILES)
    assert np.abs(got - expected).max() < 0.02, np.abs(got - expected).max()
    assert (got.argmax(1) == expected.argmax(1)).all()
    # the parity Wukong measured on the recorded test set, and what it says about it
    parity = info["parity"]
    assert parity["examples"] == len(TEST_FILES) and parity["max_abs_diff"] < SAME_NETWORK
    assert parity["accuracy_export"] == parity["accuracy_model"] >= 0.9


def test_any_size_onnx_needs_nothing_but_decoded_pixels(cat_dog: Path, tmp_path: Path) -> None:
    model = load(cat_dog)
    export(model, tmp_path / "any.onnx", any_size=True)
    session, meta = _session(tmp_path / "any.onnx")
    assert meta["input"] == {"name": "image", "dtype": "uint8", "shape": ["height", "width", 3], "layout": "HWC, RGB"}
    images = [np.asarray(ImageOps.exif_transpose(Image.open(p)).convert("RGB")) for p in TEST_FILES]
    rng = np.random.default_rng(0)
    images += [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in [(120, 90), (300, 1000), (256, 256)]]
    got = np.concatenate([session.run(None, {"image": image})[0] for image in images])
    expected = model.predict_proba(images)
    diff = np.abs(got - expected)
    assert diff[: len(TEST_FILES)].max() < 0.02, diff.max(1)  # the photos; resampling filters differ slightly
    assert diff.max() < 0.05, diff.max(1)
    assert (got.argmax(1) == expected.argmax(1)).all()


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated")
@pytest.mark.parametrize("fmt", ["torchscript", pytest.param("torch-export", marks=pytest.mark.slow)])
def test_pytorch_exports_match_predict_with_a_free_batch(cat_dog: Path, tmp_path: Path, fmt: str) -> None:
    model = load(cat_dog)
    out = tmp_path / f"m{'.pt' if fmt == 'torchscript' else '.pt2'}"
    export(model, out, format=fmt)
    extra = {"wukong.json": ""}
    if fmt == "torchscript":
        module = torch.jit.load(str(out), _extra_files=extra)
    else:
        module = torch.export.load(str(out), extra_files=extra).module()
    meta = json.loads(extra["wukong.json"])
    assert meta["classes"] == ["cat", "dog"] and meta["parity"]["max_abs_diff"] < SAME_NETWORK
    store = model.decode_for_prediction(TEST_FILES[:5])
    crop = (256 - 224) // 2
    pixels = torch.from_numpy(store.pixels[:, crop : crop + 224, crop : crop + 224].copy()).permute(0, 3, 1, 2)
    with torch.no_grad():
        got, unknown = (out.numpy() for out in module(pixels.float() / 255))  # probabilities, unknown score
    assert np.abs(got - model.predict_proba(TEST_FILES[:5])).max() < SAME_NETWORK
    assert np.abs(unknown - model.unknown_score(TEST_FILES[:5])).max() < 1e-4


def test_int8_export_records_its_measured_accuracy_change(cat_dog: Path, tmp_path: Path) -> None:
    model = load(cat_dog)
    fp32 = export(model, tmp_path / "f.onnx", any_size=True)
    export(model, tmp_path / "q.onnx", format="onnx-int8", any_size=True)
    session, meta = _session(tmp_path / "q.onnx")
    int8 = meta["int8"]
    assert int8["data"] == str(CAT_DOG / "test")
    # the accuracy written in the metadata is what the int8 graph gives on the test photos
    labels = np.array([model.classes_.index(p.parent.name) for p in TEST_FILES])
    images = [np.asarray(ImageOps.exif_transpose(Image.open(p)).convert("RGB")) for p in TEST_FILES]
    predicted = np.array([session.run(None, {"image": image})[0].argmax() for image in images])
    assert int8["accuracy_int8"] == pytest.approx((predicted == labels).mean())
    assert int8["accuracy_change"] == pytest.approx(int8["accuracy_int8"] - int8["accuracy_fp32_export"])
    assert int8["accuracy_int8"] >= 0.85
    assert (tmp_path / "q.onnx").stat().st_size < 0.4 * fp32["bytes"]
    # the unknown score, a second output by default, whose thresholds the metadata lists; or left out
    assert [o.name for o in session.get_outputs()] == ["probabilities", "unknown_score"]
    assert fp32["parity"]["unknown_answers_differ"] == 0 and "keep 0.95 of known inputs" in str(meta["unknown_output"])
    plain = export(model, tmp_path / "p.onnx", any_size=True, unknown=False)
    session, meta = _session(tmp_path / "p.onnx")
    assert [o.name for o in session.get_outputs()] == ["probabilities"] and "unknown_output" not in meta
    assert "unknown_score_max_abs_diff" not in plain["parity"] and plain["bytes"] < fp32["bytes"]


def test_int8_without_labelled_data_is_refused_and_writes_nothing(cat_dog: Path, tmp_path: Path) -> None:
    model = load(cat_dog)
    model.metrics_["test_data"] = str(tmp_path / "moved_away")  # the recorded test set is gone
    with pytest.raises(WukongError, match=r"q\.onnx: an int8 export needs labelled data"):
        export(model, tmp_path / "q.onnx", format="onnx-int8")
    assert not list(tmp_path.iterdir())  # nothing half-written either
    info = export(model, tmp_path / "m.onnx")  # fp32 needs no data: written, without a parity figure
    assert "parity" not in info and (tmp_path / "m.onnx").stat().st_size == info["bytes"]


# --- texts ---------------------------------------------------------------------------------------


def test_text_onnx_with_its_tokenizer_files_matches_predict(banking, tmp_path: Path) -> None:
    from tokenizers import Tokenizer

    folder, texts, labels = banking
    model = load(folder)
    texts = [*texts, "card " * 400]  # longer than the encoder's limit: truncated the same way
    export(model, tmp_path / "b.onnx", data=texts[:-1], labels=labels)
    session, meta = _session(tmp_path / "b.onnx")
    assert meta["tokenizer"] == "b.tokenizer" and meta["classes"] == model.classes_
    tokenizer = Tokenizer.from_file(str(tmp_path / "b.tokenizer" / "tokenizer.json"))
    encoded = tokenizer.encode_batch(texts)
    assert len(encoded[-1].ids) == meta["preprocessing"]["max_length"]
    feed = {
        "input_ids": np.array([e.ids for e in encoded], np.int64),
        "attention_mask": np.array([e.attention_mask for e in encoded], np.int64),
    }
    got = session.run(None, feed)[0]
    assert np.abs(got - model.predict_proba(texts)).max() < SAME_NETWORK
    assert meta["parity"]["max_abs_diff"] < SAME_NETWORK and meta["parity"]["accuracy_export"] >= 0.7


@pytest.mark.slow  # the default suite stays near 10 minutes; make test-all runs it
def test_text_int8_and_torch_export(banking, tmp_path: Path) -> None:
    folder, texts, labels = banking
    model = load(folder)
    # an int8 model that loses more accuracy than allowed is refused, and nothing is left behind
    with pytest.raises(WukongError, match=r"r\.onnx: int8 would lose -?[\d.]+ accuracy points .* nothing written"):
        export(model, tmp_path / "r.onnx", format="onnx-int8", data=texts, labels=labels, max_accuracy_loss=-1.0)
    assert not list(tmp_path.iterdir())
    info = export(model, tmp_path / "q.onnx", format="onnx-int8", data=texts, labels=labels)
    assert info["int8"]["accuracy_change"] == pytest.approx(
        info["int8"]["accuracy_int8"] - info["int8"]["accuracy_fp32_export"]
    )
    assert info["int8"]["accuracy_int8"] >= 0.6 and info["parity"]["max_abs_diff"] < 0.1
    assert info["parity"]["unknown_answers_differ"] <= len(texts) // 10  # its score's similarities stay in float
    export(model, tmp_path / "t.pt2", format="torch-export")
    module = torch.export.load(str(tmp_path / "t.pt2")).module()
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tmp_path / "t.tokenizer" / "tokenizer.json"))
    encoded = tokenizer.encode_batch(texts[:7])
    ids = torch.tensor([e.ids for e in encoded])
    with torch.no_grad():
        got = module(ids, torch.tensor([e.attention_mask for e in encoded]))[0].numpy()
    assert np.abs(got - model.predict_proba(texts[:7])).max() < SAME_NETWORK


# --- the command ---------------------------------------------------------------------------------


def test_cli_export_json_default_path_and_file_mode(cat_dog: Path) -> None:
    result = subprocess.run(
        [*CMD, "export", cat_dog, "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=lambda: os.umask(0o022),
    )
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    out = cat_dog.with_name("cat_dog.onnx")
    assert info["path"] == str(out) and info["format"] == "onnx" and info["parity"]["max_abs_diff"] < SAME_NETWORK
    assert oct(out.stat().st_mode & 0o777) == oct(0o644)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--format", "tflite"], "--format tflite: choose one of onnx, onnx-int8, torchscript, torch-export"),
        (["--format", "torchscript", "--any-size"], "--any-size: for ONNX exports of image models"),
    ],
)
def test_cli_export_bad_options_get_one_line(cat_dog: Path, tmp_path: Path, args: list[str], message: str) -> None:
    result = subprocess.run(
        [*CMD, "export", cat_dog, "--out", tmp_path / "x", *args], capture_output=True, text=True, timeout=300
    )
    assert result.returncode != 0 and message in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "x").exists()
