"""Image input checks: bad files are skipped with a reason, odd formats converted, bad sources refused."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from wukong.data.decode import decode_images, load_image
from wukong.data.images import read_image_source
from wukong.data.resize import pillow_resize_square, resize_square
from wukong.errors import DataError

from .conftest import CAT_DOG

CAT = CAT_DOG / "train" / "cat"


def _real_photo() -> Image.Image:
    return Image.open(next(iter(sorted(CAT.glob("*.jpg"))))).convert("RGB")


def _encode(image: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **kw)
    return buf.getvalue()


def test_bad_files_are_skipped_with_their_reason(cat_dog_copy: Path) -> None:
    good = (cat_dog_copy / "cat").glob("*.jpg").__next__().read_bytes()
    (cat_dog_copy / "cat" / "empty.jpg").write_bytes(b"")
    (cat_dog_copy / "cat" / "truncated.jpg").write_bytes(good[: len(good) // 3])
    (cat_dog_copy / "dog" / "notes.txt").write_text("not an image")
    (cat_dog_copy / "dog" / "fake.png").write_bytes(b"this is text pretending to be a PNG")
    source = read_image_source(cat_dog_copy)
    store = decode_images(source.paths, 64, labels=source.labels)
    reasons = {Path(s.path).name: s.reason for s in source.skipped + store.skipped}
    assert set(reasons) == {"empty.jpg", "truncated.jpg", "notes.txt", "fake.png"}
    assert "empty" in reasons["empty.jpg"]
    assert "truncated" in reasons["truncated.jpg"] or "corrupt" in reasons["truncated.jpg"]
    assert "not an image" in reasons["notes.txt"]
    assert "not a readable image" in reasons["fake.png"]
    assert len(store) == 40  # every real photo kept
    assert store.pixels.shape == (40, 64, 64, 3) and store.pixels.dtype == np.uint8


@pytest.mark.parametrize(
    "mode",
    ["L", "RGBA", "P", "CMYK", "LA", "I;16"],
)
def test_unusual_modes_become_rgb(mode: str) -> None:
    photo = _real_photo().resize((80, 60))
    if mode == "I;16":
        gray = np.asarray(photo.convert("L"), dtype=np.uint16) * 257  # full 16-bit range
        image, fmt = Image.fromarray(gray), "PNG"
        assert image.mode.startswith("I")
    else:
        image = photo.convert(mode)
        fmt = "JPEG" if mode in ("L", "CMYK") else "PNG"
    loaded = load_image(_encode(image, fmt))
    assert loaded.mode == "RGB" and loaded.size == (80, 60)
    # content survives the conversion: brightness close to the original's
    reference = np.asarray(photo.convert("L"), dtype=float).mean()
    assert abs(np.asarray(loaded.convert("L"), dtype=float).mean() - reference) < 25


def test_transparent_pixels_are_composited_on_white() -> None:
    rgba = Image.new("RGBA", (10, 10), (255, 0, 0, 0))
    assert np.asarray(load_image(_encode(rgba, "PNG")))[0, 0].tolist() == [255, 255, 255]


def test_exif_rotation_is_applied() -> None:
    photo = _real_photo().resize((120, 60))  # landscape pixels
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display": the upright image is portrait
    loaded = load_image(_encode(photo, "JPEG", exif=exif.tobytes()))
    assert loaded.size == (60, 120)


def test_decompression_bomb_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    import wukong.data.decode as images

    monkeypatch.setattr(images, "MAX_PIXELS", 1000)  # a 40x40 image now counts as a bomb
    with pytest.raises(images.BadImage, match="decompression bomb"):
        load_image(_encode(Image.new("RGB", (40, 40)), "PNG"))


def test_missing_path_names_it(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="nowhere: no such file or folder"):
        read_image_source(tmp_path / "nowhere")


def test_one_class_is_refused(tmp_path: Path) -> None:
    (tmp_path / "cat").mkdir()
    (tmp_path / "cat" / "a.jpg").write_bytes((CAT / "cat.950.jpg").read_bytes())
    with pytest.raises(DataError, match="need at least two"):
        read_image_source(tmp_path)


def test_folder_without_class_folders_says_what_to_do(tmp_path: Path) -> None:
    (tmp_path / "a.jpg").write_bytes((CAT / "cat.950.jpg").read_bytes())
    with pytest.raises(DataError, match="one sub-folder per class|sub-folder"):
        read_image_source(tmp_path)


def test_csv_source_reads_relative_paths(tmp_path: Path) -> None:
    rows = ["path,label"]
    for label in ("cat", "dog"):
        for file in sorted((CAT_DOG / "train" / label).glob("*.jpg"))[:3]:
            rows.append(f"{file},{label}")
    rows.append(",dog")  # empty path: skipped, reported
    (tmp_path / "train.csv").write_text("\n".join(rows) + "\n")
    source = read_image_source(tmp_path / "train.csv")
    assert source.classes == ["cat", "dog"] and len(source) == 6
    assert [s.reason for s in source.skipped] == ["empty path or label"]


def test_csv_with_one_class_left_says_which_rows_had_no_label(tmp_path: Path) -> None:
    photo = next(iter(sorted(CAT.glob("*.jpg"))))
    data = tmp_path / "labels.csv"
    data.write_text(f"path,label\n{photo},cat\n{photo},\n")
    with pytest.raises(
        DataError, match=r"found 1 class\(es\) \['cat'\]; need at least two, from the 'label' column \(1 row"
    ):
        read_image_source(data)


def test_validation_classes_must_be_training_classes(tmp_path: Path) -> None:
    for name in ("cat", "horse"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "x.jpg").write_bytes((CAT / "cat.950.jpg").read_bytes())
    with pytest.raises(DataError, match=r"\['horse'\] are not among the training classes"):
        read_image_source(tmp_path, classes=["cat", "dog"])


def test_class_left_without_usable_images_stops_with_its_name(tmp_path: Path) -> None:
    from wukong import ImageClassifier

    for name in ("cat", "dog"):
        (tmp_path / name).mkdir()
    for file in sorted(CAT.glob("*.jpg"))[:3]:
        (tmp_path / "cat" / file.name).write_bytes(file.read_bytes())
    (tmp_path / "dog" / "only.jpg").write_bytes(b"")  # the dog class has nothing usable
    with pytest.raises(DataError, match=r"\['dog'\] have no usable example"):
        ImageClassifier(progress=False).fit(tmp_path)


@pytest.mark.parametrize("interpolation", ["bicubic", "bilinear"])
@pytest.mark.parametrize("source_size", [None, (32, 32), (61, 500)])
def test_resize_gives_pillows_pixels(interpolation: str, source_size: tuple[int, int] | None) -> None:
    """The fast resize (torchvision's kernel) makes what Pillow's resize-then-crop makes, within a level
    or two of 255, on a photo scaled down and on small or thin images scaled up."""
    photo = load_image((CAT / sorted(p.name for p in CAT.glob("*.jpg"))[0]).read_bytes())
    image = photo.resize(source_size) if source_size else photo
    size = 224
    expected = pillow_resize_square(image, size, interpolation).astype(np.int16)
    got = resize_square(image, size, interpolation)
    assert got.shape == (size, size, 3) and got.dtype == np.uint8 and got.flags.writeable
    difference = np.abs(got.astype(np.int16) - expected)
    assert difference.max() <= 2 and difference.mean() < 0.05


def test_jpegs_from_libjpeg_turbo_give_pillows_pixels() -> None:
    """A JPEG that draft mode cannot shrink goes from libjpeg-turbo (torchvision) straight to the
    resize: the very pixels Pillow's decode gives. A large photo (which draft mode shrinks), an
    EXIF-rotated one and a CMYK one take Pillow's route; a grey one the fast one; all come out the same."""
    from wukong.data.decode import _full_size_jpeg, decode_one

    def pillows(data: bytes) -> np.ndarray:
        return resize_square(load_image(data, min_size=256), 256)

    for path in sorted(CAT.glob("*.jpg"))[:8]:
        assert _full_size_jpeg(path.read_bytes(), 256) is not None  # the fast route is taken
        assert np.array_equal(decode_one(path, 256), pillows(path.read_bytes()))
    grey = _encode(_real_photo().convert("L"), "JPEG")
    assert _full_size_jpeg(grey, 256) is not None
    assert np.array_equal(decode_one(grey, 256), pillows(grey))
    large = _encode(_real_photo().resize((1200, 900)), "JPEG")
    exif = Image.Exif()
    exif[0x0112] = 6
    rotated = _encode(_real_photo().resize((400, 300)), "JPEG", exif=exif.tobytes())
    cmyk = _encode(_real_photo().convert("CMYK"), "JPEG")
    for data in (large, rotated, cmyk):
        assert _full_size_jpeg(data, 256) is None
        assert np.array_equal(decode_one(data, 256), pillows(data))
    assert _full_size_jpeg(large, 128) is None and _full_size_jpeg(large, 600) is not None
