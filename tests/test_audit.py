"""``wukong audit`` and ``wukong train --clean`` on real data with planted problems."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import CAT_DOG, DATA, FAST_BACKBONE
from wukong import audit
from wukong.quality.checks import centroid_similarity, exact_groups, near_pairs
from wukong.quality.sets import pixel_sketch, text_sketch


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The cat/dog photos with a dog filed under cat, an exact copy, a re-encoded smaller copy of a
    test photo, and a file that is not an image."""
    root = tmp_path_factory.mktemp("planted")
    train, test = root / "train", CAT_DOG / "test"
    shutil.copytree(CAT_DOG / "train", train)
    dog = sorted((train / "dog").iterdir())[0]
    dog.rename(train / "cat" / "filed_wrong.jpg")
    shutil.copyfile(sorted((train / "cat").glob("cat*"))[3], train / "cat" / "again.jpg")  # a copy of cat.953
    photo = Image.open(sorted((test / "dog").iterdir())[0]).convert("RGB")
    photo.resize((photo.width * 3 // 4, photo.height * 3 // 4)).save(train / "dog" / "leaked.jpg", quality=80)
    (train / "cat" / "broken.jpg").write_bytes(b"not an image")
    return {"train": train, "test": test}


def test_audit_finds_each_planted_problem_in_images(planted: dict[str, Path], tmp_path: Path) -> None:
    report = audit(planted["train"], test=planted["test"], progress=False)
    found = report.to_dict()
    wrong = [i for i in found["label_issues"] if i["item"].endswith("filed_wrong.jpg")]
    assert wrong and wrong[0]["label"] == "cat" and wrong[0]["suggested"] == "dog"
    assert found["label_issues"][0]["item"].endswith("filed_wrong.jpg")  # the most likely first
    copies = [sorted(Path(x["item"]).name for x in group) for group in found["exact_duplicates"]]
    assert any("again.jpg" in group for group in copies)
    leaks = [p for p in found["leakage"] if p["items"][0]["item"].endswith("leaked.jpg")]
    assert len(leaks) == 1 and leaks[0]["kind"] == "near" and leaks[0]["items"][1]["set"] == "test"
    assert [Path(s["path"]).name for s in found["skipped"]] == ["broken.jpg"]
    assert found["balance"]["counts"] == {"cat": 22, "dog": 20} and not found["balance"]["tiny_classes"]
    # what a clean training leaves out: the label error, the second copy, the leaked test photo
    inputs, labels = report.cleaned()
    left = {Path(r["item"]).name for r in report.left_out()}
    assert {"filed_wrong.jpg", "leaked.jpg"} <= left and len(left & {"again.jpg", "cat.953.jpg"}) == 1
    assert len(inputs) == len(labels) == 42 - len(left) and not left & {Path(p).name for p in inputs}
    page = report.save(tmp_path / "audit")
    saved = json.loads((tmp_path / "audit" / "audit.json").read_text())
    assert saved["summary"] == report.summary() and saved["thresholds"]["embedding"] == 0.96
    text = page.read_text()
    assert "filed_wrong.jpg" in text and "data:image/jpeg;base64," in text and "leaked.jpg" in text


def test_outliers_are_images_far_from_every_class(cifar_small: Path, tmp_path: Path) -> None:
    """Tiny ImageNet photos of things CIFAR-10 does not hold, filed under CIFAR-10 classes."""
    train = tmp_path / "train"
    shutil.copytree(cifar_small / "train", train)
    planted = []
    with tarfile.open(DATA / "tiny-imagenet.tar.gz") as tar:
        for wnid, folder in (("n01910747", "cat"), ("n07753592", "truck"), ("n07873807", "ship")):  # jellyfish...
            member = next(m for m in tar if m.name.startswith(f"tiny-imagenet/train/{wnid}/"))
            planted.append(train / folder / f"odd_{wnid}.jpg")
            planted[-1].write_bytes(tar.extractfile(member).read())
    report = audit(train, progress=False)
    flagged = [Path(o["item"]).name for o in report.findings["outliers"]]
    assert {p.name for p in planted} <= set(flagged)
    assert len(flagged) <= len(planted) + 3  # of 203 images
    assert "below" in report.findings["outlier_rule"]


@pytest.fixture(scope="module")
def banking_noisy(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """BANKING77, 12 intents x 15 examples, 10% of the labels flipped (seeded), a repeated text and
    a test query copied into training with its case and punctuation changed."""
    import pandas as pd

    frame = pd.read_csv(DATA / "banking77" / "train.csv")
    intents = sorted(frame.category.unique())[:12]
    part = pd.concat([frame[frame.category == c].head(15) for c in intents])
    texts, labels = list(part.text), list(part.category)
    rng = np.random.default_rng(0)
    flipped = rng.choice(len(texts), len(texts) // 10, replace=False)
    for i in flipped:
        labels[i] = intents[(intents.index(labels[i]) + 1 + rng.integers(len(intents) - 1)) % len(intents)]
    test = pd.read_csv(DATA / "banking77" / "test.csv")
    test = test[test.category.isin(intents)]
    texts += [texts[0], test.text.iloc[0].upper().rstrip("?.") + " !!"]
    labels += [labels[0], test.category.iloc[0]]
    root = tmp_path_factory.mktemp("banking")
    pd.DataFrame({"text": texts, "category": labels}).to_csv(root / "train.csv", index=False)
    test.to_csv(root / "test.csv", index=False)
    return {"train": root / "train.csv", "test": root / "test.csv", "flipped": set(flipped.tolist()), "n": len(texts)}


def test_audit_of_texts_finds_flipped_labels_copies_and_leaks(banking_noisy: dict) -> None:
    report = audit(banking_noisy["train"], test=banking_noisy["test"], progress=False)
    found = report.to_dict()
    assert found["modality"] == "text" and found["backbone"] == "all-MiniLM-L6-v2"
    flagged = {i["index"] for i in found["label_issues"] if i["set"] == "train"}
    hits = flagged & banking_noisy["flipped"]
    assert len(hits) >= 0.6 * len(banking_noisy["flipped"]) and len(hits) >= 0.6 * len(flagged)
    n = banking_noisy["n"]
    assert [[x["index"] for x in g] for g in found["exact_duplicates"]] == [[0, n - 2]]
    leaks = [p for p in found["leakage"] if p["items"][0]["index"] == n - 1]
    assert leaks and leaks[0]["items"][1]["set"] == "test" and leaks[0]["kind"] == "near"


@pytest.mark.slow  # the default suite stays near 10 minutes; make test-all runs it
def test_train_clean_leaves_out_what_the_audit_flags(planted: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "model"
    command = [sys.executable, "-m", "wukong.cli", "train", str(planted["train"]), "--test", str(planted["test"])]
    command += ["--clean", "--strategy", "features", "--backbone", FAST_BACKBONE, "--out", str(out), "--json"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    audit_json = json.loads((out / "audit.json").read_text())
    assert metrics["clean"]["left_out"] == len(audit_json["clean_leaves_out"]) >= 2
    assert json.loads(done.stdout)["clean"]["left_out"] == metrics["clean"]["left_out"]
    skipped = json.loads((out / "skipped.json").read_text())
    left = [s for s in skipped if s["reason"].startswith("left out by --clean")]
    assert {s["path"] for s in left} == {r["item"] for r in audit_json["clean_leaves_out"]}
    assert any(s["path"].endswith("broken.jpg") for s in skipped)
    assert sum(metrics["train_examples"].values()) + metrics["val_examples"] == 42 - len(left)
    assert (out / "audit.html").exists() and metrics["test_accuracy"] > 0.6


def test_audit_command_writes_its_files_and_refuses_bad_input(planted: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "found"
    base = [sys.executable, "-m", "wukong.cli", "audit"]
    done = subprocess.run(
        [*base, str(planted["train"]), "--backbone", FAST_BACKBONE, "--out", str(out), "--json"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    said = json.loads(done.stdout)
    assert said["summary"]["skipped"] == 1 and Path(said["page"]).exists() and (out / "audit.json").exists()
    missing = subprocess.run([*base, str(tmp_path / "nope")], capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2 and "nope: no such file or folder" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1


def test_near_pairs_and_exact_groups() -> None:
    a = np.array([[1, 0], [0.999, 0.04], [0, 1]], np.float32)
    assert [(i, j) for i, j, _ in near_pairs(a, None, 0.99)] == [(0, 1)]
    assert [(i, j) for i, j, _ in near_pairs(a[:1], a[1:], 0.99)] == [(0, 0)]
    assert exact_groups(["x", "y", "x", "z", "x"]) == [[0, 2, 4]]


def test_centroid_similarity_leaves_the_item_out() -> None:
    rng = np.random.default_rng(0)
    features, labels = rng.normal(size=(12, 5)).astype(np.float32), np.array([0] * 6 + [1] * 6)
    unit = features / np.linalg.norm(features, axis=1, keepdims=True)
    expected = []
    for i in range(12):
        means = [unit[(labels == c) & (np.arange(12) != i)].sum(0) for c in (0, 1)]
        expected.append(max(m @ unit[i] / np.linalg.norm(m) for m in means))
    assert np.allclose(centroid_similarity(features, labels, 2), expected, atol=1e-5)


def test_sketches_see_a_resized_copy_and_an_edited_text() -> None:
    photo = np.asarray(Image.open(sorted((CAT_DOG / "train" / "cat").iterdir())[0]).convert("RGB").resize((96, 96)))
    smaller = np.asarray(Image.fromarray(photo).resize((60, 60)).resize((96, 96)))
    other = np.asarray(Image.open(sorted((CAT_DOG / "train" / "dog").iterdir())[0]).convert("RGB").resize((96, 96)))
    sketch = pixel_sketch(np.stack([photo, smaller, other]))
    assert sketch[0] @ sketch[1] > 0.95 > sketch[0] @ sketch[2]
    texts = text_sketch(["How do I verify my identity?", "how do i verify my identity", "Where is my card?"])
    assert texts[0] @ texts[1] > 0.95 > texts[0] @ texts[2]


def test_multi_label_texts_in_memory() -> None:
    """Label sets: a query about a missing refund given only an Apple Pay label comes first."""
    import pandas as pd

    frame = pd.read_csv(DATA / "banking77" / "train.csv")
    intents = sorted(frame.category.unique())[:4]
    texts, labels = [], []
    for i, intent in enumerate(intents):
        for text in frame[frame.category == intent].text.head(12):
            texts.append(text)
            labels.append([intent] if len(texts) % 3 else [intent, intents[(i + 1) % 4]])
    labels[0] = ["apple_pay_or_google_pay"]  # a Refund_not_showing_up query
    report = audit(texts, labels, progress=False)
    first = report.findings["label_issues"][0]
    assert first["index"] == 0 and first["suggested"] == ["Refund_not_showing_up"]
    inputs, kept = report.cleaned()
    assert texts[0] not in inputs and all(isinstance(k, list) for k in kept)


def test_the_modality_is_found_from_paths_lists_and_tables(tmp_path: Path) -> None:
    import pandas as pd

    from wukong.data.inputs import modality_of
    from wukong.errors import DataError

    photos = [str(p) for p in sorted((CAT_DOG / "train" / "cat").iterdir())[:2]]
    assert modality_of(CAT_DOG / "train") == "image" and modality_of(DATA / "banking77" / "train.csv") == "text"
    assert modality_of(photos, ["cat", "cat"]) == "image" and modality_of(["a refund", "x" * 5000], [0, 1]) == "text"
    assert modality_of(pd.DataFrame({"path": photos, "label": ["cat", "cat"]})) == "image"
    assert modality_of(pd.DataFrame({"text": ["a", "b"], "label": [0, 1]})) == "text"
    with pytest.raises(DataError, match="no such file or folder"):
        modality_of(tmp_path / "missing")
